"""Sentence splitting: synthesis units short enough for the acoustic model and for streaming.

FastSpeech2-style models degrade on very long inputs, and a stream's first chunk can only leave
once its unit is synthesized, so units are capped.  We cut at sentence ends first, then pack
clauses (cut at commas) up to the cap, and only cut a clause by length when it alone is too long.
"""

from __future__ import annotations

import re

SENTENCE_END = "。！？；"
CLAUSE_END = "，、：,"
_SENTENCES = re.compile(f"[^{SENTENCE_END}]*[{SENTENCE_END}]+|[^{SENTENCE_END}]+")
_CLAUSES = re.compile(f"[^{CLAUSE_END}]*[{CLAUSE_END}]+|[^{CLAUSE_END}]+")


def sentences(text: str) -> list[str]:
    """Split after 。！？； keeping the mark with its sentence; blank pieces dropped."""
    return [s for s in (m.group().strip() for m in _SENTENCES.finditer(text)) if s]


def clauses(sentence: str) -> list[str]:
    """Split after commas, enumeration commas and colons, keeping the mark."""
    return [c for c in (m.group().strip() for m in _CLAUSES.finditer(sentence)) if c]


def by_length(text: str, max_chars: int) -> list[str]:
    """Last resort for a clause with no punctuation: equal cuts of at most ``max_chars``."""
    pieces = -(-len(text) // max_chars)
    size = -(-len(text) // pieces)
    return [text[i : i + size] for i in range(0, len(text), size)]


def pack(clause_list: list[str], max_chars: int) -> list[str]:
    """Greedily join consecutive clauses while the result stays within ``max_chars``."""
    out: list[str] = []
    for clause in clause_list:
        for piece in by_length(clause, max_chars) if len(clause) > max_chars else [clause]:
            if out and len(out[-1]) + len(piece) <= max_chars:
                out[-1] += piece
            else:
                out.append(piece)
    return out


def split(text: str, max_chars: int, first_max_chars: int | None = None) -> list[str]:
    """Synthesis units of at most ``max_chars`` characters, in reading order.

    ``first_max_chars`` caps the first unit harder: a stream's first chunk can only leave once
    its unit is synthesized, so a short first unit (a clause) makes audio start sooner.
    """
    if max_chars < 2 or (first_max_chars is not None and first_max_chars < 2):
        raise ValueError("max_chars must be at least 2")
    units: list[str] = []
    for sentence in sentences(text):
        units.extend(
            [sentence] if len(sentence) <= max_chars else pack(clauses(sentence), max_chars)
        )
    if first_max_chars and units and len(units[0]) > first_max_chars:
        units[:1] = head_and_rest(units[0], first_max_chars)
    return units


def head_and_rest(unit: str, head_chars: int) -> list[str]:
    """Its leading clauses (as many as fit in ``head_chars``, at least one) and the rest.
    Cuts only at punctuation: a clause is never broken mid-word to make the head shorter."""
    parts = clauses(unit)
    head, i = parts[0], 1
    while i < len(parts) and len(head) + len(parts[i]) <= head_chars:
        head += parts[i]
        i += 1
    rest = "".join(parts[i:])
    return [head, rest] if rest else [head]
