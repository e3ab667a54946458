"""MB-MelGAN, the embedded voice's vocoder: which runtime runs it, and on which windows.

Why windows: the vocoder's memory grows with its input length and every new input shape
costs a slow re-preparation, so it runs on windows of a few prepared lengths, each prepared
once.  Neighbouring windows overlap by ``CONTEXT`` frames on each side of a join; the overlap
is computed and thrown away so the joins are inaudible (the receptive field is a few frames).
An utterance's own start and end need no overlap: there the vocoder sees what it saw in
training, the edge of the input.

Why these lengths: :func:`plan` picks, per utterance, the windows that compute the fewest
frames.  Over the dev sets' sentences, (64, 128, 256) compute 1.19 frames per frame of audio;
the former single 192-frame window with overlap at both edges computed 1.44.

Why OpenVINO where it loads: it reads ``mb_melgan.tflite`` directly (no conversion, no
TensorFlow). In f32 it gives LiteRT's output and ran 1.4-1.6x LiteRT's speed with one thread
(about the same with two on an AVX-512 CPU); on CPUs with native bf16 its default precision
doubles that again, and the listener scores it no worse (README, Measured). An OpenVINO
model compiled with N streams runs N requests at once (one compiled model with one stream
runs them one after another), so it is compiled for the concurrency the daemon provisions.
LiteRT stays the fallback (``engine.runtime = "litert"``, or a CPU or platform OpenVINO
cannot load): its interpreters are per thread and their memory grows with the window, so it
keeps one 192-frame window.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sambertd.engines.base import EngineError, Pcm

log = logging.getLogger(__name__)

HOP = 300  # output samples per mel frame
MEL_BINS = 80
CONTEXT = 16  # frames of overlap on each side of a join between windows
OPENVINO_WINDOWS = (64, 128, 256)
LITERT_WINDOWS = (192,)
CALL_COST = 4  # frames' worth of fixed cost per window, so plan() prefers fewer windows
RUNTIMES = ("auto", "openvino", "litert")
PRECISIONS = ("auto", "f32")


@dataclass(frozen=True)
class Window:
    """Mel frames ``[start, start + size)`` go in (past the utterance's end: its floor
    level); the output of frames ``[keep, keep + frames)``, counted from ``start``, is kept."""

    start: int
    size: int
    keep: int
    frames: int


def plan(frames: int, sizes: Sequence[int], context: int = CONTEXT) -> tuple[Window, ...]:
    """The windows that cover ``frames`` mel frames computing the fewest frames."""
    if frames <= 0:
        return ()
    ordered = tuple(sorted(set(sizes)))
    if ordered[0] <= 2 * context:
        raise EngineError(f"vocoder windows must be longer than {2 * context} frames")

    # best[pos]: the cheapest (cost, first window) to make frames [pos, frames); from the end
    best: dict[int, tuple[int, Window]] = {frames: (0, Window(frames, 0, 0, 0))}
    for pos in range(frames - 1, -1, -1):
        lead = context if pos else 0
        options = []
        for size in ordered:
            last = size >= lead + frames - pos  # the tail is padded with the floor
            kept = frames - pos if last else size - lead - context
            options.append(
                (size + CALL_COST + best[pos + kept][0], Window(pos - lead, size, lead, kept))
            )
            if last:
                break  # a larger one would only compute more
        best[pos] = min(options, key=lambda option: option[0])
    windows, pos = [], 0
    while pos < frames:
        window = best[pos][1]
        windows.append(window)
        pos += window.frames
    return tuple(windows)


class Session(Protocol):
    """One thread's handle on the vocoder: runs one window at a time."""

    def run(self, mel: np.ndarray[Any, Any]) -> Pcm:
        """``mel`` [1, size, 80] of a prepared size → samples [size * HOP]."""


class Vocoder(Protocol):
    """The vocoder as loaded: its runtime, prepared sizes, and per-thread sessions."""

    runtime: str
    precision: str
    sizes: tuple[int, ...]

    def session(self) -> Session: ...

    def provision(self, concurrency: int) -> bool:
        """Prepare for ``concurrency`` sessions running at once; True when sessions made
        before should be replaced."""


def vocode(vocoder: Vocoder, session: Session, mel: np.ndarray[Any, Any]) -> Pcm:
    """Samples for ``mel`` [1, frames, 80], window by window (see the module docstring)."""
    frames = mel.shape[1]
    floor = float(mel.min())  # pad with the utterance's own silence level
    largest = max(vocoder.sizes)
    padded = np.concatenate([mel, np.full((1, largest, MEL_BINS), floor, np.float32)], axis=1)
    pieces = [
        session.run(np.ascontiguousarray(padded[:, w.start : w.start + w.size]))[
            w.keep * HOP : (w.keep + w.frames) * HOP
        ]
        for w in plan(frames, vocoder.sizes)
    ]
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


def _warm(session: Session, sizes: Sequence[int]) -> None:
    """Run each prepared size once on silence: a size's first run packs weights and
    allocates its buffers (about 0.1 s and some MB for 256 frames), which belongs to the
    session's making (before READY, in ``provision``), not to the first request that needs
    that size."""
    for size in sizes:
        session.run(np.full((1, size, MEL_BINS), -4.0, np.float32))


class _LiteSession:
    def __init__(self, model: bytes, threads: int, sizes: tuple[int, ...]) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreters = {}
        for size in sizes:
            interpreter = Interpreter(model_content=model, num_threads=threads)
            index = interpreter.get_input_details()[0]["index"]
            interpreter.resize_tensor_input(index, [1, size, MEL_BINS])
            interpreter.allocate_tensors()
            output = interpreter.get_output_details()[0]["index"]
            self._interpreters[size] = (interpreter, index, output)
        _warm(self, sizes)

    def run(self, mel: np.ndarray[Any, Any]) -> Pcm:
        interpreter, index, output = self._interpreters[mel.shape[1]]
        interpreter.set_tensor(index, mel)
        interpreter.invoke()
        return np.asarray(interpreter.get_tensor(output)[0, :, 0], dtype=np.float32)


class LiteVocoder:
    """LiteRT: an interpreter per thread and window size (not thread-safe, so per session)."""

    runtime = "litert"
    precision = "f32"

    def __init__(self, model: bytes, threads: int, sizes: tuple[int, ...] = LITERT_WINDOWS):
        self._model, self._threads, self.sizes = model, threads, sizes

    def session(self) -> Session:
        return _LiteSession(self._model, self._threads, self.sizes)

    def provision(self, concurrency: int) -> bool:
        """Nothing shared to prepare: each session builds its own interpreters."""
        return False


class _OpenVinoSession:
    def __init__(self, compiled: dict[int, Any]) -> None:
        self._requests = {size: model.create_infer_request() for size, model in compiled.items()}
        _warm(self, tuple(compiled))

    def run(self, mel: np.ndarray[Any, Any]) -> Pcm:
        request = self._requests[mel.shape[1]]
        request.infer([mel])
        # a copy: the output tensor is the request's own memory, reused by the next window
        return np.array(request.get_output_tensor(0).data[0, :, 0], dtype=np.float32)


class OpenVinoVocoder:
    """OpenVINO on the CPU: one compiled model per window size, shared by every thread, with
    as many streams as requests may run at once; each session holds its own infer requests."""

    runtime = "openvino"

    def __init__(
        self,
        path: Path,
        threads: int,
        streams: int = 1,
        precision: str = "auto",
        sizes: tuple[int, ...] = OPENVINO_WINDOWS,
    ) -> None:
        self._path, self._threads, self.sizes = path, threads, sizes
        self._hint = precision
        self.precision = precision
        self._lock = threading.Lock()
        self._streams = 0
        self._compiled: dict[int, Any] = {}
        self._spare: Session | None = None
        self.provision(streams)
        # the first session, made (every size run once) here: a model that compiles but
        # cannot run on this CPU fails now, where ``load`` can fall back to LiteRT
        self._spare = _OpenVinoSession(self._compiled)

    def provision(self, concurrency: int) -> bool:
        """Compile for ``concurrency`` streams of ``threads`` threads each, unless already
        compiled for at least that many (compiling takes about 0.5 s per window size).
        Sessions made before keep working, on the older compiled models."""
        with self._lock:
            if concurrency <= self._streams:
                return False
            self._compiled = self._compile(concurrency)
            self._streams = concurrency
            self._spare = None  # made for fewer streams
            return True

    def _compile(self, streams: int) -> dict[int, Any]:
        import openvino as ov

        core = ov.Core()
        settings: dict[str, Any] = {
            "NUM_STREAMS": streams,
            "INFERENCE_NUM_THREADS": streams * self._threads,
        }
        if self._hint == "f32":  # LiteRT's output to 1e-7, on every CPU
            settings["INFERENCE_PRECISION_HINT"] = "f32"
        cache = compiled_cache()
        if cache is not None:  # a restart loads the compiled blobs instead of compiling
            settings["CACHE_DIR"] = str(cache)
        original = core.read_model(str(self._path))
        compiled = {}
        for size in self.sizes:
            model = original.clone()
            model.reshape([1, size, MEL_BINS])
            compiled[size] = core.compile_model(model, "CPU", settings)
        # auto: bf16 where the CPU computes it natively (AVX512_BF16, AMX), else f32
        hint = compiled[self.sizes[0]].get_property("INFERENCE_PRECISION_HINT")
        self.precision = str(hint.get_type_name())
        return compiled

    def session(self) -> Session:
        with self._lock:
            spare, self._spare = self._spare, None
            compiled = self._compiled
        return spare if spare is not None else _OpenVinoSession(compiled)


def compiled_cache() -> Path | None:
    """Where OpenVINO keeps compiled models: systemd's ``CacheDirectory=``, else the XDG
    cache.  OpenVINO names each blob by the model, settings, its version and the CPU, so a
    stale one is never used.  None (compile every time) when the place is not writable."""
    base = os.environ.get("CACHE_DIRECTORY", "").split(":")[0]
    if not base:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = str(Path(base) / "sambertd")
    path = Path(base) / "openvino"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.info("no OpenVINO model cache (%s): the vocoder compiles at every start", exc)
        return None
    return path if os.access(path, os.W_OK) else None


def load(
    runtime: str,
    path: Path,
    model: bytes,
    threads: int,
    streams: int = 1,
    precision: str = "auto",
) -> Vocoder:
    """The vocoder on ``runtime``: ``openvino`` (fails if it cannot load), ``litert``, or
    ``auto`` (OpenVINO, else LiteRT with a warning that says why).  ``streams``: how many
    calls are expected at once (the worker count), so OpenVINO compiles once."""
    if runtime not in RUNTIMES:
        raise EngineError(f"unknown engine.runtime {runtime!r}; one of {', '.join(RUNTIMES)}")
    if runtime == "litert":
        return LiteVocoder(model, threads)
    try:
        return OpenVinoVocoder(path, threads, streams, precision)
    except ImportError as exc:
        problem = f"openvino is not installed ({exc})"
    except Exception as exc:  # any OpenVINO failure (CPU, plugin) means the fallback
        problem = f"OpenVINO cannot run the vocoder here: {exc}"
    if runtime == "openvino":
        raise EngineError(f"engine.runtime is openvino but {problem}")
    log.warning("%s; the vocoder runs on LiteRT (slower)", problem)
    return LiteVocoder(model, threads)
