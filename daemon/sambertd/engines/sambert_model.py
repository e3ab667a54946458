"""A Sambert-HiFiGAN model directory as ModelScope lays it out, checked without loading it.

``sambertd check --model-dir`` and the engine's load report every problem at once, as paths
relative to the directory, so an operator can fix a copied model in one go::

    resource.zip                      ttsfrd's front-end resources (only ``frontend = ttsfrd``)
    voices/voices.json                {"voices": [names]}; the first is the model's default
    voices/<name>/audio_config.yaml
    voices/<name>/am/config.yaml      am/ckpt/checkpoint*_N.pth (the highest N is loaded)
    voices/<name>/voc/config.yaml     voc/ckpt/checkpoint*_N.pth
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_CKPT = re.compile(r"^checkpoint.*_(\d+)\.pth$")


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


def _resource_problems(root: Path) -> list[str]:
    archive = root / "resource.zip"
    if not archive.is_file() and not (root / "resource").is_dir():
        return ["resource.zip (front-end resources): missing"]
    if archive.is_file() and not zipfile.is_zipfile(archive):
        return ["resource.zip: not a zip archive"]
    return []


def check_model_dir(path: Path | str, wanted: Sequence[str] = (), resources: bool = True) -> Layout:
    """Validate a Sambert-HiFiGAN model directory without loading anything; ``resources``:
    ttsfrd's resource.zip is needed too."""
    layout = Layout(Path(path))
    root = layout.path
    if not root.is_dir():
        layout.problems.append(f"{root}: not a directory")
        return layout
    if resources:
        layout.problems.extend(_resource_problems(root))
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
