"""Data the front-end hands to engines: engine-independent, immutable, easy to print."""

from __future__ import annotations

from dataclasses import dataclass, field


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


@dataclass(frozen=True)
class Scale:
    """SSML prosody as multipliers of the request's own speed, pitch and volume (nested
    ``<prosody>`` multiply; 2× inside 0.5× is 1×).  The product is clamped to what engines
    render (0.5–2, volume 0–2) only where it is applied, in ``synth.scaled``."""

    speed: float = 1.0
    pitch: float = 1.0
    volume: float = 1.0

    def times(self, other: Scale) -> Scale:
        return Scale(
            _product(self.speed, other.speed),
            _product(self.pitch, other.pitch),
            _product(self.volume, other.volume),
        )


def _product(a: float, b: float) -> float:
    """Rounded (it is part of the cache key) and bounded: 32 nested levels stay finite."""
    return round(min(1e6, a * b), 4)


@dataclass(frozen=True)
class Part:
    """A stretch of a unit's normalized text read one way: freely (G2P segments it), as one
    word (``<w>``, a name), or with a fixed reading (``<phoneme>``: one TONE3 syllable per
    character, no sandhi — the client said exactly what to say)."""

    text: str
    pinyin: tuple[str, ...] | None = None
    word: bool = False


@dataclass(frozen=True)
class Unit:
    """One synthesis unit as the cache key sees it: its parts, the SSML prosody it is read
    with, and the silence around it (``pause_after_ms`` None: the configured sentence pause,
    none after the last unit).

    ``origins[i]`` is where character ``i`` of :attr:`text` came from in the client's text,
    filled only when timestamps are asked for; it never shapes the audio, so it is not part
    of equality or of the key."""

    parts: tuple[Part, ...]
    scale: Scale = field(default_factory=Scale)
    pause_before_ms: int = 0
    pause_after_ms: int | None = None
    origins: tuple[tuple[int, int], ...] = field(default=(), compare=False, repr=False)

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.parts)

    @property
    def plain(self) -> bool:
        """Read like a plain-text sentence: one free part, no SSML prosody or breaks."""
        return (
            len(self.parts) == 1
            and self.parts[0].pinyin is None
            and not self.parts[0].word
            and self.scale == NEUTRAL
            and not self.pause_before_ms
            and self.pause_after_ms is None
        )

    def key(self) -> object:
        """JSON-able identity for the cache key (a plain unit is just its text)."""
        if self.plain:
            return self.text
        return [
            [[p.text, list(p.pinyin or ()), p.word] for p in self.parts],
            [self.scale.speed, self.scale.pitch, self.scale.volume],
            self.pause_before_ms,
            self.pause_after_ms,
        ]


NEUTRAL = Scale()  # the request's own prosody, unchanged
