"""Chinese text front-end: raw client text → normalized sentences with phonemes.

The pipeline is a straight line, each step its own module and testable alone::

    clean (cleanup.py) → normalize (normalize.py) → split (split.py) → g2p (g2p.py)

It is engine-independent: engines receive :class:`Sentence` objects with TONE3 syllables and
map them to their own symbol sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sambertd.config import FrontendConfig
from sambertd.frontend import lexicon, split
from sambertd.frontend.cleanup import clean
from sambertd.frontend.errors import EMPTY_TEXT, TEXT_TOO_LONG, UNSPEAKABLE_TEXT, FrontendError
from sambertd.frontend.g2p import G2P
from sambertd.frontend.normalize import normalize
from sambertd.frontend.types import Sentence, Word

__all__ = ["Frontend", "FrontendError", "Sentence", "Word"]


@dataclass(frozen=True)
class Analysis:
    """What ``sambertd frontend`` prints: each stage's output, for debugging a misreading."""

    cleaned: str
    normalized: str
    sentences: list[Sentence]


class Frontend:
    """Turns client text into synthesis units; thread-safe once built."""

    def __init__(
        self,
        lexicon_path: str | Path | None = None,
        max_sentence_chars: int = FrontendConfig.max_sentence_chars,
        max_text_chars: int = FrontendConfig.max_text_chars,
        sandhi: bool = FrontendConfig.sandhi,
    ) -> None:
        self.lexicon = lexicon.load(lexicon_path)
        self.max_sentence_chars = max_sentence_chars
        self.max_text_chars = max_text_chars
        self.g2p = G2P(self.lexicon, sandhi=sandhi)

    def normalized(self, text: str) -> tuple[str, str]:
        """(cleaned, normalized) text — cheap regex work, no dictionary; what the cache key
        is made of, so that differently written texts read the same share one entry."""
        if not isinstance(text, str):
            raise FrontendError("invalid_text", "text must be a string")
        if len(text) > self.max_text_chars:
            raise FrontendError(
                TEXT_TOO_LONG,
                f"text has {len(text)} characters; the limit is {self.max_text_chars}",
            )
        cleaned = clean(text)
        if not cleaned.strip():
            raise FrontendError(
                EMPTY_TEXT, "text is empty after removing control and unsupported characters"
            )
        return cleaned, normalize(cleaned)

    def analyse(self, text: str, first_max_chars: int | None = None) -> Analysis:
        """Run every stage; raises :class:`FrontendError` when nothing speakable remains.
        ``first_max_chars`` makes the first unit short, for streams (see ``split.split``)."""
        cleaned, normalized = self.normalized(text)
        return Analysis(cleaned, normalized, self.units(normalized, first_max_chars))

    def units(self, normalized: str, first_max_chars: int | None = None) -> list[Sentence]:
        """Split and G2P already-normalized text (the daemon normalizes once, for its cache
        key, and hands that text on rather than normalizing it again)."""
        pieces = split.split(normalized, self.max_sentence_chars, first_max_chars)
        units = [u for u in (self.g2p.sentence(p) for p in pieces) if u.syllables]
        if not units:
            raise FrontendError(
                UNSPEAKABLE_TEXT, "text has nothing a Mandarin voice can read aloud"
            )
        return units

    def sentences(self, text: str, first_max_chars: int | None = None) -> list[Sentence]:
        """Synthesis units for ``text``, in reading order."""
        return self.analyse(text, first_max_chars).sentences
