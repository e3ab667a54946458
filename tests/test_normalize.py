"""Table-driven tests for text normalization: one table per rule family.

Each case is (what a client sends, how it must be read).  Most go through ``clean`` first,
as in the daemon; rule tests call one rule alone through ``RULES_BY_NAME``.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sambertd.frontend.cleanup import clean
from sambertd.frontend.normalize import (
    LETTERS,
    RULES,
    RULES_BY_NAME,
    normalize,
    read_digits,
    read_number,
    spell_letters,
)
from tests.timing import growth

WWW = "达不溜、达不溜、达不溜"
OUTPUT_RE = re.compile(
    r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3007\U00020000-\U0003134F，。！？、；：]*"
)


def tn(text: str) -> str:
    """What the daemon does: clean, then normalize."""
    return normalize(clean(text))


def _ids(cases: list[tuple[str, str]]) -> list[str]:
    return [c[0][:30] or "<empty>" for c in cases]


# --- the intelligibility set: exact client sentences --------------------------------------

INTELLIGIBILITY = [
    (
        "办事大厅开放时间为周一至周五9:00-17:00。",
        "办事大厅开放时间为周一至周五九点至十七点。",
    ),
    (
        "本次共发放补贴2,380万元，惠及1.2万户家庭。",
        "本次共发放补贴两千三百八十万元，惠及一点二万户家庭。",
    ),
    ("事故路段限速60km/h，请减速慢行。", "事故路段限速每小时六十公里，请减速慢行。"),
    (
        "失业保险金标准提高至每月1850元，增幅为3.5%。",
        "失业保险金标准提高至每月一千八百五十元，增幅为百分之三点五。",
    ),
    (
        "服务电话：12345，传真：010-65432100。",
        "服务电话：一、二、三、四、五，传真：零一零、六五四三、二一零零。",
    ),
    (
        "请于2026年3月15日前登录www.gov.cn完成申报。",
        f"请于二零二六年三月十五日前登录，{WWW}、点、吉、欧、维、点、西、恩，完成申报。",
    ),
]


@pytest.mark.parametrize(("text", "expected"), INTELLIGIBILITY, ids=_ids(INTELLIGIBILITY))
def test_intelligibility_set(text: str, expected: str) -> None:
    assert tn(text) == expected


# --- numbers read as quantities, and 两 ----------------------------------------------------

QUANTITIES = [
    ("2000", "两千"),
    ("2万", "两万"),
    ("2380万", "两千三百八十万"),
    ("2,380万元", "两千三百八十万元"),
    ("12", "十二"),
    ("20", "二十"),
    ("0.2", "零点二"),
    ("10", "十"),
    ("15人", "十五人"),
    ("110", "一百一十"),
    ("1850元", "一千八百五十元"),
    ("1.2万户", "一点二万户"),
    ("12000", "一万两千"),
    ("220000", "二十二万"),
    ("2个", "两个"),
    ("2名工作人员", "两名工作人员"),
    ("2公里", "两公里"),
    ("2亿元", "两亿元"),
    ("12亿元", "十二亿元"),
    ("22万", "二十二万"),
    ("1002个", "一千零二个"),
    ("200", "二百"),
    ("1,000,000", "一百万"),
    ("3.14", "三点一四"),
    ("100.5", "一百点五"),
    ("0", "零"),
    ("1234567人", "一百二十三万四千五百六十七人"),
    ("共有2位", "共有两位"),
    ("2.5万", "二点五万"),
    ("23456", "两万三千四百五十六"),
    ("12345", "一、二、三、四、五"),  # the government hotline, even without context
]


@pytest.mark.parametrize(("text", "expected"), QUANTITIES, ids=_ids(QUANTITIES))
def test_quantities(text: str, expected: str) -> None:
    assert tn(text) == expected


NEGATIVES = [
    ("-5", "负五"),
    ("气温-5", "气温负五"),
    ("-3.5%", "负百分之三点五"),
    ("增长-2.5%", "增长负百分之二点五"),
    ("-5℃", "零下五摄氏度"),
    ("-12", "负十二"),
    ("海拔-154米", "海拔负一百五十四米"),
]


@pytest.mark.parametrize(("text", "expected"), NEGATIVES, ids=_ids(NEGATIVES))
def test_negative_numbers(text: str, expected: str) -> None:
    assert tn(text) == expected


# --- digit strings: phones, hotlines, IDs, years -------------------------------------------

DIGIT_STRINGS = [
    ("010-65432100", "零一零、六五四三、二一零零"),
    ("13812345678", "一三八、一二三四、五六七八"),
    ("138 1234 5678", "一三八、一二三四、五六七八"),
    ("+86 13812345678", "八六、一三八、一二三四、五六七八"),
    ("400-123-4567", "四零零、一二三、四五六七"),
    ("4001234567", "四零零、一二三、四五六七"),
    ("服务电话：12345", "服务电话：一、二、三、四、五"),
    ("热线12345", "热线一、二、三、四、五"),
    ("拨打12345热线", "拨打一、二、三、四、五热线"),
    ("12345政务服务便民热线", "一、二、三、四、五政务服务便民热线"),
    ("请拨打110报警", "请拨打一、一、零报警"),
    ("咨询电话：0755-83456789转8001", "咨询电话：零七五五、八三四五、六七八九转八、零、零、一"),
    ("投诉请打12315", "投诉请打一、二、三、一、五"),
    ("客服95598", "客服九、五、五、九、八"),
    ("证号1234567", "证号一二三四、五六七"),
    ("编号：20260001", "编号：二零二六、零零零一"),
    ("工号1001", "工号一、零、零、一"),
    ("单号为202603150001", "单号为二零二六、零三一五、零零零一"),
    ("No.12345", "编号一、二、三、四、五"),
    (
        "身份证号码：11010119900307123X",
        "身份证号码：一一零一零一、一九九零零三零七、一二三、艾克斯",
    ),
    ("邮编100010", "邮编一零零零一零"),  # a postcode is said in one run
    ("1234567", "一二三四五六七"),
    ("0123", "零一二三"),
    ("验证码：0815", "验证码：零、八、一、五"),
    ("编号123456789", "编号一二三四、五六七八九"),  # no lone last digit
    ("2026年", "二零二六年"),
    ("1949年", "一九四九年"),
    ("2026元", "两千零二十六元"),
    ("2026年度", "二零二六年度"),
    ("2024届毕业生", "二零二四届毕业生"),
    ("约1000年", "约一千年"),
    ("2021-2025年", "二零二一至二零二五年"),
    ("共12345人", "共一万两千三百四十五人"),
]


@pytest.mark.parametrize(("text", "expected"), DIGIT_STRINGS, ids=_ids(DIGIT_STRINGS))
def test_digit_strings(text: str, expected: str) -> None:
    assert tn(text) == expected


# --- dates and times -----------------------------------------------------------------------

DATES = [
    ("2026年3月5日", "二零二六年三月五日"),
    ("2026-03-05", "二零二六年三月五日"),
    ("2026/3/5", "二零二六年三月五日"),
    ("2026.3.5", "二零二六年三月五日"),
    ("3月5日", "三月五日"),
    ("2026年12月31日", "二零二六年十二月三十一日"),
    ("2月2日", "二月二日"),
    ("12月20日", "十二月二十日"),
    ("2026-3", "二零二六年三月"),
    ("3月5日-3月10日", "三月五日至三月十日"),
    ("2021年-2025年", "二零二一年至二零二五年"),
    ("15号", "十五号"),
    ("2号线", "二号线"),
    ("30日内", "三十日内"),
    ("6个月", "六个月"),
    ("2个月", "两个月"),
]


@pytest.mark.parametrize(("text", "expected"), DATES, ids=_ids(DATES))
def test_dates(text: str, expected: str) -> None:
    assert tn(text) == expected


TIMES = [
    ("9:00", "九点"),
    ("8:30", "八点三十分"),
    ("17:05", "十七点零五分"),
    ("2:00", "两点"),
    ("12:00", "十二点"),
    ("0:30", "零点三十分"),
    ("23:59:30", "二十三点五十九分三十秒"),
    ("8:30-17:30", "八点三十分至十七点三十分"),
    ("9:00~17:00", "九点至十七点"),
    ("9:00—17:00", "九点至十七点"),
    ("9:00 - 12:00", "九点至十二点"),
    ("9：00", "九点"),
    ("周一至周五9:00-17:00", "周一至周五九点至十七点"),
    ("上午9点-12点", "上午九点至十二点"),
    ("周一-周五", "周一至周五"),
    ("比分3:1", "比分三比一"),
]


@pytest.mark.parametrize(("text", "expected"), TIMES, ids=_ids(TIMES))
def test_times(text: str, expected: str) -> None:
    assert tn(text) == expected


# --- money, percentages, temperatures ------------------------------------------------------

MONEY = [
    ("¥100", "一百元"),
    ("￥1,200.50", "一千二百点五元"),
    ("￥1200.00", "一千二百元"),
    ("100元", "一百元"),
    ("3.5万元", "三点五万元"),
    ("12亿元", "十二亿元"),
    ("¥2", "两元"),
    ("¥3.5万", "三点五万元"),
    ("$5", "五美元"),
    ("USD 100", "一百美元"),
    ("100USD", "一百美元"),
    ("€20", "二十欧元"),
    ("RMB500", "五百元"),
    ("¥100-200", "一百至二百元"),
    ("100.00元", "一百元"),
]


@pytest.mark.parametrize(("text", "expected"), MONEY, ids=_ids(MONEY))
def test_money(text: str, expected: str) -> None:
    assert tn(text) == expected


PERCENTAGES = [
    ("3.5%", "百分之三点五"),
    ("增幅为3.5%", "增幅为百分之三点五"),
    ("5‰", "千分之五"),
    ("1‱", "万分之一"),
    ("100%", "百分之一百"),
    ("2%", "百分之二"),
    ("10%-20%", "百分之十至百分之二十"),
    ("10-20%", "百分之十至百分之二十"),
    ("-3.5%", "负百分之三点五"),
    ("３．５％", "百分之三点五"),
    ("0.5%", "百分之零点五"),
    ("3.5个百分点", "三点五个百分点"),
]


@pytest.mark.parametrize(("text", "expected"), PERCENTAGES, ids=_ids(PERCENTAGES))
def test_percentages(text: str, expected: str) -> None:
    assert tn(text) == expected


TEMPERATURES = [
    ("25℃", "二十五摄氏度"),
    ("-3°C", "零下三摄氏度"),
    ("-5℃", "零下五摄氏度"),
    ("零下5℃", "零下五摄氏度"),
    ("-5~3℃", "零下五至三摄氏度"),
    ("-5℃~3℃", "零下五摄氏度至三摄氏度"),
    ("20-25℃", "二十至二十五摄氏度"),
    ("2℃", "二摄氏度"),
    ("98.6°F", "九十八点六华氏度"),
    ("北纬30°", "北纬三十度"),
    ("最低气温-2度", "最低气温零下二度"),
]


@pytest.mark.parametrize(("text", "expected"), TEMPERATURES, ids=_ids(TEMPERATURES))
def test_temperatures(text: str, expected: str) -> None:
    assert tn(text) == expected


# --- units ---------------------------------------------------------------------------------

UNITS = [
    ("限速60km/h", "限速每小时六十公里"),
    ("60-80km/h", "每小时六十至八十公里"),
    ("120 km/h", "每小时一百二十公里"),
    ("风速10m/s", "风速每秒十米"),
    ("5kg", "五千克"),
    ("2kg", "两千克"),
    ("3km", "三公里"),
    ("5㎞", "五公里"),
    ("2m", "两米"),
    ("20cm", "二十厘米"),
    ("5mm", "五毫米"),
    ("100㎡", "一百平方米"),
    ("100m²", "一百平方米"),
    ("50m2", "五十平方米"),
    ("3mg", "三毫克"),
    ("500ml", "五百毫升"),
    ("500mL", "五百毫升"),
    ("2L", "两升"),
    ("5t", "五吨"),
    ("2h", "两小时"),
    ("24h", "二十四小时"),
    ("30min", "三十分钟"),
    ("10s", "十秒"),
    ("3-5km", "三至五公里"),
    ("100kWh", "一百千瓦时"),
    ("16GB", "十六吉字节"),
    ("3000元/m²", "三千元每平方米"),
    ("20元/人", "二十元每人"),
    ("km/h", "公里每小时"),
    ("Mass", spell_letters("Mass")),
]


@pytest.mark.parametrize(("text", "expected"), UNITS, ids=_ids(UNITS))
def test_units(text: str, expected: str) -> None:
    assert tn(text) == expected


# --- ordinals, ranges, fractions, codes ----------------------------------------------------

ORDINALS = [
    ("第3条", "第三条"),
    ("第15号", "第十五号"),
    ("第2条", "第二条"),
    ("第2名", "第二名"),
    ("第20届", "第二十届"),
    ("第3-5条", "第三至五条"),
    ("第1000位", "第一千位"),
    ("第Ⅲ类", "第三类"),
]


@pytest.mark.parametrize(("text", "expected"), ORDINALS, ids=_ids(ORDINALS))
def test_ordinals(text: str, expected: str) -> None:
    assert tn(text) == expected


RANGES = [
    ("3-5天", "三至五天"),
    ("3~5个工作日", "三至五个工作日"),
    ("3～5个工作日", "三至五个工作日"),
    ("2-3个", "两至三个"),
    ("10—20人", "十至二十人"),
    ("3至5天", "三至五天"),
    ("123-456-789", "一二三四五六七八九"),
    ("192.168.1.1", "一九二点一六八点一点一"),
    ("1+1=2", "一加一等于二"),
    ("3×4", "三乘四"),
    ("1920x1080", "一千九百二十乘一千零八十"),
    (">5", "大于五"),
    ("≤10", "小于等于十"),
]


@pytest.mark.parametrize(("text", "expected"), RANGES, ids=_ids(RANGES))
def test_ranges_and_math(text: str, expected: str) -> None:
    assert tn(text) == expected


FRACTIONS = [
    ("1/3", "三分之一"),
    ("2/5", "五分之二"),
    ("1/2", "二分之一"),
    ("½", "二分之一"),
    ("3/4的人", "四分之三的人"),
    ("2026/3/5", "二零二六年三月五日"),
]


@pytest.mark.parametrize(("text", "expected"), FRACTIONS, ids=_ids(FRACTIONS))
def test_fractions(text: str, expected: str) -> None:
    assert tn(text) == expected


# --- Latin letters, acronyms, URLs, e-mail -------------------------------------------------

LATIN = [
    ("GDP", "吉迪批"),
    ("APP", "诶批批"),
    ("app", "诶批批"),
    ("ETC", "伊提西"),
    ("CPI", "西批艾"),
    ("PM2.5", "批艾姆二点五"),
    ("5G", "五吉"),
    ("5G网络", "五吉网络"),
    ("WiFi", "歪法伊"),
    ("Wi-Fi", "歪法伊"),
    ("wifi密码", "歪法伊密码"),
    ("ABC", "诶比西"),
    ("xyz", "艾克斯外贼"),
    ("T恤", "提恤"),
    ("X光", "艾克斯光"),
    ("卡拉OK", "卡拉欧开"),
    ("A4纸", "诶四纸"),
    ("G1234次列车", "吉一二三四次列车"),
    ("ISO 9001", "艾艾斯欧九零零一"),
    ("COVID-19", "西欧维艾迪十九"),
    ("café", "西诶艾弗伊"),
]


@pytest.mark.parametrize(("text", "expected"), LATIN, ids=_ids(LATIN))
def test_latin_letters(text: str, expected: str) -> None:
    assert tn(text) == expected


URLS = [
    ("www.gov.cn", f"{WWW}、点、吉、欧、维、点、西、恩"),
    ("www.gov.cn。", f"{WWW}、点、吉、欧、维、点、西、恩。"),
    ("登录www.gov.cn.", f"登录，{WWW}、点、吉、欧、维、点、西、恩。"),
    ("http://www.gov.cn/", f"{WWW}、点、吉、欧、维、点、西、恩"),
    ("见www.gov.cn办理", f"见，{WWW}、点、吉、欧、维、点、西、恩，办理"),
    ("gov.cn", "吉、欧、维、点、西、恩"),
    ("12345.gov.cn", "一、二、三、四、五、点、吉、欧、维、点、西、恩"),
    ("abc@gov.cn", "诶、比、西、艾特、吉、欧、维、点、西、恩"),
    ("a_b@mail.com", "诶、下划线、比、艾特、艾姆、诶、艾、艾勒、点、西、欧、艾姆"),
    ("https://a.com/x-y", "诶、点、西、欧、艾姆、斜杠、艾克斯、杠、外"),
]


@pytest.mark.parametrize(("text", "expected"), URLS, ids=_ids(URLS))
def test_urls_and_email(text: str, expected: str) -> None:
    assert tn(text) == expected


# --- symbols and punctuation ---------------------------------------------------------------

SYMBOLS = [
    ("A&B", "诶和比"),
    ("@张三", "艾特张三"),
    ("#话题#", "话题"),
    ("*注意", "注意"),
    ("a|b", "诶比"),
    ("^_^", ""),
    ("10万+", "十万加"),
    ("是/否", "是、否"),
    ("（一）提交材料（原件）。", "一，提交材料，原件。"),
    ("“你好”《通知》", "你好通知"),
    ("你好!!!", "你好！"),
    ("什么?!", "什么？"),
    ("等等……", "等等，"),
    ("通知——请注意", "通知，请注意"),
    ("好的，。", "好的。"),
    ("，，开头", "开头"),
    ("Hello, world.", "艾尺伊艾勒艾勒欧，达不溜欧阿尔艾勒迪。"),
    ("中-英文", "中英文"),
    ("【重要】通知", "重要，通知"),
]


@pytest.mark.parametrize(("text", "expected"), SYMBOLS, ids=_ids(SYMBOLS))
def test_symbols_and_punctuation(text: str, expected: str) -> None:
    assert tn(text) == expected


# --- individual rules ----------------------------------------------------------------------

RULE_CASES = [
    ("acronym", "PM2.5浓度", "批艾姆二点五浓度"),
    ("url", "见www.gov.cn", f"见，{WWW}、点、吉、欧、维、点、西、恩"),
    ("phone_context", "电话：12345", "电话：一、二、三、四、五"),
    ("phone_context", "电话费100元", "电话费100元"),
    ("phone", "13812345678", "一三八、一二三四、五六七八"),
    ("hotline", "第12345号", "第12345号"),
    ("hotline", "12345人", "12345人"),
    ("hotline", "打12345", "打一、二、三、四、五"),
    ("year", "2026年", "二零二六年"),
    ("year", "近2000年", "近两千年"),
    ("date", "2026-13-45", "2026-13-45"),
    ("month", "2月", "二月"),
    ("day", "2日", "二日"),
    ("time", "24:00", "二十四点"),
    ("time", "25:00", "25:00"),
    ("ratio", "1:1000", "一比一千"),
    ("percent", "5-3%", "5-百分之三"),
    ("money_prefix", "￥5", "五元"),
    ("unit", "4s店", "四秒店"),
    ("unit", "5G", "5G"),
    ("ordinal", "第2", "第二"),
    ("fraction", "1/2/3", "1/2/3"),
    ("range", "1-2-3", "一至二-3"),
    ("negative", "3-5", "3-5"),
    ("letters", "Ab", "诶比"),
    ("number", "007", "零零七"),
    ("number", "12345678", "一二三四五六七八"),
    ("number", "12345678元", "一千二百三十四万五千六百七十八元"),
    ("number", "2,380", "两千三百八十"),
    ("symbol", "℃", "摄氏度"),
    ("punctuation", "a,b.", "a，b。"),
    ("unreadable", "中文abc123!?，。", "中文，。"),
    ("punctuation_run", "好，，。！", "好。"),
    ("leading_pause", "，。好", "好"),
]


@pytest.mark.parametrize(("rule", "text", "expected"), RULE_CASES)
def test_single_rule(rule: str, text: str, expected: str) -> None:
    assert RULES_BY_NAME[rule].apply(text) == expected


def test_rule_order_is_most_specific_first() -> None:
    names = [rule.name for rule in RULES]
    assert len(names) == len(set(names))
    order = {name: i for i, name in enumerate(names)}
    for earlier, later in [
        ("url", "letters"),
        ("phone_context", "number"),
        ("phone", "range"),
        ("date", "range"),
        ("date", "fraction"),
        ("year", "number"),
        ("time_range", "time"),
        ("time", "ratio"),
        ("percent_range", "percent"),
        ("temperature_range", "temperature"),
        ("speed", "unit"),
        ("unit", "letters"),
        ("dashed_code", "range"),
        ("letters", "number"),
        ("number", "unreadable"),
        ("unreadable", "punctuation_run"),
    ]:
        assert order[earlier] < order[later], (earlier, later)


# --- helpers -------------------------------------------------------------------------------

HELPERS = [
    (read_digits("0123456789"), "零一二三四五六七八九"),
    (read_digits("1" * 100), "一" * 100),
    (read_digits("1-2 3"), "一二三"),
    (read_number("2000"), "两千"),
    (read_number("2000", liang=False), "二千"),
    (read_number("2", "个"), "两"),
    (read_number("2", "号"), "二"),
    (read_number("1" * 20), "一" * 20),
    (read_number("1200.50", "元"), "一千二百点五"),
    (read_number("1200.50"), "一千二百点五零"),
    (spell_letters("AZ"), LETTERS["A"] + LETTERS["Z"]),
]


@pytest.mark.parametrize(("actual", "expected"), HELPERS)
def test_helpers(actual: str, expected: str) -> None:
    assert actual == expected


# --- hostile input -------------------------------------------------------------------------

HOSTILE = [
    ("", ""),
    ("   \t\n  ", ""),
    ("，。！？、；：", ""),
    ("!!!???...", ""),
    ("😀🎉👍", ""),
    ("\x00\x01\x7f", ""),
    ("\ud800\udfff\ud83d", ""),
    ("\x1b[31m警告\x1b[0m", "警告"),
    ("\u200f\u202e你好\u200d\ufeff", "你好"),
    ("日本語です", "日本語"),
    ("한국어", ""),
    ("Кириллица", ""),
    ("中文English한국어123", "中文伊恩吉艾勒艾艾斯艾尺一百二十三"),
    ("%%%###", ""),
    ("----", ""),
    ("1.2.3.4.5.6.7.8.9", "一点二点三点四点五点六点七点八点九"),
    (":" * 10, ""),
]


@pytest.mark.parametrize(("text", "expected"), HOSTILE, ids=_ids(HOSTILE))
def test_hostile_input(text: str, expected: str) -> None:
    assert tn(text) == expected
    assert normalize(text) == normalize(text)  # deterministic, also without clean()


LONG_INPUTS = [  # (head, piece, count): head + piece * count
    ("", "办事大厅开放时间为周一至周五9:00-17:00。", 4000),
    ("", "1", 100_000),
    ("", "1-", 50_000),
    ("", "a", 100_000),
    ("", "a@", 50_000),
    ("", "www.", 25_000),
    ("", "2,", 50_000),
    ("", "12:", 33_000),
    ("", "-5℃~", 25_000),
    ("", "1/", 50_000),
    ("电话", "1-", 50_000),
]


@pytest.mark.parametrize(
    ("head", "piece", "count"), LONG_INPUTS, ids=[repr((h + p * 8)[:8]) for h, p, _ in LONG_INPUTS]
)
def test_long_input_is_fast(head: str, piece: str, count: int) -> None:
    """Linear in the input: ten times the text takes about ten times as long (a quadratic
    rule or a backtracking regex, a hundred times).  Not a limit in seconds: ~0.3 s here is
    over 2 s on a slow or busy CI runner."""
    out: dict[int, str] = {}
    ratio = growth(lambda k: out.setdefault(k, normalize(clean(head + piece * k))), count // 10)
    assert ratio < 30, f"10x the input took {ratio:.0f}x as long"
    assert OUTPUT_RE.fullmatch(out[count])


def test_normalize_accepts_raw_surrogates_and_nul() -> None:
    assert normalize("a\ud800b\x00c1") == "诶比西一"


@settings(max_examples=300, deadline=2000)
@given(st.text())
def test_property_output_is_readable(text: str) -> None:
    out = normalize(clean(text))
    assert not re.search(r"[0-9A-Za-z]", out)
    assert OUTPUT_RE.fullmatch(out)


@settings(max_examples=300, deadline=2000)
@given(
    st.text(
        alphabet=st.sampled_from(list("0123456789-.,:/%~¥$℃年月日号第元个 abcXYZ电话热线")),
        max_size=60,
    )
)
def test_property_number_heavy_text(text: str) -> None:
    out = normalize(clean(text))
    assert not re.search(r"[0-9A-Za-z]", out)
    assert OUTPUT_RE.fullmatch(out)
