#!/usr/bin/env python3
"""Sambert-HiFiGAN's speed with the real modelscope + KAN-TTS code (run by hand).

The model is the published full size (``sambert_16k.yaml`` + ``hifigan_v1_16k.yaml``) with
random weights and realistic durations (tests/kantts_model.py): the same compute as the real
weights, so the speed is the real one even though the sound is not.  The embedded ``baker``
engine runs the same sentences in the same run, as the baseline.

  CPU:  RTF of the acoustic model (AM) and the vocoder, with 1 and 2 torch threads.
  GPU:  (--device cuda) FP32 vs FP16 RTF; the cost of an input length not seen before, with
        cuDNN's per-shape tuning on and off; throughput with 1/2/4/8 concurrent streams
        (threads calling one engine, as the daemon's worker pool does), FP32 and FP16.
        On a GPU machine bench/gpu.sh installs the libraries and runs this.

Each row is printed as soon as it is measured, and a part that fails prints its error and
the run goes on, so a run cut short still reports what it measured.

usage: bench/sambert.py [--device cpu|cuda] [--sentences 12] [--parts sambert,baker,streams]
                        [--stream-seconds 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.kantts_model import build_model_dir

if TYPE_CHECKING:
    from sambertd.engines.modelscope_backend import TorchVoice
    from sambertd.engines.sambert import SambertEngine
    from sambertd.frontend.types import Sentence

TEXTS = [
    "欢迎致电政务服务热线，请按一号键查询办理进度。",
    "本市将于下月起全面推行企业开办一网通办。",
    "申请人可通过政务服务网提交材料，审核通过后三个工作日内领取营业执照。",
    "老年人、残疾人等特殊群体可申请上门服务或绿色通道优先办理。",
    "工作日办理时间调整为八点半至十八点，周六上午照常受理社保业务。",
    "如需咨询，请拨打政务服务热线一二三四五。",
]
RATE = 16000
Rows = Iterator[tuple[str, float]]


def units(count: int) -> list[Sentence]:
    from sambertd.frontend import Frontend

    frontend = Frontend()
    out = [u for text in TEXTS for u in frontend.sentences(text)]
    return (out * (count // len(out) + 1))[:count]


def sambert_rows(model: Path, device: str, sentences: list[Sentence]) -> Rows:
    import torch

    from sambertd.config import SambertConfig
    from sambertd.engines.modelscope_backend import TorchVoice
    from sambertd.engines.sambert import SambertEngine

    engine = SambertEngine(SambertConfig(model_dir=str(model), voices=(), device=device))
    engine.load()  # on cuda this runs the real GPU health probe
    print(f"sambert engine on {engine.device}, degraded: {engine.degraded()}", flush=True)
    lines = [engine.symbols(s, "zhida")[0] for s in sentences]
    distinct = list(dict.fromkeys(lines))
    precisions = [False, True] if device.startswith("cuda") else [False]
    threads = [1, 2] if device == "cpu" else [torch.get_num_threads()]
    for fp16 in precisions:
        voice = TorchVoice("zhida", model / "voices" / "zhida", device, fp16)
        for n in threads:
            torch.set_num_threads(n)
            label = f"sambert {device} {'fp16' if fp16 else 'fp32'} {n} thread(s)"
            if device.startswith("cuda"):
                # Each length is met once first (the first run of a process also loads its
                # kernels): modelscope's Voice sets cudnn.benchmark, so cuDNN tunes per shape.
                am, voc, audio = _timed(voice, distinct)
                yield f"{label}: first pass over new lengths, total", (am + voc) / audio
            else:
                voice.forward(lines[0])  # warm-up
            am, voc, audio = _timed(voice, lines)
            yield f"{label}: AM", am / audio
            yield f"{label}: vocoder", voc / audio
            yield f"{label}: total", (am + voc) / audio
            if device.startswith("cuda"):
                # What a server pays for a length it has not seen yet, with cuDNN's per-shape
                # tuning on (as modelscope sets it) and off; speed changes the lengths.
                for benchmark, speed in ((True, 0.9), (False, 0.8)):
                    torch.backends.cudnn.benchmark = benchmark
                    onoff = f"cudnn.benchmark {'on' if benchmark else 'off'}"
                    am, voc, audio = _timed(voice, distinct, speed)
                    yield f"{label}: new lengths, {onoff}, total", (am + voc) / audio
                    am, voc, audio = _timed(voice, distinct, speed)
                    yield f"{label}: same lengths again, {onoff}, total", (am + voc) / audio
                torch.backends.cudnn.benchmark = True
        del voice


def _timed(voice: TorchVoice, lines: list[str], speed: float = 1.0) -> tuple[float, float, float]:
    """Seconds in the AM, in the vocoder, and of audio, under the autocast that
    ``TorchVoice.forward`` uses (FP16 on a GPU when the voice has it), at ``speed``."""
    import torch

    am = voc = audio = 0.0
    kind = "cuda" if voice.device.startswith("cuda") else "cpu"
    voice._speed = speed  # what forward_timed sets around am_forward
    with torch.autocast(kind, dtype=torch.float16, enabled=voice.fp16):
        for line in lines:
            started = time.perf_counter()
            mel = voice._voice.am_forward(line)  # ends with .cpu(): synchronised
            middle = time.perf_counter()
            pcm = voice._voice.vocoder_forward(mel.float())  # idem (.numpy())
            done = time.perf_counter()
            am, voc = am + middle - started, voc + done - middle
            audio += len(pcm) / RATE
    voice._speed = 1.0
    return am, voc, audio


def concurrency_rows(model: Path, device: str, sentences: list[Sentence], seconds: float) -> Rows:
    """Audio seconds per wall second, and the mean time per unit, with N threads calling one
    GPU engine at once (``server.workers_per_gpu``), each going round the units for
    ``seconds``; one voice, so its acoustic model runs one utterance at a time and only the
    vocoder overlaps."""
    import torch

    from sambertd.config import SambertConfig
    from sambertd.engines.sambert import SambertEngine

    for fp16 in (False, True):
        config = SambertConfig(model_dir=str(model), voices=(), device=device, fp16=fp16)
        engine = SambertEngine(config)
        engine.load()
        for s in {s.text: s for s in sentences}.values():  # load the voice, meet each length
            engine.synthesize(s, "zhida")
        torch.cuda.reset_peak_memory_stats(device)
        label = f"sambert {device} {'fp16' if fp16 else 'fp32'}"
        for n in (1, 2, 4, 8):
            produced = [0.0] * n
            spent = [0.0] * n
            done = [0] * n
            started = time.perf_counter()
            stop = started + seconds
            workers = [
                threading.Thread(
                    target=_stream, args=(engine, sentences, stop, produced, spent, done, i)
                )
                for i in range(n)
            ]
            for w in workers:
                w.start()
            for w in workers:
                w.join(600)
            rate = sum(produced) / (time.perf_counter() - started)
            yield f"{label}: {n} concurrent streams, audio s per s", rate
            yield f"{label}: {n} concurrent streams, s per unit", sum(spent) / sum(done)
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        yield f"{label}: peak GPU memory allocated, MiB", peak
        del engine


def _stream(
    engine: SambertEngine,
    sentences: list[Sentence],
    stop: float,
    produced: list[float],
    spent: list[float],
    done: list[int],
    i: int,
) -> None:
    """One stream: unit after unit (starting at its own offset) until ``stop``."""
    while time.perf_counter() < stop:
        s = sentences[(i + done[i]) % len(sentences)]
        started = time.perf_counter()
        pcm = engine.synthesize(s, "zhida")
        spent[i] += time.perf_counter() - started
        produced[i] += len(pcm) / RATE
        done[i] += 1


def baker_rows(sentences: list[Sentence]) -> Rows:
    from sambertd.engines.baker import BakerEngine

    for n in (1, 2):
        engine = BakerEngine(threads=n)
        engine.warm_up()
        print(engine.describe(), flush=True)
        elapsed = audio = 0.0
        for s in sentences:
            started = time.perf_counter()
            pcm = engine.synthesize(s, "baker")
            elapsed += time.perf_counter() - started
            audio += len(pcm) / 24000
        yield f"baker (baseline) cpu {n} thread(s): total", elapsed / audio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sentences", type=int, default=12)
    parser.add_argument(
        "--parts", default="sambert,baker,streams", help="which, in this order (streams: GPU)"
    )
    parser.add_argument("--stream-seconds", type=float, default=20.0, help="per stream count")
    args = parser.parse_args()
    sentences = units(args.sentences)
    print(f"{len(sentences)} synthesis units; RTF = compute seconds / audio seconds")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        model = build_model_dir(Path(tmp) / "model", {"zhida": "M1"}, small=False)
        print(f"full-size model built in {time.perf_counter() - started:.1f} s", flush=True)
        parts: dict[str, Callable[[], Rows]] = {
            "sambert": lambda: sambert_rows(model, args.device, sentences),
            "baker": lambda: baker_rows(sentences),
            "streams": lambda: concurrency_rows(model, args.device, sentences, args.stream_seconds),
        }
        failed = 0
        for name in args.parts.split(","):
            if name == "streams" and not args.device.startswith("cuda"):
                continue
            try:
                for label, value in parts[name]():
                    print(f"  {label:<56} {value:8.3f}", flush=True)
            except Exception:  # report it and measure the rest
                failed += 1
                traceback.print_exc()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
