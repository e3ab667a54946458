"""SSML parsing and layout: the real parser (expat) and the real front-end, no doubles."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sambertd.frontend import Frontend, FrontendError
from sambertd.frontend.ssml import (
    INVALID_SSML,
    UNSUPPORTED_SSML,
    Boundary,
    Break,
    Span,
    SsmlError,
    looks_like_ssml,
    parse,
)
from sambertd.frontend.ssml_values import pitch, rate, volume
from sambertd.frontend.types import Scale


@pytest.fixture(scope="module")
def frontend() -> Frontend:
    return Frontend()


def test_plain_text_with_angle_brackets_stays_plain(frontend: Frontend) -> None:
    text = "如果 a<b & c>d，请拨打12345。"
    assert not looks_like_ssml(text)
    doc = frontend.document(text)
    assert not doc.ssml and doc.items[0].text == text  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "text",
    ["<speak>你好</speak>", "  \n<speak>你好</speak>", '<?xml version="1.0"?><speak>你好</speak>'],
)
def test_ssml_is_recognised_by_its_root(text: str) -> None:
    assert looks_like_ssml(text)


def test_break_becomes_silence_between_units(frontend: Frontend) -> None:
    doc = parse('<speak>您好<break time="500ms"/>欢迎<break strength="strong"/>再见</speak>')
    assert [type(i) for i in doc.items] == [Span, Break, Span, Break, Span]
    units = frontend.units(doc)
    assert [u.text for u in units] == ["您好", "欢迎", "再见"]
    assert [u.pause_after_ms for u in units] == [500, 700, None]


def test_leading_and_repeated_breaks_add_up(frontend: Frontend) -> None:
    doc = parse(
        '<speak><break time="1s"/>您好<break time="200ms"/><break time="0.3s"/>再见</speak>'
    )
    units = frontend.units(doc)
    assert units[0].pause_before_ms == 1000 and units[0].pause_after_ms == 500


@pytest.mark.parametrize(
    ("attrs", "ms"),
    [('time="500ms"', 500), ('time="1.5s"', 1500), ('strength="weak"', 200), ("", 400)],
)
def test_break_lengths(frontend: Frontend, attrs: str, ms: int) -> None:
    units = frontend.units(parse(f"<speak>一<break {attrs}/>二</speak>"))
    assert units[0].pause_after_ms == ms


@pytest.mark.parametrize("attrs", ['time="11s"', 'time="abc"', 'time="-1s"', 'strength="huge"'])
def test_bad_breaks_are_refused(attrs: str) -> None:
    with pytest.raises(SsmlError) as err:
        parse(f"<speak>一<break {attrs}/>二</speak>")
    assert err.value.code == INVALID_SSML and "break" in err.value.message


def test_phoneme_fixes_the_reading(frontend: Frontend) -> None:
    plain = frontend.analyse("<speak>银行</speak>").sentences[0]
    fixed = frontend.analyse('<speak><phoneme alphabet="py" ph="yin2 xing2">银行</phoneme></speak>')
    assert plain.syllables == ("yin2", "hang2")
    assert fixed.sentences[0].syllables == ("yin2", "xing2")


@pytest.mark.parametrize(
    ("ph", "why"), [("hang2", "2 characters but ph has 1"), ("yin9 hang2", "not a pinyin")]
)
def test_phoneme_must_match_its_text(frontend: Frontend, ph: str, why: str) -> None:
    with pytest.raises(SsmlError, match=why):
        frontend.units(parse(f'<speak><phoneme alphabet="py" ph="{ph}">银行</phoneme></speak>'))


def test_sub_reads_the_alias(frontend: Frontend) -> None:
    units = frontend.units(parse('<speak>欢迎<sub alias="世界卫生组织">WHO</sub>代表</speak>'))
    assert units[0].text == "欢迎世界卫生组织代表"


def test_w_keeps_characters_one_word(frontend: Frontend) -> None:
    words = frontend.analyse("<speak>南京市长江大桥</speak>").sentences[0].words
    kept = frontend.analyse("<speak>南京<w>市长</w>江大桥</speak>").sentences[0].words
    assert "市长" not in [w.text for w in words]
    assert "市长" in [w.text for w in kept]


@pytest.mark.parametrize(
    ("kind", "text", "reading"),
    [
        ("cardinal", "10086", "一万零八十六"),
        ("digits", "2024", "二零二四"),
        ("date", "2024-05-01", "二零二四年五月一日"),
        ("date", "2024/5/1", "二零二四年五月一日"),
        ("time", "09:05", "九点零五分"),
        ("time", "14:30:15", "十四点三十分十五秒"),
        ("currency", "¥12.50", "十二点五元"),
        ("currency", "$3", "三美元"),
        ("address", "5号楼1203室", "五号楼一二零三室"),
    ],
)
def test_say_as(frontend: Frontend, kind: str, text: str, reading: str) -> None:
    ssml = f'<speak><say-as interpret-as="{kind}">{text}</say-as></speak>'
    assert frontend.units(parse(ssml))[0].text == reading


def test_say_as_telephone_and_id_read_every_digit(frontend: Frontend) -> None:
    phone = frontend.units(parse('<speak><say-as interpret-as="telephone">12345</say-as></speak>'))
    assert "万" not in phone[0].text and len([c for c in phone[0].text if c != "、"]) == 5
    code = frontend.units(
        parse('<speak><say-as interpret-as="id">11010519491231002X</say-as></speak>')
    )
    assert code[0].text.endswith("叉") and "亿" not in code[0].text


def test_say_as_name_reads_the_surname(frontend: Frontend) -> None:
    read = frontend.analyse('<speak><say-as interpret-as="name">单雄信</say-as></speak>')
    assert read.sentences[0].syllables[0] == "shan4"


def test_prosody_scales_nest(frontend: Frontend) -> None:
    doc = parse('<speak rate="fast"><prosody rate="x-fast" volume="+6dB">快</prosody>慢</speak>')
    units = frontend.units(doc)
    assert units[0].scale.speed == 1.875 and units[0].scale.volume == pytest.approx(1.9953, 1e-3)
    assert units[1].scale == Scale(speed=1.25)


@pytest.mark.parametrize(
    ("value", "expect"),
    [("medium", 1.0), ("80%", 0.8), ("+10%", 1.1), ("1.5", 1.5), ("-500", 0.5), ("500", 2.0)],
)
def test_rate_values(value: str, expect: float) -> None:
    assert rate(value) == pytest.approx(expect)


def test_pitch_and_volume_values() -> None:
    assert pitch("+12st") == pytest.approx(2.0) and pitch("high") == 1.125
    assert volume("50") == 1.0 and volume("silent") == 0.0 and volume("-6dB") < 0.51
    for bad in ("fast-ish", "12Hz"):
        with pytest.raises(ValueError):
            pitch(bad)


def test_sentence_elements_cut_units(frontend: Frontend) -> None:
    doc = parse("<speak><p><s>第一句</s><s>第二句</s></p></speak>")
    assert any(isinstance(i, Boundary) for i in doc.items)
    assert [u.text for u in frontend.units(doc)] == ["第一句", "第二句"]


def test_speak_voice_attribute() -> None:
    assert parse('<speak voice="baker">你好</speak>').voice == "baker"


@pytest.mark.parametrize(
    ("ssml", "where"),
    [
        ("<speak>你好", "line 1, column 10"),
        ("<speak>\n你好<break time='1s'></speak>", "line 2, column"),
        ("<speak>a &nbsp; b</speak>", "line 1, column 10"),
    ],
)
def test_malformed_ssml_says_where(ssml: str, where: str) -> None:
    with pytest.raises(SsmlError) as err:
        parse(ssml)
    assert err.value.code == INVALID_SSML and where in err.value.message


def test_unsupported_tag_is_named_with_the_supported_list() -> None:
    with pytest.raises(SsmlError) as err:
        parse("<speak><audio src='x.wav'/>你好</speak>")
    assert err.value.code == UNSUPPORTED_SSML
    assert "<audio>" in err.value.message and "<break>" in err.value.message


def test_unsupported_attribute_is_named() -> None:
    with pytest.raises(SsmlError) as err:
        parse('<speak><break time="1s" duration="2s"/></speak>')
    assert "'duration'" in err.value.message and "time" in err.value.message


def test_root_must_be_speak() -> None:
    with pytest.raises(SsmlError, match="root element"):
        parse("<s>你好</s>")


def test_depth_is_bounded() -> None:
    deep = "<speak>" + "<prosody>" * 40 + "深" + "</prosody>" * 40 + "</speak>"
    with pytest.raises(SsmlError, match="nested deeper"):
        parse(deep)


def test_total_break_time_is_bounded() -> None:
    many = "<speak>" + '一<break time="10s"/>' * 31 + "</speak>"
    with pytest.raises(SsmlError, match="add up"):
        parse(many)


def test_external_entity_is_refused_and_not_read(tmp_path: object) -> None:
    xxe = (
        '<?xml version="1.0"?><!DOCTYPE speak [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        "<speak>&x;</speak>"
    )
    with pytest.raises(SsmlError) as err:
        parse(xxe)
    assert err.value.code == INVALID_SSML and "root" not in err.value.message
    assert "DOCTYPE" in err.value.message


def test_billion_laughs_is_refused_fast() -> None:
    lol = '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    lol += "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    )
    lol += "]><speak>&lol9;</speak>"
    with pytest.raises(SsmlError, match="DOCTYPE"):
        parse(lol)


def test_origins_point_into_the_ssml_source(frontend: Frontend) -> None:
    text = (
        '<speak>拨打<say-as interpret-as="telephone">12345</say-as>，&amp;'
        '<sub alias="世卫">WHO</sub></speak>'
    )
    (unit,) = frontend.units(parse(text), origins=True)
    sources = {text[a:b] for a, b in unit.origins}
    assert {"拨", "打", "12345", "WHO"} <= sources


def test_cache_key_follows_the_parsed_form() -> None:
    from sambertd.config import Config
    from sambertd.synth import Synthesizer
    from sambertd.types import Request

    synth = Synthesizer(Config())

    def key(text: str) -> str:
        return synth.cache_key(synth.route(Request(text)), "t")

    # the same reading written two ways shares an entry; a break or a reading does not
    assert key("<speak>您好，欢迎。</speak>") == key("您好，欢迎。")
    assert key('<speak>您好，<break time="500ms"/>欢迎。</speak>') != key("您好，欢迎。")
    assert key('<speak><phoneme alphabet="py" ph="yin2 xing2">银行</phoneme></speak>') != key(
        "银行"
    )
    assert key('<speak><prosody rate="fast">您好</prosody></speak>') != key("您好")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "<s>",
                "</s>",
                "<p>",
                "</p>",
                "<w>",
                "</w>",
                '<break time="1s"/>',
                "<emphasis>",
                "</emphasis>",
                '<prosody rate="fast">',
                "</prosody>",
                "&amp;",
                "&lt;",
                "<",
                ">",
                "&",
                '<say-as interpret-as="digits">',
                "</say-as>",
                "12",
                "您好",
                "。",
                "，",
                " ",
                '<sub alias="世卫">',
                "</sub>",
                "<?",
                "<!--",
                "-->",
                "]]>",
                "\x00",
                "𠀀",
            ]
        ),
        max_size=30,
    )
)
def test_any_markup_parses_or_fails_as_a_client_error(parts: list[str]) -> None:
    """Whatever a client sends as SSML ends as units or as a FrontendError (400/422): never
    another exception (a 500)."""
    text = "<speak>" + "".join(parts) + "</speak>"
    frontend = _FRONTEND
    try:
        units = frontend.units(frontend.document(text), origins=True)
    except FrontendError:
        return
    for unit in units:
        assert len(unit.origins) == len(unit.text)
        assert all(0 <= a <= b <= len(text) for a, b in unit.origins)


_FRONTEND = Frontend()


def test_nested_prosody_multiplies_before_it_is_clamped(frontend: Frontend) -> None:
    from sambertd.engines.baker import VOICE
    from sambertd.engines.base import Prosody
    from sambertd.synth import scaled

    doc = parse(
        '<speak><prosody rate="200%"><prosody rate="2.0"><prosody rate="0.5">快</prosody>'
        "</prosody></prosody></speak>"
    )
    (unit,) = frontend.units(doc)
    assert unit.scale.speed == 2.0  # not 2 → clamp 2 → 1
    assert scaled(Prosody(speed=1.5), unit.scale, VOICE).speed == 2.0  # clamped when applied


@pytest.mark.parametrize(
    "attrs", ['volume="1000000dB"', 'pitch="99999999st"', 'rate="1e400%"', 'rate="99999"']
)
def test_huge_prosody_values_are_a_client_error(attrs: str) -> None:
    with pytest.raises(SsmlError) as err:
        parse(f"<speak><prosody {attrs}>你好</prosody></speak>")
    assert err.value.code in (INVALID_SSML, UNSUPPORTED_SSML)


def test_a_lone_surrogate_is_a_client_error() -> None:
    with pytest.raises(SsmlError, match="surrogate"):
        parse("<speak>\ud800你好</speak>")


def test_a_byte_order_mark_does_not_hide_ssml(frontend: Frontend) -> None:
    text = "\ufeff<speak>你好<break time='1s'/>再见</speak>"
    assert looks_like_ssml(text)
    assert [u.text for u in frontend.units(frontend.document(text))] == ["你好", "再见"]


@pytest.mark.parametrize("text", ["7)73。，", "前3)7/，，（后", "a)b)c。。，，", "1-2-3-。"])
def test_every_character_gets_an_origin(frontend: Frontend, text: str) -> None:
    for doc in (
        frontend.document(text),
        parse(f'<speak><say-as interpret-as="id">{text}</say-as></speak>'),
    ):
        try:
            units = frontend.units(doc, origins=True)
        except FrontendError:
            continue
        assert all(len(u.origins) == len(u.text) for u in units)


def test_origins_of_a_long_text_are_fast_and_exact(frontend: Frontend) -> None:
    """The alignment is windowed: 5000 characters take milliseconds, not seconds (no
    timing assert: the count of characters that map back exactly is the check)."""
    text = "本市将于2025年3月1日起施行，咨询电话12345。" * 200
    units = frontend.units(frontend.document(text), origins=True)
    sources = [text[a:b] for u in units for a, b in u.origins]
    assert sources.count("2025") == 4 * 200 and sources.count("12345") > 200


def test_sub_origins_self_closing_and_quoted_gt(frontend: Frontend) -> None:
    text = '<speak>你<sub alias="世界"/>好<sub alias="一>二">X</sub></speak>'
    (unit,) = frontend.units(parse(text), origins=True)
    spans = dict(zip(unit.text, unit.origins, strict=True))
    assert text[slice(*spans["好"])] == "好"  # not swallowed by the alias before it
    assert text[slice(*spans["二"])] == "X"
