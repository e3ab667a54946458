"""SSML → a flat :class:`Document` of spans, breaks and boundaries.

The subset Alibaba NLS documents, with W3C SSML 1.1 meaning (see the README's table).  The
parser is expat with everything that makes XML dangerous switched off: a document type
declaration of any kind is refused, so there are no entity definitions (no billion laughs), no
external entities or DTDs (nothing is read from disk or network), and only the five predefined
entities and character references remain.  Depth and element count are bounded.

Each character of a span keeps where it came from in the client's text (``origins``), so
timestamps can point back into the SSML source.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from xml.parsers import expat

from sambertd.frontend.errors import FrontendError
from sambertd.frontend.ssml_values import BREAK_STRENGTH_MS, break_ms, pitch, rate, volume
from sambertd.frontend.types import Scale

INVALID_SSML = "invalid_ssml"
UNSUPPORTED_SSML = "unsupported_ssml"
MAX_DEPTH = 32
MAX_ELEMENTS = 5000
MAX_BREAKS_TOTAL_MS = 300_000  # all breaks of one request: bounds the silence we allocate
SAY_AS = (
    "cardinal",
    "digits",
    "telephone",
    "date",
    "time",
    "currency",
    "address",
    "name",
    "id",
)
_PROSODY = frozenset({"rate", "pitch", "volume"})
# Tag → attributes it may carry.  Namespace declarations and xml:lang are accepted anywhere.
TAGS: dict[str, frozenset[str]] = {
    "speak": frozenset({"voice", "version", "encoding"}) | _PROSODY,
    "break": frozenset({"time", "strength"}),
    "s": frozenset(),
    "p": frozenset(),
    "sub": frozenset({"alias"}),
    "w": frozenset(),
    "phoneme": frozenset({"alphabet", "ph"}),
    "say-as": frozenset({"interpret-as", "format", "detail"}),
    "prosody": _PROSODY,
    "emphasis": frozenset({"level"}),
}
_ANYWHERE = frozenset({"xmlns", "xml:lang"})
# A start tag whose attribute values may hold ">": where its content begins.
_START_TAG = re.compile(r"""<(?:[^>"']|"[^"]*"|'[^']*')*>""")


def looks_like_ssml(text: str) -> bool:
    """Text is SSML when it starts with ``<speak`` (after blanks or an XML declaration):
    plain text that merely contains ``<`` or ``&`` stays plain."""
    head = text.lstrip("\ufeff \t\r\n")  # a byte-order mark from a file, then blanks
    if head.startswith("<?xml"):
        head = head[head.find("?>") + 2 :].lstrip() if "?>" in head else head
    return head.startswith("<speak")


class SsmlError(FrontendError):
    """Malformed or unsupported SSML: HTTP 400, the message says where and what to use."""


@dataclass(frozen=True)
class Span:
    """Text read in one context.  ``origins[i]`` is the [start, end) of character ``i`` in
    the client's text (an alias or an entity reference maps to its whole source)."""

    text: str
    origins: tuple[tuple[int, int], ...]
    scale: Scale = field(default_factory=Scale)
    say_as: str | None = None
    pinyin: tuple[str, ...] | None = None  # <phoneme>: one TONE3 syllable per character
    word: bool = False  # <w>, <phoneme>, <say-as name>: one word, never cut inside


@dataclass(frozen=True)
class Break:
    """Silence of ``ms`` milliseconds."""

    ms: int


@dataclass(frozen=True)
class Boundary:
    """The edge of an ``<s>`` or ``<p>``: a new synthesis unit starts here."""


Item = Span | Break | Boundary


@dataclass(frozen=True)
class Document:
    """What a request says, parsed: plain text is one span."""

    items: tuple[Item, ...]
    voice: str | None = None
    ssml: bool = False

    @classmethod
    def plain(cls, text: str) -> Document:
        return cls((Span(text, tuple((i, i + 1) for i in range(len(text)))),))


@dataclass
class _Context:
    scale: Scale = field(default_factory=Scale)
    say_as: str | None = None
    pinyin: tuple[str, ...] | None = None
    alias: str | None = None
    word: bool = False


class _Parser:
    """expat callbacks building the item list; raises :class:`SsmlError` on anything off."""

    def __init__(self, text: str) -> None:
        self.text = text
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate from a JSON \ud800 escape
            raise SsmlError(
                INVALID_SSML, f"character {exc.start + 1} is not valid Unicode (a lone surrogate)"
            ) from None
        # byte offset of each character, to turn expat's byte positions into ours
        self._starts = [0]
        for ch in text:
            self._starts.append(self._starts[-1] + len(ch.encode("utf-8")))
        self.raw = raw
        self.items: list[Item] = []
        self.stack: list[tuple[str, _Context]] = []
        self.voice: str | None = None
        self.elements = 0
        self.breaks_ms = 0
        self._alias_start: list[tuple[int, int]] = []  # (tag start, content start)
        self.parser = expat.ParserCreate(encoding="utf-8")
        p = self.parser
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.StartDoctypeDeclHandler = self._forbid("a DOCTYPE (DTDs and entities are not allowed)")
        p.EntityDeclHandler = self._forbid("an entity declaration")
        p.ExternalEntityRefHandler = self._forbid("an external entity")
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._chars
        p.buffer_text = False

    def _forbid(self, what: str) -> Callable[..., Any]:
        def handler(*_: Any) -> Any:
            raise self._error(INVALID_SSML, f"{what} is not allowed in SSML")

        return handler

    def _pos(self) -> int:
        """Character offset of the current event in the client's text."""
        return bisect.bisect_right(self._starts, self.parser.CurrentByteIndex) - 1

    def _error(self, code: str, message: str) -> SsmlError:
        p = self.parser
        return SsmlError(
            code, f"line {p.CurrentLineNumber}, column {p.CurrentColumnNumber + 1}: {message}"
        )

    def run(self) -> Document:
        try:
            self.parser.Parse(self.raw, True)
        except expat.ExpatError as exc:
            where = f"line {exc.lineno}, column {exc.offset + 1}"
            raise SsmlError(INVALID_SSML, f"{where}: {expat.errors.messages[exc.code]}") from None
        return Document(tuple(self.items), self.voice, ssml=True)

    # -- elements

    def _start(self, tag: str, attrs: dict[str, str]) -> None:
        self.elements += 1
        if self.elements > MAX_ELEMENTS:
            raise self._error(INVALID_SSML, f"more than {MAX_ELEMENTS} elements")
        if len(self.stack) >= MAX_DEPTH:
            raise self._error(INVALID_SSML, f"elements nested deeper than {MAX_DEPTH}")
        if tag not in TAGS:
            raise self._error(
                UNSUPPORTED_SSML, f"<{tag}> is not supported; supported tags: {_tag_list()}"
            )
        if not self.stack and tag != "speak":
            raise self._error(INVALID_SSML, f"the root element must be <speak>, not <{tag}>")
        if self.stack and tag == "speak":
            raise self._error(INVALID_SSML, "<speak> can only be the root element")
        for name in attrs:
            if name not in TAGS[tag] and name not in _ANYWHERE and not name.startswith("xmlns:"):
                allowed = ", ".join(sorted(TAGS[tag])) or "none"
                raise self._error(
                    UNSUPPORTED_SSML,
                    f"<{tag}> has no attribute {name!r}; supported: {allowed}",
                )
        ctx = replace(self.stack[-1][1]) if self.stack else _Context()
        getattr(self, "_open_" + tag.replace("-", "_"), self._open_plain)(ctx, attrs)
        self.stack.append((tag, ctx))

    def _end(self, tag: str) -> None:
        _, ctx = self.stack.pop()
        if tag in ("s", "p"):
            self.items.append(Boundary())
        if ctx.alias is not None and (not self.stack or self.stack[-1][1].alias is None):
            tag_start, start = self._alias_start.pop()
            end = self._pos()
            if end <= start:  # <sub alias="…"/>: no content, the tag itself is the source
                start, end = tag_start, start
            if ctx.alias:
                self._add(ctx.alias, tuple((start, end) for _ in ctx.alias), ctx)

    def _open_plain(self, ctx: _Context, attrs: dict[str, str]) -> None:
        """<emphasis>: read as plain text (our voices have no emphasis control)."""

    def _open_s(self, ctx: _Context, attrs: dict[str, str]) -> None:
        self.items.append(Boundary())

    _open_p = _open_s

    def _open_w(self, ctx: _Context, attrs: dict[str, str]) -> None:
        ctx.word = True

    def _open_speak(self, ctx: _Context, attrs: dict[str, str]) -> None:
        self.voice = attrs.get("voice") or None
        ctx.scale = self._prosody(ctx.scale, attrs)

    def _open_prosody(self, ctx: _Context, attrs: dict[str, str]) -> None:
        ctx.scale = self._prosody(ctx.scale, attrs)

    def _open_break(self, ctx: _Context, attrs: dict[str, str]) -> None:
        ms = break_ms(attrs.get("time"), attrs.get("strength"))
        if ms is None:
            raise self._error(
                INVALID_SSML,
                'break: time must be like "500ms" or "1.5s" (at most 10 s), strength one of '
                + ", ".join(BREAK_STRENGTH_MS),
            )
        self.breaks_ms += ms
        if self.breaks_ms > MAX_BREAKS_TOTAL_MS:
            raise self._error(
                INVALID_SSML, f"breaks add up to more than {MAX_BREAKS_TOTAL_MS // 1000} s"
            )
        if ms:
            self.items.append(Break(ms))

    def _open_sub(self, ctx: _Context, attrs: dict[str, str]) -> None:
        if "alias" not in attrs:
            raise self._error(INVALID_SSML, "<sub> needs an alias attribute")
        if ctx.alias is None:  # the content starts after this tag's ">"
            here = self._pos()
            tag = _START_TAG.match(self.text, here)
            self._alias_start.append((here, tag.end() if tag else here + 1))
        ctx.alias = attrs["alias"] if ctx.alias is None else ctx.alias

    def _open_phoneme(self, ctx: _Context, attrs: dict[str, str]) -> None:
        alphabet = attrs.get("alphabet", "py")
        if alphabet != "py":
            raise self._error(
                UNSUPPORTED_SSML, f'phoneme: alphabet {alphabet!r} is not supported; use "py"'
            )
        syllables = tuple(attrs.get("ph", "").split())
        if not syllables:
            raise self._error(INVALID_SSML, "phoneme: ph must hold pinyin syllables")
        ctx.pinyin, ctx.word = syllables, True

    def _open_say_as(self, ctx: _Context, attrs: dict[str, str]) -> None:
        kind = attrs.get("interpret-as", "")
        if kind not in SAY_AS:
            raise self._error(
                UNSUPPORTED_SSML,
                f"say-as: interpret-as {kind!r} is not supported; supported: {', '.join(SAY_AS)}",
            )
        ctx.say_as = kind

    def _prosody(self, scale: Scale, attrs: dict[str, str]) -> Scale:
        try:
            return scale.times(
                Scale(
                    speed=rate(attrs["rate"]) if "rate" in attrs else 1.0,
                    pitch=pitch(attrs["pitch"]) if "pitch" in attrs else 1.0,
                    volume=volume(attrs["volume"]) if "volume" in attrs else 1.0,
                )
            )
        except ValueError as exc:
            raise self._error(INVALID_SSML, str(exc)) from None

    # -- text

    def _chars(self, data: str) -> None:
        if not self.stack:
            return
        ctx = self.stack[-1][1]
        if ctx.alias is not None:
            return  # <sub>: the alias is read instead of the content
        start = self._pos()
        entity = data and self.text.startswith("&", start) and len(data) == 1
        if entity:
            end = self.text.find(";", start) + 1 or start + 1
            origins: tuple[tuple[int, int], ...] = ((start, end),)
        else:
            limit = len(self.text)
            origins = tuple(
                (min(start + i, limit - 1), min(start + i + 1, limit)) for i in range(len(data))
            )
        self._add(data, origins, ctx)

    def _add(self, text: str, origins: tuple[tuple[int, int], ...], ctx: _Context) -> None:
        last = self.items[-1] if self.items else None
        span = Span(text, origins, ctx.scale, ctx.say_as, ctx.pinyin, ctx.word)
        if isinstance(last, Span) and _same_context(last, span) and ctx.pinyin is None:
            span = replace(last, text=last.text + text, origins=last.origins + origins)
            self.items[-1] = span
        else:
            self.items.append(span)


def _same_context(a: Span, b: Span) -> bool:
    return (a.scale, a.say_as, a.pinyin, a.word) == (b.scale, b.say_as, b.pinyin, b.word)


def _tag_list() -> str:
    return ", ".join(f"<{t}>" for t in TAGS)


def parse(text: str) -> Document:
    """Parse SSML text; raises :class:`SsmlError` (invalid or unsupported) with line and
    column.  A ``<phoneme>``'s pinyin is checked against its text later, by the reader."""
    return _Parser(text).run()
