#!/usr/bin/env python3
"""Real-time factor of front-end + embedded engine over the dev texts (run by hand: make bench).

RTF = processing seconds / audio seconds, so 0.03 means 1 s of speech costs 30 ms of CPU time.
Each set is synthesized once to warm up, then timed ``--rounds`` times; the table shows the best
round (least disturbed by other load) and the front-end's share separately.
usage: bench/engine.py [--texts DIR] [--threads 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sambertd.config import Config, EngineConfig
from sambertd.synth import Synthesizer
from sambertd.types import Request

HERE = Path(__file__).resolve().parent
DEFAULT_TEXTS = HERE.parent.parent / "shared" / "quality"
FALLBACK = [
    "欢迎致电政务服务热线，请问有什么可以帮您？",
    "办事大厅开放时间为周一至周五9:00-17:00。",
    "本次共发放补贴2,380万元，惠及1.2万户家庭。",
]


def load_sets(directory: Path) -> dict[str, list[str]]:
    sets = {}
    for name in ("dev_plain", "dev_raw"):
        path = directory / f"{name}.txt"
        if path.is_file():
            sets[name] = [x for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    return sets or {"builtin": FALLBACK}


def measure(synth: Synthesizer, lines: list[str]) -> tuple[float, float, float, int]:
    """(front-end seconds, total seconds, audio seconds, characters) for one pass."""
    t0 = time.perf_counter()
    for line in lines:
        synth.frontend.sentences(line)
    frontend = time.perf_counter() - t0
    audio = 0.0
    t0 = time.perf_counter()
    for line in lines:
        audio += synth.render(Request(text=line)).duration
    return frontend, time.perf_counter() - t0, audio, sum(map(len, lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=Path, default=DEFAULT_TEXTS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    t0 = time.perf_counter()
    synth = Synthesizer(Config(engine=EngineConfig(threads=args.threads)))
    synth.warm_up()
    print(
        f"engine load + warm-up: {time.perf_counter() - t0:.2f} s "
        f"({args.threads} threads, model {synth.engines[0].model_version})"
    )
    header = (
        f"{'set':<10} {'lines':>5} {'chars':>6} {'audio s':>8} {'frontend s':>10} "
        f"{'total s':>8} {'RTF':>7} {'RTF eng':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, lines in load_sets(args.texts).items():
        measure(synth, lines)  # warm caches (jieba, interpreters at these lengths)
        fe, total, audio, chars = min(
            (measure(synth, lines) for _ in range(args.rounds)), key=lambda r: r[1]
        )
        print(
            f"{name:<10} {len(lines):>5} {chars:>6} {audio:>8.2f} {fe:>10.3f} "
            f"{total:>8.3f} {total / audio:>7.4f} {(total - fe) / audio:>8.4f}"
        )


if __name__ == "__main__":
    main()
