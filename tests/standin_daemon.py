"""``python -m tests.standin_daemon serve``: the real daemon with the STAND-IN Sambert backend.

A test double at the one boundary we cannot reach here (Sambert weights, Alibaba's libraries,
a GPU), so the daemon's handling of a GPU engine — its voices, worker sizing, faults and hangs
mid-request — can be tested through real HTTP.  Everything else is the real daemon.  The
stand-in is set up from the environment:

* ``STANDIN_GPUS``: how many GPUs the stand-in torch reports (default 0);
* ``STANDIN_FAULT``: a pinyin syllable (e.g. ``zhang4``) whose unit raises, like a GPU fault;
* ``STANDIN_SLOW``: a syllable whose unit takes ``STANDIN_SLOW_S`` seconds (default 3);
* ``STANDIN_CONTROLS``: the prosody controls its voices render (default speed,pitch,volume),
  to play a backend that cannot do some, which clients must then hear about as 422.
"""

from __future__ import annotations

import os
import time

import numpy as np

from sambertd.engines import sambert
from tests.standin_modelscope import StandInBackend, StandInVoice


class _Voice(StandInVoice):
    def forward(self, symbols: str, speed: float = 1.0, pitch: float = 1.0) -> np.ndarray:
        fault, slow = os.environ.get("STANDIN_FAULT"), os.environ.get("STANDIN_SLOW")
        if fault and "{" + fault.rstrip("012345") + "$tone" + fault[-1] in symbols:
            raise RuntimeError("stand-in GPU fault (Xid 79: GPU has fallen off the bus)")
        if slow and "{" + slow.rstrip("012345") + "$tone" + slow[-1] in symbols:
            time.sleep(float(os.environ.get("STANDIN_SLOW_S", "3")))
        return super().forward(symbols, speed, pitch)


class _Backend(StandInBackend):
    def voice(self, name, path, device, fp16):  # type: ignore[no-untyped-def]
        super().voice(name, path, device, fp16)
        return _Voice(self, name, device)


def main() -> None:
    controls = tuple(os.environ.get("STANDIN_CONTROLS", "speed,pitch,volume").split(","))
    backend = _Backend(controls=controls, gpu_count=int(os.environ.get("STANDIN_GPUS", "0")))
    sambert.ModelscopeBackend = lambda: backend  # type: ignore[assignment,misc]
    from sambertd.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
