"""STAND-IN for the modelscope / kantts / ttsfrd / torch boundary — a test double.

The real Sambert-HiFiGAN model (site-supplied weights, Alibaba's ttsfrd and kantts, a GPU)
cannot run on this machine, so tests of the sambert *adapter* run against this stand-in.  It
honours the same contract as ``sambertd.engines.sambert.ModelscopeBackend``: ttsfrd-style
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

    def forward(self, symbols: str) -> np.ndarray:
        self.backend.calls.append((self.name, self.device, symbols))
        if self.device in self.backend.oom_on:
            raise StandInOutOfMemory(f"CUDA out of memory on {self.device}")
        if self.backend.fail_next > 0:
            self.backend.fail_next -= 1
            raise RuntimeError("stand-in model failure")
        emotions = set(re.findall(r"\$emotion_([a-z]+)\$", symbols))
        hz = EMOTION_HZ[emotions.pop()] if len(emotions) == 1 else 100.0
        n = 1600 * symbols.count("{")  # 0.1 s per symbol
        t = np.arange(n) / 16000
        return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@dataclass
class StandInBackend:
    gpu_count: int = 0
    bad_gpus: set[str] = field(default_factory=set)
    oom_on: set[str] = field(default_factory=set)
    fail_next: int = 0
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    freed: list[str] = field(default_factory=list)
    resource_dirs: list[Path] = field(default_factory=list)

    def check_imports(self) -> None:
        return None

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
