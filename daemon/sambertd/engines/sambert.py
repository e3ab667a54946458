"""Production engine ``sambert``: ModelScope Sambert-HiFiGAN from a site's model directory.

Nothing here contacts a hub: the model directory is local (copied by Ansible from the site's
model archive), and torch, modelscope and KAN-TTS come from the site's wheelhouse (imported
lazily, in ``modelscope_backend.py``, when the engine loads).

We use modelscope's lower-level ``Voice`` rather than its pipeline, which refuses Python ≥ 3.11:
*we* choose the device and precision, and *we* make the linguistic symbols.  Text goes through
our own front-end (normalization, jieba words, G2P with sandhi — the same reading for every
engine), then one of two symbolizers turns it into KAN-TTS symbols:

* ``builtin`` (``kantts_symbols.py``): our words and pinyin, KAN-TTS's own pinyin → phone table;
  works on Python 3.11 with no ttsfrd;
* ``ttsfrd``: Alibaba's front-end from the model's ``resource.zip``, for sites that have its
  binary; the emotion is set by rewriting each symbol's ``emotion_*`` field.

``sambert.frontend = auto`` takes ttsfrd when it is importable, else the built-in one.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from sambertd.engines.base import Engine, EngineError, Pcm, Prosody, Speech, Voice
from sambertd.engines.kantts_symbols import PhoneMap, Symbolizer
from sambertd.engines.modelscope_backend import Backend, ModelscopeBackend, VoiceModel
from sambertd.engines.sambert_model import (
    check_model_dir,
    model_digest,
    pick_device,
    read_voice_list,
)
from sambertd.frontend.types import Sentence

if TYPE_CHECKING:
    from sambertd.config import SambertConfig

log = logging.getLogger(__name__)

_T = TypeVar("_T")
SAMPLE_RATE = 16000
# KAN-TTS emotion_* values (kantts/utils/ling_unit/emotion_types.py) that the *_emo voices
# are trained on; clients name them without the prefix.
EMOTIONS = ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")
_TOKEN = re.compile(r"\{([^{}]*)\}")


def set_emotion(symbols: str, emotion: str) -> str:
    """Rewrite the ``emotion_*`` field of ttsfrd's tokens: ``{ge$tone5$s_begin$word_begin$
    emotion_neutral$F7}`` → ``…$emotion_happy$F7}``.  Breaks keep ``emotion_none``.  The
    field is found by its prefix, not by position, so a model whose ``lfeat_type_list``
    orders fields differently still works."""
    if emotion not in EMOTIONS:
        raise ValueError(f"unknown emotion {emotion!r}; use one of: {', '.join(EMOTIONS)}")

    def field(f: str) -> str:
        return f"emotion_{emotion}" if f.startswith("emotion_") and f != "emotion_none" else f

    return _TOKEN.sub(lambda m: "{" + "$".join(map(field, m.group(1).split("$"))) + "}", symbols)


def symbol_lines(frontend_output: str) -> list[str]:
    """ttsfrd's ``gen_tacotron_symbols`` gives ``idx<TAB>symbols`` lines; keep the symbols."""
    out = []
    for line in frontend_output.splitlines():
        _, _, symbols = line.partition("\t")
        if symbols.strip():
            out.append(symbols.strip())
    return out


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
        self.frontend_mode = config.frontend  # auto until loaded, then builtin | ttsfrd
        self._frontend: Any = None
        self._frontend_lock = threading.Lock()  # ttsfrd is not documented as thread-safe
        self._phones: PhoneMap | None = None
        self._symbolizers: dict[str, Symbolizer] = {}
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
                controls=self.backend.controls,
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
        return f"{self.model_version}/{self.device}/fp16={fp16}/{self.frontend_mode}"

    def identity(self) -> tuple[object, ...]:
        return self._identity

    def gpus(self) -> int:
        return 1 if self._loaded and self.device.startswith("cuda") else 0

    def unload(self) -> None:
        with self._models_lock:
            self._models.clear()
            self._symbolizers.clear()
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
        layout = check_model_dir(self.config.model_dir, resources=False)
        if not layout.ok:
            raise EngineError(f"model directory {layout.path}: " + "; ".join(layout.problems))
        self.backend.check_imports()
        self._digest = model_digest(layout.path)
        self.device, self._degraded = pick_device(
            self.config.device, self.backend.gpus(), self.backend.probe
        )
        if self._degraded:
            log.warning("sambert runs on CPU: %s", self._degraded)
        self.frontend_mode = self._choose_frontend()
        if self.frontend_mode == "ttsfrd":
            resources = check_model_dir(layout.path, resources=True)
            if not resources.ok:
                raise EngineError(
                    f"model directory {layout.path}: " + "; ".join(resources.problems)
                )
            self._frontend = self.backend.frontend(self._resource_dir())
        else:
            self._phones = self.backend.phone_map()
        log.info(
            "sambert loaded from %s on %s (fp16 %s, %s front-end)",
            layout.path,
            self.device,
            self.config.fp16 and self.device != "cpu",
            self.frontend_mode,
        )

    def _choose_frontend(self) -> str:
        setting = self.config.frontend
        if setting == "auto":
            return "ttsfrd" if self.backend.has_ttsfrd() else "builtin"
        if setting == "ttsfrd" and not self.backend.has_ttsfrd():
            raise EngineError(
                "sambert.frontend = ttsfrd, but Alibaba's ttsfrd is not installed (it has no "
                "Python 3.11 build): use frontend = builtin or auto"
            )
        return setting

    def _model(self, voice: str, device: str) -> VoiceModel:
        key = (voice, device)
        with self._models_lock:
            if key not in self._models:
                path = Path(self.config.model_dir) / "voices" / voice
                self._models[key] = self.backend.voice(voice, path, device, self.config.fp16)
            return self._models[key]

    def _forward(self, voice: str, symbols: str, prosody: Prosody) -> Pcm:
        """One utterance; a CUDA out-of-memory frees the cache and retries once on CPU."""
        return self._on_device(voice, lambda m: m.forward(symbols, prosody.speed, prosody.pitch))

    def _on_device(self, voice: str, run: Callable[[VoiceModel], _T]) -> _T:
        device = self.device
        try:
            return run(self._model(voice, device))
        except Exception as exc:
            if device == "cpu" or not self.backend.is_oom(exc):
                raise
            self.oom_retries += 1
            log.warning("CUDA out of memory on %s; retrying this request on CPU", device)
            self.backend.free(device)
            return run(self._model(voice, "cpu"))

    def check_health(self) -> None:
        """Re-probe the GPU (the daemon calls this periodically): a GPU that fails flips the
        engine to CPU and ``degraded()`` says why."""
        if self._loaded and self.device.startswith("cuda"):
            error = self.backend.probe(self.device)
            if error:
                self._degraded = f"{self.device} failed its health probe: {error}"
                log.error("sambert: %s; switching to CPU", self._degraded)
                self.device = "cpu"

    def symbols(self, sentence: Sentence, voice: str, emotion: str = "neutral") -> list[str]:
        """The KAN-TTS symbol lines ``Voice.am_forward`` gets for ``sentence`` (what
        ``sambertd frontend --symbols`` prints)."""
        self.load()
        if self.frontend_mode == "ttsfrd":
            with self._frontend_lock:
                lines = symbol_lines(self._frontend.gen_tacotron_symbols(sentence.text))
            return [set_emotion(line, emotion) for line in lines]
        return [self._symbolizer(voice).symbols(sentence, emotion)]

    def _symbolizer(self, voice: str) -> Symbolizer:
        """Per voice: its model's symbol sets and speaker (``linguistic_unit.speaker_list``,
        the first entry), so every token is checked against what that model knows."""
        with self._models_lock:
            found = self._symbolizers.get(voice)
        if found is None:
            sets = self._model(voice, self.device).symbol_sets()
            if sets is None or self._phones is None:
                raise EngineError(f"voice {voice}: the model does not expose its symbol sets")
            found = Symbolizer(self._phones, sets, sets.speakers[0])
            with self._models_lock:
                self._symbolizers[voice] = found
        return found

    def _speak(self, sentence: Sentence, voice: Voice, emotion: str, prosody: Prosody) -> Speech:
        """With our own symbols, timing from KAN-TTS's duration predictor (samples per
        symbol, mapped back to syllables); ttsfrd's symbols cannot be mapped back, so with
        ttsfrd the timing is estimated."""
        if self.frontend_mode != "builtin":
            return super()._speak(sentence, voice, emotion, prosody)
        line, spans = self._symbolizer(voice.id).timed(sentence, emotion)
        pcm, samples = self._on_device(
            voice.id, lambda m: m.forward_timed(line, prosody.speed, prosody.pitch)
        )
        edges = np.concatenate([[0], np.cumsum(samples)]).astype(int)
        end = len(pcm)
        timing = tuple((int(min(edges[r.start], end)), int(min(edges[r.stop], end))) for r in spans)
        return Speech(pcm * np.float32(prosody.volume), timing, True)

    def _synthesize(self, sentence: Sentence, voice: Voice, emotion: str, prosody: Prosody) -> Pcm:
        lines = self.symbols(sentence, voice.id, emotion)
        parts = [self._forward(voice.id, line, prosody) for line in lines]
        pcm = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        return pcm * np.float32(prosody.volume)
