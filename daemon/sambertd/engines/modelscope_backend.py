"""The boundary to modelscope, KAN-TTS and torch: everything the sambert engine needs from them.

Imported lazily, when the engine loads; a missing piece fails with one message naming it.

Making the real libraries work on Python 3.11 without Alibaba's binary ``ttsfrd`` (no cp311
wheels exist), done once by :func:`prepare_imports`:

* ``kantts/utils/ling_unit/__init__.py`` imports ``ttsfrd`` at module top, though only its
  ``text_to_mit_symbols`` (unused by us) calls it.  When no ``ttsfrd`` is importable, a module
  of that name is registered whose every use raises, saying the built-in front-end is in use.
* ``kantts/models/pqmf.py`` imports ``scipy.signal.kaiser``, which SciPy 1.13 moved to
  ``scipy.signal.windows``; the old name is pointed at the new one when it is missing.

``Voice.__init__`` calls KAN-TTS's ``distributed_init()`` whenever CUDA is available; that
starts an NCCL process group when ``WORLD_SIZE`` > 1 is in the environment (a training
launcher's), and then waits for peers that never come.  A serving process is never part of
a training job, so the voice is built with ``WORLD_SIZE=1`` and ``RANK=0``; we then put the
models on the device we chose.

Speed and pitch are applied inside the acoustic model (DashScope's Sambert offers both):
the duration predictor's output is divided by the speed before the length regulator, and the
pitch predictor's output (f0 normalised by the training set's mean and standard deviation) is
moved as f0 × pitch would move it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import sys
import threading
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sambertd.engines.base import EngineError, Pcm
from sambertd.engines.kantts_symbols import PINYIN_TABLE, PhoneMap, SymbolSets

# Normalised f0 is (f0 - mean) / std.  Moving f0 by a ratio r needs mean / std, which a
# ModelScope model directory does not ship; 4 is what Mandarin voices have (about 200 Hz
# mean, 50 Hz standard deviation).
F0_MEAN_OVER_STD = 4.0


class VoiceModel(Protocol):
    def forward(self, symbols: str, speed: float = 1.0, pitch: float = 1.0) -> Pcm: ...

    def forward_timed(
        self, symbols: str, speed: float = 1.0, pitch: float = 1.0
    ) -> tuple[Pcm, list[int]]:
        """The audio and how many of its samples each symbol got."""
        ...

    def symbol_sets(self) -> SymbolSets | None: ...


class Backend(Protocol):
    """Everything that needs modelscope, kantts, ttsfrd or torch."""

    controls: tuple[str, ...]  # the Prosody fields its voices render

    def check_imports(self) -> None: ...
    def has_ttsfrd(self) -> bool: ...
    def phone_map(self) -> PhoneMap: ...
    def gpus(self) -> int: ...
    def probe(self, device: str) -> str | None: ...
    def frontend(self, resource_dir: Path) -> Any: ...
    def voice(self, name: str, path: Path, device: str, fp16: bool) -> VoiceModel: ...
    def is_oom(self, exc: BaseException) -> bool: ...
    def free(self, device: str) -> None: ...


def need(module: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EngineError(
            f"the sambert engine needs {what} (python module {module!r}), which is not "
            f"installed: `make install-sambert` here, the site wheelhouse on a server ({exc})"
        ) from exc


class _NoTtsfrd(types.ModuleType):
    """Registered as ``ttsfrd`` only when Alibaba's is not installed, so kantts imports."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise RuntimeError(
            f"ttsfrd.{name}: Alibaba's ttsfrd is not installed (it has no Python 3.11 build); "
            "sambertd's built-in front-end makes the KAN-TTS symbols instead"
        )


_prepared = threading.Lock()


def prepare_imports() -> None:
    """The two compatibility steps of the module docstring; safe to call again."""
    with _prepared:
        if "ttsfrd" not in sys.modules and importlib.util.find_spec("ttsfrd") is None:
            sys.modules["ttsfrd"] = _NoTtsfrd("ttsfrd")
        signal = importlib.import_module("scipy.signal")
        if not hasattr(signal, "kaiser"):
            windows = importlib.import_module("scipy.signal.windows")
            signal.kaiser = windows.kaiser  # type: ignore[attr-defined]


def real_ttsfrd() -> bool:
    prepare_imports()
    return not isinstance(sys.modules.get("ttsfrd"), _NoTtsfrd) and (
        importlib.util.find_spec("ttsfrd") is not None
    )


@contextlib.contextmanager
def single_process() -> Iterator[None]:
    """``WORLD_SIZE=1``, ``RANK=0`` while a Voice is built (see the module docstring)."""
    saved = {k: os.environ.get(k) for k in ("WORLD_SIZE", "RANK")}
    os.environ.update(WORLD_SIZE="1", RANK="0")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class ModelscopeBackend:
    """The real thing: torch + kantts + modelscope's ``Voice`` (+ ttsfrd if a site has it)."""

    controls: tuple[str, ...] = ("speed", "pitch", "volume")  # in the model: TorchVoice

    def check_imports(self) -> None:
        # Offline switches: these libraries must never try a hub from an air-gapped site.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("MODELSCOPE_OFFLINE", "1")
        need("torch", "PyTorch")
        prepare_imports()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pkg_resources, deprecated torch APIs: theirs
            need("kantts.utils.ling_unit.ling_unit", "Alibaba's KAN-TTS (not the PyPI placeholder)")
            need("modelscope.models.audio.tts.voice", "modelscope (pip install sambertd[sambert])")

    def has_ttsfrd(self) -> bool:
        return real_ttsfrd()

    def phone_map(self) -> PhoneMap:
        kantts = need("kantts", "Alibaba's KAN-TTS")
        return PhoneMap.read(Path(kantts.__file__).parent / PINYIN_TABLE)

    def gpus(self) -> int:
        torch = need("torch", "PyTorch")
        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0

    def probe(self, device: str) -> str | None:
        """Touch the device: allocate, compute, copy back.  A wedged or ECC-failing GPU
        fails here instead of in a caller's request."""
        torch = need("torch", "PyTorch")
        try:
            x = torch.ones((256, 256), device=device)
            value = float((x @ x).sum().item())
            torch.cuda.synchronize(device)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if value == 256.0**3 else f"wrong result {value}"

    def frontend(self, resource_dir: Path) -> Any:
        ttsfrd = need("ttsfrd", "Alibaba's ttsfrd front-end")
        engine = ttsfrd.TtsFrontendEngine()
        if not engine.initialize(str(resource_dir)):
            raise EngineError(f"ttsfrd could not initialize from {resource_dir}")
        engine.set_lang_type("PinYin")
        return engine

    def voice(self, name: str, path: Path, device: str, fp16: bool) -> VoiceModel:
        return TorchVoice(name, path, device, fp16)

    def is_oom(self, exc: BaseException) -> bool:
        torch = need("torch", "PyTorch")
        return isinstance(exc, torch.cuda.OutOfMemoryError)

    def free(self, device: str) -> None:
        torch = need("torch", "PyTorch")
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


class TorchVoice:
    """modelscope's ``Voice`` on the device we chose, FP16 by autocast on GPU, with speed
    and pitch applied inside the acoustic model."""

    def __init__(self, name: str, path: Path, device: str, fp16: bool) -> None:
        self._torch = need("torch", "PyTorch")
        voice_cls = need("modelscope.models.audio.tts.voice", "modelscope").Voice
        logging.getLogger("modelscope").setLevel(logging.WARNING)  # a line per file it reads
        with single_process(), warnings.catch_warnings():
            # torch's weight_norm and pytorch_wavelets' pkg_resources are deprecated: theirs
            warnings.simplefilter("ignore")
            self._voice = voice_cls(name, str(path))
            self._voice.device = self._torch.device(device)  # before the models are built
            self._voice.load_am()
            self._voice.load_vocoder()
        self._voice.model_loaded = True
        self.device = device
        self.fp16 = fp16 and device.startswith("cuda")
        self.am = self._voice.am  # the KanTtsSAMBERT torch module
        self.ling_unit = self._voice.ling_unit  # kantts' symbol tables for this model
        self._speed, self._pitch = 1.0, 1.0
        self._frames: list[int] = []  # frames per symbol of the last utterance
        self._lock = threading.Lock()  # one utterance at a time per model (as Voice does)
        adaptor = self.am.variance_adaptor
        infer = adaptor.duration_predictor.infer
        adaptor.duration_predictor.infer = lambda *a, **k: self._durations(infer(*a, **k))
        adaptor.pitch_predictor.register_forward_hook(lambda _m, _i, out: self._f0(out))

    def symbol_sets(self) -> SymbolSets:
        return SymbolSets.from_ling_unit(self.ling_unit)

    def _durations(self, log_durations: Any) -> Any:
        """log(d + 1) → log(d / speed + 1): the length regulator sees d / speed frames.
        Also keeps the frames per symbol as the length regulator will round them
        (``(d + 0.5).long()``), for timestamps."""
        torch = self._torch
        frames = torch.clamp(torch.exp(log_durations.float()) - 1, min=0)
        if self._speed != 1.0:
            frames = frames / self._speed
            log_durations = torch.log(frames + 1).to(log_durations.dtype)
        self._frames = (frames + 0.5).long().flatten().tolist()
        return log_durations

    def _f0(self, normalised: Any) -> Any:
        """(f0 - m) / s → (r·f0 - m) / s = r·x + (r - 1)·m / s."""
        r = self._pitch
        return normalised if r == 1.0 else normalised * r + (r - 1) * F0_MEAN_OVER_STD

    def forward(self, symbols: str, speed: float = 1.0, pitch: float = 1.0) -> Pcm:
        return self.forward_timed(symbols, speed, pitch)[0]

    def forward_timed(
        self, symbols: str, speed: float = 1.0, pitch: float = 1.0
    ) -> tuple[Pcm, list[int]]:
        """The audio, and samples per symbol from the duration predictor (the vocoder turns
        each mel frame into the same number of samples)."""
        torch = self._torch
        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        with torch.autocast(kind, dtype=torch.float16, enabled=self.fp16):
            with self._lock:  # the acoustic model: one utterance at a time (Voice locks too)
                self._speed, self._pitch = speed, pitch
                try:
                    mel = self._voice.am_forward(symbols)
                    frames = self._frames
                finally:
                    self._speed, self._pitch = 1.0, 1.0
            pcm = self._voice.vocoder_forward(mel.float())  # the vocoder runs in parallel
        audio = np.asarray(pcm, dtype=np.float32).reshape(-1)
        hop = len(audio) // max(1, int(mel.shape[0]))
        return audio, [f * hop for f in frames]
