"""Table-driven tests for text clean-up: one table per step family, plus hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sambertd.frontend.cleanup import (
    STEPS,
    clean,
    collapse_whitespace,
    fold_width,
    merge_surrogates,
    remove_invisible,
    settle_layout,
    strip_ansi,
    unify_punctuation,
)
from sambertd.frontend.errors import EMPTY_TEXT, FrontendError
from tests.timing import growth


def _ids(cases: list[tuple[str, str]]) -> list[str]:
    return [ascii(c[0])[:30] for c in cases]


WIDTH = [
    ("２０２６年３月５日", "2026年3月5日"),
    ("ＡＢＣ１２３", "ABC123"),
    ("ｋｍ／ｈ", "km/h"),
    ("３．５％", "3.5%"),
    ("￥１００", "¥100"),
    ("＄５", "$5"),
    ("全角　空格", "全角空格"),
    ("x\u3000y", "x y"),
    ("𝐀𝐁𝐂", "ABC"),
    ("ﬁle", "file"),
    ("①提交", "1提交"),
    ("½", "1/2"),
    ("第Ⅲ类", "第3类"),
    ("Ⅻ月", "12月"),
    ("100㎡", "100m2"),
    ("5㎞", "5km"),
    ("ｶﾀｶﾅ", "カタカナ"),
    ("café", "cafe"),
    ("é ü ñ", "e u n"),
    ("～", "~"),
    ("〜", "~"),
    ("9:00–17:00", "9:00-17:00"),
    ("−5", "-5"),
    ("―", "—"),
]


@pytest.mark.parametrize(("text", "expected"), WIDTH, ids=_ids(WIDTH))
def test_width_folding(text: str, expected: str) -> None:
    assert clean(text) == expected


KEPT = [
    ("你好，世界！", "你好，世界！"),
    ("真的？是的；如下：", "真的？是的；如下："),
    ("“引号”‘单引号’", "“引号”‘单引号’"),
    ("《书名》（括号）", "《书名》（括号）"),
    ("一、二。", "一、二。"),
    ("25℃", "25℃"),
    ("5‰", "5‰"),
    ("3~5天", "3~5天"),
    ("1+1=2", "1+1=2"),
    ("30°", "30°"),
    ("等等……", "等等……"),
    ("a@b.cn", "a@b.cn"),
]


@pytest.mark.parametrize(("text", "expected"), KEPT, ids=_ids(KEPT))
def test_kept_characters(text: str, expected: str) -> None:
    assert clean(text) == expected


PUNCTUATION = [
    ("服务电话:12345", "服务电话：12345"),
    ("你好,世界", "你好，世界"),
    ("真的?", "真的？"),
    ("好!", "好！"),
    ("如下;", "如下；"),
    ("完成申报.", "完成申报。"),
    ("共3个,请", "共3个，请"),
    ("数量为3,请", "数量为3，请"),
    ("9:00", "9:00"),
    ("2,380万", "2,380万"),
    ("1.5万", "1.5万"),
    ("www.gov.cn", "www.gov.cn"),
    ("Hello, world.", "Hello, world."),
    ("申报.Next", "申报.Next"),
]


@pytest.mark.parametrize(("text", "expected"), PUNCTUATION, ids=_ids(PUNCTUATION))
def test_punctuation_style(text: str, expected: str) -> None:
    assert clean(text) == expected


WHITESPACE = [
    ("你 好", "你好"),
    ("你\t好", "你好"),
    ("2026 年", "2026年"),
    ("Hello   world", "Hello world"),
    ("  前后空格  ", "前后空格"),
    ("第一行\n第二行", "第一行，第二行"),
    ("第一行。\n第二行", "第一行。第二行"),
    ("第一行\r\n\r\n第二行", "第一行，第二行"),
    ("abc\u2028def", "abc，def"),
    ("1\u00a0000", "1 000"),
    ("你好 world", "你好world"),
    ("9:00 - 17:00", "9:00 - 17:00"),
    ("\t\t", ""),
    ("a\u2003\u2009b", "a b"),
]


@pytest.mark.parametrize(("text", "expected"), WHITESPACE, ids=_ids(WHITESPACE))
def test_whitespace(text: str, expected: str) -> None:
    assert clean(text) == expected


INVISIBLE = [
    ("a\x00b", "ab"),
    ("a\x07\x08b", "ab"),
    ("a\x7fb", "ab"),
    ("a\x85\x9fb", "ab"),
    ("\x1b[31m红色\x1b[0m文字", "红色文字"),
    ("\x1b[1;32;40m绿\x1b[K", "绿"),
    ("\x1b]0;title\x07标题", "标题"),
    ("\x9b31m红", "红"),
    ("孤\x1b", "孤"),
    ("\u200b零\u200c宽\u200d", "零宽"),
    ("\u200e\u200f\u202a\u202e\u2066\u2069方向", "方向"),
    ("\ufeff带BOM", "带BOM"),
    ("\u00ad软\u00ad连字符", "软连字符"),
    ("\ue000私用区\U000f0000", "私用区"),
    ("😀笑脸", "笑脸"),
    ("👍🏻点赞", "点赞"),
    ("👨\u200d👩\u200d👧家庭", "家庭"),
    ("1️⃣第一", "1第一"),
    ("★重要☆", "重要"),
    ("测试™", "测试"),
    ("\U000e0041标签", "标签"),
]


@pytest.mark.parametrize(("text", "expected"), INVISIBLE, ids=_ids(INVISIBLE))
def test_invisible_and_decorative(text: str, expected: str) -> None:
    assert clean(text) == expected


SURROGATES = [
    ("a\ud800b", "ab"),
    ("\udfff", ""),
    ("\ud83d\ude00", ""),  # a valid pair becomes 😀, then goes as an emoji
    ("\ud842\udfb7", "\U00020bb7"),  # a valid pair for a CJK extension-B character
    ("中\udc80文", "中文"),
    ("替换\ufffd字符", "替换字符"),
    ("\ud800" * 1000, ""),
]


@pytest.mark.parametrize(("text", "expected"), SURROGATES, ids=_ids(SURROGATES))
def test_surrogates(text: str, expected: str) -> None:
    out = clean(text)
    assert out == expected
    out.encode("utf-8")  # must not raise


STEP_CASES = [
    (merge_surrogates, "a\ud800b", "ab"),
    (strip_ansi, "\x1b[0m好", "好"),
    (remove_invisible, "a\u200bb", "ab"),
    (fold_width, "ＡＢ，", "AB，"),
    (settle_layout, "你, b", "你，b"),
]


@pytest.mark.parametrize(("step", "text", "expected"), STEP_CASES)
def test_single_step(step: object, text: str, expected: str) -> None:
    assert step in STEPS
    assert callable(step) and step(text) == expected


@pytest.mark.parametrize(
    ("step", "text", "expected"),
    [
        (collapse_whitespace, "a  b", "a b"),
        (collapse_whitespace, "你  好", "你好"),
        (unify_punctuation, "好,", "好，"),
        (unify_punctuation, "年,.", "年，。"),
        (unify_punctuation, "a,.你", "a，。你"),
        (unify_punctuation, "你,.a", "你，.a"),
    ],
)
def test_layout_helpers(step: object, text: str, expected: str) -> None:
    assert callable(step) and step(text) == expected


HOSTILE = [
    ("", ""),
    ("   ", ""),
    ("\n\n\t", ""),
    ("，。！？", "，。！？"),
    ("日本語のテキスト", "日本語のテキスト"),
    ("한국어 텍스트", "한국어 텍스트"),
    ("Кириллица", "Кириллица"),
    ("مرحبا", "مرحبا"),
    ("\x00" * 100, ""),
]


@pytest.mark.parametrize(("text", "expected"), HOSTILE, ids=_ids(HOSTILE))
def test_hostile_input(text: str, expected: str) -> None:
    assert clean(text) == expected
    assert clean(clean(text)) == clean(text)  # idempotent


def test_long_input_is_fast() -> None:
    """Linear: ten times the text, about ten times the time (not a limit in seconds, which
    a slow or busy machine misses)."""
    line = "办事大厅\x00开放时间😀为 周一至周五\u200b9:00-17:00。\n"
    out: dict[int, str] = {}
    ratio = growth(lambda k: out.setdefault(k, clean(line * k)), 1000)
    assert ratio < 30, f"10x the input took {ratio:.0f}x as long"
    assert "\x00" not in out[10_000] and "😀" not in out[10_000] and "\u200b" not in out[10_000]


def test_non_string_input_does_not_raise() -> None:
    assert clean(None) == ""  # type: ignore[arg-type]
    assert clean(123) == "123"  # type: ignore[arg-type]


def test_frontend_error_carries_a_code() -> None:
    err = FrontendError(EMPTY_TEXT)
    assert isinstance(err, ValueError)
    assert err.code == "empty_text"
    assert "empty" in str(err)
    assert FrontendError("text_too_long", "too long").message == "too long"


@settings(max_examples=300, deadline=2000)
@given(st.text())
def test_property_clean_never_raises_and_is_encodable(text: str) -> None:
    out = clean(text)
    out.encode("utf-8")
    assert not any(ch < " " for ch in out)
    assert clean(out) == out


@settings(max_examples=300, deadline=2000)
@given(st.lists(st.integers(min_value=0, max_value=0x10FFFF), max_size=40))
def test_property_any_code_points(code_points: list[int]) -> None:
    text = "".join(chr(cp) for cp in code_points)  # includes lone surrogates
    clean(text).encode("utf-8")
