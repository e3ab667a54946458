"""Synthesis engines behind one interface (:class:`~sambertd.engines.base.Engine`).

Engines are named in config (``engine.engines``) and built here; each module imports its heavy
libraries only when the engine loads, so a missing optional dependency fails with a message
naming it, and never at import time.
"""

from __future__ import annotations

from collections.abc import Callable

from sambertd.engines.base import (
    Engine,
    EngineError,
    Pcm,
    Prosody,
    UnknownVoiceError,
    Voice,
)

__all__ = ["Engine", "EngineError", "Pcm", "Prosody", "UnknownVoiceError", "Voice", "create"]


def _baker(threads: int) -> Engine:
    from sambertd.engines.baker import BakerEngine

    return BakerEngine(threads=threads)


FACTORIES: dict[str, Callable[[int], Engine]] = {"baker": _baker}


def create(name: str, threads: int = 2) -> Engine:
    """Build (not load) the engine called ``name``."""
    try:
        factory = FACTORIES[name]
    except KeyError:
        raise EngineError(
            f"unknown engine {name!r}; available: {', '.join(sorted(FACTORIES))}"
        ) from None
    return factory(threads)
