"""Value types shared along the request path: what a client asks for and what it gets.

They live apart from the modules that use them (validation, synth, cache, the daemon), so those
modules import this one and never each other in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sambertd import audio
from sambertd.audio import Format
from sambertd.engines.base import Prosody
from sambertd.timeline import UnitTiming


@dataclass(frozen=True)
class Request:
    """One synthesis request, validated at construction (bad values fail before any work)."""

    text: str
    voice: str = ""
    emotion: str = "neutral"
    prosody: Prosody = field(default_factory=Prosody)
    format: str = "wav"
    sample_rate: int | None = None
    ssml: bool | None = None  # None: SSML when the text starts with <speak

    def __post_init__(self) -> None:
        fmt = audio.get_format(self.format)
        if self.sample_rate is not None:
            audio.output_rate(fmt, self.sample_rate, self.sample_rate)


@dataclass(frozen=True)
class Result:
    """A finished synthesis: the encoded file and what it is."""

    audio: bytes
    format: Format
    sample_rate: int
    duration: float
    sentences: int
    voice: str
    engine: str
    degraded: bool = False
    timing: tuple[UnitTiming, ...] = ()  # per unit, for timestamps and subtitles
