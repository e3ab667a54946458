"""Engine-independent clean-up of client text, before text normalization.

Hotline systems paste text from web pages, Word documents, SMS gateways and terminals, so it
arrives with full-width letters, control codes, ANSI colours, zero-width joiners, emoji and
even lone UTF-16 surrogates.  :func:`clean` turns all of that into one predictable form that
:mod:`sambertd.frontend.normalize` can rely on:

* letters, digits and symbols are half-width ASCII (``２０２６`` -> ``2026``, ``ｋｍ`` -> ``km``),
  while the Chinese punctuation marks ``，。！？、；：“”‘’（）《》`` stay full-width;
* a half-width ``, ! ? ; :`` that touches a Chinese character becomes its full-width form
  (``电话:12345`` -> ``电话：12345``) so that sentence splitting only sees one style; between
  two digits it is left alone (``2,380``, ``9:00``);  a ``.`` after a Chinese character that
  ends a clause becomes ``。``;
* whitespace runs become one space, or nothing next to Chinese text, except that a line
  break between two words becomes ``，`` so that headings and list items keep their pause;
* control characters (C0, C1, DEL, NUL), ANSI escape sequences, format characters (zero-width
  joiners, bidi marks, BOM), private-use and unassigned code points, lone surrogates, emoji and
  decorative symbols are removed.  Symbols that text normalization reads (``%``, ``‰``, ``℃``,
  ``°``, ``¥``, ``~``, ``+``, ``=``, ...) are kept.

:func:`clean` never raises; it may return an empty string and the caller decides what that
means (see :class:`sambertd.frontend.errors.FrontendError`).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable

__all__ = ["STEPS", "clean", "collapse_whitespace", "settle_layout", "unify_punctuation"]

_log = logging.getLogger(__name__)

# Chinese punctuation that keeps its full-width form even though NFKC would fold it to ASCII.
_KEEP_FULL_WIDTH = "，！？；：（）"
# Characters NFKC would rewrite but that text normalization wants to see unchanged.
_KEEP_FROM_NFKC = _KEEP_FULL_WIDTH + "℃…"
# Full-width equivalents of half-width punctuation that touches Chinese text.
_TO_FULL_WIDTH = {",": "，", "!": "！", "?": "？", ";": "；", ":": "："}

# Control sequences a terminal or a log viewer may leave in the text: CSI (colours, cursor
# moves), OSC (window titles, hyperlinks, ended by BEL or ST), and the two-byte escapes.
_ANSI_RE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI ... final byte
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC ... BEL or ST
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS / SOS / PM / APC ... ST
    r"|\x1b[ -/]*[0-~]?"  # other escapes, or a lone ESC
)

# Dashes, tildes and slashes that look alike but that text normalization should see as one.
_LOOKALIKES = str.maketrans(
    {
        "\u2010": "-",  # hyphen
        "\u2011": "-",  # non-breaking hyphen
        "\u2012": "-",  # figure dash
        "\u2013": "-",  # en dash
        "\u2212": "-",  # minus sign
        "\u2043": "-",  # hyphen bullet
        "\u2015": "—",  # horizontal bar, often typed for the Chinese dash
        "\u301c": "~",  # wave dash
        "\u223c": "~",  # tilde operator
        "\u2053": "~",  # swung dash
        "\u2044": "/",  # fraction slash (NFKC turns ½ into 1⁄2)
        "\u2215": "/",  # division slash
        "\u2236": ":",  # ratio
    }
)

# Roman numerals used in Chinese documents (第Ⅲ类); NFKC would spell them as Latin letters.
_ROMAN = {
    **{chr(0x2160 + i): str(i + 1) for i in range(12)},
    **{chr(0x2170 + i): str(i + 1) for i in range(12)},
}
_ROMAN_TABLE = str.maketrans(_ROMAN)

# Symbols (category So/Sk) that are read or mapped later; every other symbol is dropped.
_ALLOWED_SYMBOLS = frozenset("℃℉°№℡©®¦¬¯´¸")
_DROPPED_LETTERLIKE = frozenset("™℠")

_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x85\u2028\u2029")
_WHITESPACE_RE = re.compile(r"\s+")


def _is_cjk(ch: str) -> bool:
    """True for Han characters, kana and CJK punctuation: scripts written without spaces."""
    cp = ord(ch)
    return (
        0x3000 <= cp <= 0x30FF  # CJK punctuation, hiragana, katakana
        or 0x3400 <= cp <= 0x4DBF
        or 0x4E00 <= cp <= 0x9FFF
        or 0xF900 <= cp <= 0xFAFF
        or 0xFF01 <= cp <= 0xFF0F  # full-width punctuation we keep
        or 0xFF1A <= cp <= 0xFF1F
        or 0x20000 <= cp <= 0x3134F
    )


def _is_word(ch: str) -> bool:
    """True for characters that carry speech: letters, digits and Han characters."""
    return ch.isalnum()


def merge_surrogates(text: str) -> str:
    """Re-pair UTF-16 surrogates and drop lone ones.

    Text decoded with ``surrogatepass`` or ``surrogateescape`` (or built from JSON ``\\ud83d``
    escapes) may hold surrogate code points that crash ``str.encode('utf-8')`` further down.
    A valid high/low pair becomes the real character; a lone surrogate, and any U+FFFD left
    by earlier lossy decoding, is removed because it was never readable text.
    """
    if not any("\ud800" <= ch <= "\udfff" for ch in text):
        return text.replace("\ufffd", "")
    repaired = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return repaired.replace("\ufffd", "")


def strip_ansi(text: str) -> str:
    """Remove ANSI escape sequences whole, so their parameters (``[31m``) are not read out."""
    if "\x1b" not in text and "\x9b" not in text:
        return text
    return _ANSI_RE.sub("", text)


def _keep_code_point(ch: str) -> bool:
    """Decide whether one code point survives :func:`remove_invisible`."""
    if ch in "\t\n\r\x0b\x0c":  # whitespace: collapsed later, not dropped
        return True
    cat = unicodedata.category(ch)
    if cat in ("Cc", "Cf", "Cs", "Co", "Cn"):
        return False
    if cat == "Me":  # enclosing marks: keycaps (1️⃣), circles drawn around emoji
        return False
    if cat == "Mn" and (0xFE00 <= ord(ch) <= 0xFE0F or 0xE0100 <= ord(ch) <= 0xE01EF):
        return False  # variation selectors: emoji vs text presentation
    if cat in ("So", "Sk") and ord(ch) > 0x7F:
        if ch in _DROPPED_LETTERLIKE:
            return False
        cp = ord(ch)
        # Squared unit symbols (㎡ ㎞ ㎏) and letterlike symbols (℃ №) are read later.
        return ch in _ALLOWED_SYMBOLS or 0x3300 <= cp <= 0x33FF or 0x2100 <= cp <= 0x214F
    return True


def remove_invisible(text: str) -> str:
    """Drop control and format characters, private-use code points, emoji and decorations.

    NUL, DEL and C1 codes confuse downstream C code and loggers; zero-width joiners, bidi marks
    and the BOM are invisible and have no sound; emoji and dingbats have no agreed reading on a
    government hotline, so they are removed rather than guessed at.
    """
    if text.isascii() and text.isprintable():
        return text
    return "".join(ch for ch in text if (ch.isascii() and ch.isprintable()) or _keep_code_point(ch))


def fold_width(text: str) -> str:
    """Apply NFKC to everything except the Chinese punctuation that must stay full-width.

    NFKC turns full-width letters and digits into ASCII, ``㎡`` into ``m2``, ``①`` into ``1``,
    ``½`` into ``1⁄2`` and U+3000 into a space, which is exactly what the number and unit rules
    of text normalization expect.  It would also turn ``，`` into ``,`` and ``℃`` into ``°C``:
    those are swapped for private-use placeholders (removed from the input earlier) around the
    normalization so that they survive unchanged.  Roman numerals become Arabic digits first
    because NFKC would otherwise spell ``Ⅲ`` as ``III``.
    """
    text = text.translate(_ROMAN_TABLE)
    if text.isascii():
        return text
    placeholders = "".join(chr(0xE000 + i) for i in range(len(_KEEP_FROM_NFKC)))
    text = text.translate(str.maketrans(_KEEP_FROM_NFKC, placeholders))
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(str.maketrans(placeholders, _KEEP_FROM_NFKC))
    return text.translate(_LOOKALIKES)


_LATIN_ACCENTED_RE = re.compile("[\u00c0-\u024f\u1e00-\u1eff]")


def _strip_accent(match: re.Match[str]) -> str:
    decomposed = unicodedata.normalize("NFD", match.group())
    return "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")


def strip_accents(text: str) -> str:
    """Turn accented Latin letters into plain ones (``café`` -> ``cafe``).

    The voice only spells ASCII letters; without this, ``é`` would silently disappear.
    """
    if text.isascii():
        return text
    return _LATIN_ACCENTED_RE.sub(_strip_accent, text)


def _collapse_whitespace(match: re.Match[str]) -> str:
    """Replace one whitespace run: nothing next to CJK text, a pause between two lines."""
    text = match.string
    start, end = match.span()
    before = text[start - 1] if start > 0 else ""
    after = text[end] if end < len(text) else ""
    if not before or not after:
        return ""
    if any(ch in _LINE_BREAKS for ch in match.group()) and _is_word(before) and _is_word(after):
        return "，"
    if _is_cjk(before) or _is_cjk(after):
        return ""
    return " "


def collapse_whitespace(text: str) -> str:
    """Collapse whitespace runs (tabs, newlines, U+3000, NBSP) to one space or nothing.

    Chinese is written without spaces, so a space next to a Han character is layout, not a
    word boundary; between Latin words or numbers a single space is kept because it separates
    tokens (``9:00 - 17:00``, ``Hello world``).  A line break between two words becomes a
    Chinese comma: a heading or list item on its own line is a phrase of its own.
    """
    return _WHITESPACE_RE.sub(_collapse_whitespace, text)


def _full_width_punct(match: re.Match[str]) -> str:
    """Convert one run of ASCII marks if it touches Chinese text and is not inside a number."""
    text = match.string
    start, end = match.span()
    run = match.group()
    before = text[start - 1] if start > 0 else ""
    after = text[end] if end < len(text) else ""
    if len(run) == 1 and before.isdigit() and after.isdigit():
        return run  # 2,380, 9:00 and 1.5 belong to the number rules
    others = (bool(before) and _is_cjk(before)) or (bool(after) and _is_cjk(after))
    # A full stop only ends a Chinese clause: 申报. -> 申报。 but not www.gov.cn or Mr.Li.
    dot_lead = (bool(before) and _is_cjk(before)) or (others and run.strip(".") != "")
    dot = dot_lead and (not after or after == " " or _is_cjk(after))
    return "".join(
        ("。" if dot else ch) if ch == "." else (_TO_FULL_WIDTH[ch] if others else ch) for ch in run
    )


_ASCII_PUNCT_RE = re.compile(r"[,!?;:.]+")


def unify_punctuation(text: str) -> str:
    """Write ASCII ``, ! ? ; : .`` that belong to Chinese text as Chinese punctuation.

    Clients mix both styles (``电话:12345,传真...``); the sentence splitter and the prosody
    rules only need to know the Chinese marks once this has run.
    """
    return _ASCII_PUNCT_RE.sub(_full_width_punct, text)


def settle_layout(text: str) -> str:
    """Collapse whitespace and unify punctuation until neither changes anything.

    The two steps feed each other (a converted ``，`` makes the space after it removable, a
    removed space brings a mark next to a Chinese character), so one pass of each could leave
    text that a second ``clean`` would still change.  Two or three rounds always settle.
    """
    for _ in range(4):
        settled = unify_punctuation(collapse_whitespace(text))
        if settled == text:
            break
        text = settled
    return text


#: The clean-up steps, in the order :func:`clean` applies them.
STEPS: tuple[Callable[[str], str], ...] = (
    merge_surrogates,
    strip_ansi,
    remove_invisible,
    fold_width,
    strip_accents,
    remove_invisible,  # NFKC can expose new symbols (e.g. from compatibility characters)
    settle_layout,
)


def _last_resort(text: str) -> str:
    """Keep only what is certainly safe: used if a step ever fails on some odd input."""
    return "".join(
        ch for ch in text if _is_cjk(ch) or (ch.isascii() and (ch.isalnum() or ch in "%.,:-"))
    )


def clean(text: str) -> str:
    """Return ``text`` cleaned for text normalization; never raises.

    The result may be empty (only whitespace, emoji or control codes were sent); the caller
    decides whether that is an error, typically with ``FrontendError("empty_text")``.
    """
    if not isinstance(text, str):  # defensive: callers are typed, clients are not
        text = str(text) if text is not None else ""
    try:
        for step in STEPS:
            text = step(text)
        return text.strip()
    except Exception:  # pragma: no cover - a bug guard, never expected to run
        _log.exception("text clean-up failed, falling back to a conservative filter")
        return _last_resort(merge_surrogates(text)) if text else ""
