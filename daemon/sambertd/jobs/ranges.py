"""HTTP range requests (RFC 9110, section 14) for a job's audio: one range per request.

A single ``bytes=`` range is honoured (``a-b``, ``a-``, ``-n``); a Range header that is not
valid, not in bytes or asks for several ranges is ignored and the whole object is sent, as
the RFC allows.  A valid range that starts past the end gets 416 with ``Content-Range:
bytes */size``.
"""

from __future__ import annotations

import re

from sambertd.validation import ApiError

_RANGE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` byte positions, inclusive, or None for the whole object."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - n), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        raise _unsatisfiable(size)
    return start, min(int(last), size - 1) if last else size - 1


def _unsatisfiable(size: int) -> ApiError:
    return ApiError(
        416,
        "range_not_satisfiable",
        f"the object has {size} bytes",
        {"Content-Range": f"bytes */{size}"},
    )
