"""When each character is spoken: engine durations → per-unit timing → the client's text.

An engine reports where each *syllable* lies in its audio (:class:`~sambertd.engines.Speech`).
:func:`unit_timing` turns that into times per character of the unit's normalized text; that
is what a cache entry keeps (it depends only on the units, like the audio).  At response
time :func:`timestamps` maps those characters back to the client's text through the units'
origins: a rewritten stretch (2019 → 二零一九) is one entry that spans its readings.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sambertd.engines.base import Speech
from sambertd.frontend.types import Sentence, Unit

_TAG = re.compile(r"""<(?:[^>"']|"[^"]*"|'[^']*')*>""")  # attribute values may hold ">"


@dataclass(frozen=True)
class UnitTiming:
    """One unit in the audio, in ms from its start.  ``begin``–``finish`` covers the unit and
    the silence around it (units tile the audio); ``chars`` are ``(index in unit text,
    start, end)`` of its spoken characters, in order."""

    begin: int
    finish: int
    chars: tuple[tuple[int, int, int], ...]
    measured: bool

    def pack(self) -> list[Any]:
        return [self.begin, self.finish, [list(c) for c in self.chars], self.measured]

    def shifted(self, ms: int) -> UnitTiming:
        """The same unit ``ms`` later in the audio (a job's units are timed on their own)."""
        chars = tuple((i, a + ms, b + ms) for i, a, b in self.chars)
        return UnitTiming(self.begin + ms, self.finish + ms, chars, self.measured)

    @classmethod
    def unpack(cls, data: Sequence[Any]) -> UnitTiming:
        begin, finish, chars, measured = data
        timed = tuple((int(i), int(a), int(b)) for i, a, b in chars)
        return cls(int(begin), int(finish), timed, bool(measured))


def syllable_chars(sentence: Sentence) -> list[int]:
    """The index in ``sentence.text`` of each syllable's character.  A word whose characters
    and syllables differ in number (儿化 merges two into one) shares them out in order."""
    text, cursor = sentence.text, 0
    out: list[int] = []
    for word in sentence.words:
        if word.is_punctuation:
            continue
        places = []
        for ch in word.text:
            found = text.find(ch, cursor)
            if found < 0:
                found = cursor
            places.append(min(found, max(len(text) - 1, 0)))
            cursor = found + 1
        n = len(word.pinyin)
        out.extend(places[k * len(places) // n] for k in range(n))
    return out


def unit_timing(
    sentence: Sentence, speech: Speech, start: int, rate: int, before: int, after: int
) -> UnitTiming:
    """Timing of one unit whose speech starts ``start`` samples into the audio, with
    ``before`` and ``after`` samples of silence around it.  The last character's end runs
    to the end of the engine's audio (its decay, and the model's closing silence)."""

    def ms(samples: int) -> int:
        return round(samples * 1000 / rate)

    chars: dict[int, list[int]] = {}
    for index, (a, b) in zip(syllable_chars(sentence), speech.syllables, strict=False):
        got = chars.setdefault(index, [a, b])
        got[1] = max(got[1], b)
    spoken = sorted(chars.items())
    end = len(speech.pcm)
    timed = [
        (i, ms(start + a), ms(start + (end if k == len(spoken) - 1 else max(a, b))))
        for k, (i, (a, b)) in enumerate(spoken)
    ]
    return UnitTiming(ms(start - before), ms(start + end + after), tuple(timed), speech.measured)


def source_text(text: str, begin: int, end: int, ssml: bool) -> str:
    """The client's own words for [begin, end): for SSML without the markup."""
    piece = text[begin:end]
    return html.unescape(_TAG.sub("", piece)) if ssml else piece


def timestamps(
    text: str, units: Sequence[Unit], timing: Sequence[UnitTiming], ssml: bool
) -> dict[str, Any]:
    """Sentences and characters with start/end ms and where they are in the client's text
    (``begin``/``end``, character offsets).  Characters read from one written stretch are
    one entry: ``text`` as written, ``reading`` as spoken."""
    sentences: list[dict[str, Any]] = []
    characters: list[dict[str, Any]] = []
    for unit, t in zip(units, timing, strict=True):
        if unit.origins:
            lo = min(o[0] for o in unit.origins)
            hi = max(o[1] for o in unit.origins)
            sentences.append(
                {
                    "text": source_text(text, lo, hi, ssml),
                    "begin": lo,
                    "end": hi,
                    "start_ms": t.begin,
                    "end_ms": t.finish,
                }
            )
        for index, start, end in t.chars:
            origin = unit.origins[index] if unit.origins else (index, index + 1)
            last = characters[-1] if characters else None
            if last is not None and (last["begin"], last["end"]) == origin:
                last["reading"] += unit.text[index]
                last["end_ms"] = max(last["end_ms"], end)
                continue
            characters.append(
                {
                    "text": source_text(text, *origin, ssml),
                    "reading": unit.text[index],
                    "begin": origin[0],
                    "end": origin[1],
                    "start_ms": start,
                    "end_ms": end,
                }
            )
    return {
        "sentences": sentences,
        "characters": characters,
        "measured": all(t.measured for t in timing),
    }
