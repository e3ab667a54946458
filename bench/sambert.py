#!/usr/bin/env python3
"""Sambert-HiFiGAN's speed with the real modelscope + KAN-TTS code (run by hand).

The model is the published full size (``sambert_16k.yaml`` + ``hifigan_v1_16k.yaml``) with
random weights and realistic durations (tests/kantts_model.py): the same compute as the real
weights, so the speed is the real one even though the sound is not.  The embedded ``baker``
engine runs the same sentences in the same run, as the baseline.

  CPU:  RTF of the acoustic model (AM) and the vocoder, with 1 and 2 torch threads.
  GPU:  (--device cuda) FP32 vs FP16 RTF, and throughput with 1/2/4/8 concurrent streams.

usage: bench/sambert.py [--device cpu|cuda] [--sentences 12]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.kantts_model import build_model_dir

TEXTS = [
    "欢迎致电政务服务热线，请按一号键查询办理进度。",
    "本市将于下月起全面推行企业开办一网通办。",
    "申请人可通过政务服务网提交材料，审核通过后三个工作日内领取营业执照。",
    "老年人、残疾人等特殊群体可申请上门服务或绿色通道优先办理。",
    "工作日办理时间调整为八点半至十八点，周六上午照常受理社保业务。",
    "如需咨询，请拨打政务服务热线一二三四五。",
]
RATE = 16000


def units(count: int) -> list[object]:
    from sambertd.frontend import Frontend

    frontend = Frontend()
    out = [u for text in TEXTS for u in frontend.sentences(text)]
    return (out * (count // len(out) + 1))[:count]


def sambert_rows(model: Path, device: str, sentences: list[object]) -> list[tuple[str, float]]:
    import torch

    from sambertd.config import SambertConfig
    from sambertd.engines.modelscope_backend import TorchVoice
    from sambertd.engines.sambert import SambertEngine

    rows = []
    engine = SambertEngine(SambertConfig(model_dir=str(model), voices=(), device=device))
    engine.load()
    lines = [engine.symbols(s, "zhida")[0] for s in sentences]
    precisions = [False, True] if device.startswith("cuda") else [False]
    threads = [1, 2] if device == "cpu" else [torch.get_num_threads()]
    for fp16 in precisions:
        voice = TorchVoice("zhida", model / "voices" / "zhida", device, fp16)
        for n in threads:
            torch.set_num_threads(n)
            voice.forward(lines[0])  # warm-up
            am = voc = audio = 0.0
            for line in lines:
                started = time.perf_counter()
                mel = voice._voice.am_forward(line)
                middle = time.perf_counter()
                pcm = voice._voice.vocoder_forward(mel.float())
                done = time.perf_counter()
                am, voc, audio = am + middle - started, voc + done - middle, audio + len(pcm) / RATE
            label = f"sambert {device} {'fp16' if fp16 else 'fp32'} {n} thread(s)"
            rows += [(f"{label}: AM", am / audio), (f"{label}: vocoder", voc / audio)]
            rows.append((f"{label}: total", (am + voc) / audio))
    return rows


def concurrency_rows(model: Path, device: str, sentences: list[object]) -> list[tuple[str, float]]:
    """Audio seconds per wall second with N threads calling one GPU engine at once."""
    from sambertd.config import SambertConfig
    from sambertd.engines.sambert import SambertEngine

    engine = SambertEngine(SambertConfig(model_dir=str(model), voices=(), device=device))
    engine.load()
    engine.synthesize(sentences[0], "zhida")  # type: ignore[arg-type]  # load the voice
    rows = []
    for n in (1, 2, 4, 8):
        produced = [0.0] * n
        workers = [
            threading.Thread(target=_stream, args=(engine, sentences, produced, i))
            for i in range(n)
        ]
        started = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join(600)
        rate = sum(produced) / (time.perf_counter() - started)
        rows.append((f"sambert {device}: {n} concurrent streams, audio s per s", rate))
    return rows


def _stream(engine: object, sentences: list[object], produced: list[float], i: int) -> None:
    for s in sentences:
        produced[i] += len(engine.synthesize(s, "zhida")) / RATE  # type: ignore[attr-defined]


def baker_rows(sentences: list[object]) -> list[tuple[str, float]]:
    from sambertd.engines.baker import BakerEngine

    rows = []
    for n in (1, 2):
        engine = BakerEngine(threads=n)
        engine.warm_up()
        elapsed = audio = 0.0
        for s in sentences:
            started = time.perf_counter()
            pcm = engine.synthesize(s, "baker")  # type: ignore[arg-type]
            elapsed += time.perf_counter() - started
            audio += len(pcm) / 24000
        rows.append((f"baker (baseline) cpu {n} thread(s): total", elapsed / audio))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sentences", type=int, default=12)
    args = parser.parse_args()
    sentences = units(args.sentences)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        model = build_model_dir(Path(tmp) / "model", {"zhida": "M1"}, small=False)
        print(f"full-size model built in {time.perf_counter() - started:.1f} s")
        rows = sambert_rows(model, args.device, sentences) + baker_rows(sentences)
        if args.device.startswith("cuda"):
            rows += concurrency_rows(model, args.device, sentences)
    print(f"{len(sentences)} synthesis units; RTF = compute seconds / audio seconds")
    for label, value in rows:
        print(f"  {label:<48} {value:8.3f}")


if __name__ == "__main__":
    main()
