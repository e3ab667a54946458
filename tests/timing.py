"""Speed checks that mean the same on any machine (test helper, not a test module).

A limit in seconds passes on the laptop it was set on and fails on a CI runner that is three
times slower, or busy.  What such a check is after — no regex backtracking, no quadratic
loop — shows in how the time *grows* with the input: about tenfold for ten times the input
when the work is linear, a hundredfold when it is quadratic, on a fast machine and a slow
one alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def seconds(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def growth(fn: Callable[[int], object], n: int, factor: int = 10, limit: float = 30) -> float:
    """How many times longer ``fn(n * factor)`` takes than ``fn(n)``: near ``factor`` for
    linear work, ``factor ** 2`` for quadratic.  Each size keeps its fastest run: interference
    (another process on the core, a GC pass) only ever adds time.  A ratio over ``limit`` is
    measured again, up to three times, before it is returned."""
    fn(n)  # first-use costs (a regex compiled, a table built) are not the work measured
    small = large = float("inf")
    for _ in range(3):
        small = min(small, seconds(lambda: fn(n)))
        large = min(large, seconds(lambda: fn(n * factor)))
        if large / small <= limit:
            break
    return large / small
