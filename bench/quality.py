#!/usr/bin/env python3
"""Synthesize each line of a text file to WAV_DIR/NNN.wav and, when the shared listener is
installed, score intelligibility with it (Whisper syllable error rate).

usage: bench/quality.py TEXTS.txt WAV_DIR [--refs SPOKEN.txt] [--voice baker]
The listener: ../shared/quality/setup.sh (once), which installs /opt/sambertd-quality.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from sambertd.config import load
from sambertd.synth import Synthesizer
from sambertd.types import Request

HERE = Path(__file__).resolve().parent
SCORER = HERE.parent.parent / "shared" / "quality" / "score.py"
LISTENER = Path("/opt/sambertd-quality")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("texts", type=Path)
    parser.add_argument("wav_dir", type=Path)
    parser.add_argument("--refs", type=Path, help="reference readings (default: the texts)")
    parser.add_argument("--voice", default="")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="score this many times: the listener itself varies run to run",
    )
    args = parser.parse_args()
    args.wav_dir.mkdir(parents=True, exist_ok=True)
    synth = Synthesizer(load())
    lines = args.texts.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        result = synth.render(Request(text=line, voice=args.voice))
        (args.wav_dir / f"{i:03d}.wav").write_bytes(result.audio)
        print(f"{i:03d} {result.duration:5.2f}s {synth.frontend.analyse(line).normalized}")
    python = LISTENER / "venv" / "bin" / "python"
    if python.exists() and SCORER.exists():
        rates = []
        for _ in range(args.repeat):
            out = subprocess.run(
                [
                    str(python),
                    str(SCORER),
                    str(LISTENER / "whisper-base"),
                    str(args.refs or args.texts),
                    str(args.wav_dir),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            print(out.rstrip())
            rates.append(float(out.rsplit("syllable error rate ", 1)[1].split()[0]))
        print(
            f"syllable error rate over {len(rates)} listens: median "
            f"{sorted(rates)[len(rates) // 2]:.4f}, min {min(rates):.4f}, max {max(rates):.4f}"
        )
    else:
        print(f"listener not installed; run {SCORER.parent / 'setup.sh'} to score")


if __name__ == "__main__":
    main()
