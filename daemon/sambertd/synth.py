"""The synthesis path shared by the CLI and the daemon: front-end → engine → encoder.

A :class:`Synthesizer` owns the front-end and the configured engines.  ``pcm_sentences`` yields
audio sentence by sentence (what a stream or a progress bar needs); ``render`` makes one
complete encoded file.  Both block and are meant to run in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sambertd import audio
from sambertd.audio import Format
from sambertd.config import Config
from sambertd.engines import Engine, Pcm, Prosody, UnknownVoiceError, Voice, create
from sambertd.frontend import Frontend, Sentence


@dataclass(frozen=True)
class Request:
    """One synthesis request, validated at construction (bad values fail before any work)."""

    text: str
    voice: str = ""
    emotion: str = "neutral"
    prosody: Prosody = field(default_factory=Prosody)
    format: str = "wav"
    sample_rate: int | None = None

    def __post_init__(self) -> None:
        fmt = audio.get_format(self.format)
        if self.sample_rate is not None:
            audio.output_rate(fmt, self.sample_rate, self.sample_rate)


@dataclass(frozen=True)
class Result:
    audio: bytes
    format: Format
    sample_rate: int
    duration: float
    sentences: int
    voice: str
    engine: str


class Synthesizer:
    """Front-end plus engines; voices are looked up across engines in config order."""

    def __init__(self, config: Config, engines: list[Engine] | None = None) -> None:
        self.config = config
        self.frontend = Frontend(
            config.frontend.lexicon or None,
            max_sentence_chars=config.frontend.max_sentence_chars,
            max_text_chars=config.frontend.max_text_chars,
            sandhi=config.frontend.sandhi,
        )
        self.engines = engines or [create(n, config.engine.threads) for n in config.engine.engines]

    def voices(self) -> list[Voice]:
        return [v for e in self.engines for v in e.voices()]

    def resolve(self, voice_id: str) -> tuple[Engine, Voice]:
        """The engine serving ``voice_id`` ('' means the configured default voice)."""
        wanted = voice_id or self.config.engine.default_voice
        for engine in self.engines:
            for voice in engine.voices():
                if voice.id == wanted:
                    return engine, voice
        known = ", ".join(v.id for v in self.voices())
        raise UnknownVoiceError(f"unknown voice {wanted!r}; available: {known}")

    def warm_up(self) -> None:
        """Load every engine and run one sentence, plus jieba's dictionary."""
        self.frontend.sentences("你好。")
        for engine in self.engines:
            engine.warm_up()

    def plan(self, request: Request, stream: bool = False) -> Plan:
        """Resolve voice and format and run the front-end: everything but the engine.
        For a stream the first unit is kept short so the first chunk leaves early."""
        engine, voice = self.resolve(request.voice)
        engine.voice(voice.id, request.emotion)  # a bad emotion fails before the front-end
        fmt = audio.get_format(request.format)
        rate = audio.output_rate(fmt, request.sample_rate, voice.sample_rate)
        pause = audio.silence(self.config.frontend.sentence_pause_ms / 1000, voice.sample_rate)
        first = self.config.frontend.stream_first_chars if stream else None
        return Plan(
            request, engine, voice, fmt, rate, self.frontend.sentences(request.text, first), pause
        )

    def render(
        self, request: Request, on_sentence: Callable[[int, int], None] | None = None
    ) -> Result:
        """The whole text as one encoded file."""
        plan = self.plan(request)
        parts = []
        for i in range(len(plan.sentences)):
            parts.append(plan.native(i))
            if on_sentence:
                on_sentence(i + 1, len(plan.sentences))
        pcm = audio.resample(np.concatenate(parts), plan.voice.sample_rate, plan.rate)
        return Result(
            audio=audio.encode(pcm, plan.rate, plan.format),
            format=plan.format,
            sample_rate=plan.rate,
            duration=len(pcm) / plan.rate,
            sentences=len(parts),
            voice=plan.voice.id,
            engine=plan.engine.name,
        )


@dataclass(frozen=True)
class Plan:
    """A request after the front-end: sentences to synthesize one at a time (streaming) or
    all at once (``Synthesizer.render``)."""

    request: Request
    engine: Engine
    voice: Voice
    format: Format
    rate: int
    sentences: list[Sentence]
    pause: Pcm

    def native(self, index: int) -> Pcm:
        """Sentence ``index`` at the voice's rate, followed by the pause unless it is last."""
        r = self.request
        pcm = self.engine.synthesize(self.sentences[index], self.voice.id, r.emotion, r.prosody)
        if index < len(self.sentences) - 1:
            pcm = np.concatenate([pcm, self.pause])
        return pcm

    def chunk(self, index: int) -> tuple[bytes, float]:
        """Sentence ``index`` as 16-bit PCM at the output rate, and its duration: a stream's
        unit (the WAV stream header, if any, is sent once before the first chunk)."""
        pcm = audio.resample(self.native(index), self.voice.sample_rate, self.rate)
        return audio.to_int16(pcm), len(pcm) / self.rate
