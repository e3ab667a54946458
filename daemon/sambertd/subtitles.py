"""Subtitles (SRT, WebVTT) from timestamps: cues cut at clause ends, at most 20 characters.

Cues are built from the character entries of :func:`sambertd.timeline.timestamps`, so their
times are the engine's: a cue runs from its first character's start to its last's end, and
cues never overlap because the characters never do.  Cue text is the client's own writing
(2019, not 二零一九), with the punctuation that follows it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sambertd.timeline import source_text

MAX_CHARS = 20
CLAUSE_MARKS = frozenset("，、。！？；：,.!?;:…\n")
FORMATS = ("srt", "vtt")


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    text: str


def cues(text: str, stamps: dict[str, Any], ssml: bool, max_chars: int = MAX_CHARS) -> list[Cue]:
    """Cues over the spoken characters: a cue ends after a character followed (in the
    client's text) by a clause mark, or before one that would make it too long."""
    chars: Sequence[dict[str, Any]] = stamps["characters"]
    out: list[Cue] = []
    group: list[dict[str, Any]] = []

    def close(until: int) -> None:
        if not group:
            return
        shown = " ".join(source_text(text, group[0]["begin"], until, ssml).split())
        out.append(Cue(group[0]["start_ms"], group[-1]["end_ms"], shown.strip()))
        group.clear()

    for k, ch in enumerate(chars):
        following = chars[k + 1]["begin"] if k + 1 < len(chars) else len(text)
        between = source_text(text, ch["end"], max(ch["end"], following), ssml)
        until = _marks_end(text, ch["end"], ssml)
        if group and _shown_len(text, group[0]["begin"], until, ssml) > max_chars:
            close(ch["begin"])
        group.append(ch)
        if any(c in CLAUSE_MARKS for c in between) or k + 1 == len(chars):
            close(until)
    return [c for c in out if c.text]


def _shown_len(text: str, begin: int, end: int, ssml: bool) -> int:
    return len("".join(source_text(text, begin, end, ssml).split()))


_TRAILING = CLAUSE_MARKS | frozenset("”』」）)\"'")
_MARKUP = re.compile(r"""<(?:[^>"']|"[^"]*"|'[^']*')*>|&[#A-Za-z0-9]+;""")


def _marks_end(text: str, at: int, ssml: bool) -> int:
    """Where a cue ending at source offset ``at`` ends: after the punctuation right behind
    it (its comma or full stop, a closing quote).  In SSML, markup between is stepped over
    but never included: a cue never ends inside a tag."""
    end = i = at
    while i < len(text):
        markup = _MARKUP.match(text, i) if ssml else None
        if markup is not None:
            shown = html.unescape(markup.group()) if markup.group()[0] == "&" else ""
            if shown and shown not in _TRAILING:
                break
            i = markup.end()
            end = i if shown else end
            continue
        if text[i] not in _TRAILING:
            break
        i += 1
        end = i
    return end


def _clock(ms: int, sep: str) -> str:
    h, rest = divmod(max(0, ms), 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def render(items: Sequence[Cue], kind: str) -> str:
    """The cues as an SRT or WebVTT file."""
    if kind == "srt":
        blocks = [
            f"{i}\n{_clock(c.start_ms, ',')} --> {_clock(c.end_ms, ',')}\n{c.text}\n"
            for i, c in enumerate(items, 1)
        ]
        return "\n".join(blocks)
    if kind == "vtt":
        blocks = [
            f"{_clock(c.start_ms, '.')} --> {_clock(c.end_ms, '.')}\n{c.text}\n" for c in items
        ]
        return "WEBVTT\n\n" + "\n".join(blocks)
    raise ValueError(f"unknown subtitle format {kind!r}; use one of: {', '.join(FORMATS)}")


def subtitles(text: str, stamps: dict[str, Any], ssml: bool, kind: str) -> str:
    """The subtitle file of a request's timestamps: cues, rendered as ``kind``."""
    return render(cues(text, stamps, ssml), kind)
