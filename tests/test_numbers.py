"""Number reading (issue #12, part 4): phones, service numbers, year ranges, two-digit years,
postcodes and ID-like strings.  Table-driven, one table per class, then mixed sentences.

Each case is (what a client sends, how an announcer reads it), in the module's conventions:
digit strings read 1 as 一 (never 幺), a number meant to be written down is dictated in groups
with a short pause (、) between them, and a short one (a hotline, an extension) digit by digit
with a pause after each digit.
"""

from __future__ import annotations

import pytest

from sambertd.frontend.cleanup import clean
from sambertd.frontend.normalize import RULES, RULES_BY_NAME, normalize


def tn(text: str) -> str:
    """What the daemon does: clean, then normalize."""
    return normalize(clean(text))


def _ids(cases: list[tuple[str, str]]) -> list[str]:
    return [c[0][:30] for c in cases]


# 12345 / 96110 / 95588 / 12315 as dictated, and the 400 number of the issue.
H12345 = "一、二、三、四、五"
H96110 = "九、六、一、一、零"
H95588 = "九、五、五、八、八"
H12315 = "一、二、三、一、五"
N400 = "四零零、六一零、一二三四"
N0571 = "零五七一、八七六五、四三二一"

# --- service numbers and hotlines, alone, in lists and next to other numbers ---------------

SERVICE_NUMBERS = [
    ("请拨打96110或400-610-1234", f"请拨打{H96110}或{N400}"),  # the sentence
    ("请拨打12345或400-610-1234咨询", f"请拨打{H12345}或{N400}咨询"),
    ("拨打12345或0571-87654321转803咨询", f"拨打{H12345}或{N0571}转八、零、三咨询"),
    ("拨打110和119", "拨打一、一、零和一、一、九"),
    ("请拨打120或者119", "请拨打一、二、零或者一、一、九"),
    ("热线：12345、96110、400-610-1234", f"热线：{H12345}，{H96110}，{N400}"),
    ("拨打12345或800 820 8820", f"拨打{H12345}或八零零、八二零、八八二零"),
    ("反诈专线96110，银行客服95588", f"反诈专线{H96110}，银行客服{H95588}"),
    ("去年96110接警3万次", f"去年{H96110}接警三万次"),
    ("投诉请打12315，咨询请打12345", f"投诉请打{H12315}，咨询请打{H12345}"),
    ("10086客服", "一、零、零、八、六客服"),
    ("联通10010", "联通一、零、零、一、零"),
    # quantities stay quantities
    ("共12315件", "共一万两千三百一十五件"),
    ("10086元", "一万零八十六元"),
    ("热线3000余次", "热线三千余次"),
    ("短信200条", "短信二百条"),
    ("拨打95588人工服务", f"拨打{H95588}人工服务"),
    ("拨打12345多次未接通", f"拨打{H12345}多次未接通"),
    ("12345多次未接通", f"{H12345}多次未接通"),
    ("拨打110或120人工", "拨打一、一、零或一、二、零人工"),
    ("全年受理热线3000多次", "全年受理热线三千多次"),
    ("拨打12345和2024年", f"拨打{H12345}和二零二四年"),
]


@pytest.mark.parametrize(("text", "expected"), SERVICE_NUMBERS, ids=_ids(SERVICE_NUMBERS))
def test_service_numbers(text: str, expected: str) -> None:
    assert tn(text) == expected


# --- phone numbers: area codes, extensions, 400/800 numbers ---------------------------------

PHONES = [
    ("010-12345678转8001", "零一零、一二三四、五六七八转八、零、零、一"),
    ("0755-83456789分机205", "零七五五、八三四五、六七八九分机二、零、五"),
    ("(0571)87654321", N0571),
    ("（0571）87654321", N0571),
    ("（010）12345678", "零一零、一二三四、五六七八"),
    ("0571-8765-4321", N0571),
    ("0571 8765 4321", N0571),
    ("0571 87654321", N0571),
    ("010-65432100-8001", "零一零、六五四三、二一零零、八零零一"),
    ("400-610-1234", N400),
    ("400 610 1234", N400),
    ("4006101234", N400),
    ("800 820 8820", "八零零、八二零、八八二零"),
    ("800-820-8820转2", "八零零、八二零、八八二零转二"),
    ("138-1234-5678", "一三八、一二三四、五六七八"),
    ("电话：0571-8765-4321转803", f"电话：{N0571}转八、零、三"),
]


@pytest.mark.parametrize(("text", "expected"), PHONES, ids=_ids(PHONES))
def test_phone_numbers(text: str, expected: str) -> None:
    assert tn(text) == expected


# --- year ranges ----------------------------------------------------------------------------

YEAR_RANGES = [
    ("2019-2020学期", "二零一九至二零二零学期"),
    ("2019-2020学年", "二零一九至二零二零学年"),
    ("2019—2020年度", "二零一九至二零二零年度"),
    ("2019至2020年", "二零一九至二零二零年"),
    ("2019~2020", "二零一九至二零二零"),
    ("2019～2020赛季", "二零一九至二零二零赛季"),
    ("2023-2024财年", "二零二三至二零二四财年"),
    ("2019-20赛季", "二零一九至二零赛季"),
    ("1999-00学年", "一九九九至零零学年"),
    ("1949-2019，七十年", "一九四九至二零一九，七十年"),
    ("2021到2025年", "二零二一至二零二五年"),
    ("2019年-2020学年", "二零一九年至二零二零学年"),
    ("2020赛季", "二零二零赛季"),
    ("出生于1980-1990", "出生于一九八零至一九九零"),
    # quantities, not years
    ("1980-2000元", "一千九百八十至两千元"),
    ("1000-2000人", "一千至两千人"),
    ("1900-2000", "一千九百至两千"),
    ("售价1980-2000", "售价一千九百八十至两千"),
    ("约1000-2000年", "约一千至两千年"),
    ("2020-2019", "两千零二十至两千零一十九"),
    ("2019-2020m", "两千零一十九至两千零二十米"),
]


@pytest.mark.parametrize(("text", "expected"), YEAR_RANGES, ids=_ids(YEAR_RANGES))
def test_year_ranges(text: str, expected: str) -> None:
    assert tn(text) == expected


# --- two-digit years: 96年入伍, 08级, 19届毕业生, 90后 ----------------------------------------

SHORT_YEARS = [
    ("96年入伍", "九六年入伍"),
    ("他96年入伍，08年退役", "他九六年入伍，零八年退役"),
    ("'96年", "九六年"),
    ("’08年", "零八年"),
    ("98年毕业", "九八年毕业"),
    ("85年出生的", "八五年出生的"),
    ("78年参加工作", "七八年参加工作"),
    ("19年3月", "一九年三月"),
    ("12级学生", "一二级学生"),
    ("20年底", "二零年底"),
    ("08级新生", "零八级新生"),
    ("96级校友", "九六级校友"),
    ("19届毕业生", "一九届毕业生"),
    ("90后", "九零后"),
    ("00后", "零零后"),
    ("95后的年轻人", "九五后的年轻人"),
    ("80后、90后", "八零后、九零后"),
    # durations, counts and levels stay cardinal
    ("3年", "三年"),
    ("10年", "十年"),
    ("20年来", "二十年来"),
    ("持续了96年", "持续了九十六年"),
    ("近20年出生人口", "近二十年出生人口"),
    ("工作30年退休", "工作三十年退休"),
    ("10-15年", "十至十五年"),
    ("80年代", "八十年代"),
    ("第19届", "第十九届"),
    ("第08届", "第八届"),
    ("19届", "十九届"),
    ("已培养19届毕业生", "已培养十九届毕业生"),
    ("12级台风", "十二级台风"),
    ("1.5年", "一点五年"),
    ("20后面", "二十后面"),
    ("3小时20后", "三小时二十后"),
    ("超过20后", "超过二十后"),
    ("有期徒刑10年6个月", "有期徒刑十年六个月"),
    ("96-98年入伍", "九十六至九十八年入伍"),  # a two-digit range before 年 is a duration
]


@pytest.mark.parametrize(("text", "expected"), SHORT_YEARS, ids=_ids(SHORT_YEARS))
def test_two_digit_years(text: str, expected: str) -> None:
    assert tn(text) == expected


# --- postcodes and ID-like strings ----------------------------------------------------------

CODES = [
    ("邮编100871", "邮编一零零八七一"),
    ("邮编：310000", "邮编：三一零零零零"),
    ("邮政编码：100010", "邮政编码：一零零零一零"),
    ("身份证号110101199003071234", "身份证号一一零一零一、一九九零零三零七、一二三四"),
    (
        "身份证号码：11010119900307123X",
        "身份证号码：一一零一零一、一九九零零三零七、一二三、艾克斯",
    ),
    ("工号A1234", "工号诶一二三四"),
    ("工号：007", "工号：零、零、七"),
    ("订单号2024031512345", "订单号二零二四、零三一五、一二三四五"),
    ("编号A-001", "编号诶零零一"),
    ("车牌浙A12345", "车牌浙诶一二三四五"),
    ("车牌号：粤B·D12345", "车牌号：粤比迪一二三四五"),
    ("京A88888的车主", "京诶八八八八八的车主"),
    ("沪C 2B345", "沪西二比三四五"),
]


@pytest.mark.parametrize(("text", "expected"), CODES, ids=_ids(CODES))
def test_postcodes_and_ids(text: str, expected: str) -> None:
    assert tn(text) == expected


# --- mixed sentences ------------------------------------------------------------------------

MIXED = [
    (
        "2019-2020学年，请拨打12345或0571-87654321转803咨询，邮编310000。",
        f"二零一九至二零二零学年，请拨打{H12345}或{N0571}转八、零、三咨询，邮编三一零零零零。",
    ),
    (
        "96年入伍的他，2019-2020年间多次拨打96110举报，电话：400-610-1234。",
        f"九六年入伍的他，二零一九至二零二零年间多次拨打{H96110}举报，电话：{N400}。",
    ),
    (
        "车牌浙A12345的车主，08级校友，请拨打110或0571-8765-4321。",
        f"车牌浙诶一二三四五的车主，零八级校友，请拨打一、一、零或{N0571}。",
    ),
    (
        "19届毕业生请于2019~2020学年结束前致电12315，邮编100871。",
        f"一九届毕业生请于二零一九至二零二零学年结束前致电{H12315}，邮编一零零八七一。",
    ),
    (
        "90后小王98年出生，2019—2020年度共接听12345热线3000余次。",
        f"九零后小王九八年出生，二零一九至二零二零年度共接听{H12345}热线三千余次。",
    ),
    (
        "客服电话400 610 1234，工作10年，服务20年来从未间断。",
        f"客服电话{N400}，工作十年，服务二十年来从未间断。",
    ),
]


@pytest.mark.parametrize(("text", "expected"), MIXED, ids=_ids(MIXED))
def test_mixed_sentences(text: str, expected: str) -> None:
    assert tn(text) == expected


# --- the new rules alone, and their place in the order --------------------------------------

RULE_CASES = [
    ("plate", "浙A12345", "浙诶一二三四五"),
    ("plate", "新AB", "新AB"),
    ("plate", "浙a12345", "浙a12345"),
    ("short_year", "96年入伍", "九六年入伍"),
    ("short_year", "96年", "96年"),
    ("short_year", "第19届", "第19届"),
    ("short_year", "'08级", "零八级"),
    ("generation", "90后", "九零后"),
    ("generation", "91后", "91后"),
    ("year_range", "2019-2020", "二零一九至二零二零"),
    ("year_range", "2019-2020元", "2019-2020元"),
    ("year_range", "2019-12-01", "2019-12-01"),
    ("phone", "0571-8765-4321转8", f"{N0571}转八"),
    ("phone_context", "拨打110和119", "拨打一、一、零和一、一、九"),
    ("phone_context", "邮编100871", "邮编一零零八七一"),
]


@pytest.mark.parametrize(("rule", "text", "expected"), RULE_CASES)
def test_single_rule(rule: str, text: str, expected: str) -> None:
    assert RULES_BY_NAME[rule].apply(text) == expected


def test_new_rules_come_before_the_generic_ones() -> None:
    order = {rule.name: i for i, rule in enumerate(RULES)}
    for earlier, later in [
        ("plate", "hotline"),
        ("plate", "alnum_code"),
        ("year_range", "range"),
        ("short_year", "range"),
        ("short_year", "number"),
        ("generation", "number"),
        ("phone", "dashed_code"),
    ]:
        assert order[earlier] < order[later], (earlier, later)
