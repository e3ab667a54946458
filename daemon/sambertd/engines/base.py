"""The one small interface every synthesis engine implements.

The daemon never talks to a model library directly: it asks an :class:`Engine` for its voices
and hands it one front-end :class:`~sambertd.frontend.types.Sentence` at a time.  Engines are
loaded lazily (constructing one is cheap), warmed up once, and must be safe to call from worker
threads while the asyncio event loop keeps running.
"""

from __future__ import annotations

import abc
import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sambertd.frontend.types import Sentence

Pcm = npt.NDArray[np.float32]
"""Mono float32 samples in [-1, 1] at the voice's native sample rate."""


class EngineError(RuntimeError):
    """An engine cannot load or synthesize; the message says what to fix."""


class UnknownVoiceError(EngineError):
    """The request named a voice or emotion this engine does not have."""


@dataclass(frozen=True)
class Voice:
    """What a client may ask for: id, language, native rate and the styles it can speak in."""

    id: str
    engine: str
    language: str
    sample_rate: int
    emotions: tuple[str, ...] = ("neutral",)
    description: str = ""


@dataclass(frozen=True)
class Prosody:
    """Rate controls shared by every engine.  1.0 is the voice as trained.

    ``speed`` > 1 speaks faster, ``pitch`` > 1 raises the pitch, ``volume`` scales loudness.
    """

    speed: float = 1.0
    pitch: float = 1.0
    volume: float = 1.0

    def __post_init__(self) -> None:
        for name, lo, hi in (("speed", 0.5, 2.0), ("pitch", 0.5, 2.0), ("volume", 0.0, 2.0)):
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")


class Engine(abc.ABC):
    """Base class: subclasses implement ``_load``, ``voices`` and ``_synthesize``."""

    name = "engine"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = False

    @abc.abstractmethod
    def voices(self) -> list[Voice]:
        """Voices this engine serves; cheap, works before ``load``."""

    @abc.abstractmethod
    def _load(self) -> None:
        """Read model files and build runtimes.  Called once, under the load lock."""

    @abc.abstractmethod
    def _synthesize(self, sentence: Sentence, voice: Voice, emotion: str, prosody: Prosody) -> Pcm:
        """Turn one normalized sentence into PCM at ``voice.sample_rate``."""

    def check_health(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Periodic self-check (e.g. re-probe a GPU); the default has nothing to check."""

    def degraded(self) -> str | None:
        """Why the engine runs below its configured best (e.g. GPU lost, on CPU), or None."""
        return None

    @property
    def model_version(self) -> str:
        """Identifies the weights, so caches never mix audio of two model versions."""
        return self.name

    def load(self) -> None:
        """Load once; later calls return at once.  Thread-safe."""
        if self._loaded:
            return
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    def voice(self, voice_id: str, emotion: str = "neutral") -> Voice:
        """Look a voice up by id and check the emotion, with an error a client can act on."""
        for v in self.voices():
            if v.id == voice_id:
                if emotion not in v.emotions:
                    raise UnknownVoiceError(
                        f"voice {voice_id!r} has no emotion {emotion!r}; "
                        f"it has: {', '.join(v.emotions)}"
                    )
                return v
        known = ", ".join(v.id for v in self.voices())
        raise UnknownVoiceError(f"unknown voice {voice_id!r}; this engine has: {known}")

    def synthesize(
        self,
        sentence: Sentence,
        voice_id: str,
        emotion: str = "neutral",
        prosody: Prosody | None = None,
    ) -> Pcm:
        """Synthesize one sentence; loads the engine on first use."""
        voice = self.voice(voice_id, emotion)
        self.load()
        pcm = self._synthesize(sentence, voice, emotion, prosody or Prosody())
        return np.clip(pcm, -1.0, 1.0).astype(np.float32, copy=False)

    def warm_up(self) -> None:
        """Load and run one short sentence so the first real request pays no start-up cost."""
        from sambertd.frontend.types import Word

        self.load()
        voice = self.voices()[0]
        self._synthesize(
            Sentence("你好。", (Word("你好", ("ni2", "hao3")), Word("。", ()))),
            voice,
            voice.emotions[0],
            Prosody(),
        )
