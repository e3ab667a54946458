"""Our front-end's output as KAN-TTS linguistic symbols, without Alibaba's ``ttsfrd``.

``Voice.am_forward`` takes one line of tokens ``{phone$tone$syllable_flag$word_segment$emotion$
speaker}`` with prosody breaks ``{#N$tone_none$s_none$word_none$emotion_none$speaker}``.  We make
that line from a :class:`~sambertd.frontend.types.Sentence` (jieba words, TONE3 pinyin after
sandhi) following the conventions of KAN-TTS's own script converter
(``kantts/preprocess/script_convertor``) and of published ttsfrd output:

* phones from kantts' pinyin table (``preprocess/languages/PinYin/py2phoneMap.txt``, read from
  the installed package): ``ni → n_c i_c``, zero initials as pseudo-initials (``a → ga a_c``);
* per phone: the syllable's tone, ``s_begin``/``s_middle``/``s_end`` (``s_both`` for a
  one-phone syllable), and ``word_begin`` on the word's first phone, ``word_end`` on its last,
  ``word_middle`` between (``word_both`` for a one-phone word);
* ``#1`` after every word, ``#3`` at in-sentence punctuation, ``#4`` at the end.

kantts silently drops a phone it does not know from one stream only, and the model then fails
with a shape error far from the cause; so every value is checked against the voice's own
symbol sets here, and anything unknown is an error naming it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sambertd.engines.base import UnsupportedInput
from sambertd.frontend.types import Sentence

PINYIN_TABLE = Path("preprocess") / "languages" / "PinYin" / "py2phoneMap.txt"
SENTENCE_END = frozenset("。！？；")
# ü is written v in KAN-TTS's table after every initial (jv, qv, xv, yv); pypinyin writes u
# after j, q, x and y.
_U_AS_V = re.compile(r"^([jqxy])u")
_INITIALS = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q",
             "x", "r", "z", "c", "s", "y", "w")  # fmt: skip


class SymbolError(UnsupportedInput):
    """Text this voice's symbol set cannot express (a client-facing 422, not a fault)."""


@dataclass(frozen=True)
class SymbolSets:
    """What one voice's model knows, from its ``linguistic_unit`` (KanTtsLinguisticUnit)."""

    phones: frozenset[str]
    tones: frozenset[str]
    syllable_flags: frozenset[str]
    word_segments: frozenset[str]
    emotions: frozenset[str] | None  # None: the model has no emotion input
    speakers: tuple[str, ...]

    @classmethod
    def from_ling_unit(cls, unit: object) -> SymbolSets:
        """Read the sets off kantts' ``KanTtsLinguisticUnit`` (its lookup tables)."""

        def keys(name: str) -> frozenset[str]:
            table: Mapping[str, int] = getattr(unit, name, {}) or {}
            return frozenset(k for k in table if k not in ("_", "~", "@[MASK]"))

        emotions = keys("_emo_category_to_id")
        speakers = [s for s in getattr(unit, "speaker", []) if s not in ("_", "~", "@[MASK]")]
        return cls(
            phones=frozenset(p[1:] for p in keys("_sy_to_id") if p.startswith("@")),
            tones=keys("_tone_to_id"),
            syllable_flags=keys("_syllable_flag_to_id"),
            word_segments=keys("_word_segment_to_id"),
            emotions=emotions or None,
            speakers=tuple(speakers),
        )


class PhoneMap:
    """Toneless pinyin syllable → KAN-TTS phones, from kantts' own table.  Rare syllables the
    table lacks (biang, fiao, rua …) are composed from the table's own initial and final
    phones, so every syllable our G2P can emit has a reading."""

    def __init__(self, table: Mapping[str, tuple[str, ...]]) -> None:
        self.table = dict(table)
        self._initial: dict[str, str] = {}
        self._final: dict[str, str] = {}
        for syllable, phones in self.table.items():
            initial = next((i for i in _INITIALS if syllable.startswith(i)), "")
            if initial and len(phones) == 2:
                self._initial.setdefault(initial, phones[0])
                self._final.setdefault(syllable[len(initial) :], phones[1])

    @classmethod
    def read(cls, path: Path) -> PhoneMap:
        table = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            syllable, _, phones = line.partition("\t")
            if syllable.strip() and phones.strip():
                table[syllable.strip()] = tuple(phones.split())
        if not table:
            raise ValueError(f"{path}: no pinyin → phone entries")
        return cls(table)

    def phones(self, base: str) -> tuple[str, ...] | None:
        """Phones of a toneless syllable (ü as v), or None when there is no reading."""
        for candidate in (base, _U_AS_V.sub(r"\1v", base)):
            if candidate in self.table:
                return self.table[candidate]
        initial = next((i for i in _INITIALS if base.startswith(i)), "")
        final = base[len(initial) :]
        if initial in self._initial and final in self._final:
            return (self._initial[initial], self._final[final])
        return None


def _position(index: int, count: int) -> str:
    """Where item ``index`` of ``count`` stands: KAN-TTS's both/begin/middle/end."""
    if count == 1:
        return "both"
    return "begin" if index == 0 else "end" if index == count - 1 else "middle"


class Symbolizer:
    """Sentences → one voice's symbol line (see the module docstring)."""

    def __init__(self, phone_map: PhoneMap, sets: SymbolSets, speaker: str) -> None:
        if speaker not in sets.speakers:
            raise ValueError(f"speaker {speaker!r} is not in the voice's {sets.speakers}")
        self.phone_map, self.sets, self.speaker = phone_map, sets, speaker

    def symbols(self, sentence: Sentence, emotion: str = "neutral") -> str:
        return self.timed(sentence, emotion)[0]

    def timed(self, sentence: Sentence, emotion: str = "neutral") -> tuple[str, list[range]]:
        """The symbol line, and per syllable of ``sentence.syllables`` the symbols it became:
        the acoustic model gives one duration per symbol, so this maps them back."""
        emotion_field = self._emotion(emotion)
        tokens: list[str] = []
        spans: list[range] = []
        for word in sentence.words:
            if word.is_punctuation:
                self._break(tokens, 4 if word.text in SENTENCE_END else 3)
                continue
            phones: list[tuple[str, str, str]] = []
            for syllable in word.pinyin:
                mine = list(self._syllable(syllable))
                start = len(tokens) + len(phones)
                spans.append(range(start, start + len(mine)))
                phones.extend(mine)
            for i, (phone, tone, flag) in enumerate(phones):
                where = "word_" + _position(i, len(phones))
                tokens.append(self._token(phone, tone, flag, where, emotion_field))
            self._break(tokens, 1)
        if not tokens:
            raise SymbolError(f"nothing to say in {sentence.text!r}")
        self._break(tokens, 4)  # the end of the unit is the end of a sentence
        return " ".join(tokens), spans

    def _syllable(self, syllable: str) -> Iterable[tuple[str, str, str]]:
        base, tone = syllable[:-1], syllable[-1]
        phones = self.phone_map.phones(base)
        if phones is None or not tone.isdigit():
            raise SymbolError(f"no KAN-TTS phones for the syllable {syllable!r}")
        for i, phone in enumerate(phones):
            yield phone, f"tone{tone}", "s_" + _position(i, len(phones))

    def _break(self, tokens: list[str], level: int) -> None:
        """A break after the last word; a stronger one replaces a weaker one there."""
        mark = f"#{level}"
        if tokens and tokens[-1].startswith("{#"):
            if int(tokens[-1][2]) >= level:
                return
            tokens.pop()
        if tokens:
            tokens.append(self._token(mark, "tone_none", "s_none", "word_none", "emotion_none"))

    def _emotion(self, emotion: str) -> str:
        field = f"emotion_{emotion}"
        emotions = self.sets.emotions
        if emotions is not None and field not in emotions:
            raise SymbolError(f"this voice's model has no emotion {emotion!r}")
        return field

    def _token(self, phone: str, tone: str, flag: str, where: str, emotion: str) -> str:
        s = self.sets
        for value, known, what in (
            (phone, s.phones, "phone"),
            (tone, s.tones, "tone"),
            (flag, s.syllable_flags, "syllable flag"),
            (where, s.word_segments, "word segment"),
        ):
            if value not in known:
                raise SymbolError(f"the voice's model has no {what} {value!r}")
        return f"{{{phone}${tone}${flag}${where}${emotion}${self.speaker}}}"
