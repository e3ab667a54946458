"""The per-site pronunciation lexicon: place names, officials' titles, local terms.

One entry a line, ``word  syl1 syl2 …`` with TONE3 syllables (``重庆 chong2 qing4``; ü may be
written v or ü); ``#`` starts a comment.  Errors name the file and line, so that
`sambertd check` can tell an operator what to fix.
"""

from __future__ import annotations

import re
from pathlib import Path

_SYLLABLE = re.compile(r"^[a-z]+[1-5]$")
_HAN = re.compile(r"^[\u3400-\u9fff]+$")


class LexiconError(ValueError):
    """A lexicon file that cannot be used, with file and line."""


def parse_line(line: str) -> tuple[str, tuple[str, ...]] | None:
    """One entry, or None for a blank/comment line; raises ValueError with the reason."""
    line = line.split("#", 1)[0].strip()
    if not line:
        return None
    word, *syllables = line.split()
    if not _HAN.match(word):
        raise ValueError(f"word {word!r} must be Chinese characters only")
    syllables = [s.lower().replace("ü", "v") for s in syllables]  # pypinyin writes ü as v
    if len(syllables) != len(word):
        raise ValueError(f"{word!r} has {len(word)} characters but {len(syllables)} syllables")
    bad = [s for s in syllables if not _SYLLABLE.match(s)]
    if bad:
        raise ValueError(f"not TONE3 syllables (like zhong1): {' '.join(bad)}")
    return word, tuple(syllables)


def load(path: Path | str | None) -> dict[str, tuple[str, ...]]:
    """Read a lexicon file; ``None`` or an empty path means no site lexicon."""
    if not path:
        return {}
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LexiconError(f"{path}: cannot read lexicon: {exc}") from exc
    entries: dict[str, tuple[str, ...]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        try:
            entry = parse_line(line)
        except ValueError as exc:
            raise LexiconError(f"{path}:{number}: {exc}") from exc
        if entry:
            entries[entry[0]] = entry[1]
    return entries
