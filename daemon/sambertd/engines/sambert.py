"""Production engine ``sambert``: ModelScope Sambert-HiFiGAN from a site's model directory.

Nothing here contacts a hub: the model directory is local (copied by Ansible from the site's
model archive), and modelscope/kantts/ttsfrd/torch come from the site's wheelhouse.  Every
one of them is imported lazily, when the engine loads, and a missing piece fails with one
message naming it — never at import time, never by installing the PyPI ``ttsfrd``/``kantts``
names (those are 0.1.0 placeholders, not Alibaba's libraries).

We use modelscope's lower-level classes rather than its pipeline so that *we* choose the
device and precision: ``Voice(name, path)`` reads one voice's configs and checkpoints, we set
its ``device`` before ``load_am``/``load_vocoder``, and run ``am_forward``/``vocoder_forward``
under ``torch.autocast`` for FP16 on GPU.  Text goes through our own normalizer first (digits,
dates, units are read the same way for every engine), then ttsfrd turns it into KAN-TTS
linguistic symbols; emotion is chosen by rewriting those symbols' emotion field.

Everything that touches modelscope/torch sits behind :class:`Backend`; the rest (model-dir
validation, symbol rewriting, device choice, OOM → CPU retry) is plain code with tests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from sambertd.engines.base import Engine, EngineError, Pcm, Prosody, Voice
from sambertd.frontend.types import Sentence

if TYPE_CHECKING:
    from sambertd.config import SambertConfig

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
# KAN-TTS emotion_* values (kantts/utils/ling_unit/emotion_types.py) that the *_emo voices
# are trained on; clients name them without the prefix.
EMOTIONS = ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")
_CKPT = re.compile(r"^checkpoint.*_(\d+)\.pth$")
_TOKEN = re.compile(r"\{([^{}]*)\}")


# -- model directory ---------------------------------------------------------------------------


@dataclass
class Layout:
    """What ``sambertd check --model-dir`` reports: voices found and everything missing."""

    path: Path
    voices: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def latest_checkpoint(directory: Path) -> Path | None:
    """The ``checkpoint*_N.pth`` with the highest N, which is what KAN-TTS loads."""
    if not directory.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _CKPT.match(p.name))]
    return max(found)[1] if found else None


def read_voice_list(path: Path) -> list[str]:
    """``voices/voices.json`` is ``{"voices": [names]}``; the first is the model's default."""
    data = json.loads((path / "voices" / "voices.json").read_text(encoding="utf-8"))
    names = data.get("voices") if isinstance(data, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ValueError('voices/voices.json must be {"voices": ["name", ...]}')
    return names


def check_voice(path: Path, name: str) -> list[str]:
    """Problems with one voice directory, as paths relative to the model directory."""
    base = path / "voices" / name
    rel = f"voices/{name}"
    problems = [
        f"{rel}/{f}: missing"
        for f in ("audio_config.yaml", "am/config.yaml", "voc/config.yaml")
        if not (base / f).is_file()
    ]
    for part in ("am", "voc"):
        if latest_checkpoint(base / part / "ckpt") is None:
            problems.append(f"{rel}/{part}/ckpt/: no checkpoint*_N.pth")
    return problems


def check_model_dir(path: Path | str, wanted: Sequence[str] = ()) -> Layout:
    """Validate a Sambert-HiFiGAN model directory without loading anything."""
    layout = Layout(Path(path))
    root = layout.path
    if not root.is_dir():
        layout.problems.append(f"{root}: not a directory")
        return layout
    if not (root / "resource.zip").is_file() and not (root / "resource").is_dir():
        layout.problems.append("resource.zip (front-end resources): missing")
    elif (root / "resource.zip").is_file() and not zipfile.is_zipfile(root / "resource.zip"):
        layout.problems.append("resource.zip: not a zip archive")
    try:
        layout.voices = read_voice_list(root)
    except (OSError, ValueError) as exc:
        layout.problems.append(f"voices/voices.json: {exc}")
        return layout
    missing = [w for w in wanted if w not in layout.voices]
    if missing:
        layout.problems.append(f"voices not in voices.json: {', '.join(missing)}")
    for name in layout.voices:
        layout.problems.extend(check_voice(root, name))
    return layout


def model_digest(path: Path | str) -> str:
    """A short digest of a model directory that changes when its files do: the small files'
    contents, and the checkpoints' and resource archive's names, sizes and modification
    times (hashing gigabytes of weights at every start would cost minutes).  What the cache
    key and a reload use to tell two models apart, even under the same directory name."""
    root = Path(path)
    digest = hashlib.sha256()
    if not root.is_dir():
        return "absent"
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(str(file.relative_to(root)).encode("utf-8", "surrogateescape") + b"\0")
        if file.suffix in (".json", ".yaml", ".yml", ".txt") and stat.st_size < 1 << 20:
            digest.update(file.read_bytes())
        else:
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


# -- KAN-TTS linguistic symbols ----------------------------------------------------------------


def set_emotion(symbols: str, emotion: str) -> str:
    """Rewrite every token's ``emotion_*`` field: ``{ge$tone5$s_begin$word_begin$emotion_
    neutral$F7}`` → ``…$emotion_happy$F7}``.  The field is found by its prefix, not by
    position, so a model whose ``lfeat_type_list`` orders fields differently still works."""
    if emotion not in EMOTIONS:
        raise ValueError(f"unknown emotion {emotion!r}; use one of: {', '.join(EMOTIONS)}")

    def token(match: re.Match[str]) -> str:
        fields = match.group(1).split("$")
        return (
            "{"
            + "$".join(f"emotion_{emotion}" if f.startswith("emotion_") else f for f in fields)
            + "}"
        )

    return _TOKEN.sub(token, symbols)


def symbol_lines(frontend_output: str) -> list[str]:
    """ttsfrd's ``gen_tacotron_symbols`` gives ``idx<TAB>symbols`` lines; keep the symbols."""
    out = []
    for line in frontend_output.splitlines():
        _, _, symbols = line.partition("\t")
        if symbols.strip():
            out.append(symbols.strip())
    return out


# -- devices -----------------------------------------------------------------------------------


def pick_device(setting: str, gpus: int, probe: Any) -> tuple[str, str | None]:
    """``(device, degraded_reason)``: ``auto`` takes the first GPU whose probe passes, else
    CPU; an explicit ``cuda:N`` that is absent or fails its probe falls back to CPU and says
    why (the engine then reports itself degraded)."""
    if setting == "cpu":
        return "cpu", None
    candidates = (
        [f"cuda:{i}" for i in range(gpus)]
        if setting == "auto"
        else ["cuda:0" if setting == "cuda" else setting]
    )
    if setting == "auto" and not candidates:
        return "cpu", None  # a CPU-only server is not degraded
    reasons = []
    for device in candidates:
        index = int(device.split(":")[1])
        if index >= gpus:
            reasons.append(f"{device} not present ({gpus} GPU(s))")
            continue
        error = probe(device)
        if error is None:
            return device, None
        reasons.append(f"{device} failed its health probe: {error}")
    return "cpu", "; ".join(reasons)


# -- the modelscope boundary -------------------------------------------------------------------


class VoiceModel(Protocol):
    def forward(self, symbols: str) -> Pcm: ...


class Backend(Protocol):
    """Everything that needs modelscope, kantts, ttsfrd or torch."""

    def check_imports(self) -> None: ...
    def gpus(self) -> int: ...
    def probe(self, device: str) -> str | None: ...
    def frontend(self, resource_dir: Path) -> Any: ...
    def voice(self, name: str, path: Path, device: str, fp16: bool) -> VoiceModel: ...
    def is_oom(self, exc: BaseException) -> bool: ...
    def free(self, device: str) -> None: ...


def _need(module: str, what: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EngineError(
            f"the sambert engine needs {what} (python module {module!r}), which is not "
            f"installed: install it from the site wheelhouse ({exc})"
        ) from exc


class ModelscopeBackend:
    """The real thing: torch + ttsfrd + modelscope's ``Voice`` (lazily imported)."""

    def check_imports(self) -> None:
        # Offline switches: these libraries must never try a hub from an air-gapped site.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("MODELSCOPE_OFFLINE", "1")
        _need("torch", "PyTorch")
        _need("ttsfrd", "Alibaba's ttsfrd front-end (not the PyPI placeholder)")
        _need("kantts", "Alibaba's KAN-TTS (not the PyPI placeholder)")
        _need("modelscope.models.audio.tts.voice", "modelscope (pip install sambertd[sambert])")

    def gpus(self) -> int:
        torch = _need("torch", "PyTorch")
        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0

    def probe(self, device: str) -> str | None:
        """Touch the device: allocate, compute, copy back.  A wedged or ECC-failing GPU
        fails here instead of in a caller's request."""
        torch = _need("torch", "PyTorch")
        try:
            x = torch.ones((256, 256), device=device)
            value = float((x @ x).sum().item())
            torch.cuda.synchronize(device)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if value == 256.0**3 else f"wrong result {value}"

    def frontend(self, resource_dir: Path) -> Any:
        ttsfrd = _need("ttsfrd", "Alibaba's ttsfrd front-end")
        engine = ttsfrd.TtsFrontendEngine()
        if not engine.initialize(str(resource_dir)):
            raise EngineError(f"ttsfrd could not initialize from {resource_dir}")
        engine.set_lang_type("PinYin")
        return engine

    def voice(self, name: str, path: Path, device: str, fp16: bool) -> VoiceModel:
        return _TorchVoice(name, path, device, fp16)

    def is_oom(self, exc: BaseException) -> bool:
        torch = _need("torch", "PyTorch")
        return isinstance(exc, torch.cuda.OutOfMemoryError)

    def free(self, device: str) -> None:
        torch = _need("torch", "PyTorch")
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


class _TorchVoice:
    """modelscope's ``Voice`` with the device we chose and FP16 by autocast on GPU."""

    def __init__(self, name: str, path: Path, device: str, fp16: bool) -> None:
        self._torch = _need("torch", "PyTorch")
        voice_cls = _need("modelscope.models.audio.tts.voice", "modelscope").Voice
        self._voice = voice_cls(name, str(path))
        self._voice.device = self._torch.device(device)  # before the models are built
        self._voice.load_am()
        self._voice.load_vocoder()
        self._voice.model_loaded = True
        self.device = device
        self.fp16 = fp16 and device.startswith("cuda")

    def forward(self, symbols: str) -> Pcm:
        torch = self._torch
        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        with torch.autocast(kind, dtype=torch.float16, enabled=self.fp16):
            mel = self._voice.am_forward(symbols)
            pcm = self._voice.vocoder_forward(mel)
        return np.asarray(pcm, dtype=np.float32)


# -- the engine --------------------------------------------------------------------------------


class SambertEngine(Engine):
    """Sambert-HiFiGAN voices from ``sambert.model_dir`` (see the module docstring)."""

    name = "sambert"

    def __init__(
        self,
        config: SambertConfig,
        threads: int = 2,
        backend: Backend | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.threads = threads
        self.backend: Backend = backend or ModelscopeBackend()
        self.cache_dir = cache_dir
        self.device = "cpu"
        self._degraded: str | None = None
        self._frontend: Any = None
        self._frontend_lock = threading.Lock()  # ttsfrd is not documented as thread-safe
        self._models: dict[tuple[str, str], VoiceModel] = {}
        self._models_lock = threading.Lock()
        self._digest = "unloaded"
        self.oom_retries = 0
        # The model files as they are now, when the engine is made (it loads them soon):
        # a reload compares this with a fresh engine's to know whether to load again.
        self._identity = (self.name, config, threads, model_digest(config.model_dir))

    # voices are known before (and without) loading, so requests for them can be routed
    # down the ladder when the model cannot load.
    def voices(self) -> list[Voice]:
        names = list(self.config.voices)
        try:
            available = read_voice_list(Path(self.config.model_dir))
            names = [n for n in available if n in names] if names else available
        except (OSError, ValueError):
            pass
        return [
            Voice(
                id=n,
                engine=self.name,
                language="zh-CN",
                sample_rate=SAMPLE_RATE,
                emotions=EMOTIONS if n.endswith("_emo") else ("neutral",),
                description="Sambert-HiFiGAN (ModelScope)",
                controls=("volume",),
            )
            for n in names
        ]

    def degraded(self) -> str | None:
        return self._degraded

    @property
    def model_version(self) -> str:
        return f"sambert-{Path(self.config.model_dir).name}-{self._digest}"

    @property
    def fingerprint(self) -> str:
        fp16 = self.config.fp16 and self.device.startswith("cuda")
        return f"{self.model_version}/{self.device}/fp16={fp16}"

    def identity(self) -> tuple[object, ...]:
        return self._identity

    def gpus(self) -> int:
        return 1 if self._loaded and self.device.startswith("cuda") else 0

    def unload(self) -> None:
        with self._models_lock:
            self._models.clear()
        if self._loaded:
            self.backend.free(self.device)

    def _resource_dir(self) -> Path:
        """ttsfrd reads an unpacked resource directory.  modelscope unpacks resource.zip
        into the model directory; ours may be read-only (ProtectSystem=strict), so we
        unpack into the cache directory unless the model directory already has one."""
        root = Path(self.config.model_dir)
        if (root / "resource").is_dir():
            return root / "resource"
        base = self.cache_dir or Path(os.environ.get("CACHE_DIRECTORY", "/var/cache/sambertd"))
        target = base / "sambert" / root.name
        if not (target / "resource").is_dir():
            target.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(root / "resource.zip") as archive:
                archive.extractall(target)
        return target / "resource"

    def _load(self) -> None:
        if not self.config.model_dir:
            raise EngineError("sambert.model_dir is not set")
        layout = check_model_dir(self.config.model_dir)
        if not layout.ok:
            raise EngineError(f"model directory {layout.path}: " + "; ".join(layout.problems))
        self.backend.check_imports()
        self._digest = model_digest(layout.path)
        self.device, self._degraded = pick_device(
            self.config.device, self.backend.gpus(), self.backend.probe
        )
        if self._degraded:
            log.warning("sambert runs on CPU: %s", self._degraded)
        self._frontend = self.backend.frontend(self._resource_dir())
        log.info(
            "sambert loaded from %s on %s (fp16 %s)",
            layout.path,
            self.device,
            self.config.fp16 and self.device != "cpu",
        )

    def _model(self, voice: str, device: str) -> VoiceModel:
        key = (voice, device)
        with self._models_lock:
            if key not in self._models:
                path = Path(self.config.model_dir) / "voices" / voice
                self._models[key] = self.backend.voice(voice, path, device, self.config.fp16)
            return self._models[key]

    def _forward(self, voice: str, symbols: str) -> Pcm:
        """One utterance; a CUDA out-of-memory frees the cache and retries once on CPU."""
        device = self.device
        try:
            return self._model(voice, device).forward(symbols)
        except Exception as exc:
            if device == "cpu" or not self.backend.is_oom(exc):
                raise
            self.oom_retries += 1
            log.warning("CUDA out of memory on %s; retrying this request on CPU", device)
            self.backend.free(device)
            return self._model(voice, "cpu").forward(symbols)

    def check_health(self) -> None:
        """Re-probe the GPU (the daemon calls this periodically): a GPU that fails flips the
        engine to CPU and ``degraded()`` says why."""
        if self._loaded and self.device.startswith("cuda"):
            error = self.backend.probe(self.device)
            if error:
                self._degraded = f"{self.device} failed its health probe: {error}"
                log.error("sambert: %s; switching to CPU", self._degraded)
                self.device = "cpu"

    def _synthesize(self, sentence: Sentence, voice: Voice, emotion: str, prosody: Prosody) -> Pcm:
        voice.check(prosody)  # the route checked already; this guards direct callers
        with self._frontend_lock:
            lines = symbol_lines(self._frontend.gen_tacotron_symbols(sentence.text))
        parts = [self._forward(voice.id, set_emotion(line, emotion)) for line in lines]
        pcm = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        return pcm * np.float32(prosody.volume)
