"""Synthetic Sambert-HiFiGAN model directories (layout only; no weights) for tests."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

VOICES = ("zhitian_emo", "zhiyan_emo", "zhizhe_emo", "zhibei_emo")


def make_model_dir(root: Path, voices: tuple[str, ...] = VOICES) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(root / "resource.zip", "w") as z:
        z.writestr("resource/README", "front-end resources (synthetic)")
    (root / "voices").mkdir(exist_ok=True)
    (root / "voices" / "voices.json").write_text(json.dumps({"voices": list(voices)}))
    for name in voices:
        v = root / "voices" / name
        for part in ("am", "voc"):
            (v / part / "ckpt").mkdir(parents=True, exist_ok=True)
            (v / part / "config.yaml").write_text(f"# synthetic {part} config\n")
            (v / part / "ckpt" / "checkpoint_0.pth").write_bytes(b"\0")
            (v / part / "ckpt" / "checkpoint_1200000.pth").write_bytes(b"\0")
        (v / "audio_config.yaml").write_text("# synthetic\n")
    return root
