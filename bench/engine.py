#!/usr/bin/env python3
"""Real-time factor of front-end + embedded engine over the dev texts (run by hand: make bench).

RTF = processing seconds / audio seconds, so 0.03 means 1 s of speech costs 30 ms of CPU time.
Each set is synthesized once to warm up, then timed ``--rounds`` times; the table shows the best
round (least disturbed by other load) and the front-end's share separately.

--json prints that result as one JSON object instead (for a parent process).
--baseline REF compares REF (a temporary git worktree, its daemon/ first on PYTHONPATH) with
this working tree in one run: for each of ``--rounds`` rounds this script runs itself with
--json --rounds 1 once per side, in a fresh process (engine load and warm-up included), the
order alternating (base, HEAD, HEAD, base, ...) so drift favours neither; each side keeps its
best round per set.  speed-up = baseline RTF / HEAD RTF: above 1 means HEAD is faster.
Only APIs both sides have are used (Synthesizer, Config/EngineConfig(threads), warm_up,
render().duration, frontend.sentences), so engine.runtime keeps its default on HEAD.

usage: bench/engine.py [--texts DIR] [--threads 2] [--rounds 3] [--json] [--baseline REF]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import sambertd
from baseline import REPO, Side, child_env, order, sides
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
CHILD_TIMEOUT_S = 600  # one side's load, warm-up and one round over the dev sets


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


def run(texts: Path, threads: int, rounds: int) -> dict[str, Any]:
    """Load, warm up and time every set: the best of ``rounds`` passes per set."""
    t0 = time.perf_counter()
    synth = Synthesizer(Config(engine=EngineConfig(threads=threads)))
    synth.warm_up()
    out: dict[str, Any] = {
        "source": str(Path(sambertd.__file__).resolve()),
        "load_s": time.perf_counter() - t0,
        "threads": threads,
        "model": synth.engines[0].model_version,
        "sets": {},
    }
    for name, lines in load_sets(texts).items():
        measure(synth, lines)  # warm caches (jieba, interpreters at these lengths)
        fe, total, audio, chars = min(
            (measure(synth, lines) for _ in range(rounds)), key=lambda r: r[1]
        )
        out["sets"][name] = {
            "lines": len(lines),
            "chars": chars,
            "audio": audio,
            "frontend": fe,
            "total": total,
        }
    return out


def print_one(result: dict[str, Any]) -> None:
    """The single-side table this bench always printed."""
    print(
        f"engine load + warm-up: {result['load_s']:.2f} s "
        f"({result['threads']} threads, model {result['model']})"
    )
    header = (
        f"{'set':<10} {'lines':>5} {'chars':>6} {'audio s':>8} {'frontend s':>10} "
        f"{'total s':>8} {'RTF':>7} {'RTF eng':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, s in result["sets"].items():
        print(
            f"{name:<10} {s['lines']:>5} {s['chars']:>6} {s['audio']:>8.2f} "
            f"{s['frontend']:>10.3f} {s['total']:>8.3f} {s['total'] / s['audio']:>7.4f} "
            f"{(s['total'] - s['frontend']) / s['audio']:>8.4f}"
        )


def child(side: Side, args: argparse.Namespace) -> dict[str, Any]:
    """One fresh process of this script for ``side``, one timed round; its JSON result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--json", "--rounds", "1"]
    cmd += ["--threads", str(args.threads), "--texts", str(args.texts)]
    done = subprocess.run(
        cmd,
        cwd=REPO,
        env=child_env(side),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"{side.label}: engine bench exited {done.returncode}:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(result["source"]).is_relative_to(side.package.resolve()):
        raise SystemExit(f"{side.label}: measured sambertd from {result['source']}")
    return result


def best(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per set, the round with the least total time; load time likewise the least."""
    out = dict(results[0], load_s=min(r["load_s"] for r in results))
    out["sets"] = {
        name: min((r["sets"][name] for r in results), key=lambda s: s["total"])
        for name in results[0]["sets"]
    }
    return out


def rtf(s: dict[str, Any], engine_only: bool = False) -> float:
    spent = s["total"] - (s["frontend"] if engine_only else 0.0)
    return float(spent / s["audio"])


def print_both(base: dict[str, Any], head: dict[str, Any], labels: list[str]) -> None:
    """RTF (all, engine only) of both sides and the speed-up base/HEAD per set."""
    print(
        f"engine load + warm-up (best): {labels[0]} {base['load_s']:.2f} s, "
        f"{labels[1]} {head['load_s']:.2f} s ({head['threads']} threads; "
        f"model {base['model']} / {head['model']})"
    )
    header = (
        f"{'set':<10} {'lines':>5} {'audio base':>10} {'audio HEAD':>10} {'RTF base':>9} "
        f"{'RTF HEAD':>9} {'speed-up':>8} {'eng base':>9} {'eng HEAD':>9} {'speed-up':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, h in head["sets"].items():
        b = base["sets"][name]
        print(
            f"{name:<10} {h['lines']:>5} {b['audio']:>10.2f} {h['audio']:>10.2f} "
            f"{rtf(b):>9.4f} {rtf(h):>9.4f} {rtf(b) / rtf(h):>8.3f} "
            f"{rtf(b, True):>9.4f} {rtf(h, True):>9.4f} {rtf(b, True) / rtf(h, True):>8.3f}"
        )
    print("speed-up = baseline RTF / HEAD RTF (above 1: HEAD faster); eng = RTF without the")
    print("front-end; HEAD = this working tree.")
    sets = head["sets"].items()
    if any(abs(base["sets"][n]["audio"] / h["audio"] - 1) > 0.005 for n, h in sets):
        print("audio s differ: the sides do not say the same thing, so RTFs compare less well.")


def compare_sides(args: argparse.Namespace) -> None:
    with sides(args.baseline) as both:
        runs: dict[str, list[dict[str, Any]]] = {side.label: [] for side in both}
        for i in range(args.rounds):
            for side in order(both, i):
                runs[side.label].append(child(side, args))
                print(f"  done: round {i + 1} on {side.label}", file=sys.stderr)
        labels = [side.label for side in both]
    print_both(best(runs[labels[0]]), best(runs[labels[1]]), labels)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=Path, default=DEFAULT_TEXTS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="one JSON object, for a parent")
    parser.add_argument("--baseline", metavar="REF", help="git ref to compare this tree with")
    args = parser.parse_args()
    if args.baseline:
        compare_sides(args)
        return
    result = run(args.texts, args.threads, args.rounds)
    if args.json:
        print(json.dumps(result))
    else:
        print_one(result)


if __name__ == "__main__":
    main()
