"""Circuit breaker for an engine: stop sending requests to one that keeps failing.

Closed: requests flow and outcomes are counted over a sliding window.  When at least
``min_calls`` outcomes in the window show an error rate above ``max_error_rate``, it opens.
Open: requests go elsewhere (the next rung of the ladder, or 503) for ``open_s`` seconds.
Half-open: then exactly one trial request is let through; its success closes the breaker, its
failure opens it again.  Recovery is probed, never assumed.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitBreaker:
    def __init__(
        self,
        window_s: float = 60.0,
        min_calls: int = 20,
        max_error_rate: float = 0.05,
        open_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self.min_calls = min_calls
        self.max_error_rate = max_error_rate
        self.open_s = open_s
        self._clock = clock
        self._lock = threading.Lock()
        self._outcomes: deque[tuple[float, bool]] = deque()
        self._state = CLOSED
        self._opened_at = 0.0
        self._trial_out = False
        self._trial_at = 0.0
        self.reason = ""

    @property
    def state(self) -> str:
        with self._lock:
            return self._current()

    def _current(self) -> str:
        now = self._clock()
        if self._state == OPEN and now - self._opened_at >= self.open_s:
            self._state, self._trial_out = HALF_OPEN, False
        if self._state == HALF_OPEN and self._trial_out and now - self._trial_at >= self.open_s:
            self._trial_out = False  # the trial never reported (its request died early)
        return self._state

    def allow(self) -> bool:
        """May a request use this engine now?  In half-open, only the one trial may."""
        with self._lock:
            state = self._current()
            if state == CLOSED:
                return True
            if state == HALF_OPEN and not self._trial_out:
                self._trial_out, self._trial_at = True, self._clock()
                return True
            return False

    def record(self, ok: bool, reason: str = "") -> None:
        """Count one outcome; open or close as the rules above say."""
        with self._lock:
            now = self._clock()
            if self._current() == HALF_OPEN:
                if ok:
                    self._state, self.reason = CLOSED, ""
                    self._outcomes.clear()
                else:
                    self._open(now, reason)
                return
            self._outcomes.append((now, ok))
            while self._outcomes and now - self._outcomes[0][0] > self.window_s:
                self._outcomes.popleft()
            failures = sum(1 for _, good in self._outcomes if not good)
            calls = len(self._outcomes)
            if calls >= self.min_calls and failures / calls > self.max_error_rate:
                self._open(now, reason or f"{failures}/{calls} failed in {self.window_s:.0f} s")

    def trip(self, reason: str) -> None:
        """Open at once (the engine could not even load)."""
        with self._lock:
            self._open(self._clock(), reason)

    def _open(self, now: float, reason: str) -> None:
        self._state, self._opened_at, self._trial_out = OPEN, now, False
        self.reason = reason
        self._outcomes.clear()
