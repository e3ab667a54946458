"""Text normalization (TN): turn cleaned text into words a Mandarin voice can read aloud.

The input is the output of :func:`sambertd.frontend.cleanup.clean`; the output holds only
Chinese characters and the pause marks ``，。！？、；：``.  Numbers, dates, times, money,
percentages, units, phone numbers, Latin letters and symbols are all spelled out in Chinese.

The work is a list of small :class:`Rule` objects (a regular expression plus a converter),
applied in the order of :data:`RULES`.  The order is deliberate, most specific first: a phone
number must be read digit by digit before the generic number rule would read ``12345`` as
一万两千三百四十五, a date before a range would read ``2026-03-05`` as a subtraction, a unit
before the letter rule would spell ``km`` as 开艾姆.  Each rule is testable on its own through
:data:`RULES_BY_NAME`.

Reading choices (for reviewers):

* numbers are read with ``cn2an``; 2 becomes 两 before 千/万/亿 at the head of a group
  (2000 两千, 2380万 两千三百八十万, 12000 一万两千) and when a bare 2 counts something
  (2个 两个, 2km 两公里, 2:00 两点), but never in ordinals, dates, decimals or 12/20/0.2;
* digit strings read 1 as 一, never 幺 (phone numbers, hotlines, ID and case numbers, years,
  room numbers 201室); the well-known hotlines 123xx/95xxx/96xxx (12345, 12315, 95598) are
  read digit by digit even without 电话/热线 before them, unless a measure word follows
  (12345人); any other number with a leading 0, or 7+ digits and no unit, is read digit by digit;
* a number dialled or copied is dictated in groups with a pause (、) between them: landlines
  with their area code (010-12345678, (0571)87654321, 0571-8765-4321), 400/800 numbers 3-3-4,
  written joined, dashed or spaced; an extension after 转/分机 digit by digit (转八、零、零、一);
  every number of a list after 拨打/电话/热线 is read so (拨打96110或400-610-1234, 110和119),
  unless it counts something (热线3000余次); the carriers' 10086 and 10010 are hotlines too;
* postcodes after 邮编/邮政编码 are six digits in one run (一零零八七一); licence plates are
  read character by character (浙A12345 浙诶一二三四五);
* year spans are read digit by digit before 年/学年/学期/年度/赛季/财年/届/级 (2019-2020学年
  二零一九至二零二零学年, 2019-20赛季) and bare when both ends look like years (2019~2020);
* two-digit years are read digit by digit only when the context says year (96年入伍, '96年,
  19年3月, 08级, 19届毕业生, 90后 九零后); 10年, 20年来, 12级台风, 19届 stay cardinal;
* a list number ``1.`` or ``1、`` before Chinese text is read 一、;
* money: ``￥1,200.50`` is 一千二百点五元 (decimal reading, trailing zeros dropped), the same
  style as 3.5万元, rather than 元角分;
* times: ``8:30`` is 八点三十分, ``9:00`` is 九点, ranges use 至;
* speed: ``60km/h`` is 每小时六十公里, the reading used on Chinese road signs;
* ``No.123`` is read 编号一二三; URLs drop their ``http://`` scheme and spell the rest;
* Latin letters are spelled with fixed Mandarin syllables (:data:`LETTERS`) because the
  acoustic model only has Mandarin phones;
* parentheses and brackets become a pause (，), quotes and title marks are dropped, ``…`` and
  ``—`` become ，; runs of pause marks collapse to the strongest one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import cn2an

__all__ = [
    "ACRONYMS",
    "LETTERS",
    "RULES",
    "RULES_BY_NAME",
    "UNITS",
    "Rule",
    "normalize",
    "read_digits",
    "read_number",
    "spell_letters",
]

_log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Reading helpers
# --------------------------------------------------------------------------------------------

_DIGIT_READING = str.maketrans("0123456789", "零一二三四五六七八九")

#: One fixed Mandarin reading per Latin letter (the voice has no English phones).
LETTERS: Mapping[str, str] = {
    "A": "诶", "B": "比", "C": "西", "D": "迪", "E": "伊", "F": "艾弗", "G": "吉",
    "H": "艾尺", "I": "艾", "J": "杰", "K": "开", "L": "艾勒", "M": "艾姆", "N": "恩",
    "O": "欧", "P": "批", "Q": "丘", "R": "阿尔", "S": "艾斯", "T": "提", "U": "优",
    "V": "维", "W": "达不溜", "X": "艾克斯", "Y": "外", "Z": "贼",
}  # fmt: skip

#: Symbols read inside URLs and e-mail addresses.
_URL_SYMBOLS: Mapping[str, str] = {
    ".": "点", "/": "斜杠", ":": "冒号", "-": "杠", "_": "下划线", "@": "艾特",
    "?": "问号", "=": "等于", "&": "和", "#": "井号", "%": "百分号", "~": "波浪号",
    "+": "加",
}  # fmt: skip

# Words a bare 2 counts, so that it reads 两 (两个, 两公里, 两点); dates (号, 月, 日),
# levels (级, 层, 楼) and degrees keep 二.
_MEASURE_CHARS = (
    "个位名种项次件条张台辆家份本只头匹户人口套间座所栋幢块元角毛天周年岁倍成类批轮场届米克"
    "斤吨升亩千万亿百点篇段句盒箱包瓶袋杯碗部支根把双对副声遍趟步款样门棵株颗粒片架艘列起宗例"
    "处秒瓦伏兆吉"
)
_MEASURE_PHRASES = "美元|欧元|英镑|港元|分钟|小时|星期|公里|厘米|毫米|公斤|毫升|公顷|平方|立方|字节"
_MEASURE_RE = re.compile(f"[{_MEASURE_CHARS}]|{_MEASURE_PHRASES}")

# What may follow a long digit string for it to be a quantity rather than an ID number.
_QUANTITY_FOLLOW_RE = re.compile(
    _MEASURE_RE.pattern + "|多|余|左右|以上|以下|以内|万|亿|号|日|度|分|％|%"
)

_CURRENCY_WORDS = ("元", "美元", "欧元", "英镑", "港元", "块")

# Separators of a range: 3-5, 3~5, 3—5, 3至5, 3到5.
_RANGE_SEP = r"(?:-|~|～|–|—{1,2}|至|到)"

# A number: digits with optional thousands separators and an optional decimal part.
_NUM = r"(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?"
# Start of a number: not inside another number (nor right after "1." of a decimal).
_NB = r"(?<![0-9])(?<![0-9]\.)"

# Digits and Chinese numerals: what a number, read or not yet read, ends with.
_NUMERAL_CHARS = "0123456789零一二三四五六七八九十百千万亿两"

# Han characters, for lookarounds.
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3007"


def read_digits(digits: str) -> str:
    """Read a digit string digit by digit (1 is 一, not 幺); other characters are dropped.

    Used for phone numbers, hotlines, ID and case numbers and years, where a listener must
    be able to write the digits down.  ``cn2an``'s "direct" mode does the work; a huge input
    (a pasted digit dump) uses a plain translation table, which gives the same result.
    """
    only = "".join(ch for ch in digits if "0" <= ch <= "9")
    if not only:
        return ""
    if len(only) <= 64:
        try:
            return str(cn2an.an2cn(only, "direct"))
        except Exception:  # cn2an validates its input; never let that escape
            pass
    return only.translate(_DIGIT_READING)


def _digit_groups(digits: str) -> list[str]:
    """Split one run of digits the way numbers are dictated: mobile 3-4-4, 400/800 numbers
    3-3-4, ID numbers 6-8-4, anything else longer than four digits in fours from the left
    (never leaving a lone last digit)."""
    if len(digits) == 11 and digits[0] == "1":  # mobile 138-1234-5678
        return [digits[:3], digits[3:7], digits[7:]]
    if len(digits) == 10 and digits[:3] in ("400", "800"):  # service numbers 400-123-4567
        return [digits[:3], digits[3:6], digits[6:]]
    if len(digits) in (17, 18):  # resident ID: region, birth date, sequence (+ check digit)
        return [digits[:6], digits[6:14], digits[14:]]
    groups = [digits[i : i + 4] for i in range(0, len(digits), 4)]
    if len(groups) > 1 and len(groups[-1]) == 1:
        groups[-2:] = [groups[-2] + groups[-1]]
    return groups


def dictate(number: str) -> str:
    """Read a number meant to be written down (phone, hotline, ID, case number) digit by digit,
    with a short pause (、) between groups — and between every digit of a short number such as
    a hotline.  Said in one breath, 一二三四五 blurs for a caller on a phone line; read in
    groups, the way a hotline agent dictates, it can be taken down (and an ASR listener
    transcribes it as digits instead of guessing a quantity).  Existing separators (-, space,
    parentheses) mark groups too.
    """
    runs = [r for r in re.split(r"[^0-9]+", number) if r]
    groups = [g for run in runs for g in _digit_groups(run)]
    if len(groups) == 1 and len(groups[0]) <= 5:
        groups = list(groups[0])
    return "、".join(read_digits(g) for g in groups)


def _apply_liang(reading: str, following: str) -> str:
    """Use 两 where Mandarin says it: 两千, 两万, 两亿 at the head of a group, and 两个.

    ``cn2an`` always writes 二.  Inside a number, 二 becomes 两 before 千/万/亿 when it starts
    the number or follows 万/亿 (一万两千) but not when it ends 十二 or 零二 (二十二万,
    一千零二万).  A bare 2 becomes 两 before a measure word (两个, 两公里) but not before
    号/月/日/级 (二号, 二月).
    """
    reading = re.sub(r"(?<![^万亿])二(?=[千万亿])", "两", reading)
    if reading == "二" and _MEASURE_RE.match(following.lstrip()):
        return "两"
    return reading


def read_number(number: str, following: str = "", *, liang: bool = True) -> str:
    """Read a number as a quantity: 1850 一千八百五十, 2,380 两千三百八十, 1.2 一点二.

    ``following`` is the text right after the number; it decides 两 vs 二 and, when it is a
    currency, lets trailing decimal zeros go (1200.50元 一千二百点五元).  Numbers of more
    than 16 integer digits are beyond ``cn2an`` and are read digit by digit.
    """
    number = number.replace(",", "")
    integer, _, fraction = number.partition(".")
    integer = integer.lstrip("0") or "0"
    follow = following.lstrip()
    if fraction and follow.startswith(_CURRENCY_WORDS):
        fraction = fraction.rstrip("0")
    if len(integer) > 16:
        return read_digits(integer) + ("点" + read_digits(fraction) if fraction else "")
    try:
        reading = str(cn2an.an2cn(integer + ("." + fraction if fraction else ""), "low"))
    except Exception:
        return read_digits(integer) + ("点" + read_digits(fraction) if fraction else "")
    if reading.startswith("一十"):  # 10-19 at the head of a number: 十二, not 一十二
        reading = reading[1:]
    if liang and not fraction:
        reading = _apply_liang(reading, follow)
    return reading


def spell_letters(word: str) -> str:
    """Spell Latin letters one by one with :data:`LETTERS`; other characters are dropped."""
    return "".join(LETTERS.get(ch.upper(), "") for ch in word)


def _spell_token(token: str) -> str:
    """Spell a URL or e-mail piece: letters by :data:`LETTERS`, digits one by one, each with
    a short pause (、) after it, so that a listener can type it in."""
    out: list[str] = []
    for ch in token:
        if "0" <= ch <= "9":
            out.append(read_digits(ch))
        elif ch.isascii() and ch.isalpha():
            out.append(LETTERS[ch.upper()])
        else:
            out.append(_URL_SYMBOLS.get(ch, ""))
    return "、".join(x for x in out if x)


def _sign_allowed(match: re.Match[str], group: str) -> bool:
    """True when the ``-`` captured in ``group`` is a minus sign, not a dash after a token."""
    text = match.string
    start = match.start(group)
    if start < 0:
        return False
    before = text[start - 1] if start > 0 else ""
    if before and before.isascii() and (before.isalnum() or before in "%)."):
        return False
    # 9点-12点, 五日-十日: a dash after a counted unit is a range, not a minus sign.
    return not (start > 1 and text[start - 2] in _NUMERAL_CHARS)


_HAN_CHAR_RE = re.compile(f"[{_HAN}]")


def _following(match: re.Match[str], n: int = 4) -> str:
    """The text right after a match, which decides 两 vs 二 and quantity vs ID number."""
    return match.string[match.end() : match.end() + n]


def _preceding(match: re.Match[str], n: int = 2) -> str:
    return match.string[max(0, match.start() - n) : match.start()]


# --------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One normalization rule: every match of ``pattern`` is replaced by ``replace(match)``."""

    name: str
    pattern: re.Pattern[str]
    replace: Callable[[re.Match[str]], str]
    doc: str = ""

    def apply(self, text: str) -> str:
        """Apply this rule alone to ``text``."""
        return self.pattern.sub(self.replace, text)


def _const(value: str) -> Callable[[re.Match[str]], str]:
    """A converter that always returns ``value``."""

    def convert(_match: re.Match[str]) -> str:
        return value

    return convert


# --- acronyms ------------------------------------------------------------------------------

#: Acronyms with a fixed reading; anything else in Latin letters is spelled letter by letter.
ACRONYMS: Mapping[str, str] = {
    "WIFI": "歪法伊",
    "WI-FI": "歪法伊",
    "KM/H": "公里每小时",
    "PM2.5": spell_letters("PM") + "二点五",
    "PM10": spell_letters("PM") + "十",
    "5G": "五" + LETTERS["G"],
    "4G": "四" + LETTERS["G"],
    "3G": "三" + LETTERS["G"],
    "GDP": spell_letters("GDP"),
    "CPI": spell_letters("CPI"),
    "PPI": spell_letters("PPI"),
    "APP": spell_letters("APP"),
    "ETC": spell_letters("ETC"),
}

_ACRONYM_RE = re.compile(
    r"(?<![A-Za-z0-9])(?<![0-9] )(?:"
    + "|".join(re.escape(k) for k in sorted(ACRONYMS, key=len, reverse=True))
    + r")(?![A-Za-z0-9])",
    re.IGNORECASE,
)


def _acronym(match: re.Match[str]) -> str:
    return ACRONYMS[match.group().upper()]


# --- e-mail and URLs ------------------------------------------------------------------------

_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
    r"(?![A-Za-z0-9-])"
)

_TLDS = "cn|com|net|org|gov|edu|mil|int|info|biz|io|top|xyz|site|online|vip|hk|mo|tw|uk|us|jp"
_URL_RE = re.compile(
    r"(?<![A-Za-z0-9.@/-])"
    r"(?:(?:https?|ftp)://[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
    r"|www\.[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
    rf"|(?:[A-Za-z0-9-]+\.)+(?:{_TLDS})(?![A-Za-z0-9-]))"
    r"(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~%/?=&#+-]*)?",
    re.IGNORECASE,
)


def _email(match: re.Match[str]) -> str:
    return _spell_token(match.group())


def _url(match: re.Match[str]) -> str:
    """Spell a URL without its scheme; punctuation that ends the sentence is given back."""
    url = match.group()
    body = url.rstrip(".,;:!?")
    tail = url[len(body) :]
    body = re.sub(r"^(?:https?|ftp)://", "", body, flags=re.IGNORECASE).rstrip("/")
    # A spelled address stands apart from the words around it: a pause before and after.
    before = "，" if _HAN_CHAR_RE.fullmatch(_preceding(match, 1)) else ""
    after = "，" if not tail and _HAN_CHAR_RE.fullmatch(_following(match, 1)) else ""
    return before + _spell_token(body) + tail + after


# --- digit strings: IDs, phone numbers, hotlines --------------------------------------------

_ID_CARD_RE = re.compile(r"(?<![0-9A-Za-z])[1-9][0-9]{16}[0-9Xx](?![0-9A-Za-z])")


def _id_card(match: re.Match[str]) -> str:
    number = match.group()
    return dictate(number) + ("、" + LETTERS["X"] if number[-1] in "Xx" else "")


# Licence plates: a province's one-character name, the city letter, then five characters
# (six on new-energy plates) of letters and digits, at least one a digit: 浙A12345, 粤B·D12345.
# Upper case only, as on a plate, so that ordinary text with a Latin word is left alone.
_PLATE_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_PLATE_RE = re.compile(
    rf"(?P<p>[{_PLATE_PROVINCES}])(?P<l>[A-Z])[·•・ -]?"
    r"(?P<rest>(?=[A-Z]*[0-9])[A-Z0-9]{5,6})(?![A-Za-z0-9])"
)


def _plate(match: re.Match[str]) -> str:
    """浙A12345 浙诶一二三四五: every character on its own, like the code rule (G1234)."""
    rest = match.group("rest")
    return (
        match.group("p")
        + LETTERS[match.group("l")]
        + "".join(read_digits(ch) if ch.isdigit() else LETTERS[ch] for ch in rest)
    )


_NUMBER_SIGN_RE = re.compile(r"(?<![A-Za-z])(?:No|NO|no|№)\.?\s?(?P<num>[0-9]+(?:-[0-9]+)*)")


def _number_sign(match: re.Match[str]) -> str:
    return "编号" + dictate(match.group("num"))


# Words after which a number is dialled or copied rather than counted (longest first).
_PHONE_KEYWORDS = (
    "身份证号码|服务电话|咨询电话|联系电话|投诉电话|举报电话|监督电话|办公电话|值班电话|"
    "客服电话|电话号码|手机号码|邮政编码|银行卡号|证件号码|身份证号|手机号|验证码|微信号|"
    "证件号|订单号|流水号|受理号|身份证|车牌号|电话|热线|专线|手机|传真|拨打|致电|呼叫|来电|"
    "座机|客服|短信|号码|邮编|账号|帐号|卡号|密码|证号|编号|工号|单号|批号|案号|学号|报警|"
    "分机|QQ"
)
# A phone number as written: mobile, landline with its area code (in brackets, or followed by
# a dash or a space; the local part in one piece or split 4-4), 400/800 service numbers (3-3-4,
# joined, dashed or spaced).  Shared by the phone rule and the numbers after 电话/拨打/....
_PHONE_BODY = (
    r"(?:\+?86[- ]?)?1[3-9][0-9](?:[- ]?[0-9]{4}){2}"  # mobile 138-1234-5678
    r"|(?:[(（]0[0-9]{2,3}[)）]\s?|0[0-9]{2,3}[- ])(?:[0-9]{7,8}|[0-9]{3,4}[- ][0-9]{4})"
    r"(?:-[0-9]{1,6})?"  # landline (0571)87654321, 0571-8765-4321 [+ -ext]
    r"|[48]00[- ]?[0-9]{3}[- ]?[0-9]{4}"  # 400/800 service numbers 400-610-1234
)
# An extension said with a word: 转8001, 分机205.
_EXTENSION = r"(?P<ext>转|分机)(?P<extnum>[0-9]{1,6})(?![0-9])"

# One more number after the first in a list (拨打110、119或120; 96110或400-610-1234;
# 12345或0571-87654321转803): dashed or spaced groups, the last of three or more digits, an
# optional extension, and not a year or a count (拨打12345和2024年: 2024 is a year).
_MORE_NUMBER = (
    r"(?:或者|[、/或和及])"
    r"\+?(?:[0-9]+[- ])*[0-9]{3,}(?![0-9]|\s?[年月日号元个次件万亿])"
    r"(?:(?:转|分机)[0-9]{1,6}(?![0-9]))?"
)
_MORE_NUMBER_RE = re.compile(
    r"(?P<sep>或者|[、/或和及])(?P<num>\+?[0-9][0-9 -]*[0-9])"
    r"(?:(?P<ext>转|分机)(?P<extnum>[0-9]+))?"
)
_PHONE_CONTEXT_RE = re.compile(
    rf"(?P<kw>{_PHONE_KEYWORDS})(?P<sep>(?:号码|号)?\s?[：:]?\s?(?:为|是)?\s?[：:]?\s?)"
    rf"(?P<num>(?:{_PHONE_BODY})(?![0-9])"
    r"|\+?[0-9](?:[0-9]|-(?=[0-9]))*(?:[Xx](?![A-Za-z]))?)"
    r"(?:(?P<ext>转|分机)(?P<extnum>[0-9]+))?"
    rf"(?P<more>(?:{_MORE_NUMBER})*)"
)
# A count after the keyword (热线3000余次, 短信200条, 来电500通): a quantity, not a number to
# dial.  人 is not here: 95588人工服务 is a number to dial.
_CONTEXT_COUNT_RE = re.compile(r"多|余|万|亿|人次|[次条件个通起宗例]")


def _counts(number: str, following: str) -> bool:
    """True when the words after ``number`` make it a count (热线3000余次) rather than a
    number to dial.  多次 after a service number is "many times" (拨打12345多次未接通)."""
    if following.startswith("多次") and (
        _HOTLINE_RE.fullmatch(number) or re.fullmatch(r"1[0-9]{2}", number)
    ):
        return False
    return bool(_CONTEXT_COUNT_RE.match(following))


# Postcodes are six digits said in one run (邮编一零零八七一), not dictated in groups.
_POSTCODE_KEYWORDS = ("邮编", "邮政编码")


def _phone_context(match: re.Match[str]) -> str:
    """After 电话/热线/编号/... a number is dialled or copied, so read it digit by digit."""
    sep = match.group("sep").replace(" ", "").replace(":", "：")
    num = match.group("num")
    kw = match.group("kw")
    plain = not match.group("ext") and not match.group("more") and num.isdigit()
    if plain and _counts(num, _following(match).lstrip()):
        return kw + sep + read_number(num, _following(match))  # 热线3000余次: a count
    if kw in _POSTCODE_KEYWORDS and re.fullmatch(r"[0-9]{6}", num):
        out = kw + sep + read_digits(num)
    else:
        out = kw + sep + dictate(num)
    if num[-1] in "Xx":
        out += "、" + LETTERS["X"]
    if match.group("ext"):
        out += match.group("ext") + dictate(match.group("extnum"))
    for more in _MORE_NUMBER_RE.finditer(match.group("more")):
        joiner = more.group("sep")
        out += ("，" if joiner in "/、" else joiner) + dictate(more.group("num"))
        if more.group("ext"):
            out += more.group("ext") + dictate(more.group("extnum"))
    return out


_PHONE_RE = re.compile(rf"(?<![0-9])(?P<num>{_PHONE_BODY})(?![0-9])(?:{_EXTENSION})?")


def _phone(match: re.Match[str]) -> str:
    """Mobile, landline and 400/800 numbers in groups; an extension after 转/分机 digit by digit."""
    out = dictate(match.group("num"))
    if match.group("ext"):
        out += match.group("ext") + dictate(match.group("extnum"))
    return out


_HOTLINE_RE = re.compile(
    r"(?<![0-9,.])"
    r"(?:123[0-9]{2}|12110|12306|12117|12121|12122|95[0-9]{3}|96[0-9]{3}|10086|10010)"
    r"(?![0-9,.%])"
)


def _hotline(match: re.Match[str]) -> str:
    """Well-known hotlines (12345, 12315, 95598, ...) unless they count something (12345人;
    but 12345多次未接通 is "many times")."""
    following = _following(match).lstrip()
    counts = _QUANTITY_FOLLOW_RE.match(following) and not following.startswith("多次")
    if _preceding(match, 1) == "第" or counts:
        return match.group()
    return dictate(match.group())


_BEFORE_HOTLINE_RE = re.compile(
    rf"(?<![0-9,.])[0-9]{{3,}}(?![0-9,.])(?=\s?[{_HAN}]{{0,6}}?(?:热线|专线|服务电话|客服电话|短信))"
)


def _before_hotline(match: re.Match[str]) -> str:
    """``12345政务服务便民热线``: the number names the hotline."""
    if _QUANTITY_FOLLOW_RE.match(_following(match).lstrip()):
        return match.group()
    return dictate(match.group())


_ROOM_RE = re.compile(r"(?<![0-9.])[0-9]{3,4}(?=室|房间|会议室|办公室|教室|号房)")


def _room(match: re.Match[str]) -> str:
    """201室 二零一室: room numbers are labels, read digit by digit."""
    return read_digits(match.group())


_LIST_MARKER_RE = re.compile(
    rf"(?:(?<=^)|(?<=[\s，。！？；：、,;:!?]))(?P<n>[0-9]{{1,2}})[.．、]\s?(?=[{_HAN}])"
)


def _list_marker(match: re.Match[str]) -> str:
    """``1. 携带身份证`` 一、携带身份证: the dot after a list number is a short pause."""
    return read_number(match.group("n"), liang=False) + "、"


# --- dates and years --------------------------------------------------------------------------

# Words before a number of years that make it a duration (约1000年), not a year.
_DURATION_BEFORE = ("近", "约", "超", "逾", "共", "长达", "历时", "多", "余", "过", "了", "第")

# What a span of years is counted in: 2019-2020年, 学年, 学期, 年度, 赛季, 财年, 届, 级.
_YEAR_SPAN_WORDS = r"(?:年|学年|学期|赛季|财年|届|级)"
_YEAR_RANGE_RE = re.compile(
    rf"(?<![0-9.])(?P<a>[12][0-9]{{3}})\s?{_RANGE_SEP}\s?(?P<b>[12][0-9]{{3}}|[0-9]{{2}})"
    rf"(?![0-9])(?P<span>(?=\s?{_YEAR_SPAN_WORDS}))?"
)
# What makes a bare 1990-2000 a quantity range: a unit, a measure word, a currency or a
# percent sign after it, a currency or a duration word before it.
_NOT_YEAR_AFTER_RE = re.compile(_QUANTITY_FOLLOW_RE.pattern + r"|[A-Za-z%‰℃°.\-~～/:：]|之间|上下")
# A currency, 第, or a noun of measure right before (售价1980-2000, 人数1980-2000).
_NOT_YEAR_BEFORE = "¥￥$€£第价费薪资额量数值高重长宽深距积"
_YEAR_DURATION_AFTER = ("年前", "年来", "年之久", "年以上", "多年")


def _is_duration(match: re.Match[str], number: str) -> bool:
    """约1000年, 近2000年, 2000年之久: a number of years, not a year (see :func:`_year`)."""
    after = _following(match, 4).lstrip()
    return _preceding(match).endswith(_DURATION_BEFORE) or (
        number.endswith("00") and after.startswith(_YEAR_DURATION_AFTER)
    )


def _year_range(match: re.Match[str]) -> str:
    """2019-2020学年, 2019—2020年度, 2019至2020年, 2019-20赛季: each year digit by digit.

    Before 年/学年/学期/年度/赛季/财年/届/级 any two four-digit numbers are a span of years,
    unless a duration word makes them numbers of years (约1000-2000年 约一千至两千年).  A short
    second year (2019-20) needs 年/学年/赛季/财年 and must come after the first.

    A bare range (2019~2020) is read as years only when it certainly looks like one: both ends
    in 1900-2099, the second later by at most a century, not both round hundreds (1900-2000
    may be a quantity), and no unit, measure word, currency or noun of measure around it
    (1980-2000元 and 售价1980-2000 are price ranges).  Anything else is given back unchanged
    for the range and number rules.
    """
    a, b = match.group("a"), match.group("b")
    text = match.group()
    if match.group("span") is not None:
        if len(b) == 2:
            after = _following(match, 3).lstrip()
            later = int(b) > int(a[2:]) or (a[2:] == "99" and b == "00")
            span = after.startswith(("年", "学年", "赛季", "财年"))
            if not (1900 <= int(a) <= 2099 and later and span):
                return text
        elif _is_duration(match, b):  # 约1000-2000年: read here, or the year rule takes 2000年
            return read_number(a, "年") + "至" + read_number(b, "年")
        return read_digits(a) + "至" + read_digits(b)
    if len(b) == 2 or not 1900 <= int(a) < int(b) <= min(2099, int(a) + 100):
        return text
    if int(a) % 100 == 0 and int(b) % 100 == 0:
        return text
    before = _preceding(match, 2)
    if before.endswith(_DURATION_BEFORE) or (before and before[-1] in _NOT_YEAR_BEFORE):
        return text
    if _NOT_YEAR_AFTER_RE.match(_following(match).lstrip()):
        return text
    return read_digits(a) + "至" + read_digits(b)


_DATE_RE = re.compile(
    r"(?<![0-9.])(?P<y>[12][0-9]{3})(?P<sep>[-/.])(?P<m>1[0-2]|0?[1-9])(?P=sep)"
    r"(?P<d>3[01]|[12][0-9]|0?[1-9])(?![0-9])"
)


def month_day(month: str, day: str | None = None) -> str:
    out = read_number(month, liang=False) + "月"
    if day is not None:
        out += read_number(day, liang=False) + "日"
    return out


def _date(match: re.Match[str]) -> str:
    """2026-03-05, 2026/3/5, 2026.3.5: 二零二六年三月五日."""
    return read_digits(match.group("y")) + "年" + month_day(match.group("m"), match.group("d"))


_YEAR_MONTH_RE = re.compile(
    r"(?<![0-9.])(?P<y>[12][0-9]{3})[-/](?P<m>1[0-2]|0?[1-9])(?![0-9]|[-/.][0-9])"
)


def _year_month(match: re.Match[str]) -> str:
    return read_digits(match.group("y")) + "年" + month_day(match.group("m"))


_YEAR_RE = re.compile(
    r"(?<![0-9])(?<![0-9]\.)(?P<y>[12][0-9]{3})(?=\s?(?:年|届|级|版|财年|学年|学期|赛季))"
)


def _year(match: re.Match[str]) -> str:
    """2026年 is read 二零二六年, but 约1000年 and 2000年之久 are durations."""
    year = match.group("y")
    if _is_duration(match, year):
        return read_number(year, _following(match, 4).lstrip())
    return read_digits(year)


# Two-digit years (96年入伍, 08级新生, 19届毕业生).  Most "NN年" are durations (10年, 20年来),
# "NN级" levels (12级台风) and "NN届" counts or ordinals (举办19届, 第19届), so a two-digit
# number is a year only when something says so:
# * it is written with an apostrophe ('96年, ’08级), or with a leading zero (08年, 05届),
#   which no duration, level or count has;
# * before 年: an event that happens in a year, not over years (入伍, 参军, 毕业, 出生, 入学,
#   入党, 入职, 参加工作, 高考, 中考, 生人), a month (19年3月) or 年底/年初/年末 (20年底);
#   退休/退役 are left out (工作30年退休 is a duration);
# * before 级/届: a cohort noun (08级新生, 96级校友, 19届毕业生);
# and never after 第, another number, a decimal point, a range dash, or a word that makes it
# a duration or a count (_DURATION_BEFORE and 近/这/每/已/培养/...: 近20年出生人口).
_SHORT_YEAR_RE = re.compile(
    r"(?:(?P<q>['’‘`])|(?<![0-9.\-~～'’‘`]))(?P<y>[0-9]{2})(?![0-9.])(?=\s?[年级届])"
)
_SHORT_YEAR_EVENT_RE = re.compile(
    r"\s?年(?:入伍|参军|毕业|出生|入学|入党|入职|参加工作|高考|中考|生人|底|初|末"
    r"|\s?(?:1[0-2]|0?[1-9])\s?月)"
)
_COHORT_RE = re.compile(
    r"\s?[级届](?:新生|学生|本科|硕士|博士|研究生|毕业生|校友|同学|学员|学子|新兵|老兵"
    r"|学长|学姐|学弟|学妹)"
)
_SHORT_YEAR_NOT_AFTER = (
    *_DURATION_BEFORE, "这", "那", "每", "前", "后", "头", "满", "达", "已", "经过", "过去",
    "最近", "培养", "累计", "连续", "举办", "徒刑", "刑期", "两", "几",
)  # fmt: skip
_SHORT_YEAR_NOT_AFTER_RE = re.compile(f"[{_NUMERAL_CHARS}]$")


def _short_year(match: re.Match[str]) -> str:
    """'96年 九六年, 96年入伍 九六年入伍, 08级 零八级; other two-digit numbers are left as
    they are for the generic rules (10年 十年, 12级台风 十二级台风)."""
    year = match.group("y")
    before = _preceding(match, 2)
    if before.endswith(_SHORT_YEAR_NOT_AFTER) or _SHORT_YEAR_NOT_AFTER_RE.search(before):
        return match.group()  # 第08届 is still 第八届
    if match.group("q") or year[0] == "0":
        return read_digits(year)
    rest = match.string[match.end() : match.end() + 8]
    if _SHORT_YEAR_EVENT_RE.match(rest) or _COHORT_RE.match(rest):
        return read_digits(year)
    return match.group()


# Generations: 90后 九零后, 00后 零零后, 95后 九五后 (a decade or half-decade of birth).  Not
# after a time or unit word or a number (3小时20后, 8点20后: "after twenty"), nor before a
# character that makes 后 part of another word (20后面, 后来, 后续, 后期, ...).
_GENERATION_RE = re.compile(
    r"(?<![0-9.:：点分秒时天年月日号岁周第次个])(?P<y>[0-9][05])"
    r"(?=后(?![面来续期果悔退撤方边台头门卫援勤]))"
)


def _generation(match: re.Match[str]) -> str:
    if _preceding(match, 2).endswith(_DURATION_BEFORE):
        return match.group()
    return read_digits(match.group("y"))


_MONTH_RE = re.compile(_NB + r"(?P<m>1[0-2]|0?[1-9])(?=\s?月)")
_DAY_RE = re.compile(_NB + r"(?P<d>3[01]|[12][0-9]|0?[1-9])(?=\s?[日号])")


def _month(match: re.Match[str]) -> str:
    return read_number(match.group("m"), liang=False)


def _day(match: re.Match[str]) -> str:
    return read_number(match.group("d"), liang=False)


# --- times ------------------------------------------------------------------------------------


def _time_pattern(p: str) -> str:
    """hh:mm[:ss] with named groups ``{p}h``, ``{p}m`` and ``{p}s``."""
    return (
        rf"(?<![0-9])(?P<{p}h>[01]?[0-9]|2[0-4])[:：](?P<{p}m>[0-5][0-9])"
        rf"(?:[:：](?P<{p}s>[0-5][0-9]))?(?![0-9])"
    )


_TIME_RANGE_RE = re.compile(_time_pattern("a") + rf"\s?{_RANGE_SEP}\s?" + _time_pattern("b"))
_TIME_RE = re.compile(_time_pattern("t"))


def read_time(hour: str, minute: str, second: str | None) -> str:
    """9:00 九点, 8:30 八点三十分, 17:05 十七点零五分, 2:00 两点."""
    out = read_number(hour, "点") + "点"
    if minute != "00" or (second and second != "00"):
        out += "零" if minute[0] == "0" and minute != "00" else ""
        out += read_number(minute.lstrip("0") or "0", liang=False) + "分"
    if second and second != "00":
        out += ("零" if second[0] == "0" else "") + read_number(second, liang=False) + "秒"
    return out


def _time_range(match: re.Match[str]) -> str:
    return (
        read_time(match.group("ah"), match.group("am"), match.group("as"))
        + "至"
        + read_time(match.group("bh"), match.group("bm"), match.group("bs"))
    )


def _time(match: re.Match[str]) -> str:
    return read_time(match.group("th"), match.group("tm"), match.group("ts"))


_RATIO_RE = re.compile(r"(?<![0-9])(?P<a>[0-9]+)\s?[:：]\s?(?P<b>[0-9]+)(?![0-9])")


def _ratio(match: re.Match[str]) -> str:
    """3:1 三比一 (scores, scales); times were taken by the time rules already."""
    return (
        read_number(match.group("a"), liang=False)
        + "比"
        + read_number(match.group("b"), liang=False)
    )


# --- percentages ------------------------------------------------------------------------------

_PERCENT_WORDS = {"%": "百分之", "％": "百分之", "‰": "千分之", "‱": "万分之"}

_PERCENT_RANGE_RE = re.compile(
    _NB + rf"(?P<sa>-)?(?P<a>{_NUM})\s?(?P<pa>[%％‰‱])?\s?{_RANGE_SEP}\s?"
    rf"(?P<sb>-)?(?P<b>{_NUM})\s?(?P<pb>[%％‰‱])"
)
_PERCENT_RE = re.compile(rf"(?P<sa>[-+])?{_NB}(?P<a>{_NUM})\s?(?P<pa>[%％‰‱])")


def _signed(match: re.Match[str], sign_group: str, word: str = "负") -> str:
    """The spoken sign for a captured ``-``, or the ``-`` itself when it is not a sign."""
    sign = match.group(sign_group)
    if not sign:
        return ""
    if not _sign_allowed(match, sign_group):
        return sign
    return word if sign == "-" else ""


def _percent_range(match: re.Match[str]) -> str:
    """10%-20% and 10-20%: 百分之十至百分之二十."""
    mark_b = match.group("pb")
    mark_a = match.group("pa") or mark_b
    return (
        _signed(match, "sa")
        + _PERCENT_WORDS[mark_a]
        + read_number(match.group("a"), liang=False)
        + "至"
        + ("负" if match.group("sb") else "")
        + _PERCENT_WORDS[mark_b]
        + read_number(match.group("b"), liang=False)
    )


def _percent(match: re.Match[str]) -> str:
    """3.5% 百分之三点五, 5‰ 千分之五, -3.5% 负百分之三点五."""
    return (
        _signed(match, "sa")
        + _PERCENT_WORDS[match.group("pa")]
        + read_number(match.group("a"), liang=False)
    )


# --- temperature ------------------------------------------------------------------------------

_TEMP_UNITS = {
    "℃": "摄氏度", "°C": "摄氏度", "°c": "摄氏度", "摄氏度": "摄氏度",
    "℉": "华氏度", "°F": "华氏度", "华氏度": "华氏度", "°": "度", "度": "度",
}  # fmt: skip
_TEMP_UNIT = "|".join(sorted(map(re.escape, _TEMP_UNITS), key=len, reverse=True))
_TEMP_RANGE_RE = re.compile(
    rf"(?P<sa>-|\+|零下)?{_NB}(?P<a>{_NUM})\s?(?P<ua>{_TEMP_UNIT})?\s?{_RANGE_SEP}\s?"
    rf"(?P<sb>-|\+|零下)?(?P<b>{_NUM})\s?(?P<ub>{_TEMP_UNIT})"
)
_TEMP_RE = re.compile(rf"(?P<sa>-|\+|零下)?{_NB}(?P<a>{_NUM})\s?(?P<ua>{_TEMP_UNIT})")


def _temp_sign(match: re.Match[str], group: str) -> str:
    sign = match.group(group)
    if sign == "零下":
        return "零下"
    return _signed(match, group, "零下")


def _temperature_range(match: re.Match[str]) -> str:
    """-5~3℃ 零下五至三摄氏度; the first unit is read only when it was written."""
    unit_a = match.group("ua")
    return (
        _temp_sign(match, "sa")
        + read_number(match.group("a"), liang=False)
        + (_TEMP_UNITS[unit_a] if unit_a else "")
        + "至"
        + ("零下" if match.group("sb") in ("-", "零下") else "")
        + read_number(match.group("b"), liang=False)
        + _TEMP_UNITS[match.group("ub")]
    )


def _temperature(match: re.Match[str]) -> str:
    """25℃ 二十五摄氏度, -3°C 零下三摄氏度."""
    return (
        _temp_sign(match, "sa")
        + read_number(match.group("a"), liang=False)
        + _TEMP_UNITS[match.group("ua")]
    )


# --- money ------------------------------------------------------------------------------------

_CURRENCY_PREFIX = {
    "¥": "元", "￥": "元", "RMB": "元", "CNY": "元", "$": "美元", "US$": "美元",
    "USD": "美元", "HK$": "港元", "HKD": "港元", "€": "欧元", "EUR": "欧元", "£": "英镑",
    "GBP": "英镑",
}  # fmt: skip
_CURRENCY = "|".join(sorted(map(re.escape, _CURRENCY_PREFIX), key=len, reverse=True))
_MONEY_PREFIX_RE = re.compile(
    rf"(?<![A-Za-z])(?P<cur>{_CURRENCY})\s?(?P<sa>-)?(?P<a>{_NUM})"
    rf"(?:\s?{_RANGE_SEP}\s?(?:{_CURRENCY})?\s?(?P<b>{_NUM}))?"
    r"(?P<mult>百万|千万|[千万亿])?(?P<cn>元|美元|欧元|英镑|港元)?"
)
_MONEY_SUFFIX_RE = re.compile(
    rf"{_NB}(?P<a>{_NUM})\s?(?P<mult>百万|千万|[千万亿])?\s?"
    r"(?P<cur>RMB|CNY|USD|HKD|EUR|GBP)(?![A-Za-z])"
)


def _money_prefix(match: re.Match[str]) -> str:
    """¥100 一百元, ￥1,200.50 一千二百点五元, $5 五美元, ¥3.5万 三点五万元."""
    unit = match.group("cn") or _CURRENCY_PREFIX[match.group("cur")]
    mult = match.group("mult") or ""
    follow = mult + unit
    out = ("负" if match.group("sa") else "") + read_number(match.group("a"), follow)
    if match.group("b"):
        out += "至" + read_number(match.group("b"), follow)
    return out + mult + unit


def _money_suffix(match: re.Match[str]) -> str:
    mult = match.group("mult") or ""
    unit = _CURRENCY_PREFIX[match.group("cur")]
    return read_number(match.group("a"), mult + unit) + mult + unit


# --- units ------------------------------------------------------------------------------------

_SPEED_UNITS = {
    "km/h": ("每小时", "公里"), "Km/h": ("每小时", "公里"), "KM/H": ("每小时", "公里"),
    "kph": ("每小时", "公里"), "km/s": ("每秒", "公里"), "m/s": ("每秒", "米"),
    "公里/小时": ("每小时", "公里"), "千米/小时": ("每小时", "公里"), "米/秒": ("每秒", "米"),
}  # fmt: skip

#: Units read after a number (case-sensitive: 5G is a network, 5g is five grams).
UNITS: Mapping[str, str] = {
    "km²": "平方公里", "km2": "平方公里", "m²": "平方米", "m2": "平方米", "㎡": "平方米",
    "m³": "立方米", "m3": "立方米", "cm²": "平方厘米", "cm2": "平方厘米", "cm³": "立方厘米",
    "km": "公里", "KM": "公里", "Km": "公里", "㎞": "公里", "cm": "厘米", "mm": "毫米",
    "dm": "分米", "nm": "纳米", "μm": "微米", "µm": "微米", "m": "米",
    "kg": "千克", "KG": "千克", "Kg": "千克", "㎏": "千克", "mg": "毫克", "μg": "微克",
    "g": "克", "t": "吨", "mL": "毫升", "ml": "毫升", "ML": "毫升", "L": "升", "l": "升",
    "h": "小时", "hr": "小时", "hrs": "小时", "min": "分钟", "mins": "分钟", "s": "秒",
    "ms": "毫秒", "sec": "秒", "kWh": "千瓦时", "kW·h": "千瓦时", "kwh": "千瓦时",
    "kW": "千瓦", "KW": "千瓦", "kw": "千瓦", "MW": "兆瓦", "W": "瓦", "kV": "千伏",
    "V": "伏", "mAh": "毫安时", "mA": "毫安", "Hz": "赫兹", "kHz": "千赫兹",
    "MHz": "兆赫兹", "GHz": "吉赫兹", "KB": "千字节", "kB": "千字节", "MB": "兆字节",
    "GB": "吉字节", "TB": "太字节", "Mbps": "兆比特每秒", "Gbps": "吉比特每秒",
    "dB": "分贝", "kPa": "千帕", "MPa": "兆帕", "Pa": "帕", "mmHg": "毫米汞柱",
    "kcal": "千卡",
}  # fmt: skip

_SPEED = "|".join(sorted(map(re.escape, _SPEED_UNITS), key=len, reverse=True))
_UNIT = "|".join(sorted(map(re.escape, UNITS), key=len, reverse=True))
_QUANTITY = rf"(?P<sa>-)?{_NB}(?P<a>{_NUM})(?:\s?{_RANGE_SEP}\s?(?P<sb>-)?(?P<b>{_NUM}))?\s?"
_SPEED_RE = re.compile(_QUANTITY + rf"(?P<u>{_SPEED})(?![A-Za-z])")
_UNIT_RE = re.compile(_QUANTITY + rf"(?P<u>{_UNIT})(?![A-Za-z])")
_PER_UNIT_RE = re.compile(rf"(?<=[{_HAN}])/\s?(?P<u>{_UNIT})(?![A-Za-z0-9])")


def _read_quantity_range(match: re.Match[str], following: str) -> str:
    """A number or a range of numbers before a unit, with signs: 3-5 三至五, -5 负五."""
    out = _signed(match, "sa") + read_number(match.group("a"), following)
    if match.group("b"):
        out += "至" + ("负" if match.group("sb") else "") + read_number(match.group("b"), following)
    return out


def _speed(match: re.Match[str]) -> str:
    """60km/h 每小时六十公里, as on Chinese road signs."""
    per, unit = _SPEED_UNITS[match.group("u")]
    return per + _read_quantity_range(match, unit) + unit


def _unit(match: re.Match[str]) -> str:
    """5km 五公里, 2kg 两千克, 100m² 一百平方米, 3-5h 三至五小时."""
    unit = UNITS[match.group("u")]
    return _read_quantity_range(match, unit) + unit


def _per_unit(match: re.Match[str]) -> str:
    """元/m² 元每平方米: a slash after a quantity means "per"."""
    return "每" + UNITS[match.group("u")]


_PER_RE = re.compile(rf"(?<=[元角吨米克升个人次天时月年秒亩户件台辆斤箱度])/(?=[{_HAN}])")


# --- ordinals, codes, fractions, ranges, signs -----------------------------------------------

_ORDINAL_RE = re.compile(rf"第\s?(?P<a>{_NUM})(?:\s?{_RANGE_SEP}\s?第?\s?(?P<b>{_NUM}))?")


def _ordinal(match: re.Match[str]) -> str:
    """第3条 第三条, 第2名 第二名 (never 两), 第3-5条 第三至五条."""
    out = "第" + read_number(match.group("a"), liang=False)
    if match.group("b"):
        out += "至" + read_number(match.group("b"), liang=False)
    return out


_DASHED_CODE_RE = re.compile(r"(?<![0-9])[0-9]+(?:-[0-9]+){2,}(?![0-9])")
_DOTTED_CODE_RE = re.compile(r"(?<![0-9])[0-9]+(?:\.[0-9]+){2,}(?![0-9])")


def _dashed_code(match: re.Match[str]) -> str:
    """123-456-789: a code, not a chain of ranges; read digit by digit."""
    return read_digits(match.group())


def _dotted_code(match: re.Match[str]) -> str:
    """192.168.1.1 and section numbers 3.1.2: digit groups joined by 点."""
    return "点".join(read_digits(part) for part in match.group().split("."))


_FRACTION_RE = re.compile(r"(?<![0-9/.])(?P<a>[0-9]+)\s?/\s?(?P<b>[0-9]+)(?![0-9/]|\.[0-9])")


def _fraction(match: re.Match[str]) -> str:
    """1/3 三分之一 (dates with slashes were read by the date rule)."""
    return (
        read_number(match.group("b"), liang=False)
        + "分之"
        + read_number(match.group("a"), liang=False)
    )


_MATH_SYMBOLS = {
    "+": "加", "×": "乘", "x": "乘", "X": "乘", "*": "乘", "÷": "除以", "=": "等于",
    "≠": "不等于", "≈": "约等于", "≤": "小于等于", "≥": "大于等于", "<": "小于", ">": "大于",
    "±": "正负",
}  # fmt: skip
_MATH_RE = re.compile(
    r"(?<=[0-9])\s?(?P<op>[+×xX*÷])\s?(?=[0-9])"  # binary operators between numbers
    r"|\s?(?P<cmp>[=≠≈])\s?"  # equality anywhere
    r"|(?P<rel>[≤≥<>±])\s?(?=[0-9])"  # comparisons and ± before a number
)


def _math(match: re.Match[str]) -> str:
    op = match.group("op") or match.group("cmp") or match.group("rel") or ""
    return _MATH_SYMBOLS.get(op, "")


_RANGE_RE = re.compile(
    rf"(?P<sa>-)?{_NB}(?P<a>{_NUM})\s?{_RANGE_SEP}\s?(?P<sb>-)?(?P<b>{_NUM})(?![0-9])"
)


def _range(match: re.Match[str]) -> str:
    """3-5天 三至五天, 2~3个 两至三个: both ends take the unit that follows the range."""
    return _read_quantity_range(match, _following(match))


_NEGATIVE_RE = re.compile(rf"(?P<sa>-){_NB}(?P<a>{_NUM})")


def _negative(match: re.Match[str]) -> str:
    """-5 负五; a dash after a word or number is left for later rules."""
    if not _sign_allowed(match, "sa"):
        return match.group()
    return "负" + read_number(match.group("a"), _following(match))


_ALNUM_CODE_RE = re.compile(r"(?<![A-Za-z0-9])(?P<l>[A-Za-z]{1,4})[- ]?(?P<d>[0-9]{3,})(?![0-9.])")


def _alnum_code(match: re.Match[str]) -> str:
    """G1234次, ISO 9001, GB50016: a code, its digits read one by one."""
    return spell_letters(match.group("l")) + read_digits(match.group("d"))


_LETTERS_RE = re.compile(r"[A-Za-z]+")


def _letters(match: re.Match[str]) -> str:
    return spell_letters(match.group())


# --- remaining numbers ------------------------------------------------------------------------

_NUMBER_RE = re.compile(rf"(?<![0-9])(?P<a>{_NUM})")


def _number(match: re.Match[str]) -> str:
    """Any number left: a quantity, unless it has a leading 0 or 7+ digits and no unit."""
    number = match.group("a")
    following = _following(match)
    integer, _, fraction = number.partition(".")
    code_like = (len(integer) > 1 and integer[0] == "0") or len(integer) >= 7
    if code_like and "," not in integer and not _QUANTITY_FOLLOW_RE.match(following.lstrip()):
        return read_digits(integer) + ("点" + read_digits(fraction) if fraction else "")
    return read_number(number, following)


# --- symbols and punctuation ------------------------------------------------------------------

_SYMBOL_WORDS = {
    "℃": "摄氏度", "℉": "华氏度", "°C": "摄氏度", "°F": "华氏度", "°": "度",
    "@": "艾特", "&": "和", "=": "等于", "‰": "千分之", "+": "加",
}  # fmt: skip
_CN_NUMERAL = "零一二三四五六七八九十百千万亿两"
_SYMBOL_RE = re.compile(
    r"°C|°F|[℃℉°@&=]"
    rf"|(?<=[{_CN_NUMERAL}])\+"  # 10万+ 十万加
)


def _symbol(match: re.Match[str]) -> str:
    return _SYMBOL_WORDS.get(match.group(), "")


_CJK_RANGE_RE = re.compile(
    rf"(?<=[{_CN_NUMERAL}年月日号点分秒时天周])\s?(?:-|–|~|～)\s?(?=[{_CN_NUMERAL}周])"
    rf"|(?<=[{_HAN}])\s?[~～]\s?(?=[{_HAN}])"
)

_PUNCTUATION = {
    ",": "，", ".": "。", "!": "！", "?": "？", ";": "；", ":": "：",
    "(": "，", ")": "，", "（": "，", "）": "，", "[": "，", "]": "，", "【": "，",
    "】": "，", "〔": "，", "〕": "，", "〖": "，", "〗": "，", "…": "，", "⋯": "，",
    "—": "，", "...": "，", "。。。": "，",
}  # fmt: skip
_PUNCT_RE = re.compile(r"\.\.\.|。。。|[,.!?;:()（）\[\]【】〔〕〖〗…⋯—]")


def _punctuation(match: re.Match[str]) -> str:
    return _PUNCTUATION[match.group()]


_SLASH_RE = re.compile(rf"(?<=[{_HAN}])\s?/\s?(?=[{_HAN}])")

_KEEP = "，。！？、；："
_UNREADABLE_RE = re.compile(rf"[^{_HAN}\U00020000-\U0003134F{_KEEP}]+")

_PUNCT_RUN_RE = re.compile(f"[{_KEEP}]{{2,}}")
_STRONG = "。！？"


def _punct_run(match: re.Match[str]) -> str:
    """Keep one mark per run: the first sentence end if any (。！？), else the first mark."""
    run = match.group()
    for ch in run:
        if ch in _STRONG:
            return ch
    for ch in run:
        if ch in "；：":
            return ch
    return run[0]


_LEADING_PAUSE_RE = re.compile(f"^[{_KEEP}]+")


# --------------------------------------------------------------------------------------------
# The ordered rule list
# --------------------------------------------------------------------------------------------

#: All rules in the order :func:`normalize` applies them (most specific first).
RULES: tuple[Rule, ...] = (
    Rule("acronym", _ACRONYM_RE, _acronym, "WiFi 歪法伊, PM2.5, 5G: fixed readings"),
    Rule("email", _EMAIL_RE, _email, "a@b.cn: spelled, @ 艾特, . 点"),
    Rule("url", _URL_RE, _url, "www.gov.cn: spelled with 点, scheme dropped"),
    Rule("id_card", _ID_CARD_RE, _id_card, "18-character ID numbers, digit by digit"),
    Rule("plate", _PLATE_RE, _plate, "浙A12345 浙诶一二三四五"),
    Rule("number_sign", _NUMBER_SIGN_RE, _number_sign, "No.123 编号一二三"),
    Rule("phone_context", _PHONE_CONTEXT_RE, _phone_context, "电话：12345 digit by digit"),
    Rule("phone", _PHONE_RE, _phone, "mobile, landline, 400/800 numbers, 转 extensions"),
    Rule("hotline", _HOTLINE_RE, _hotline, "12345, 12315, 95598 digit by digit"),
    Rule("before_hotline", _BEFORE_HOTLINE_RE, _before_hotline, "12345热线"),
    Rule("room", _ROOM_RE, _room, "201室 二零一室"),
    Rule("list_marker", _LIST_MARKER_RE, _list_marker, "1. 携带 一、携带"),
    Rule("year_range", _YEAR_RANGE_RE, _year_range, "2021-2025年, 2019-2020学年, 2019~2020"),
    Rule("date", _DATE_RE, _date, "2026-03-05, 2026/3/5, 2026.3.5"),
    Rule("year_month", _YEAR_MONTH_RE, _year_month, "2026-03, 2026/3"),
    Rule("year", _YEAR_RE, _year, "2026年 二零二六年"),
    Rule("short_year", _SHORT_YEAR_RE, _short_year, "96年入伍 九六年入伍, 08级 零八级"),
    Rule("generation", _GENERATION_RE, _generation, "90后 九零后"),
    Rule("month", _MONTH_RE, _month, "3月 三月 (2月 is 二月)"),
    Rule("day", _DAY_RE, _day, "5日 五日, 2号 二号"),
    Rule("time_range", _TIME_RANGE_RE, _time_range, "9:00-17:00 九点至十七点"),
    Rule("time", _TIME_RE, _time, "8:30 八点三十分"),
    Rule("ratio", _RATIO_RE, _ratio, "3:1 三比一"),
    Rule("percent_range", _PERCENT_RANGE_RE, _percent_range, "10%-20%"),
    Rule("percent", _PERCENT_RE, _percent, "3.5% 百分之三点五, 5‰ 千分之五"),
    Rule("temperature_range", _TEMP_RANGE_RE, _temperature_range, "-5~3℃"),
    Rule("temperature", _TEMP_RE, _temperature, "25℃ 二十五摄氏度"),
    Rule("money_prefix", _MONEY_PREFIX_RE, _money_prefix, "¥100, $5, ￥3.5万"),
    Rule("money_suffix", _MONEY_SUFFIX_RE, _money_suffix, "100USD"),
    Rule("speed", _SPEED_RE, _speed, "60km/h 每小时六十公里"),
    Rule("unit", _UNIT_RE, _unit, "5km 五公里, 100m² 一百平方米"),
    Rule("per_unit", _PER_UNIT_RE, _per_unit, "元/m² 元每平方米"),
    Rule("per", _PER_RE, _const("每"), "元/人 元每人"),
    Rule("ordinal", _ORDINAL_RE, _ordinal, "第3条 第三条"),
    Rule("dashed_code", _DASHED_CODE_RE, _dashed_code, "123-456-789"),
    Rule("dotted_code", _DOTTED_CODE_RE, _dotted_code, "192.168.1.1"),
    Rule("fraction", _FRACTION_RE, _fraction, "1/3 三分之一"),
    Rule("math", _MATH_RE, _math, "1+1=2 一加一等于二"),
    Rule("range", _RANGE_RE, _range, "3-5天 三至五天"),
    Rule("negative", _NEGATIVE_RE, _negative, "-5 负五"),
    Rule("alnum_code", _ALNUM_CODE_RE, _alnum_code, "G1234 吉一二三四"),
    Rule("letters", _LETTERS_RE, _letters, "ABC 诶比西"),
    Rule("number", _NUMBER_RE, _number, "1850 一千八百五十; 0123 零一二三"),
    Rule("symbol", _SYMBOL_RE, _symbol, "℃ 摄氏度, @ 艾特, & 和"),
    Rule("cjk_range", _CJK_RANGE_RE, _const("至"), "周一-周五 周一至周五"),
    Rule("slash", _SLASH_RE, _const("、"), "是/否 是、否"),
    Rule("punctuation", _PUNCT_RE, _punctuation, "ASCII marks to Chinese, brackets to ，"),
    Rule("unreadable", _UNREADABLE_RE, _const(""), "drop everything that is not read"),
    Rule("punctuation_run", _PUNCT_RUN_RE, _punct_run, "，。 to 。"),
    Rule("leading_pause", _LEADING_PAUSE_RE, _const(""), "no pause before the first word"),
)

#: The rules by name, for tests and for debugging one rule.
RULES_BY_NAME: Mapping[str, Rule] = {rule.name: rule for rule in RULES}


def normalize(text: str) -> str:
    """Normalize cleaned text into Chinese characters and ``，。！？、；：``; never raises.

    If a rule fails on some unexpected input (a bug), the error is logged and the text is
    reduced to what is certainly readable, so one odd request cannot take the daemon down.
    """
    if not isinstance(text, str):  # defensive: callers are typed, clients are not
        return ""
    try:
        for rule in RULES:
            text = rule.apply(text)
        return text
    except Exception:  # pragma: no cover - a bug guard, never expected to run
        _log.exception("text normalization failed, dropping what cannot be read")
        try:
            return _UNREADABLE_RE.sub("", text)
        except Exception:
            return ""
