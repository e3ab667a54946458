"""Grapheme-to-phoneme for normalized Mandarin text: words in, TONE3 syllables out.

Pipeline for one sentence (each step is a small function so it can be tested alone):

1. segment with a private jieba ``Tokenizer`` (site-lexicon words are added to it so they stay
   whole);
2. look each segment up: site lexicon first, then the built-in phrase fixes below, then
   pypinyin (``Style.TONE3``, neutral tone as 5, phrase dictionary on, so polyphones follow the
   word: 银行/行走, 重庆/重要 ...).  pypinyin's phrase dictionary bakes some tone sandhi into its
   entries (一点儿 -> yi4, 是不是 -> bu2); those are undone so every word carries its
   *underlying* tones;
3. context rules pypinyin cannot know about: the particles 得/地, adjectival 长 (很长),
   还 "give back" (还钱), erhua 儿 (哪儿 er5 but 女儿 er2);
4. tone sandhi (一, 不, third-tone runs), unless the instance was built with ``sandhi=False``
   for engines whose own front-end expects underlying tones.

Why a built-in table and not ``pypinyin.load_phrases_dict``: ``load_phrases_dict`` writes
into pypinyin's process-wide ``PHRASES_DICT``, so two ``G2P`` instances with different site
lexicons would leak into each other (and into any other pypinyin user in the process).  The
fixes and the site lexicon are therefore applied as overrides on pypinyin's *output*, per
instance, and pypinyin's global state is never touched.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

with warnings.catch_warnings():  # jieba uses pkg_resources when setuptools provides it
    warnings.simplefilter("ignore", UserWarning)
    import jieba
from pypinyin import Style, lazy_pinyin
from pypinyin.constants import PHRASES_DICT, PINYIN_DICT
from pypinyin.contrib.tone_convert import to_tone3

from .types import Sentence, Word

__all__ = [
    "G2P",
    "PUNCTUATION",
    "default_cache_dir",
    "sandhi_bu",
    "sandhi_third",
    "sandhi_yi",
    "syllable_ok",
]

#: Punctuation the normalizer leaves in the text; each becomes a ``Word(mark, ())`` pause.
PUNCTUATION = frozenset("，。！？、；：")
#: Half-width leftovers are folded onto their full-width forms rather than dropped, because a
#: pause is worth keeping.
_ASCII_PUNCTUATION = {",": "，", ".": "。", "!": "！", "?": "？", ";": "；", ":": "："}

# Built-in corrections for words pypinyin 0.55 gets wrong (found by probing; see tests).
# Readings are *underlying* tones: sandhi still runs over them.
_PHRASE_FIXES: Mapping[str, tuple[str, ...]] = {
    "一行": ("yi1", "hang2"),  # 一行人 / 一行代码: a group, a line; pypinyin says xing2
    "两行": ("liang3", "hang2"),
    "还款": ("huan2", "kuan3"),  # repay: pypinyin says hai2 ("still")
    "数一数": ("shu3", "yi1", "shu3"),  # the verb "count": pypinyin says shu4 (the noun)
    "数钱": ("shu3", "qian2"),
}

# Readings pypinyin gives some interjections (嗯 n2, 呣 m2, 噷 hm5) are syllabic nasals, which
# no (initial)(final) inventory has.  Map them onto the nearest regular syllable so the
# character is still spoken.
_NASAL_FALLBACK = {"n": "en", "ng": "en", "m": "mu", "hm": "hen", "hng": "heng", "ê": "ei"}

_DEGREE_ADVERBS = frozenset("很太多好较更最真挺蛮够")
_RETURNED_THINGS = frozenset("钱款书债贷账")  # 还钱, 还书: 还 is "give back" (huan2)
_NUMERALS = frozenset("零〇一二三四五六七八九十两百千万亿")
_DIGITS_AFTER_YI = frozenset("零〇一二三四五六七八九十")  # 一二三, 一一二, 一十: read as digits
_MAGNITUDES = frozenset("百千万亿")  # 一百 / 一千 / 一万: 一 is sandhied (yi4 bai3, yi2 wan4)
_ORDINAL_MARKERS = frozenset("第")
_CALENDAR_AFTER_YI = frozenset("月号")  # 一月, 一号 (线): a month, a number

# 儿 at the end of these words is the morpheme "child", not the erhua suffix.
_NON_ERHUA_SUFFIXES = (
    "女儿", "婴儿", "孤儿", "幼儿", "健儿", "宠儿", "胎儿", "患儿", "少儿", "男儿", "育儿",
    "妻儿", "弃儿", "乳儿", "产儿", "犬儿", "混血儿", "新生儿", "低能儿",
)  # fmt: skip
_NON_ERHUA_WORDS = frozenset({"孩儿", "儿"})

_SYLLABLE_RE = re.compile(r"([a-z]+)([1-5])")
# (initial)(final): an optional initial, then a final that starts with a vowel.
_SHAPE_RE = re.compile(r"(?:zh|ch|sh|[bpmfdtnlgkhjqxrzcsyw])?[aeiouv][a-z]*")

_LOG = logging.getLogger(__name__)


# --------------------------------------------------------------------------- syllables


@lru_cache(maxsize=1)
def _valid_bases() -> frozenset[str]:
    """Toneless syllables pypinyin can produce, restricted to the (initial)(final) shape.

    Derived from pypinyin's own character table rather than typed in, so it always agrees
    with what the lookup can return; syllabic nasals (m, n, ng, hm) and ê fail the shape test.
    """
    bases: set[str] = set()
    for readings in PINYIN_DICT.values():
        for reading in str(readings).split(","):
            base = str(to_tone3(reading, neutral_tone_with_five=True)).rstrip("12345")
            if _SHAPE_RE.fullmatch(base):
                bases.add(base)
    return frozenset(bases)


def syllable_ok(s: str) -> bool:
    """True for a valid TONE3 Mandarin syllable: (initial)(final)(tone 1-5), ü spelled v."""
    m = _SYLLABLE_RE.fullmatch(s)
    return m is not None and m.group(1) in _valid_bases()


def _tone(s: str) -> int:
    """Tone digit of a TONE3 syllable (5 when absent)."""
    return int(s[-1]) if s and s[-1] in "12345" else 5


def _with_tone(s: str, tone: int) -> str:
    """Same syllable, another tone."""
    return s.rstrip("12345") + str(tone)


def _to_tone3(s: str) -> str:
    """Spelling clean-up only: lower case, ü as v, tone marks to a digit, neutral as 5."""
    s = s.strip().lower().replace("ü", "v").replace("u:", "v")
    if s and not s[-1].isdigit():
        s = str(to_tone3(s, neutral_tone_with_five=True)).replace("ü", "v")
        if s and not s[-1].isdigit():
            s += "5"
    return s


def _repair(s: str) -> str | None:
    """Make a pypinyin/lexicon syllable valid TONE3, or None when it cannot be."""
    s = _to_tone3(s)
    if not s:
        return None
    base, tone = s[:-1], s[-1]
    fixed = _NASAL_FALLBACK.get(base, base) + tone
    return fixed if syllable_ok(fixed) else None


def _split_erhua(text: str, syllables: Sequence[str]) -> list[str]:
    """Split r-coloured syllables ("huar1") so each character gets one: 花儿 -> hua1 er5.

    Only runs when there are fewer syllables than characters, which is exactly the case an
    r-coloured syllable creates; anything else is returned unchanged for the caller to judge.
    """
    missing = len(text) - len(syllables)
    if missing <= 0:
        return list(syllables)
    out: list[str] = []
    i = 0
    for s in syllables:
        base = s.rstrip("12345")
        if missing and base.endswith("r") and base != "er" and text[i + 1 : i + 2] == "儿":
            out += [base[:-1] + s[len(base) :], "er5"]
            i += 2
            missing -= 1
        else:
            out.append(s)
            i += 1
    return out


def normalize_lexicon(lexicon: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """Validate a site lexicon: one valid TONE3 syllable per character, or ValueError.

    Accepts tone marks ("háng") and r-coloured syllables ("huar1"), so entries can be pasted
    from a dictionary.  Failing loudly at start-up beats speaking a wrong syllable later.
    """
    out: dict[str, tuple[str, ...]] = {}
    for word, syllables in lexicon.items():
        word = word.strip()
        if not word:
            raise ValueError("lexicon: empty word")
        if isinstance(syllables, str):
            syllables = syllables.split()
        split = _split_erhua(word, [_to_tone3(s) for s in syllables])
        if len(split) != len(word):
            raise ValueError(f"lexicon: {word!r} needs {len(word)} syllables, got {split!r}")
        repaired = [_repair(s) for s in split]
        if any(r is None for r in repaired):
            raise ValueError(f"lexicon: invalid syllable in {word!r}: {list(syllables)!r}")
        out[word] = tuple(r for r in repaired if r is not None)
    return out


# --------------------------------------------------------------------------- tone sandhi


@dataclass(frozen=True)
class _Flat:
    """A sentence as parallel per-character lists, so sandhi rules can look at neighbours.

    Punctuation (and any word whose text does not line up with its syllables) becomes a
    barrier with an empty syllable, so no rule looks across a pause.
    """

    chars: list[str]
    syls: list[str]
    word_id: list[int]

    def at(self, i: int) -> str:
        """Character at i if it is inside the sentence and not a barrier, else ""."""
        return self.chars[i] if 0 <= i < len(self.chars) and self.syls[i] else ""

    def same_word(self, i: int, j: int) -> bool:
        return 0 <= j < len(self.chars) and self.word_id[i] == self.word_id[j]

    def word_final(self, i: int) -> bool:
        """Last character of a word of two or more characters (统一, 唯一)."""
        return self.same_word(i, i - 1) and not self.same_word(i, i + 1)


def _flatten(words: Sequence[Word]) -> _Flat:
    chars: list[str] = []
    syls: list[str] = []
    word_id: list[int] = []
    for idx, w in enumerate(words):
        if w.is_punctuation:
            chars.append("")
            syls.append("")
            word_id.append(idx)
            continue
        text = w.text if len(w.text) == len(w.pinyin) else "\0" * len(w.pinyin)
        chars.extend(text)
        syls.extend(w.pinyin)
        word_id.extend([idx] * len(text))
    return _Flat(chars, syls, word_id)


def _rebuild(words: Sequence[Word], syls: Sequence[str]) -> list[Word]:
    """Put a flattened syllable list back into the words it came from."""
    out: list[Word] = []
    k = 0
    for w in words:
        if w.is_punctuation:
            out.append(w)
            k += 1
            continue
        n = len(w.pinyin)
        out.append(Word(w.text, tuple(syls[k : k + n])))
        k += n
    return out


def _yi_reading(f: _Flat, i: int) -> str:
    """Surface reading of 一 at position i; see ``sandhi_yi``."""
    prev, nxt = f.at(i - 1), f.at(i + 1)
    if prev and prev == nxt and prev not in _NUMERALS and f.at(i - 2) != "一":
        return "yi5"  # 看一看: reduplicated verb (but not 一个一个)
    if not nxt:
        return "yi1"  # 一 at the end of a phrase
    if nxt not in _MAGNITUDES and (
        (prev in _NUMERALS and f.same_word(i, i - 1))  # 十一, 一一 (not 千万/一定)
        or prev in _ORDINAL_MARKERS  # 第一
        or nxt in _DIGITS_AFTER_YI  # 一二三, 一一二
        or (nxt in _CALENDAR_AFTER_YI and f.same_word(i, i + 1))  # 一月, 一号
        or (nxt == "日" and prev == "月")  # 五月一日: a date, not "one day"
        or f.word_final(i)  # 统一, 唯一, 万一
    ):
        return "yi1"
    return "yi2" if _tone(f.syls[i + 1]) in (4, 5) else "yi4"


def sandhi_yi(words: Sequence[Word]) -> list[Word]:
    """一: yi2 before tone 4 (and before neutral, nearly always an underlying 4: 一个),
    yi4 before tones 1/2/3, yi5 between a reduplicated verb (看一看), and yi1 where it is read
    as a number: after a numeral in the same word or after 第, before a digit, in 一月/一号, at
    the end of a word (统一, 唯一, 万一) or of a phrase.  Before 百/千/万/亿 it is sandhied
    (一百 yi4 bai3).
    """
    f = _flatten(words)
    out = list(f.syls)
    for i, (c, s) in enumerate(zip(f.chars, f.syls, strict=True)):
        if c == "一" and s.startswith("yi"):
            out[i] = _yi_reading(f, i)
    return _rebuild(words, out)


def sandhi_bu(words: Sequence[Word]) -> list[Word]:
    """不: bu5 in V不V (是不是, 喜不喜欢), bu2 before a tone-4 syllable (不要), else bu4.

    A lexical neutral bu5 (差不多) is left alone; only bu4/bu2 readings are touched.
    """
    f = _flatten(words)
    out = list(f.syls)
    for i, (c, s) in enumerate(zip(f.chars, f.syls, strict=True)):
        if c != "不" or s not in ("bu4", "bu2"):
            continue
        prev, nxt = f.at(i - 1), f.at(i + 1)
        if prev and prev == nxt and prev != "不":
            out[i] = "bu5"
        elif nxt and _tone(f.syls[i + 1]) == 4:
            out[i] = "bu2"
        else:
            out[i] = "bu4"
    return _rebuild(words, out)


def _third_in_word(syllables: Sequence[str]) -> tuple[str, ...]:
    """Inside one prosodic word every tone 3 followed by a tone 3 becomes 2 (展览馆 -> 2 2 3)."""
    out = list(syllables)
    for i in range(len(out) - 1):
        if _tone(out[i]) == 3 and _tone(out[i + 1]) == 3:
            out[i] = _with_tone(out[i], 2)
    return tuple(out)


def sandhi_third(words: Sequence[Word]) -> list[Word]:
    """Third-tone sandhi with the word structure known.

    Rule: first, inside each word, all but the last syllable of a run of tone 3 become tone
    2 (你好 ni2 hao3, 展览馆 zhan2 lan2 guan3).  Then, across word boundaries, pairwise from
    the left on the tones the first pass left: a word-final tone 3 before a word-initial
    tone 3 becomes 2.  So the segmentation decides: [我][很][好] -> wo2 hen2 hao3, while
    [我][很好] -> wo3 hen2 hao3 (很 is already 2).  Punctuation breaks the chain.
    """
    out = [w if w.is_punctuation else Word(w.text, _third_in_word(w.pinyin)) for w in words]
    prev: int | None = None
    for idx, w in enumerate(out):
        if w.is_punctuation:
            prev = None
            continue
        if prev is not None:
            left = out[prev]
            if _tone(left.pinyin[-1]) == 3 and _tone(w.pinyin[0]) == 3:
                out[prev] = Word(left.text, (*left.pinyin[:-1], _with_tone(left.pinyin[-1], 2)))
        prev = idx
    return out


# --------------------------------------------------------------------------- lookup


@dataclass
class _Token:
    """One segment while it is being read: text, syllables and where each syllable came from.

    ``locked`` marks syllables from the site lexicon or the built-in fixes (no context rule may
    change them); ``phrasal`` marks syllables covered by a pypinyin phrase-dictionary entry
    (trusted), as opposed to a single-character default (the one most often wrong).
    """

    text: str
    syllables: list[str] = field(default_factory=list)
    locked: list[bool] = field(default_factory=list)
    phrasal: list[bool] = field(default_factory=list)

    @property
    def is_punctuation(self) -> bool:
        return self.text in PUNCTUATION


def _pypinyin_run(run: str) -> list[str]:
    """pypinyin readings for a run of characters, one per character ("" where none)."""
    out = [str(s) for s in lazy_pinyin(run, style=Style.TONE3, neutral_tone_with_five=True)]
    if len(out) != len(run):  # pypinyin grouped something unexpected: go char by char
        out = [_first(lazy_pinyin(c, style=Style.TONE3, neutral_tone_with_five=True)) for c in run]
    return out


def _first(values: Sequence[Any]) -> str:
    return str(values[0]) if values else ""


def _undo_baked_sandhi(text: str, syllables: list[str]) -> list[str]:
    """pypinyin's phrase entries carry surface tones for 一/不 (一点儿 yi4, 是不是 bu2).
    Put the underlying tone back so ``sandhi=False`` really means underlying, and so the
    sandhi functions see what they expect.  Lexical neutral tones (差不多 bu5) are kept.
    """
    out = list(syllables)
    for i, c in enumerate(text):
        if c == "一" and out[i] in ("yi2", "yi4"):
            out[i] = "yi1"
        elif c == "不" and out[i] == "bu2":
            out[i] = "bu4"
    return out


def _phrasal_mask(text: str) -> list[bool]:
    """Which characters of ``text`` lie inside some multi-character pypinyin phrase entry."""
    mask = [False] * len(text)
    for i in range(len(text)):
        for j in range(i + 2, min(len(text), i + 8) + 1):
            if text[i:j] in PHRASES_DICT:
                mask[i:j] = [True] * (j - i)
    return mask


def _overlay(token: _Token, table: Mapping[str, tuple[str, ...]], max_len: int) -> None:
    """Greedy longest-match of ``table`` entries over the unlocked part of a token."""
    i = 0
    n = len(token.text)
    while i < n:
        for j in range(min(n, i + max_len), i, -1):
            piece = token.text[i:j]
            if piece in table and not any(token.locked[i:j]):
                token.syllables[i:j] = list(table[piece])
                token.locked[i:j] = [True] * (j - i)
                i = j
                break
        else:
            i += 1


# --------------------------------------------------------------------------- context rules


def _char_before(tokens: Sequence[_Token], idx: int, i: int) -> str:
    """Character before position i of token idx, looking into the previous word ("" at a
    pause or the start)."""
    if i > 0:
        return tokens[idx].text[i - 1]
    prev = _prev_hanzi(tokens, idx)
    return prev.text[-1] if prev is not None else ""


def _char_after(tokens: Sequence[_Token], idx: int, i: int) -> str:
    """Character after position i of token idx, looking into the next word."""
    t = tokens[idx]
    if i + 1 < len(t.text):
        return t.text[i + 1]
    if idx + 1 < len(tokens) and not tokens[idx + 1].is_punctuation:
        return tokens[idx + 1].text[0]
    return ""


def _prev_hanzi(tokens: Sequence[_Token], idx: int) -> _Token | None:
    """The token before ``idx`` when it is a word in the same phrase (not punctuation)."""
    if idx == 0 or tokens[idx - 1].is_punctuation:
        return None
    return tokens[idx - 1]


def _fix_de(tokens: Sequence[_Token]) -> None:
    """得 after a verb is the complement particle (跑得快, 变得冷, 说得对): de5, not pypinyin's
    single-character default de2.  Applied where no phrase entry covers it and it does not
    start a longer word (得到, 得分 keep de2); the modal dei3 (他得去) is not guessed.

    Also 地 standing alone after a multi-character word is the adverbial particle (慢慢地).
    """
    for idx, t in enumerate(tokens):
        if t.is_punctuation:
            continue
        for i, c in enumerate(t.text):
            if c != "得" or t.locked[i] or t.phrasal[i] or t.syllables[i] != "de2":
                continue
            if i > 0 or len(t.text) == 1:
                t.syllables[i] = "de5"
        prev = _prev_hanzi(tokens, idx)
        if t.text == "地" and not t.locked[0] and prev is not None and len(prev.text) > 1:
            t.syllables[0] = "de5"


def _fix_chang(tokens: Sequence[_Token]) -> None:
    """长 after a degree adverb is the adjective "long" (太长了): chang2, not zhang3."""
    for idx, t in enumerate(tokens):
        if t.is_punctuation:
            continue
        for i, c in enumerate(t.text):
            if c != "长" or t.locked[i] or t.phrasal[i] or t.syllables[i] != "zhang3":
                continue
            if _char_before(tokens, idx, i) in _DEGREE_ADVERBS:
                t.syllables[i] = "chang2"


def _fix_huan(tokens: Sequence[_Token]) -> None:
    """Single-character 还 before money/books (还钱, 还书) is "give back": huan2, not hai2."""
    for idx, t in enumerate(tokens):
        if t.is_punctuation:
            continue
        for i, c in enumerate(t.text):
            if c != "还" or t.locked[i] or t.phrasal[i] or t.syllables[i] != "hai2":
                continue
            if _char_after(tokens, idx, i) in _RETURNED_THINGS:
                t.syllables[i] = "huan2"


def _is_non_erhua(word: str) -> bool:
    return word in _NON_ERHUA_WORDS or word.endswith(_NON_ERHUA_SUFFIXES)


def _fix_erhua(tokens: Sequence[_Token]) -> None:
    """儿 closing a word (哪儿, 一点儿, 好玩儿) is the erhua suffix: er5, whatever pypinyin's
    phrase table says (it mixes er and ér).  Kept as er2 for the "child" words (女儿, 婴儿)
    and word-initially (儿子); a lone 儿 token right after a word is taken as erhua too.
    """
    for idx, t in enumerate(tokens):
        if not t.text.endswith("儿") or t.locked[-1]:
            continue
        if len(t.text) > 1:
            t.syllables[-1] = "er2" if _is_non_erhua(t.text) else "er5"
        elif _prev_hanzi(tokens, idx) is not None:
            t.syllables[-1] = "er5"


_CONTEXT_RULES: tuple[Callable[[Sequence[_Token]], None], ...] = (
    _fix_de,
    _fix_chang,
    _fix_huan,
    _fix_erhua,
)


# --------------------------------------------------------------------------- jieba


def default_cache_dir() -> Path:
    """Where jieba's prefix-dictionary cache goes by default.

    systemd's ``CacheDirectory=`` (``$CACHE_DIRECTORY``) first, then ``$XDG_CACHE_HOME``, then
    ``~/.cache``: never next to the package or in a shared /tmp, both of which are read-only or
    unsafe under ``ProtectSystem=strict``.
    """
    systemd = os.environ.get("CACHE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd)
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "sambertd"


def _writable_dir(path: Path) -> bool:
    """Create ``path`` if needed; True when we can write a cache file into it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def _load_tokenizer(cache_dir: Path | None, words: Iterable[str]) -> Any:
    """Build a private jieba tokenizer (the ~1 s step), caching its prefix dictionary in
    ``cache_dir`` when writable and building it in memory otherwise."""
    logging.getLogger("jieba").setLevel(logging.WARNING)  # "Building prefix dict ..." is noise
    tok = jieba.Tokenizer()
    if cache_dir is not None and _writable_dir(cache_dir):
        tok.tmp_dir = str(cache_dir)
        tok.cache_file = "jieba.cache"
        tok.initialize()
    else:
        _LOG.debug("jieba cache disabled: %s not writable", cache_dir)
        with tok.lock:  # same as initialize() minus the cache file
            tok.FREQ, tok.total = tok.gen_pfdict(tok.get_dict_file())
            tok.initialized = True
    for w in words:
        tok.add_word(w)
    return tok


# --------------------------------------------------------------------------- G2P


class G2P:
    """Normalized Mandarin text -> words with one TONE3 syllable per character.

    Thread-safe: the jieba dictionary is loaded once, on first use, under a lock; after that
    the instance is read-only.

    ``lexicon``: site words -> one syllable per character (TONE3, tone marks or "huar1"
    accepted; ValueError if invalid).  They beat the built-in fixes and pypinyin, and are
    taken as underlying tones: sandhi still applies to them.  ``sandhi=False`` returns
    underlying tones for engines that do their own.  ``cache_dir`` is where jieba's prefix
    dictionary is cached (default: ``default_cache_dir()``); ``use_cache=False`` or an
    unwritable directory builds it in memory on every start instead.
    """

    def __init__(
        self,
        lexicon: Mapping[str, Sequence[str]] | None = None,
        *,
        sandhi: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        use_cache: bool = True,
    ) -> None:
        self._lexicon = normalize_lexicon(lexicon or {})
        self._lexicon_max = max((len(w) for w in self._lexicon), default=0)
        self._fixes_max = max(len(w) for w in _PHRASE_FIXES)
        self._known = frozenset("".join(self._lexicon))
        self.sandhi = sandhi
        self._cache_dir = (
            None if not use_cache else Path(cache_dir) if cache_dir else default_cache_dir()
        )
        self._lock = threading.Lock()
        self._tok: Any = None

    # ---- segmentation

    def _tokenizer(self) -> Any:
        """The private jieba tokenizer, built on first use (double-checked under a lock)."""
        tok = self._tok
        if tok is None:
            with self._lock:
                if self._tok is None:
                    self._tok = _load_tokenizer(self._cache_dir, self._lexicon)
                tok = self._tok
        return tok

    def warm_up(self) -> None:
        """Load the jieba dictionary now (e.g. at daemon start) instead of on first request."""
        self._tokenizer()

    def _has_reading(self, c: str) -> bool:
        return ord(c) in PINYIN_DICT or c in self._known

    def _segments(self, text: str) -> list[str]:
        """jieba segments, split further into hanzi runs and single punctuation marks; other
        characters (latin, digits, symbols the normalizer missed) are dropped here."""
        out: list[str] = []
        for seg in self._tokenizer().cut(text):
            run = ""
            for c in str(seg):
                c = _ASCII_PUNCTUATION.get(c, c)
                if self._has_reading(c):
                    run += c
                    continue
                if run:
                    out.append(run)
                    run = ""
                if c in PUNCTUATION:
                    out.append(c)
            if run:
                out.append(run)
        return out

    # ---- lookup

    def _read(self, text: str) -> _Token:
        """Underlying readings of one hanzi run: lexicon > built-in fixes > pypinyin."""
        syllables = _split_erhua(text, _pypinyin_run(text))
        token = _Token(
            text,
            _undo_baked_sandhi(text, [(_repair(s) or "") for s in syllables]),
            [False] * len(text),
            _phrasal_mask(text),
        )
        _overlay(token, self._lexicon, self._lexicon_max)
        _overlay(token, _PHRASE_FIXES, self._fixes_max)
        return token

    def _tokens(self, text: str) -> list[_Token]:
        return [_Token(s) if s in PUNCTUATION else self._read(s) for s in self._segments(text)]

    @staticmethod
    def _to_words(tokens: Iterable[_Token]) -> list[Word]:
        """Tokens to Words, dropping characters that ended up with no valid reading."""
        words: list[Word] = []
        for t in tokens:
            if t.is_punctuation:
                words.append(Word(t.text, ()))
                continue
            kept = [(c, s) for c, s in zip(t.text, t.syllables, strict=True) if s]
            if kept:
                words.append(Word("".join(c for c, _ in kept), tuple(s for _, s in kept)))
        return words

    # ---- public

    def words(self, text: str) -> list[Word]:
        """Words of one normalized sentence with their (sandhied) TONE3 syllables.

        Never raises on odd input: characters with no reading are dropped, empty input gives [].
        """
        if not text or not text.strip():
            return []
        tokens = self._tokens(text)
        for rule in _CONTEXT_RULES:
            rule(tokens)
        words = self._to_words(tokens)
        if self.sandhi:
            words = sandhi_third(sandhi_bu(sandhi_yi(words)))
        return words

    def sentence(self, text: str) -> Sentence:
        """``words`` wrapped as a Sentence for an engine."""
        return Sentence(text=text, words=tuple(self.words(text)))
