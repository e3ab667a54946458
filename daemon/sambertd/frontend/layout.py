"""A parsed :class:`~sambertd.frontend.ssml.Document` → synthesis :class:`Unit` s.

Plain text is a document of one span, so both kinds of request take this one path::

    span → clean → normalize (or a say-as reader) → parts ┐
    breaks, <s>/<p>, prosody changes cut blocks           ├→ split each block → units
                                                          ┘

A block is a run of spans read with the same prosody and not cut by a break or a sentence
element; it is split into units exactly as plain text always was (``split.split``), then each
unit takes its stretch of every part it overlaps.  Breaks become the silence after a unit (or
before the first).  When timestamps are wanted, every character of a unit also learns where
it came from in the client's text: normalized text is aligned to its source span with
``difflib`` (kept characters match one to one; a rewritten stretch such as 2019 → 二零一九
maps as a whole).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, replace

from sambertd.frontend import sayas, split
from sambertd.frontend.cleanup import clean
from sambertd.frontend.g2p import syllable_ok
from sambertd.frontend.normalize import normalize
from sambertd.frontend.ssml import INVALID_SSML, Boundary, Break, Document, Span, SsmlError
from sambertd.frontend.types import Part, Scale, Unit

Origin = tuple[int, int]


@dataclass
class _Piece:
    """A part of a block before splitting, with one origin per character."""

    text: str
    pinyin: tuple[str, ...] | None
    word: bool
    origins: list[Origin]


def make_units(
    doc: Document,
    max_chars: int,
    first_max_chars: int | None = None,
    origins: bool = False,
) -> tuple[Unit, ...]:
    """The document's synthesis units in reading order (empty when nothing is left to say:
    the caller decides whether that is an error)."""
    units: list[Unit] = []
    block: list[_Piece] = []
    scale = Scale()
    lead = 0

    def flush() -> None:
        first = first_max_chars if not units else None
        made = _split_block(block, scale, max_chars, first, origins)
        if made and not units and lead:
            made[0] = replace(made[0], pause_before_ms=lead)
        units.extend(made)
        block.clear()

    for item in doc.items:
        if isinstance(item, Span):
            if block and item.scale != scale:
                flush()
            scale = item.scale
            block.extend(_pieces(item, origins, inner=bool(block)))
        elif isinstance(item, Break):
            flush()
            if units:
                last = units[-1]
                units[-1] = replace(last, pause_after_ms=(last.pause_after_ms or 0) + item.ms)
            else:
                lead += item.ms
        elif isinstance(item, Boundary):
            flush()
    flush()
    return tuple(units)


# -- one span → pieces -----------------------------------------------------------------------


_LEADING_MARKS = re.compile(r"^[\s。！？；，、：.!?;,:]+")
_MARKS = str.maketrans(".!?;,:", "。！？；，：")


def _pieces(span: Span, with_origins: bool, inner: bool) -> list[_Piece]:
    """Normalize a span (by its say-as reader, if any) into pieces; a fixed reading is
    checked here, where the client's text is still at hand.  ``inner``: the span continues
    a block, so punctuation it starts with ends the text before it (normalize alone would
    drop it as a text's leading marks)."""
    cleaned = clean(span.text)
    if span.pinyin is not None:
        return [_fixed(span, cleaned, with_origins)]
    kind = span.say_as
    out: list[_Piece] = []
    lead = _LEADING_MARKS.match(cleaned) if inner else None
    if lead:
        marks = "".join(lead.group().split()).translate(_MARKS)
        if marks:
            out.append(_Piece(marks, None, False, []))
        cleaned = cleaned[lead.end() :]
    if kind == "name":
        found = sayas.surname(cleaned)
        if found:
            head, reading = found
            out.append(_Piece(head, reading, True, []))
            cleaned = cleaned[len(head) :]
    reader = sayas.READERS[kind] if kind else normalize
    text = reader(cleaned) if cleaned else ""
    if text:
        out.append(_Piece(text, None, span.word or kind == "name", []))
    if with_origins:
        _attach_origins(out, span)
    return out


def _fixed(span: Span, cleaned: str, with_origins: bool) -> _Piece:
    text = "".join(cleaned.split())
    syllables = span.pinyin or ()
    bad = [s for s in syllables if not syllable_ok(s)]
    if bad:
        raise SsmlError(
            INVALID_SSML,
            f"phoneme: {bad[0]!r} is not a pinyin syllable with a tone digit 1-5 (e.g. hang2)",
        )
    if len(syllables) != len(text):
        raise SsmlError(
            INVALID_SSML,
            f"phoneme: {text!r} has {len(text)} characters but ph has {len(syllables)} "
            "syllables (give one per character)",
        )
    piece = _Piece(text, tuple(syllables), True, [])
    if with_origins:
        _attach_origins([piece], span)
    return piece


def _attach_origins(pieces: list[_Piece], span: Span) -> None:
    """Give each normalized character the source range it was made from."""
    normalized = "".join(p.text for p in pieces)
    mapped = align(normalized, span.text, span.origins)
    at = 0
    for piece in pieces:
        piece.origins = mapped[at : at + len(piece.text)]
        at += len(piece.text)


ALIGN_WINDOW = 256


def align(normalized: str, raw: str, raw_origins: tuple[Origin, ...]) -> list[Origin]:
    """Per character of ``normalized``, the client range it came from (see module doc).

    Aligned window by window (``ALIGN_WINDOW`` characters a side), each cut after the last
    stretch both sides share in its first three quarters: linear in the text's length,
    where one diff of a 5000-character text would take seconds."""
    out: list[Origin] = []
    i = j = 0
    while i < len(normalized):
        a, b = normalized[i : i + ALIGN_WINDOW], raw[j : j + ALIGN_WINDOW]
        ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
        if i + len(a) < len(normalized):
            anchors = [
                k for k, op in enumerate(ops) if op[0] == "equal" and op[2] <= len(a) * 3 // 4
            ]
            if anchors:
                ops = ops[: anchors[-1] + 1]
        for tag, i1, i2, j1, j2 in ops:
            out.extend(_origins(tag, i2 - i1, j + j1, j + j2, raw_origins))
        i, j = i + ops[-1][2], j + ops[-1][4]
    return out


def _origins(tag: str, count: int, j1: int, j2: int, raw: tuple[Origin, ...]) -> list[Origin]:
    """Origins of ``count`` normalized characters matched to raw ``[j1, j2)``: one to one
    when equal, else all of them to the whole stretch (or, when the raw side is empty,
    to the raw character where they stand)."""
    if not raw:
        return [(0, 0)] * count
    if tag == "equal":
        return list(raw[j1 : j1 + count])
    last = len(raw) - 1
    lo, hi = (j1, j2) if j2 > j1 else (min(j1, last), min(j1, last) + 1)
    return [(raw[min(lo, last)][0], raw[min(hi, len(raw)) - 1][1])] * count


# -- a block → units -------------------------------------------------------------------------


def _split_block(
    block: list[_Piece], scale: Scale, max_chars: int, first: int | None, origins: bool
) -> list[Unit]:
    text = "".join(p.text for p in block)
    if not text.strip():
        return []
    owner = [i for i, p in enumerate(block) for _ in p.text]
    offset = [j for p in block for j in range(len(p.text))]
    units: list[Unit] = []
    cursor = 0
    for piece_text in split.split(text, max_chars, first):
        positions = []
        for ch in piece_text:
            while text[cursor] != ch:  # split only drops whitespace between clauses
                cursor += 1
            positions.append(cursor)
            cursor += 1
        units.append(_unit(block, owner, offset, positions, scale, origins))
    return units


def _unit(
    block: list[_Piece],
    owner: list[int],
    offset: list[int],
    positions: list[int],
    scale: Scale,
    origins: bool,
) -> Unit:
    """The unit made of block characters at ``positions``, grouped back into parts."""
    parts: list[Part] = []
    current, chars, start = -1, "", 0
    for pos in [*positions, -1]:
        index = owner[pos] if pos >= 0 else -2
        if index != current and chars:
            piece = block[current]
            pinyin = piece.pinyin[start : start + len(chars)] if piece.pinyin else None
            parts.append(Part(chars, pinyin, piece.word))
            chars = ""
        if pos < 0:
            break
        if index != current:
            current, start = index, offset[pos]
        chars += block[index].text[offset[pos]]
    source = tuple(block[owner[p]].origins[offset[p]] for p in positions) if origins else ()
    return Unit(tuple(parts), scale, origins=source)
