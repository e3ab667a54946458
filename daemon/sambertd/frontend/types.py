"""Data the front-end hands to engines: engine-independent, immutable, easy to print."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Word:
    """One lexical word (a jieba segment, a lexicon entry) or one punctuation mark.

    ``pinyin`` holds one TONE3 syllable per Chinese character ("yin2", "hang2"; tone 5 is the
    neutral tone) after tone sandhi.  Punctuation marks keep their text and have no syllables,
    so an engine can turn them into pauses.
    """

    text: str
    pinyin: tuple[str, ...]

    @property
    def is_punctuation(self) -> bool:
        return not self.pinyin


@dataclass(frozen=True)
class Sentence:
    """One synthesis unit: normalized text plus its words, ready for an engine."""

    text: str
    words: tuple[Word, ...]

    @property
    def syllables(self) -> tuple[str, ...]:
        return tuple(s for w in self.words for s in w.pinyin)
