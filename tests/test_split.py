"""Sentence splitting: every unit within the cap, nothing lost, reading order kept."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sambertd.frontend import split


@pytest.mark.parametrize(
    ("text", "cap", "expected"),
    [
        ("你好。再见！", 50, ["你好。", "再见！"]),
        ("你好", 50, ["你好"]),
        ("真的吗？？是的。", 50, ["真的吗？？", "是的。"]),
        ("第一；第二。", 50, ["第一；", "第二。"]),
        ("甲乙丙丁，戊己庚辛，壬癸。", 10, ["甲乙丙丁，戊己庚辛，", "壬癸。"]),
        ("甲乙丙丁，戊己庚辛，壬癸。", 6, ["甲乙丙丁，", "戊己庚辛，", "壬癸。"]),
        ("一二三四五六七八九十", 4, ["一二三四", "五六七八", "九十"]),
        ("一二三四五六七八九十。", 5, ["一二三四", "五六七八", "九十。"]),
        ("", 50, []),
        ("。。。", 50, ["。。。"]),
        ("  你好。  ", 50, ["你好。"]),
    ],
)
def test_split_table(text: str, cap: int, expected: list[str]) -> None:
    assert split.split(text, cap) == expected


def test_cap_must_be_sane() -> None:
    with pytest.raises(ValueError):
        split.split("你好", 1)


@settings(max_examples=300, deadline=2000)
@given(st.text(alphabet="甲乙丙丁戊，。！？、；：", max_size=400), st.integers(2, 60))
def test_units_fit_and_nothing_is_lost(text: str, cap: int) -> None:
    units = split.split(text, cap)
    assert all(0 < len(u) <= cap for u in units)
    assert "".join(units) == "".join(text.split())


def test_hundred_thousand_characters_is_fast_enough() -> None:
    text = "政务服务热线" * 20_000
    units = split.split(text, 50)
    assert sum(map(len, units)) == len(text)


def test_first_unit_can_be_kept_short_for_streams() -> None:
    text = "为进一步优化营商环境，本市将全面推行一网通办，申请人可在线提交材料。"
    units = split.split(text, 50, first_max_chars=12)
    assert units[0] == "为进一步优化营商环境，"
    assert "".join(units) == text
    assert split.split(text, 50) == [text]
    # A long first clause is kept whole (never cut mid-word), the rest follows as one unit.
    assert split.split("为进一步优化营商环境，本市将全面推行。", 50, first_max_chars=4) == [
        "为进一步优化营商环境，",
        "本市将全面推行。",
    ]
