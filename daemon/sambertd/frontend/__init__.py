"""Chinese text front-end: raw client text → normalized sentences with phonemes.

The pipeline is a straight line, each step its own module and testable alone::

    [ssml.py] → clean (cleanup.py) → normalize (normalize.py) → split (split.py) → g2p (g2p.py)

SSML is parsed first into spans and breaks; plain text is one span.  ``layout.py`` runs the
middle steps per span and cuts units at breaks and sentence elements.

It is engine-independent: engines receive :class:`Sentence` objects with TONE3 syllables and
map them to their own symbol sets.  The first three steps are cheap regex work (``pieces``);
the daemon runs them before its cache lookup, because their output is part of the cache key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from sambertd import __version__, library_versions
from sambertd.config import FrontendConfig
from sambertd.frontend import lexicon
from sambertd.frontend.cleanup import clean
from sambertd.frontend.errors import EMPTY_TEXT, TEXT_TOO_LONG, UNSPEAKABLE_TEXT, FrontendError
from sambertd.frontend.g2p import G2P
from sambertd.frontend.layout import make_units
from sambertd.frontend.ssml import Document, Span, SsmlError, looks_like_ssml
from sambertd.frontend.ssml import parse as parse_ssml
from sambertd.frontend.types import Part, Scale, Sentence, Unit, Word

__all__ = [
    "Document",
    "Frontend",
    "FrontendError",
    "Part",
    "Scale",
    "Sentence",
    "SsmlError",
    "Unit",
    "Word",
]

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

    def _check(self, text: object) -> None:
        if not isinstance(text, str):
            raise FrontendError("invalid_text", "text must be a string")
        limit = self.settings.max_text_chars
        if len(text) > limit:
            raise FrontendError(
                TEXT_TOO_LONG,
                f"text has {len(text)} characters; the limit is {limit}",
            )

    def document(self, text: str, ssml: bool | None = None) -> Document:
        """Plain text or SSML, parsed (``ssml`` None: SSML when the text starts with
        ``<speak``).  Raises :class:`~sambertd.frontend.ssml.SsmlError` for bad SSML."""
        self._check(text)
        if ssml is None:
            ssml = looks_like_ssml(text)
        return parse_ssml(text) if ssml else Document.plain(text)

    def units(
        self, doc: Document, first_max_chars: int | None = None, origins: bool = False
    ) -> tuple[Unit, ...]:
        """Clean, normalize and split: the synthesis units, in reading order.  Cheap (no
        dictionary), and what the cache key is made of: differently written texts that read
        the same share an entry, and a stream's shorter first unit gets a key of its own.
        ``first_max_chars`` makes the first unit short, for streams (see ``split.split``);
        ``origins`` maps each character back to the client's text, for timestamps (a
        windowed diff, linear in the length)."""
        units = make_units(doc, self.settings.max_sentence_chars, first_max_chars, origins)
        if not units:
            raise FrontendError(
                EMPTY_TEXT, "text is empty after removing control and unsupported characters"
            )
        return units

    def pieces(self, text: str, first_max_chars: int | None = None) -> tuple[str, ...]:
        """The unit texts of plain ``text`` (see :meth:`units`)."""
        return tuple(u.text for u in self.units(self.document(text, False), first_max_chars))

    def read(self, units: Sequence[Unit | str], whole: bool = True) -> list[Sentence]:
        """G2P of units from :meth:`units`; raises when nothing speakable remains (``whole``:
        these are all the text's units; a job reads its units a few at a time).  Fixed
        readings (``<phoneme>``) are taken as given, ``<w>`` parts become one word."""
        read = [self._read(u if isinstance(u, Unit) else Unit((Part(u),))) for u in units]
        if whole and not any(s.syllables for s in read):
            raise FrontendError(
                UNSPEAKABLE_TEXT, "text has nothing a Mandarin voice can read aloud"
            )
        return read

    def _read(self, unit: Unit) -> Sentence:
        if len(unit.parts) == 1 and unit.parts[0].pinyin is None and not unit.parts[0].word:
            return self.g2p.sentence(unit.text)
        words: list[Word] = []
        for part in unit.parts:
            if part.pinyin is not None:
                words.append(Word(part.text, part.pinyin))
                continue
            read = self.g2p.words(part.text)
            spoken = [w for w in read if not w.is_punctuation]
            if part.word and len(spoken) > 1:
                words.append(
                    Word(
                        "".join(w.text for w in spoken), tuple(s for w in spoken for s in w.pinyin)
                    )
                )
                words.extend(w for w in read if w.is_punctuation)
            else:
                words.extend(read)
        return Sentence(unit.text, tuple(words))

    def analyse(
        self, text: str, first_max_chars: int | None = None, ssml: bool | None = None
    ) -> Analysis:
        """Run every stage; raises :class:`FrontendError` when nothing speakable remains."""
        doc = self.document(text, ssml)
        spans = "".join(i.text for i in doc.items if isinstance(i, Span))
        cleaned = spans if doc.ssml else clean(spans)
        units = self.units(doc, first_max_chars)
        return Analysis(cleaned, "".join(u.text for u in units), self.read(units))

    def sentences(self, text: str, first_max_chars: int | None = None) -> list[Sentence]:
        """Synthesis units for plain ``text``, in reading order."""
        return self.read(self.pieces(text, first_max_chars))
