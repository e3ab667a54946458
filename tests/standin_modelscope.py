"""STAND-IN for the modelscope / kantts / ttsfrd / torch boundary — a test double.

The real modelscope + KAN-TTS code runs in ``tests/test_sambert_real.py``.  This stand-in is
kept for what cannot happen on this machine: a GPU (its count, a failing probe, a fault or a
hang inside one unit, CUDA out-of-memory) and Alibaba's binary ttsfrd.  It honours the
contract of ``sambertd.engines.modelscope_backend.ModelscopeBackend``: ttsfrd-style
``idx<TAB>{sy$tone$syllable_flag$word_segment$emotion_x$F7} ...`` lines, a voice that turns a
symbol string into 16 kHz float PCM, GPUs that can fail their probe, and CUDA OOM.  It
produces a tone whose pitch encodes the emotion field it received, so a test can tell that
the emotion rewrite reached the "model".  Nothing here is used outside tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pypinyin import Style, lazy_pinyin

EMOTION_HZ = {
    "neutral": 200.0,
    "happy": 260.0,
    "sad": 150.0,
    "angry": 300.0,
    "fear": 320.0,
    "disgust": 170.0,
    "surprise": 340.0,
}


class StandInOutOfMemory(RuntimeError):
    """What torch.cuda.OutOfMemoryError is to the real backend."""


class StandInFrontend:
    def gen_tacotron_symbols(self, text: str) -> str:
        tokens = []
        for syllable in lazy_pinyin(
            text, style=Style.TONE3, neutral_tone_with_five=True, errors="ignore"
        ):
            sy, tone = (syllable[:-1], syllable[-1]) if syllable[-1].isdigit() else (syllable, "5")
            tokens.append(f"{{{sy}$tone{tone}$s_both$word_both$emotion_neutral$F7}}")
        return f"0\t{' '.join(tokens)}\n" if tokens else ""


@dataclass
class StandInVoice:
    backend: StandInBackend
    name: str
    device: str

    def symbol_sets(self) -> None:
        return None  # only the ttsfrd path runs on the stand-in

    def forward(self, symbols: str, speed: float = 1.0, pitch: float = 1.0) -> np.ndarray:
        self.backend.calls.append((self.name, self.device, symbols))
        if self.device in self.backend.oom_on:
            raise StandInOutOfMemory(f"CUDA out of memory on {self.device}")
        if self.backend.fail_next > 0:
            self.backend.fail_next -= 1
            raise RuntimeError("stand-in model failure")
        emotions = set(re.findall(r"\$emotion_([a-z]+)\$", symbols))
        hz = EMOTION_HZ[emotions.pop()] if len(emotions) == 1 else 100.0
        n = round(1600 * symbols.count("{") / speed)  # 0.1 s per symbol at speed 1
        t = np.arange(n) / 16000
        return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@dataclass
class StandInBackend:
    controls: tuple[str, ...] = ("speed", "pitch", "volume")
    gpu_count: int = 0
    bad_gpus: set[str] = field(default_factory=set)
    oom_on: set[str] = field(default_factory=set)
    fail_next: int = 0
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    freed: list[str] = field(default_factory=list)
    resource_dirs: list[Path] = field(default_factory=list)

    def check_imports(self) -> None:
        return None

    def has_ttsfrd(self) -> bool:
        return True  # the stand-in plays Alibaba's ttsfrd

    def phone_map(self) -> None:
        raise AssertionError("the stand-in has no KAN-TTS; it plays ttsfrd")

    def gpus(self) -> int:
        return self.gpu_count

    def probe(self, device: str) -> str | None:
        return "ECC error" if device in self.bad_gpus else None

    def frontend(self, resource_dir: Path) -> StandInFrontend:
        self.resource_dirs.append(resource_dir)
        return StandInFrontend()

    def voice(self, name: str, path: Path, device: str, fp16: bool) -> StandInVoice:
        assert (path / "am" / "config.yaml").is_file(), path
        return StandInVoice(self, name, device)

    def is_oom(self, exc: BaseException) -> bool:
        return isinstance(exc, StandInOutOfMemory)

    def free(self, device: str) -> None:
        self.freed.append(device)
