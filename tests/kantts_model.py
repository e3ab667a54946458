"""Sambert-HiFiGAN model directories in ModelScope's exact layout, built from KAN-TTS's own
published configs with random weights (test fixture and bench helper).

The real weights cannot be had here; the real *code* can run.  The configs are the ones
KAN-TTS ships (``kantts/configs/sambert_16k.yaml``, ``hifigan_v1_16k.yaml``,
``audio_config_16k.yaml``), read from the installed package; ``small=True`` only lowers layer
counts and channels so tests run in seconds (``small=False``: the full-size model, whose
compute cost is that of the real one, for ``bench/sambert.py``).

Random weights predict durations near zero (and the decoder then has nothing to decode), so
the duration predictor's last layer is set to predict exp(2) - 1 ≈ 6.4 frames per symbol, a
realistic length.  Layout::

    <root>/voices/voices.json                       {"voices": [...]}
    <root>/voices/<name>/audio_config.yaml
    <root>/voices/<name>/am/config.yaml   + am/ckpt/checkpoint_0.pth   {"model": ...}
    <root>/voices/<name>/voc/config.yaml  + voc/ckpt/checkpoint_0.pth  {"model": {"generator": ...}}
    <root>/resource.zip                   ttsfrd's resources (unused by the built-in front-end)
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

# speaker_list values of the published *_emo voices are speaker codes like F7
VOICES = {"zhitian_emo": "F7", "zhida": "M1"}


def kantts_configs() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("kantts")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("kantts is not installed (make install-sambert)")
    return Path(next(iter(spec.submodule_search_locations))) / "configs"


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    with open(path, encoding="utf-8") as f:
        return dict(yaml.safe_load(f))


def configs(speaker: str, small: bool) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(am, vocoder, audio) configs for one voice."""
    base = kantts_configs()
    am = _yaml(base / "sambert_16k.yaml")
    voc = _yaml(base / "hifigan_v1_16k.yaml")
    audio = _yaml(base / "audio_config_16k.yaml")
    am["linguistic_unit"]["speaker_list"] = speaker
    if small:
        params = am["Model"]["KanTtsSAMBERT"]["params"]
        params.update(
            encoder_num_layers=1,
            decoder_num_layers=1,
            predictor_fsmn_num_layers=1,
            postnet_fsmn_num_layers=1,
        )
        generator = voc["Model"]["Generator"]["params"]
        generator.update(channels=32, resblock_kernel_sizes=[3], resblock_dilations=[[1, 3]])
    return am, voc, audio


def build_voice(
    root: Path, name: str, speaker: str, small: bool = True, seed: int | None = None
) -> None:
    """One voice directory with random weights (from ``seed``), saved the way KAN-TTS
    training saves them."""
    import torch
    import yaml

    from sambertd.engines.modelscope_backend import prepare_imports

    prepare_imports()
    from kantts.models import model_builder
    from kantts.models.hifigan.hifigan import Generator
    from kantts.utils.ling_unit.ling_unit import KanTtsLinguisticUnit

    am, voc, audio = configs(speaker, small)
    voice = root / "voices" / name
    for part, config in (("am", am), ("voc", voc)):
        (voice / part / "ckpt").mkdir(parents=True, exist_ok=True)
        (voice / part / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (voice / "audio_config.yaml").write_text(yaml.safe_dump(audio), encoding="utf-8")

    torch.manual_seed(sum(map(ord, name)) if seed is None else seed)
    # What modelscope's Voice does before building: the symbol-set sizes, less the mask.
    sizes = KanTtsLinguisticUnit(am).get_unit_size()
    built = dict(am)
    built["Model"] = {"KanTtsSAMBERT": dict(am["Model"]["KanTtsSAMBERT"])}
    built["Model"]["KanTtsSAMBERT"]["params"] = {
        **am["Model"]["KanTtsSAMBERT"]["params"],
        **{k: v - 1 for k, v in sizes.items()},
    }
    sambert = model_builder(built, torch.device("cpu"))[0]["KanTtsSAMBERT"]
    fc = sambert.variance_adaptor.duration_predictor.fc
    with torch.no_grad():
        fc.weight.zero_()
        fc.bias.fill_(2.0)  # exp(2) - 1 ≈ 6.4 mel frames per symbol
    torch.save({"model": sambert.state_dict()}, voice / "am" / "ckpt" / "checkpoint_0.pth")
    generator = Generator(**voc["Model"]["Generator"]["params"])
    torch.save(
        {"model": {"generator": generator.state_dict()}},
        voice / "voc" / "ckpt" / "checkpoint_0.pth",
    )


def build_model_dir(root: Path, voices: dict[str, str] = VOICES, small: bool = True) -> Path:
    """A model directory with ``voices`` (name → speaker code)."""
    (root / "voices").mkdir(parents=True, exist_ok=True)
    (root / "voices" / "voices.json").write_text(json.dumps({"voices": list(voices)}))
    with zipfile.ZipFile(root / "resource.zip", "w") as z:
        z.writestr("resource/README", "ttsfrd front-end resources (not used by the built-in one)")
    for name, speaker in voices.items():
        build_voice(root, name, speaker, small)
    return root
