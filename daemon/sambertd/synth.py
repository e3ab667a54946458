"""The synthesis path shared by the CLI and the daemon: front-end → engine → encoder.

A :class:`Synthesizer` owns the front-end and the configured engines.  ``pcm_sentences`` yields
audio sentence by sentence (what a stream or a progress bar needs); ``render`` makes one
complete encoded file.  Both block and are meant to run in a worker thread.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sambertd import audio
from sambertd.audio import Format
from sambertd.breaker import CircuitBreaker
from sambertd.config import Config
from sambertd.engines import (
    Engine,
    EngineError,
    Pcm,
    Prosody,
    UnknownVoiceError,
    Voice,
    create,
)
from sambertd.frontend import Frontend, Sentence

log = logging.getLogger(__name__)


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
    degraded: bool = False


class EngineUnavailable(EngineError):
    """No engine can serve this voice now (HTTP 503, so keepalived may move the VIP)."""


@dataclass
class Rung:
    """One step of the degradation ladder: an engine and the breaker that guards it."""

    engine: Engine
    breaker: CircuitBreaker

    def synthesize(self, sentence: Sentence, voice: Voice, request: Request) -> Pcm:
        """Synthesize and count the outcome; any failure becomes an :class:`EngineError`."""
        try:
            pcm = self.engine.synthesize(sentence, voice.id, request.emotion, request.prosody)
        except UnknownVoiceError:
            raise
        except Exception as exc:
            self.breaker.record(False, f"{type(exc).__name__}: {exc}")
            log.error("engine %s failed: %s", self.engine.name, exc)
            raise EngineError(f"engine {self.engine.name} failed: {exc}") from exc
        self.breaker.record(True)
        return pcm


class Synthesizer:
    """Front-end plus the ladder of engines (config order: the first is preferred)."""

    def __init__(self, config: Config, engines: list[Engine] | None = None) -> None:
        self.config = config
        self.frontend = Frontend(
            config.frontend.lexicon or None,
            max_sentence_chars=config.frontend.max_sentence_chars,
            max_text_chars=config.frontend.max_text_chars,
            sandhi=config.frontend.sandhi,
        )
        built = engines or [create(n, config) for n in config.engine.engines]
        e = config.engine
        self.rungs = [
            Rung(
                engine,
                CircuitBreaker(
                    e.breaker_window_s, e.breaker_min_calls, e.breaker_error_rate, e.breaker_open_s
                ),
            )
            for engine in built
        ]

    @property
    def engines(self) -> list[Engine]:
        return [r.engine for r in self.rungs]

    def voices(self) -> list[Voice]:
        return [v for e in self.engines for v in e.voices()]

    def _owner(self, voice_id: str) -> tuple[int, Voice]:
        for i, rung in enumerate(self.rungs):
            for voice in rung.engine.voices():
                if voice.id == voice_id:
                    return i, voice
        known = ", ".join(v.id for v in self.voices())
        raise UnknownVoiceError(f"unknown voice {voice_id!r}; available: {known}")

    def resolve(self, voice_id: str, avoid: int | None = None) -> tuple[Rung, Voice, bool]:
        """The rung and voice that serve ``voice_id`` ('' = the default voice), and whether
        that is a degraded substitute: when the owner's breaker is open (or ``avoid`` names
        it), the next rung whose breaker allows serves its own default voice — unless
        ``engine.degrade`` is off, in which case :class:`EngineUnavailable` (503)."""
        index, voice = self._owner(voice_id or self.config.engine.default_voice)
        owner = self.rungs[index]
        if index != avoid and owner.breaker.allow():
            return owner, voice, False
        why = owner.breaker.reason or "failing"
        if not self.config.engine.degrade:
            raise EngineUnavailable(f"engine {owner.engine.name} unavailable ({why})")
        for rung in self.rungs[index + 1 :]:
            if rung.breaker.allow():
                return rung, rung.engine.voices()[0], True
        raise EngineUnavailable(
            f"engine {owner.engine.name} unavailable ({why}) and no fallback engine can serve"
        )

    def health(self) -> dict[str, str]:
        """Per engine: "ok", or why it is not (breaker open, running degraded)."""
        out = {}
        for rung in self.rungs:
            state = rung.breaker.state
            degraded = rung.engine.degraded()
            out[rung.engine.name] = (
                f"{state}: {rung.breaker.reason}"
                if state != "closed"
                else f"degraded: {degraded}"
                if degraded
                else "ok"
            )
        return out

    def warm_up(self) -> None:
        """Load every engine and run one sentence, plus jieba's dictionary.  An engine that
        cannot load trips its breaker (the ladder serves its voices) instead of failing the
        daemon — unless no engine at all can serve."""
        self.frontend.sentences("你好。")
        for rung in self.rungs:
            try:
                rung.engine.warm_up()
            except Exception as exc:
                rung.breaker.trip(f"cannot load: {exc}")
                log.error("engine %s cannot load: %s", rung.engine.name, exc)
        if all(r.breaker.state != "closed" for r in self.rungs):
            raise EngineError(
                "no engine could load: "
                + "; ".join(f"{r.engine.name}: {r.breaker.reason}" for r in self.rungs)
            )

    def route(self, request: Request, avoid: int | None = None) -> Route:
        """Which engine, voice, format and rate will serve ``request`` — cheap, no front-end,
        so the daemon can build a cache key before any synthesis work."""
        rung, voice, degraded = self.resolve(request.voice, avoid)
        emotion = request.emotion
        if degraded and emotion not in voice.emotions:
            emotion = "neutral"
        rung.engine.voice(voice.id, emotion)  # a bad emotion fails before the front-end
        if degraded or not request.voice:
            request = dataclasses.replace(request, voice=voice.id, emotion=emotion)
        fmt = audio.get_format(request.format)
        rate = audio.output_rate(fmt, request.sample_rate, voice.sample_rate)
        return Route(request, rung, voice, fmt, rate, degraded)

    def normalize(self, route: Route) -> Route:
        """The route with its normalized text, which the cache key is made of and the plan
        reuses (so the text is normalized once per request)."""
        if route.normalized is not None:
            return route
        normalized = self.frontend.normalized(route.request.text)[1]
        return dataclasses.replace(route, normalized=normalized)

    def cache_key(self, route: Route, namespace: str) -> str:
        """Key of everything that decides the audio (normalizes the route if it is not)."""
        from sambertd.cache import cache_key

        text = self.normalize(route).normalized or ""
        r, p = route.request, route.request.prosody
        return cache_key(
            namespace,
            text=text,
            voice=route.voice.id,
            emotion=r.emotion,
            speed=p.speed,
            pitch=p.pitch,
            volume=p.volume,
            fmt=route.format.name,
            rate=route.rate,
            engine=route.rung.engine.name,
            model=route.rung.engine.model_version,
        )

    def plan(
        self, request: Request | Route, stream: bool = False, avoid: int | None = None
    ) -> Plan:
        """Route (unless given) and run the front-end: everything but the engine.
        For a stream the first unit is kept short so the first chunk leaves early."""
        route = request if isinstance(request, Route) else self.route(request, avoid)
        voice = route.voice
        pause = audio.silence(self.config.frontend.sentence_pause_ms / 1000, voice.sample_rate)
        first = self.config.frontend.stream_first_chars if stream else None
        return Plan(
            route.request,
            route.rung,
            voice,
            route.format,
            route.rate,
            self.frontend.sentences(route.request.text, first)
            if route.normalized is None
            else self.frontend.units(route.normalized, first),
            pause,
            route.degraded,
        )

    def render(
        self, request: Request, on_sentence: Callable[[int, int], None] | None = None
    ) -> Result:
        """The whole text as one encoded file."""
        return self.render_plan(self.plan(request), on_sentence)

    def render_plan(
        self, plan: Plan, on_sentence: Callable[[int, int], None] | None = None
    ) -> Result:
        """Synthesize a planned request.  If the chosen engine fails mid-way and the ladder
        allows, the whole text is redone on the next rung (one voice per file)."""
        request = plan.request
        try:
            return self._render(plan, on_sentence)
        except EngineError:
            if plan.degraded or not self.config.engine.degrade:
                raise
            return self._render(self.plan(request, avoid=self.rungs.index(plan.rung)), on_sentence)

    def _render(self, plan: Plan, on_sentence: Callable[[int, int], None] | None) -> Result:
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
            engine=plan.rung.engine.name,
            degraded=plan.degraded,
        )


@dataclass(frozen=True)
class Route:
    """Where a request goes: the rung and voice that serve it, and the output format."""

    request: Request
    rung: Rung
    voice: Voice
    format: Format
    rate: int
    degraded: bool = False
    normalized: str | None = None  # set once the front-end's normalization has run


@dataclass(frozen=True)
class Plan:
    """A request after the front-end: sentences to synthesize one at a time (streaming) or
    all at once (``Synthesizer.render``)."""

    request: Request
    rung: Rung
    voice: Voice
    format: Format
    rate: int
    sentences: list[Sentence]
    pause: Pcm
    degraded: bool = False

    def native(self, index: int) -> Pcm:
        """Sentence ``index`` at the voice's rate, followed by the pause unless it is last."""
        pcm = self.rung.synthesize(self.sentences[index], self.voice, self.request)
        if index < len(self.sentences) - 1:
            pcm = np.concatenate([pcm, self.pause])
        return pcm

    def chunk(self, index: int) -> tuple[bytes, float]:
        """Sentence ``index`` as 16-bit PCM at the output rate, and its duration: a stream's
        unit (the WAV stream header, if any, is sent once before the first chunk)."""
        pcm = audio.resample(self.native(index), self.voice.sample_rate, self.rate)
        return audio.to_int16(pcm), len(pcm) / self.rate
