"""Synthesis engines behind one interface (:class:`~sambertd.engines.base.Engine`).

Engines are named in config (``engine.engines``) and built here; each module imports its heavy
libraries only when the engine loads, so a missing optional dependency fails with a message
naming it, and never at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sambertd.engines.base import (
    Engine,
    EngineError,
    Pcm,
    Prosody,
    Speech,
    UnknownVoiceError,
    UnsupportedInput,
    Voice,
)

if TYPE_CHECKING:
    from sambertd.config import Config

__all__ = [
    "Engine",
    "EngineError",
    "Pcm",
    "Prosody",
    "Speech",
    "UnknownVoiceError",
    "UnsupportedInput",
    "Voice",
    "create",
]


def _baker(config: Config) -> Engine:
    from sambertd.engines.baker import BakerEngine

    return BakerEngine(
        threads=config.engine.threads,
        runtime=config.engine.runtime,
        concurrency=config.server.worker_count(0, config.engine.threads),
        precision=config.engine.precision,
    )


def _sambert(config: Config) -> Engine:
    from sambertd.engines.sambert import SambertEngine

    return SambertEngine(config.sambert, threads=config.engine.threads)


FACTORIES: dict[str, Callable[[Config], Engine]] = {"baker": _baker, "sambert": _sambert}


def create(name: str, config: Config) -> Engine:
    """Build (not load) the engine called ``name``."""
    try:
        factory = FACTORIES[name]
    except KeyError:
        raise EngineError(
            f"unknown engine {name!r}; available: {', '.join(sorted(FACTORIES))}"
        ) from None
    return factory(config)
