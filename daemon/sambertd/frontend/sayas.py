"""``<say-as interpret-as="…">``: the client says what a string is, so we read it that way
instead of guessing from context as ``normalize`` must.

Each reader takes cleaned text and returns normalized text (Chinese characters and pause
marks); whatever a reader does not recognise goes through the ordinary ``normalize``, so a
stray word inside a ``<say-as>`` is still read.  ``name`` is the exception: it fixes the
surname's reading (单 shàn, 解 xiè …), which is a pinyin matter, see :func:`surname`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sambertd.frontend.normalize import (
    dictate,
    month_day,
    normalize,
    read_digits,
    read_number,
    read_time,
    spell_letters,
)

_NUMBER_RE = re.compile(r"[0-9]+(?:,[0-9]{3})*(?:\.[0-9]+)?")
_DATE_RE = re.compile(
    r"(?P<y>[0-9]{2}|[0-9]{4})[-/.年](?P<m>[0-9]{1,2})(?:[-/.月](?P<d>[0-9]{1,2})[日号]?)?"
    r"|(?P<y8>[0-9]{4})(?P<m8>[0-9]{2})(?P<d8>[0-9]{2})"
)
_MONTH_DAY_RE = re.compile(r"(?P<m>[0-9]{1,2})[-/.月](?P<d>[0-9]{1,2})[日号]?")
_TIME_RE = re.compile(
    r"(?P<h>[0-9]{1,2})[:：点时](?P<m>[0-9]{1,2})(?:[:：分](?P<s>[0-9]{1,2})秒?)?分?"
)
_CURRENCY = (
    ("HK$", "港元"),
    ("US$", "美元"),
    ("RMB", "元"),
    ("CNY", "元"),
    ("USD", "美元"),
    ("EUR", "欧元"),
    ("GBP", "英镑"),
    ("HKD", "港元"),
    ("¥", "元"),
    ("￥", "元"),
    ("$", "美元"),
    ("€", "欧元"),
    ("£", "英镑"),
)
# Surnames whose reading differs from the character's everyday one (单 dān → shàn).
SURNAMES: dict[str, tuple[str, ...]] = {
    "万俟": ("mo4", "qi2"),
    "尉迟": ("yu4", "chi2"),
    "长孙": ("zhang3", "sun1"),
    "单于": ("chan2", "yu2"),
    "单": ("shan4",),
    "解": ("xie4",),
    "仇": ("qiu2",),
    "区": ("ou1",),
    "查": ("zha1",),
    "朴": ("piao2",),
    "覃": ("qin2",),
    "翟": ("zhai2",),
    "曾": ("zeng1",),
    "乐": ("yue4",),
    "缪": ("miao4",),
    "盖": ("ge3",),
    "种": ("chong2",),
    "任": ("ren2",),
    "纪": ("ji3",),
    "华": ("hua4",),
    "燕": ("yan1",),
    "尉": ("yu4",),
    "员": ("yun4",),
    "繁": ("po2",),
    "那": ("na1",),
    "秘": ("bi4",),
    "召": ("shao4",),
    "折": ("she2",),
    "句": ("gou1",),
    "阚": ("kan4",),
    "隗": ("wei3",),
    "洗": ("xian3",),
    "冼": ("xian3",),
    "宿": ("su4",),
    "过": ("guo1",),
    "藏": ("zang4",),
    "薄": ("bo2",),
    "蕃": ("pi2",),
}


def cardinal(text: str) -> str:
    """Every number as a quantity: 10086 一万零八十六."""
    return normalize(_NUMBER_RE.sub(lambda m: read_number(m.group()), text))


def digits(text: str) -> str:
    """Every digit on its own: 2024 二零二四."""
    return normalize(re.sub(r"[0-9]+", lambda m: read_digits(m.group()), text))


def telephone(text: str) -> str:
    """Dictated in groups, as a hotline agent reads a number: 010-12345678 零一零、一二三四、…;
    a leading + is 加."""
    out = re.sub(r"\+(?=[0-9])", "加", text)
    out = re.sub(r"[0-9][0-9\- ()（）]*[0-9]|[0-9]", lambda m: dictate(m.group()), out)
    return normalize(out)


def date(text: str) -> str:
    """2024-05-01, 2024/5/1, 2024.5.1, 20240501, 5-1: years digit by digit, month and day as
    numbers: 二零二四年五月一日."""

    def full(m: re.Match[str]) -> str:
        y = m.group("y") or m.group("y8")
        month = m.group("m") or m.group("m8")
        day = m.group("d") or m.group("d8")
        return f"{read_digits(y)}年{month_day(month, day)}"

    out = _DATE_RE.sub(full, text)
    out = _MONTH_DAY_RE.sub(lambda m: month_day(m.group("m"), m.group("d")), out)
    return normalize(out)


def time(text: str) -> str:
    """9:05 九点零五分, 14:30:15 十四点三十分十五秒, 12:00 十二点 (normalize's reading,
    taken here for any clock-like string, 点 and 时 as separators too)."""
    clock = _TIME_RE.sub(lambda m: read_time(m.group("h"), m.group("m"), m.group("s")), text)
    return normalize(clock)


def currency(text: str) -> str:
    """¥12.50 十二点五元, $3 三美元, 100 EUR 一百欧元; a bare amount is in 元."""
    unit = "元"
    rest = text
    for symbol, word in _CURRENCY:
        if symbol in rest:
            unit, rest = word, rest.replace(symbol, "")
            break
    rest = rest.strip()
    if not re.search(r"[元角分块]|美元|欧元|英镑|港元", rest):
        rest = _NUMBER_RE.sub(lambda m: read_number(m.group(), unit) + unit, rest, count=1)
    return normalize(rest)


def address(text: str) -> str:
    """House, building and room numbers: a number of three or more digits is read digit by
    digit (1203室 一二零三室), a shorter one as a number (5号楼 五号楼)."""
    out = re.sub(
        r"[0-9]+",
        lambda m: (
            read_digits(m.group()) if len(m.group()) >= 3 else read_number(m.group(), liang=False)
        ),
        text,
    )
    return normalize(out)


def identifier(text: str) -> str:
    """Codes (ID cards, orders, plates): every character on its own, digits dictated in
    groups, letters spelled (X of an ID card is 叉, as said in China)."""
    out = re.sub(r"(?<=[0-9])[Xx]$", "叉", text.strip())
    out = re.sub(r"[0-9]+", lambda m: dictate(m.group()), out)
    out = re.sub(r"[A-Za-z]", lambda m: spell_letters(m.group()) + "、", out)
    return normalize(out).strip("、")


def surname(text: str) -> tuple[str, tuple[str, ...]] | None:
    """The surname at the head of a name and its reading, when it is not the everyday one."""
    for length in (2, 1):
        head = text[:length]
        if len(head) == length and head in SURNAMES:
            return head, SURNAMES[head]
    return None


READERS: dict[str, Callable[[str], str]] = {
    "cardinal": cardinal,
    "digits": digits,
    "telephone": telephone,
    "date": date,
    "time": time,
    "currency": currency,
    "address": address,
    "name": normalize,
    "id": identifier,
}
