#!/usr/bin/env python3
"""Timestamp alignment (normalized text → the client's characters): today's windowed diff
against a baseline ref's ``frontend/layout.align``, in one run on this machine.

usage: bench/align.py [--baseline cee5685] [--sizes 1000 2000 5000]
The baseline is read with ``git show`` (no checkout); both align the same text, normalized
once by today's front-end, and the table gives the seconds and the ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sambertd.frontend import layout
from sambertd.frontend.cleanup import clean
from sambertd.frontend.normalize import normalize

REPO = Path(__file__).resolve().parent.parent
TEXT = "本市将于2025年3月1日起施行，咨询电话12345，增长12.5%。"


def baseline(ref: str) -> Any:
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{ref}:daemon/sambertd/frontend/layout.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_layout.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("baseline_layout", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_layout"] = module
    spec.loader.exec_module(module)
    return module


def timed(align: Any, normalized: str, raw: str, origins: tuple[tuple[int, int], ...]) -> float:
    start = time.perf_counter()
    mapped = align(normalized, raw, origins)
    elapsed = time.perf_counter() - start
    assert len(mapped) == len(normalized), "every character must get an origin"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", default="cee5685")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000])
    args = parser.parse_args()
    old = baseline(args.baseline)
    print(f"| characters | {args.baseline} | now | ratio |\n|---|---|---|---|")
    for n in args.sizes:
        raw = (TEXT * (n // len(TEXT) + 1))[:n]
        normalized = normalize(clean(raw))
        origins = tuple((i, i + 1) for i in range(len(raw)))
        now = timed(layout.align, normalized, raw, origins)
        before = timed(old.align, normalized, raw, origins)
        print(f"| {n} | {before:.3f} s | {now:.3f} s | {before / now:.0f}× |")


if __name__ == "__main__":
    main()
