"""What SSML attribute values mean: break lengths and prosody (W3C SSML 1.1 forms, and
the integer scales Alibaba NLS uses), as plain functions the parser calls."""

from __future__ import annotations

import re

MAX_BREAK_MS = 10_000  # one <break>; NLS caps a break at 10 s too
BREAK_STRENGTH_MS = {
    "none": 0,
    "x-weak": 100,
    "weak": 200,
    "medium": 400,
    "strong": 700,
    "x-strong": 1000,
}
_RATE_WORDS = {"x-slow": 0.5, "slow": 0.75, "medium": 1.0, "fast": 1.25, "x-fast": 1.5}
_PITCH_WORDS = {"x-low": 0.75, "low": 0.875, "medium": 1.0, "high": 1.125, "x-high": 1.25}
_VOLUME_WORDS = {
    "silent": 0.0,
    "x-soft": 0.3,
    "soft": 0.6,
    "medium": 1.0,
    "loud": 1.4,
    "x-loud": 1.8,
}
_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"


def break_ms(time: str | None, strength: str | None) -> int | None:
    """Milliseconds of a ``<break>``: ``time`` wins over ``strength``; none given is a
    medium break (W3C).  None when a value is not understood or too long."""
    if time is not None:
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s)\s*", time)
        if not m:
            return None
        ms = float(m.group(1)) * (1 if m.group(2) == "ms" else 1000)
        return round(ms) if ms <= MAX_BREAK_MS else None
    return BREAK_STRENGTH_MS.get(strength or "medium")


def _nls(value: str, low: float, high: float) -> float | None:
    """NLS's integer scale -500…500 (0 = as trained): -500 is ``low``×, 500 is ``high``×."""
    if not re.fullmatch(r"[+-]?[0-9]+", value):
        return None
    n = int(value)
    if not -500 <= n <= 500:
        raise ValueError(f"{value!r}: the integer scale runs from -500 to 500")
    return 1 + n / 500 * ((high - 1) if n > 0 else (1 - low))


def _named(value: str, words: dict[str, float]) -> tuple[str, float | None]:
    """The value stripped, and what it means when it is NLS's integer or a keyword."""
    v = value.strip()
    nls = _nls(v, 0.5, 2.0)
    if nls is not None:
        return v, nls
    if v in words or v == "default":
        return v, words.get(v, 1.0)
    return v, None


def _bounded(number: str, limit: float, what: str) -> float:
    """A number no further than ``limit`` from zero (the result is clamped anyway; this
    keeps 1e9dB from overflowing before it gets there)."""
    n = float(number)
    if abs(n) > limit:
        raise ValueError(f"{what}: at most ±{limit:g}")
    return n


def rate(value: str) -> float:
    """W3C rate (keyword, ``80%``, ``+10%``, a multiplier such as ``1.2``) or NLS's
    -500…500 (0.5× to 2×)."""
    v, known = _named(value, _RATE_WORDS)
    if known is not None:
        return known
    m = re.fullmatch(f"({_NUMBER})%", v)
    if m:
        n = _bounded(m.group(1), 1000, f"rate {value!r}")
        return 1 + n / 100 if v[0] in "+-" else n / 100
    if re.fullmatch(_NUMBER, v) and not v.startswith(("+", "-")):
        return _bounded(v, 10, f"rate {value!r}")
    raise ValueError(f"rate {value!r}: use x-slow…x-fast, a percentage or -500…500")


def pitch(value: str) -> float:
    """W3C pitch (keyword, ``+10%``, ``-2st``) or NLS's -500…500 (0.5× to 2×)."""
    v, known = _named(value, _PITCH_WORDS)
    if known is not None:
        return known
    m = re.fullmatch(f"({_NUMBER})(%|st)", v)
    if m:
        n = _bounded(m.group(1), 1000 if m.group(2) == "%" else 48, f"pitch {value!r}")
        return (1 + n / 100) if m.group(2) == "%" else 2 ** (n / 12)
    raise ValueError(f"pitch {value!r}: use x-low…x-high, +N% / -N%, +Nst or -500…500")


def volume(value: str) -> float:
    """W3C volume (keyword, ``+6dB``, ``0``–``100`` where 50 is as trained, as in NLS)."""
    v = value.strip()
    if v in _VOLUME_WORDS or v == "default":
        return _VOLUME_WORDS.get(v, 1.0)
    m = re.fullmatch(f"({_NUMBER})dB", v)
    if m:
        return float(10 ** (_bounded(m.group(1), 60, f"volume {value!r}") / 20))
    if re.fullmatch(_NUMBER, v) and not v.startswith(("+", "-")) and 0 <= float(v) <= 100:
        return float(v) / 50
    raise ValueError(f"volume {value!r}: use silent…x-loud, +NdB / -NdB or 0…100")
