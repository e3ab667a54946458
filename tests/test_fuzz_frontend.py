"""Property-based fuzzing of everything that parses client input, in-process.

The HTTP fuzz (``test_fuzz_http.py``) only sees what survives the network and JSON; these tests
feed the front-end and the request validators directly with the inputs that break text code in
practice: lone surrogates, control characters, emoji sequences, mixed scripts, long runs of
digits and number punctuation, and JSON values of every type (NaN, infinities, integers beyond
float range).  The contract is narrow on purpose: the front-end may refuse text only with
:class:`FrontendError` (the daemon maps it to a 4xx), and the validators may refuse a body only
with :class:`ApiError`; anything else escapes the middleware's mapping and becomes a 500.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sambertd import audio
from sambertd.frontend import Frontend, FrontendError
from sambertd.validation import (
    OPENAI_VOICES,
    STREAM_FORMATS,
    TTS_FIELDS,
    ApiError,
    TtsCall,
    openai_call,
    tts_call,
)

MAX_CHARS = 40
# A generous per-call bound: the slowest legitimate input here is well under 100 ms, so a call
# near this limit means super-linear behaviour (regex backtracking, a runaway number reading).
SLOW_S = 1.5
FUZZ = settings(
    max_examples=300,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# -- text strategies ------------------------------------------------------------------------

# What normalization has rules for: numbers, decimals, ranges, ratios, dates, currency, units.
NUMBERISH = list("0123456789.,:-/%‰℃¥$年月日号第+×～~·．，：％－／０１２３４５６７８９²³½⅓٣")
# Characters that text code gets wrong: controls, zero-width and bidi marks, variation
# selectors, ZWJ emoji parts, combining marks, full-width and ideographic spaces, NUL.
TRICKY = [
    "\x00",
    "\x07",
    "\t",
    "\r\n",
    "\x1b",
    "\x7f",
    "\u200b",
    "\u200d",
    "\u202e",
    "\ufeff",
    "\ufe0f",
    "\u3000",
    "\u0301",
    "\U0001f600",
    "\U0001f468",
    "\U0001f1e8\U0001f1f3",
    "\ud800",
    "\udfff",
    "\U00020000",
    "〇",
    "。",
    "！",
    "？",
    "…",
    "—",
    "《",
    "》",
    "“",
    "”",
    "a",
    "Z",
    "é",
    "ß",
    "Ω",
    "я",
    "ア",
    "한",
    "ع",
]
CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
# Every code point including surrogates (Cs) and unassigned ones.
ANY_CHAR = st.characters(exclude_categories=())


def joined(pieces: st.SearchStrategy[str], max_size: int) -> st.SearchStrategy[str]:
    """Strings built from pieces, some longer than one code point ('\r\n', flag emoji),
    which ``st.text`` does not accept as alphabet elements."""
    return st.lists(pieces, max_size=max_size).map("".join)


TEXTS = st.one_of(
    st.text(ANY_CHAR, max_size=80),
    joined(st.sampled_from(NUMBERISH) | CJK, 80),
    joined(st.sampled_from(NUMBERISH + TRICKY) | CJK | ANY_CHAR, 120),
    joined(st.sampled_from(NUMBERISH), 400),
)


@FUZZ
# config.py rejects stream_first_chars < 2, so that is the range the daemon can pass.
@given(text=TEXTS, first_max_chars=st.none() | st.integers(min_value=2, max_value=40))
def test_analyse_raises_only_frontend_error(
    frontend: Frontend, text: str, first_max_chars: int | None
) -> None:
    """Any string either yields speakable sentences or a FrontendError the daemon maps to a
    4xx; any other exception is a 500 for the caller, and a slow call ties up a worker."""
    started = time.perf_counter()
    try:
        analysis = frontend.analyse(text, first_max_chars)
    except FrontendError as exc:
        assert isinstance(exc.code, str) and exc.code
    else:
        assert analysis.sentences, "analyse returned no sentences instead of raising"
        assert all(s.syllables for s in analysis.sentences)
        assert isinstance(analysis.normalized, str)
    assert time.perf_counter() - started < SLOW_S, f"analyse took too long for {text!r}"


# -- JSON-like values -----------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(1, 450).map(lambda n: 10**n),  # beyond float range: 10**309 and up
    st.integers(1, 450).map(lambda n: -(10**n)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 5e-324]),
    st.text(ANY_CHAR, max_size=MAX_CHARS + 5),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(ANY_CHAR, max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# The values that break number and flag parsing, drawn often rather than left to chance.
HOSTILE = st.one_of(
    st.sampled_from(
        [math.nan, math.inf, -math.inf, 10**309, -(10**309), 2**1024, True, False, None, "", "1"]
    ),
    SCALARS,
    JSON_VALUES,
)
# Valid values per field: the base of most bodies, so that a single hostile field (below) is
# what decides the outcome and the parsers deep in the validator actually see it.
TTS_PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "text": joined(st.sampled_from(NUMBERISH + TRICKY) | CJK, MAX_CHARS),
    "voice": st.sampled_from(["", "baker", "zhitian_emo"]),
    "emotion": st.sampled_from(["neutral", "happy"]),
    "format": st.sampled_from(list(audio.FORMATS)),
    "sample_rate": st.sampled_from(audio.SAMPLE_RATES),
    "speed": st.floats(0.5, 2.0),
    "pitch": st.floats(0.5, 2.0),
    "volume": st.floats(0.0, 2.0),
    "stream": st.just(False),
}


def one_field_hostile(
    base: st.SearchStrategy[dict[str, Any]], fields: Sequence[str], hostile: st.SearchStrategy[Any]
) -> st.SearchStrategy[dict[str, Any]]:
    """A plausible body with one known field replaced by a hostile value.

    Random bodies almost never get past the first check (unknown field, missing text), so the
    numeric and flag parsers deep in the validator would go untested without this."""
    return st.tuples(base, st.sampled_from(list(fields)), hostile).map(
        lambda t: {**t[0], t[1]: t[2]}
    )


TTS_PLAUSIBLE_BODIES = st.fixed_dictionaries(
    {"text": TTS_PLAUSIBLE["text"]},
    optional={k: v for k, v in TTS_PLAUSIBLE.items() if k != "text"},
)
TTS_BODIES = st.one_of(
    JSON_VALUES,
    TTS_PLAUSIBLE_BODIES,
    one_field_hostile(TTS_PLAUSIBLE_BODIES, TTS_FIELDS, HOSTILE),
    st.dictionaries(st.sampled_from(TTS_FIELDS) | st.text(ANY_CHAR, max_size=8), JSON_VALUES),
)
OPENAI_PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "model": st.sampled_from(["tts-1", "tts-1-hd"]),
    "voice": st.sampled_from([*OPENAI_VOICES, "baker", ""]),
    "response_format": st.sampled_from(["mp3", "wav", "pcm"]),
    "speed": st.floats(0.25, 4.0),
}
OPENAI_PLAUSIBLE_BODIES = st.fixed_dictionaries(
    {"input": TTS_PLAUSIBLE["text"]}, optional=OPENAI_PLAUSIBLE
)
OPENAI_BODIES = st.one_of(
    JSON_VALUES,
    OPENAI_PLAUSIBLE_BODIES,
    one_field_hostile(OPENAI_PLAUSIBLE_BODIES, ["input", *OPENAI_PLAUSIBLE], HOSTILE),
)
# Query strings: every value a string; the parsers convert numbers and flags themselves.
# Strings that str.isdigit() or float() accept in surprising ways, or that overflow.
NUMERIC_SPELLINGS = [
    "8000",
    "０８０００",
    "٨٠٠٠",
    "𝟠𝟘𝟘𝟘",
    "²",
    "①",
    "1_0",
    "0x10",
    " 1.0 ",
    "1.0\x00",
    "1e400",
    "-1e400",
    "nan",
    "NaN",
    "inf",
    "-Infinity",
    "1" * 5000,  # over int_max_str_digits
    "",
]
FLAG_SPELLINGS = ["true", "TRUE", "yes", "no", "0", "1", "on", "\x00"]
QUERY_STRINGS = st.one_of(
    st.text(ANY_CHAR, max_size=20),
    st.sampled_from(NUMERIC_SPELLINGS),
    st.sampled_from(FLAG_SPELLINGS),
    joined(st.sampled_from(NUMBERISH), 12),
)
QUERY_PLAUSIBLE_BODIES = st.fixed_dictionaries(
    {"text": TTS_PLAUSIBLE["text"]},
    optional={
        "format": st.sampled_from(list(audio.FORMATS)),
        "sample_rate": st.sampled_from([str(r) for r in audio.SAMPLE_RATES]),
        "speed": st.floats(0.5, 2.0).map(str),
        "stream": st.sampled_from(["true", "false", "1", "0"]),
    },
)
QUERIES = st.one_of(
    QUERY_PLAUSIBLE_BODIES,
    one_field_hostile(QUERY_PLAUSIBLE_BODIES, TTS_FIELDS, QUERY_STRINGS),
    # The fields the query parser converts itself, with the spellings that trip conversion.
    one_field_hostile(
        QUERY_PLAUSIBLE_BODIES,
        ["sample_rate", "speed", "pitch", "volume", "stream"],
        st.sampled_from(NUMERIC_SPELLINGS + FLAG_SPELLINGS),
    ),
    st.dictionaries(
        st.sampled_from(TTS_FIELDS) | st.text(ANY_CHAR, max_size=8), QUERY_STRINGS, max_size=9
    ),
)


def _assert_api_error(exc: ApiError) -> None:
    """A refusal must carry what the middleware needs for ``{"error": {"code", "message"}}``."""
    event(f"refused: {exc.code}")
    assert 400 <= exc.status < 500, exc.status
    assert isinstance(exc.code, str) and exc.code
    assert isinstance(exc.message, str) and exc.message


def _assert_valid_call(call: TtsCall, *, stream_allowed: bool = True) -> None:
    """An accepted call must already satisfy everything synthesis relies on; the daemon does
    not re-check these before queueing."""
    event("accepted")
    req = call.request
    assert isinstance(req.text, str) and len(req.text) <= MAX_CHARS
    assert isinstance(req.voice, str) and len(req.voice) <= 64
    assert isinstance(req.emotion, str) and len(req.emotion) <= 64
    assert req.format in audio.FORMATS
    assert req.sample_rate is None or req.sample_rate in audio.SAMPLE_RATES
    for name, lo, hi in (("speed", 0.5, 2.0), ("pitch", 0.5, 2.0), ("volume", 0.0, 2.0)):
        value = getattr(req.prosody, name)
        assert type(value) is float and math.isfinite(value) and lo <= value <= hi, name
    assert isinstance(call.stream, bool)
    assert not call.stream or (stream_allowed and req.format in STREAM_FORMATS)


def _tts(raw: Any, from_query: bool) -> TtsCall:
    return tts_call(
        raw, max_chars=MAX_CHARS, default_format="wav", default_rate=0, from_query=from_query
    )


@FUZZ
@given(raw=TTS_BODIES)
def test_tts_call_json_raises_only_api_error(raw: Any) -> None:
    """A decoded JSON body of any shape is either a valid call or an ApiError (4xx)."""
    try:
        call = _tts(raw, from_query=False)
    except ApiError as exc:
        _assert_api_error(exc)
    else:
        _assert_valid_call(call)


@FUZZ
@given(raw=QUERIES)
def test_tts_call_query_raises_only_api_error(raw: dict[str, str]) -> None:
    """GET /v1/tts: string values that look like numbers in other scripts ('²', '٨٠٠٠'),
    NaN spellings and overlong digit runs must be refused as 4xx, not crash conversion."""
    try:
        call = _tts(raw, from_query=True)
    except ApiError as exc:
        _assert_api_error(exc)
    else:
        _assert_valid_call(call)


@FUZZ
@given(raw=OPENAI_BODIES)
def test_openai_call_raises_only_api_error(raw: Any) -> None:
    """The OpenAI-compatible body: extra fields are ignored, everything else is checked."""
    try:
        call = openai_call(raw, max_chars=MAX_CHARS)
    except ApiError as exc:
        _assert_api_error(exc)
    else:
        _assert_valid_call(call)  # the OpenAI route always streams
        assert call.request.voice not in OPENAI_VOICES
