"""The one small interface every synthesis engine implements.

The daemon never talks to a model library directly: it asks an :class:`Engine` for its voices
and hands it one front-end :class:`~sambertd.frontend.types.Sentence` at a time.  Engines are
loaded lazily (constructing one is cheap), warmed up once, and must be safe to call from worker
threads while the asyncio event loop keeps running.
"""

from __future__ import annotations

import abc
import itertools
import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sambertd.frontend.types import Sentence, Word

Pcm = npt.NDArray[np.float32]
"""Mono float32 samples in [-1, 1] at the voice's native sample rate."""
WARM_UP_SENTENCE = Sentence("你好。", (Word("你好", ("ni2", "hao3")), Word("。", ())))


@dataclass(frozen=True)
class Speech:
    """One sentence's audio and where each of its syllables lies in it: ``syllables[k]`` is
    the [start, end) sample range of syllable ``k`` of ``sentence.syllables``.  ``measured``
    says the engine reported its durations (FastSpeech2 and Sambert do); otherwise they are
    spread evenly over the voiced part of the audio."""

    pcm: Pcm
    syllables: tuple[tuple[int, int], ...]
    measured: bool


class EngineError(RuntimeError):
    """An engine cannot load or synthesize; the message says what to fix."""


class UnknownVoiceError(EngineError):
    """The request named a voice or emotion this engine does not have."""


class UnsupportedInput(ValueError):
    """The request asks for something this voice cannot do (HTTP 422).  A client's mistake,
    never the engine's: it does not count against the engine's circuit breaker."""


@dataclass(frozen=True)
class Voice:
    """What a client may ask for: id, language, native rate and the styles it can speak in."""

    id: str
    engine: str
    language: str
    sample_rate: int
    emotions: tuple[str, ...] = ("neutral",)
    description: str = ""
    controls: tuple[str, ...] = ("speed", "pitch", "volume")  # Prosody fields it honours

    def check(self, prosody: Prosody) -> None:
        """Refuse prosody this voice cannot render, before any work is queued."""
        for name in ("speed", "pitch", "volume"):
            if getattr(prosody, name) != 1.0 and name not in self.controls:
                raise UnsupportedInput(
                    f"{name}: voice {self.id!r} supports {', '.join(self.controls)} only "
                    f"(leave {name} at 1.0, or pick another voice)"
                )


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

    @property
    def fingerprint(self) -> str:
        """Everything of this engine that shapes its audio bytes (weights and the settings
        that change the numbers): part of every cache key.  Subclasses add their settings."""
        return self.model_version

    def describe(self) -> str:
        """One line for the start-up log and ``sambertd check``: what runs, and where."""
        return f"{self.name}: {self.model_version}"

    def identity(self) -> tuple[object, ...]:
        """What this engine is built from (settings, model files), known without loading.
        A reload keeps a loaded engine whose identity is unchanged instead of loading the
        same model again next to it."""
        return (self.name,)

    def gpus(self) -> int:
        """GPUs this (loaded) engine runs on; sizes the worker pool (4 per GPU)."""
        return 0

    def unload(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Free what ``load`` took (GPU memory); called when a reload retires the engine."""

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
        return self.speak(sentence, voice_id, emotion, prosody).pcm

    def speak(
        self,
        sentence: Sentence,
        voice_id: str,
        emotion: str = "neutral",
        prosody: Prosody | None = None,
    ) -> Speech:
        """Synthesize one sentence with its syllables' timing; loads on first use."""
        voice = self.voice(voice_id, emotion)
        self.load()
        speech = self._speak(sentence, voice, emotion, prosody or Prosody())
        pcm = np.clip(speech.pcm, -1.0, 1.0).astype(np.float32, copy=False)
        return Speech(pcm, speech.syllables, speech.measured)

    def _speak(self, sentence: Sentence, voice: Voice, emotion: str, prosody: Prosody) -> Speech:
        """Engines that know their durations override this; the rest are estimated."""
        pcm = self._synthesize(sentence, voice, emotion, prosody)
        return Speech(pcm, estimate(pcm, len(sentence.syllables)), False)

    def warm_up(self) -> None:
        """Load and run one short sentence so the first real request pays no start-up cost."""
        self.load()
        voice = self.voices()[0]
        self._synthesize(WARM_UP_SENTENCE, voice, voice.emotions[0], Prosody())

    def provision(self, concurrency: int) -> None:  # noqa: B027 - optional hook, not abstract
        """Get ready for ``concurrency`` calls at once (per-call state such as interpreters),
        once the worker count is known.  Engines whose state is shared need nothing."""


def estimate(pcm: Pcm, syllables: int) -> tuple[tuple[int, int], ...]:
    """Syllables spread evenly over the voiced part (first to last sample above 2 % of the
    peak): a fallback for engines that do not report durations."""
    if syllables == 0:
        return ()
    loud = np.flatnonzero(np.abs(pcm) > 0.02 * float(np.abs(pcm).max(initial=0.0)))
    start, end = (int(loud[0]), int(loud[-1]) + 1) if loud.size else (0, len(pcm))
    edges = np.linspace(start, end, syllables + 1).round().astype(int)
    return tuple((int(a), int(b)) for a, b in itertools.pairwise(edges))
