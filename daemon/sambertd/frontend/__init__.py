"""Chinese text front-end: raw client text → normalized sentences with phonemes.

The pipeline is a straight line, each step its own module and testable alone::

    clean (cleanup.py) → normalize (normalize.py) → split (split.py) → g2p (g2p.py)

It is engine-independent: engines receive :class:`Sentence` objects with TONE3 syllables and
map them to their own symbol sets.  The first three steps are cheap regex work (``pieces``);
the daemon runs them before its cache lookup, because their output is part of the cache key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from sambertd import __version__, library_versions
from sambertd.config import FrontendConfig
from sambertd.frontend import lexicon, split
from sambertd.frontend.cleanup import clean
from sambertd.frontend.errors import EMPTY_TEXT, TEXT_TOO_LONG, UNSPEAKABLE_TEXT, FrontendError
from sambertd.frontend.g2p import G2P
from sambertd.frontend.normalize import normalize
from sambertd.frontend.types import Sentence, Word

__all__ = ["Frontend", "FrontendError", "Sentence", "Word"]

# Settings of [frontend] that cannot change what a given text sounds like.  Every other
# setting, including any added later, is part of the fingerprint (and so of the cache key):
# forgetting one costs cache hits, never correctness.  ``lexicon`` is a path: its *content*
# is fingerprinted instead.
NOT_AUDIO = frozenset({"max_text_chars", "lexicon"})
# Libraries whose releases can change a reading (dictionaries, number rules).
READING_LIBRARIES = ("pypinyin", "jieba", "cn2an")


@dataclass(frozen=True)
class Analysis:
    """What ``sambertd frontend`` prints: each stage's output, for debugging a misreading."""

    cleaned: str
    normalized: str
    sentences: list[Sentence]


class Frontend:
    """Turns client text into synthesis units; thread-safe once built."""

    def __init__(self, settings: FrontendConfig | None = None) -> None:
        self.settings = settings or FrontendConfig()
        self.lexicon = lexicon.load(self.settings.lexicon or None)
        self.g2p = G2P(self.lexicon, sandhi=self.settings.sandhi)
        self.fingerprint = self._fingerprint()

    def _fingerprint(self) -> str:
        """Digest of everything here that shapes the audio: the [frontend] settings that can,
        the lexicon's entries (not its path), our rules' version and the reading libraries'
        versions.  A site that fixes a misreading in its lexicon and reloads gets new keys."""
        settings = {
            k: v for k, v in dataclasses.asdict(self.settings).items() if k not in NOT_AUDIO
        }
        libraries = library_versions(*READING_LIBRARIES)
        blob = json.dumps(
            [__version__, settings, sorted(self.lexicon.items()), libraries],
            ensure_ascii=False,
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def normalized(self, text: str) -> tuple[str, str]:
        """(cleaned, normalized) text — cheap regex work, no dictionary."""
        if not isinstance(text, str):
            raise FrontendError("invalid_text", "text must be a string")
        limit = self.settings.max_text_chars
        if len(text) > limit:
            raise FrontendError(
                TEXT_TOO_LONG,
                f"text has {len(text)} characters; the limit is {limit}",
            )
        cleaned = clean(text)
        if not cleaned.strip():
            raise FrontendError(
                EMPTY_TEXT, "text is empty after removing control and unsupported characters"
            )
        return cleaned, normalize(cleaned)

    def pieces(self, text: str, first_max_chars: int | None = None) -> tuple[str, ...]:
        """Clean, normalize and split: the unit texts, in reading order.  Cheap (no
        dictionary), and what the cache key is made of: differently written texts that read
        the same share an entry, and a stream's shorter first unit gets a key of its own.
        ``first_max_chars`` makes the first unit short, for streams (see ``split.split``)."""
        return self._split(self.normalized(text)[1], first_max_chars)

    def _split(self, normalized: str, first_max_chars: int | None) -> tuple[str, ...]:
        return tuple(split.split(normalized, self.settings.max_sentence_chars, first_max_chars))

    def read(self, pieces: tuple[str, ...] | list[str]) -> list[Sentence]:
        """G2P of unit texts from :meth:`pieces`; raises when nothing speakable remains."""
        units = [u for u in (self.g2p.sentence(p) for p in pieces) if u.syllables]
        if not units:
            raise FrontendError(
                UNSPEAKABLE_TEXT, "text has nothing a Mandarin voice can read aloud"
            )
        return units

    def analyse(self, text: str, first_max_chars: int | None = None) -> Analysis:
        """Run every stage; raises :class:`FrontendError` when nothing speakable remains."""
        cleaned, normalized = self.normalized(text)
        return Analysis(cleaned, normalized, self.read(self._split(normalized, first_max_chars)))

    def sentences(self, text: str, first_max_chars: int | None = None) -> list[Sentence]:
        """Synthesis units for ``text``, in reading order."""
        return self.read(self.pieces(text, first_max_chars))
