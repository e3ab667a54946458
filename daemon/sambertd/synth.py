"""The synthesis path shared by the CLI and the daemon: front-end → engine → encoder.

A :class:`Synthesizer` owns the front-end and the ladder of engines.  A request is first
*routed* (which engine, voice, format and rate; the front-end's cheap steps give its unit
texts), which is all the cache key needs; then *planned* (G2P) and rendered unit by unit.

Both a plain request and a stream render through :meth:`Plan.output`, in unit order, with one
resampler carried across units: the same units give the same samples whichever way they were
asked for, so a stream and a plain request with the same key may share a cache entry.
Everything here blocks and is meant to run in a worker thread; between units it calls
:func:`~sambertd.pool.checkpoint`, so work whose request is gone stops there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import soundfile

from sambertd import audio, library_versions
from sambertd.audio import Format, Resampler
from sambertd.breaker import CircuitBreaker
from sambertd.config import Config
from sambertd.engines import (
    Engine,
    EngineError,
    Pcm,
    Prosody,
    Speech,
    UnknownVoiceError,
    UnsupportedInput,
    Voice,
    create,
)
from sambertd.frontend import Frontend, Scale, Sentence, Unit
from sambertd.frontend.types import NEUTRAL
from sambertd.pool import checkpoint
from sambertd.timeline import UnitTiming, unit_timing
from sambertd.types import Request, Result

log = logging.getLogger(__name__)
KEY_VERSION = "v3"
# Around an SSML break: what counts as the model's silence, and how much of it to keep.
SILENCE_LEVEL = 0.01  # of the unit's peak
EDGE_MARGIN_S = 0.03
# Encoders and resampler: their releases can change the bytes of a given waveform.
ENCODING_LIBRARIES = ("soxr", "soundfile", "numpy")


class EngineUnavailable(EngineError):
    """No engine can serve this voice now (HTTP 503, so keepalived may move the VIP)."""


@dataclass
class Rung:
    """One step of the degradation ladder: an engine and the breaker that guards it.  A
    reload that keeps the engine keeps its rung, breaker state included."""

    engine: Engine
    breaker: CircuitBreaker
    warm: bool = False  # loaded and ran its warm-up sentence

    def synthesize(
        self, sentence: Sentence, voice: Voice, request: Request, scale: Scale = NEUTRAL
    ) -> Speech:
        """Synthesize and count the outcome; an engine fault becomes an :class:`EngineError`.
        A client's mistake (unknown voice, unsupported input) is re-raised as it is and
        never counts against the breaker."""
        prosody = scaled(request.prosody, scale, voice)
        try:
            speech = self.engine.speak(sentence, voice.id, request.emotion, prosody)
        except (UnknownVoiceError, UnsupportedInput):
            raise
        except Exception as exc:
            self.breaker.record(False, f"{type(exc).__name__}: {exc}")
            log.error("engine %s failed: %s", self.engine.name, exc)
            raise EngineError(f"engine {self.engine.name} failed: {exc}") from exc
        self.breaker.record(True)
        return speech


def scaled(prosody: Prosody, scale: Scale, voice: Voice) -> Prosody:
    """The request's prosody times SSML's, clamped to what engines render; a control the
    voice does not have is left as it is (SSML prosody is a hint, W3C lets us ignore it)."""
    if scale == NEUTRAL:
        return prosody

    def one(name: str, lo: float, hi: float) -> float:
        value = getattr(prosody, name)
        if name not in voice.controls:
            return float(value)
        return min(hi, max(lo, float(value) * float(getattr(scale, name))))

    return Prosody(one("speed", 0.5, 2.0), one("pitch", 0.5, 2.0), one("volume", 0.0, 2.0))


def trim_edges(speech: Speech, head: bool, tail: bool, margin: int) -> Speech:
    """Cut the model's own silence off the edges that touch an SSML break (keeping
    ``margin`` samples for the onset and the decay), so ``<break time="500ms"/>`` is a
    pause of 500 ms, not 500 ms plus the silences every unit begins and ends with."""
    pcm = speech.pcm
    if not (head or tail) or pcm.size == 0:
        return speech
    loud = np.flatnonzero(np.abs(pcm) > SILENCE_LEVEL * float(np.abs(pcm).max()))
    if loud.size == 0:
        return speech
    start = max(0, int(loud[0]) - margin) if head else 0
    end = min(len(pcm), int(loud[-1]) + 1 + margin) if tail else len(pcm)

    def clip(x: int) -> int:
        return min(max(x - start, 0), end - start)

    syllables = tuple((clip(a), clip(b)) for a, b in speech.syllables)
    return Speech(pcm[start:end], syllables, speech.measured)


def make_rung(engine: Engine, config: Config, clock: Callable[[], float] = time.monotonic) -> Rung:
    e = config.engine
    return Rung(
        engine,
        CircuitBreaker(
            e.breaker_window_s, e.breaker_min_calls, e.breaker_error_rate, e.breaker_open_s, clock
        ),
    )


class Synthesizer:
    """Front-end plus the ladder of engines (config order: the first is preferred)."""

    def __init__(
        self,
        config: Config,
        engines: list[Engine] | None = None,
        *,
        rungs: list[Rung] | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_unit: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.frontend = Frontend(config.frontend)
        if rungs is None:
            built = engines or [create(n, config) for n in config.engine.engines]
            rungs = [make_rung(engine, config, clock) for engine in built]
        self.rungs = rungs
        self.on_unit = on_unit  # counts units synthesized (a metric), from worker threads
        versions = library_versions(*ENCODING_LIBRARIES)
        versions["libsndfile"] = soundfile.__libsndfile_version__
        self._stack = hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()[:12]

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

    def gpus(self) -> int:
        """GPUs the preferred engine runs on (0 when it runs on CPU or cannot serve)."""
        first = self.rungs[0]
        return first.engine.gpus() if first.breaker.state == "closed" else 0

    def warm_up(self) -> None:
        """Load every engine not yet warm and run one sentence, plus jieba's dictionary.  An
        engine that cannot load trips its breaker (the ladder serves its voices) instead of
        failing the daemon — unless no engine at all can serve."""
        self.frontend.sentences("你好。")
        for rung in self.rungs:
            if rung.warm:
                continue
            try:
                rung.engine.warm_up()
            except Exception as exc:
                rung.breaker.trip(f"cannot load: {exc}")
                log.error("engine %s cannot load: %s", rung.engine.name, exc)
            else:
                rung.warm = True
        if all(r.breaker.state != "closed" for r in self.rungs):
            raise EngineError(
                "no engine could load: "
                + "; ".join(f"{r.engine.name}: {r.breaker.reason}" for r in self.rungs)
            )

    def provision(self, concurrency: int) -> None:
        """Let every engine that can serve prepare for ``concurrency`` calls at once."""
        for rung in self.rungs:
            if rung.breaker.state == "closed":
                rung.engine.provision(concurrency)

    def route(
        self,
        request: Request,
        stream: bool = False,
        avoid: int | None = None,
        origins: bool = False,
    ) -> Route:
        """Which engine, voice, format and rate serve ``request``, and its units: cheap (no
        dictionary), so the daemon can build a cache key before any synthesis.  Anything
        the chosen voice cannot do fails here, as a client error, before work is queued.
        ``origins``: map unit characters back to the client's text (for timestamps)."""
        doc = self.frontend.document(request.text, request.ssml)
        if doc.voice and not request.voice:  # <speak voice="…">, unless the call names one
            request = dataclasses.replace(request, voice=doc.voice)
        rung, voice, degraded = self.resolve(request.voice, avoid)
        emotion = request.emotion
        if degraded and emotion not in voice.emotions:
            emotion = "neutral"
        rung.engine.voice(voice.id, emotion)  # a bad emotion fails before the front-end
        voice.check(request.prosody)
        if degraded or not request.voice:
            request = dataclasses.replace(request, voice=voice.id, emotion=emotion)
        fmt = audio.get_format(request.format)
        rate = audio.output_rate(fmt, request.sample_rate, voice.sample_rate)
        first = self.config.frontend.stream_first_chars if stream else None
        units = self.frontend.units(doc, first, origins)
        return Route(request, rung, voice, fmt, rate, units, degraded, doc.ssml)

    def shape(self, rung: Rung) -> str:
        """What shapes the audio besides the request itself: the front-end's fingerprint
        (settings, lexicon, rules), the engine's (model, settings) and the encoders'."""
        return f"{self.frontend.fingerprint}:{rung.engine.fingerprint}:{self._stack}"

    def cache_key(self, route: Route, namespace: str) -> str:
        """``<namespace>:tts:<sha256>`` of everything that decides the audio bytes."""
        r, p = route.request, route.request.prosody
        fields = [
            KEY_VERSION,
            self.shape(route.rung),
            [u.key() for u in route.units],
            route.voice.id,
            r.emotion,
            round(p.speed, 4),
            round(p.pitch, 4),
            round(p.volume, 4),
            route.format.name,
            route.rate,
        ]
        digest = hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode()).hexdigest()
        return f"{namespace}:tts:{digest}"

    def plan(self, route: Route) -> Plan:
        """Run the front-end's G2P on the route's units: everything but the engine."""
        sentences = self.frontend.read(route.units)
        return Plan(route, sentences, self.config.frontend.sentence_pause_ms, self.on_unit)

    def render(
        self,
        request: Request | Route,
        on_sentence: Callable[[int, int], None] | None = None,
    ) -> Result:
        """The whole text as one encoded file.  If the chosen engine fails mid-way and the
        ladder allows, the whole text is redone on the next rung (one voice per file)."""
        route = request if isinstance(request, Route) else self.route(request)
        try:
            return self.plan(route).render(on_sentence)
        except EngineError:
            if route.degraded or not self.config.engine.degrade:
                raise
            fallback = self.route(
                route.request,
                avoid=self.rungs.index(route.rung),
                origins=bool(route.units[0].origins),
            )
            return self.plan(fallback).render(on_sentence)


@dataclass(frozen=True)
class Route:
    """Where a request goes: the rung and voice that serve it, the output format, and the
    front-end's unit texts (the cache key is made of these)."""

    request: Request
    rung: Rung
    voice: Voice
    format: Format
    rate: int
    units: tuple[Unit, ...]
    degraded: bool = False
    ssml: bool = False


class Plan:
    """A routed request after G2P: units to synthesize in order, one at a time (a stream)
    or all at once (:meth:`render`).  Stateful (the resampler): use it from one thread at a
    time, in unit order."""

    def __init__(
        self,
        route: Route,
        sentences: list[Sentence],
        pause_ms: int,
        on_unit: Callable[[str], None] | None = None,
    ) -> None:
        self.route = route
        self.sentences = sentences
        self.pause_ms = pause_ms
        self.timeline: list[UnitTiming] = []  # one per unit output so far
        self._clock = 0  # samples at the voice's rate so far
        self._on_unit = on_unit
        self._resampler = Resampler(route.voice.sample_rate, route.rate)
        self._next = 0
        self._lock = threading.Lock()

    @property
    def rate(self) -> int:
        return self.route.rate

    @property
    def format(self) -> Format:
        return self.route.format

    def native(self, index: int) -> Pcm:
        """Unit ``index`` at the voice's rate with the silence around it (see
        :func:`native_unit`); its timing joins :attr:`timeline`."""
        pcm, timing = native_unit(
            self.route, index, self.sentences[index], self._clock, self.pause_ms, self._on_unit
        )
        self.timeline.append(timing)
        self._clock += len(pcm)
        return pcm

    def output(self, index: int) -> Pcm:
        """Unit ``index`` at the output rate.  Units must come in order (0, 1, 2, …): the
        resampler carries its filter state from one to the next."""
        with self._lock:
            if index != self._next:
                raise RuntimeError(f"unit {index} asked for out of order (next is {self._next})")
            checkpoint()  # a request that is gone stops here, before the engine runs
            pcm = self._resampler.push(self.native(index), last=index == len(self.sentences) - 1)
            self._next += 1
            return pcm

    def render(self, on_sentence: Callable[[int, int], None] | None = None) -> Result:
        """Every unit, encoded as one file."""
        parts = []
        for i in range(len(self.sentences)):
            parts.append(self.output(i))
            if on_sentence:
                on_sentence(i + 1, len(self.sentences))
        pcm = np.concatenate(parts)
        route = self.route
        return Result(
            audio=audio.encode(pcm, self.rate, self.format),
            format=self.format,
            sample_rate=self.rate,
            duration=len(pcm) / self.rate,
            sentences=len(parts),
            voice=route.voice.id,
            engine=route.rung.engine.name,
            degraded=route.degraded,
            timing=tuple(self.timeline),
        )


def native_unit(
    route: Route,
    index: int,
    sentence: Sentence,
    clock: int,
    pause_ms: int,
    on_unit: Callable[[str], None] | None = None,
) -> tuple[Pcm, UnitTiming]:
    """Unit ``index`` of ``route`` at the voice's rate with the silence around it: SSML
    breaks where the client put them, else the sentence pause between units (none after the
    last).  ``clock``: samples of the audio before it, where its timing starts.  A unit
    depends only on its neighbours' pauses, so a job can render units on any node, in any
    run, and join them: the same samples as one piece."""
    unit = route.units[index]
    rate = route.voice.sample_rate
    speech = route.rung.synthesize(sentence, route.voice, route.request, unit.scale)
    if on_unit is not None:
        on_unit(route.rung.engine.name)
    after_break = index > 0 and route.units[index - 1].pause_after_ms is not None
    speech = trim_edges(
        speech,
        head=unit.pause_before_ms > 0 or after_break,
        tail=unit.pause_after_ms is not None,
        margin=round(rate * EDGE_MARGIN_S),
    )
    last = index == len(route.units) - 1
    after = unit.pause_after_ms
    if after is None:
        after = 0 if last else pause_ms
    before = audio.silence(unit.pause_before_ms / 1000, rate)
    gap = audio.silence(after / 1000, rate)
    start = clock + len(before)
    timing = unit_timing(sentence, speech, start, rate, len(before), len(gap))
    return np.concatenate([before, speech.pcm, gap]), timing
