"""Grapheme-to-phoneme: polyphones, tone sandhi, lexicon, punctuation, erhua, robustness."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pypinyin import Style, lazy_pinyin
from pypinyin.constants import PINYIN_DICT

from sambertd.frontend import g2p as g2p_module
from sambertd.frontend.g2p import (
    G2P,
    PUNCTUATION,
    default_cache_dir,
    sandhi_bu,
    sandhi_third,
    sandhi_yi,
    syllable_ok,
)
from sambertd.frontend.types import Sentence, Word


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("g2p-cache")


@pytest.fixture(scope="module")
def g2p(cache_dir: Path) -> G2P:
    """Default instance: sandhi on, no site lexicon."""
    return G2P(cache_dir=cache_dir)


@pytest.fixture(scope="module")
def plain(cache_dir: Path) -> G2P:
    """Sandhi off: underlying (dictionary) tones, for checking lookups alone."""
    return G2P(sandhi=False, cache_dir=cache_dir)


def read(g: G2P, text: str, target: str) -> str:
    """Syllables (space-joined) of ``target`` as read inside ``text``, whatever the segmentation."""
    chars: list[str] = []
    syls: list[str] = []
    for w in g.words(text):
        if not w.is_punctuation:
            assert len(w.text) == len(w.pinyin), w
            chars.extend(w.text)
            syls.extend(w.pinyin)
    at = "".join(chars).find(target)
    assert at >= 0, f"{target!r} not spoken in {text!r}: {g.words(text)}"
    return " ".join(syls[at : at + len(target)])


# --------------------------------------------------------------------------- polyphones

POLYPHONES = [
    # (context sentence, word, underlying reading)
    ("我去银行取钱。", "银行", "yin2 hang2"),
    ("他们行走在路上。", "行走", "xing2 zou3"),
    ("重庆是一座山城。", "重庆", "chong2 qing4"),
    ("这件事很重要。", "重要", "zhong4 yao4"),
    ("我下个月还款。", "还款", "huan2 kuan3"),
    ("我还有事。", "还有", "hai2 you3"),
    ("他还钱了。", "还钱", "huan2 qian2"),
    ("还是你去吧。", "还是", "hai2 shi4"),
    ("长江很长。", "长江", "chang2 jiang1"),
    ("孩子长大了。", "长大", "zhang3 da4"),
    ("假期很长。", "很长", "hen3 chang2"),
    ("他在成长。", "成长", "cheng2 zhang3"),
    ("请调整一下。", "调整", "tiao2 zheng3"),
    ("警察在调查。", "调查", "diao4 cha2"),
    ("这家银行的行长很忙。", "银行", "yin2 hang2"),
    ("这家银行的行长很忙。", "行长", "hang2 zhang3"),
    ("银行行长来了。", "银行行长", "yin2 hang2 hang2 zhang3"),
    ("我喜欢音乐。", "音乐", "yin1 yue4"),
    ("祝你快乐。", "快乐", "kuai4 le4"),
    ("数学很难。", "数学", "shu4 xue2"),
    ("你数一数。", "数一数", "shu3 yi1 shu3"),
    ("这个很便宜。", "便宜", "pian2 yi5"),
    ("交通很方便。", "方便", "fang1 bian4"),
    ("我觉得不错。", "觉得", "jue2 de5"),
    ("我想睡觉了。", "睡觉", "shui4 jiao4"),
    ("这是他的要求。", "要求", "yao1 qiu2"),
    ("他跑得很快。", "跑得", "pao3 de5"),
    ("他得到了奖励。", "得到", "de2 dao4"),
    ("别着急。", "着急", "zhao2 ji2"),
    ("他看着我。", "看着", "kan4 zhe5"),
    ("他睡着了。", "睡着", "shui4 zhao2"),
    ("他的确来了。", "的确", "di2 que4"),
    ("这是我的目的。", "目的", "mu4 di4"),
    ("这个地方很美。", "地方", "di4 fang1"),
    ("他慢慢地走。", "慢慢地", "man4 man4 de5"),
    ("会计在算账。", "会计", "kuai4 ji4"),
    ("我们在开会。", "开会", "kai1 hui4"),
    ("他率领军队。", "率领", "shuai4 ling3"),
    ("效率很高。", "效率", "xiao4 lv4"),
    ("我的背包很重。", "背包", "bei1 bao1"),
    ("他在背诵课文。", "背诵", "bei4 song4"),
    ("这是都市生活。", "都市", "du1 shi4"),
    ("他们都是学生。", "都是", "dou1 shi4"),
    ("他去出差了。", "出差", "chu1 chai1"),
    ("我们差不多到了。", "差不多", "cha4 bu5 duo1"),
    ("教室很大。", "教室", "jiao4 shi4"),
    ("他在教书。", "教书", "jiao1 shu1"),
    ("种子发芽了。", "种子", "zhong3 zi5"),
    ("他在种地。", "种地", "zhong4 di4"),
    ("衣服很干净。", "干净", "gan1 jing4"),
    ("他在干活。", "干活", "gan4 huo2"),
    ("几乎没有人。", "几乎", "ji1 hu1"),
    ("来了几个人。", "几个", "ji3 ge4"),
    ("角色很难演。", "角色", "jue2 se4"),
    ("角度不对。", "角度", "jiao3 du4"),
    ("人参很贵。", "人参", "ren2 shen1"),
    ("我参加比赛。", "参加", "can1 jia1"),
    ("空闲时间很少。", "空闲", "kong4 xian2"),
    ("天空很蓝。", "天空", "tian1 kong1"),
    ("少年很高。", "少年", "shao4 nian2"),
    ("多少钱？", "多少", "duo1 shao3"),
    ("他没收了手机。", "没收", "mo4 shou1"),
    ("我没有钱。", "没有", "mei2 you3"),
    ("一行人走了。", "一行", "yi1 hang2"),
    ("他长得很高。", "长得", "zhang3 de5"),
]


@pytest.mark.parametrize(("text", "word", "expected"), POLYPHONES)
def test_polyphone_follows_word(plain: G2P, text: str, word: str, expected: str) -> None:
    assert read(plain, text, word) == expected


def test_polyphone_table_has_enough_pairs() -> None:
    assert len(POLYPHONES) >= 50


# --------------------------------------------------------------------------- tone sandhi

YI_SANDHI = [
    ("一天", "一天", "yi4 tian1"),
    ("一年", "一年", "yi4 nian2"),
    ("我们一起吧", "一起", "yi4 qi3"),
    ("一定要来", "一定", "yi2 ding4"),
    ("一个人", "一个", "yi2 ge4"),
    ("一样", "一样", "yi2 yang4"),
    ("一百", "一百", "yi4 bai3"),
    ("千万一定要来", "一定", "yi2 ding4"),  # 万 is not part of a number here
    ("一个一个来", "一个一个", "yi2 ge4 yi2 ge4"),  # not a reduplicated verb
    ("你看一看", "看一看", "kan4 yi5 kan4"),
    ("想一想", "想一想", "xiang3 yi5 xiang3"),
    ("走一走", "走一走", "zou3 yi5 zou3"),
    ("他是第一", "第一", "di4 yi1"),
    ("一月", "一月", "yi1 yue4"),
    ("五月一日", "一日", "yi1 ri4"),
    ("十一个", "十一", "shi2 yi1"),
    ("一一二", "一一二", "yi1 yi1 er4"),
    ("统一的标准", "统一", "tong3 yi1"),
    ("唯一的办法", "唯一", "wei2 yi1"),
    ("万一下雨", "万一", "wan4 yi1"),
    ("一百一十", "一百一十", "yi4 bai3 yi1 shi2"),
    ("一。", "一", "yi1"),
]

BU_SANDHI = [
    ("不要", "不要", "bu2 yao4"),
    ("不是", "不是", "bu2 shi4"),
    ("不对", "不对", "bu2 dui4"),
    ("看不见", "不见", "bu2 jian4"),
    ("不好", "不好", "bu4 hao3"),
    ("不行", "不行", "bu4 xing2"),
    ("不吃", "不吃", "bu4 chi1"),
    ("不一样", "不一样", "bu4 yi2 yang4"),
    ("是不是", "是不是", "shi4 bu5 shi4"),
    ("好不好", "好不好", "hao3 bu5 hao3"),
    ("来不来", "来不来", "lai2 bu5 lai2"),
    ("喜不喜欢", "喜不喜欢", "xi3 bu5 xi3 huan1"),
    ("差不多", "差不多", "cha4 bu5 duo1"),  # lexical neutral tone is kept
    ("不知不觉", "不知不觉", "bu4 zhi1 bu4 jue2"),
]

THIRD_SANDHI = [
    ("你好", "你好", "ni2 hao3"),
    ("保险", "保险", "bao2 xian3"),
    ("展览馆", "展览馆", "zhan2 lan2 guan3"),
    ("我很好", "我很好", "wo2 hen2 hao3"),
    ("老鼠", "老鼠", "lao2 shu3"),
    ("手表", "手表", "shou2 biao3"),
    ("领导", "领导", "ling2 dao3"),
    ("洗脸水", "洗脸水", "xi2 lian2 shui3"),
    ("小老虎", "小老虎", "xiao2 lao2 hu3"),
    ("好吃", "好吃", "hao3 chi1"),  # 3-1: nothing to do
    ("我们", "我们", "wo3 men5"),  # neutral tone breaks the run
    ("你，好", "你", "ni3"),  # a pause breaks the run
    ("一点儿水", "一点儿水", "yi4 dian3 er5 shui3"),
]


@pytest.mark.parametrize(("text", "word", "expected"), YI_SANDHI)
def test_yi_sandhi(g2p: G2P, text: str, word: str, expected: str) -> None:
    assert read(g2p, text, word) == expected


@pytest.mark.parametrize(("text", "word", "expected"), BU_SANDHI)
def test_bu_sandhi(g2p: G2P, text: str, word: str, expected: str) -> None:
    assert read(g2p, text, word) == expected


@pytest.mark.parametrize(("text", "word", "expected"), THIRD_SANDHI)
def test_third_tone_sandhi(g2p: G2P, text: str, word: str, expected: str) -> None:
    assert read(g2p, text, word) == expected


@pytest.mark.parametrize(
    ("text", "word", "expected"),
    [
        ("你好", "你好", "ni3 hao3"),
        ("不要", "不要", "bu4 yao4"),
        ("一点儿", "一点儿", "yi1 dian3 er5"),  # pypinyin's baked-in yi4 is undone
        ("是不是", "是不是", "shi4 bu4 shi4"),
        ("看一看", "看一看", "kan4 yi1 kan4"),
    ],
)
def test_sandhi_off_gives_underlying_tones(plain: G2P, text: str, word: str, expected: str) -> None:
    assert read(plain, text, word) == expected


def test_sandhi_functions_work_on_words_directly() -> None:
    words = [Word("一", ("yi1",)), Word("定", ("ding4",)), Word("，", ())]
    assert sandhi_yi(words)[0].pinyin == ("yi2",)
    assert sandhi_bu([Word("不是", ("bu4", "shi4"))])[0].pinyin == ("bu2", "shi4")
    # Word structure matters: [我][很好] keeps wo3 (很 already became hen2 inside its word),
    # [我][很][好] gives wo2 hen2 hao3 (pairwise from the left).
    assert sandhi_third([Word("我", ("wo3",)), Word("很好", ("hen3", "hao3"))]) == [
        Word("我", ("wo3",)),
        Word("很好", ("hen2", "hao3")),
    ]
    singles = [Word("我", ("wo3",)), Word("很", ("hen3",)), Word("好", ("hao3",))]
    assert [w.pinyin for w in sandhi_third(singles)] == [("wo2",), ("hen2",), ("hao3",)]
    assert sandhi_third([Word("你", ("ni3",)), Word("，", ()), Word("好", ("hao3",))])[0] == Word(
        "你", ("ni3",)
    )


# --------------------------------------------------------------------------- lexicon

SITE_LEXICON = {
    "行长": ["xing2", "zhang3"],  # deliberately odd, so the override is visible
    "朴树": ["piao2", "shu4"],
    "查良镛": ["zha1", "liang2", "yong1"],
    "仇大哥": ["qiu2", "da4", "ge1"],
}


@pytest.fixture(scope="module")
def site(cache_dir: Path) -> G2P:
    return G2P(SITE_LEXICON, cache_dir=cache_dir)


@pytest.mark.parametrize(
    ("text", "word", "with_lexicon", "without"),
    [
        ("行长来了。", "行长", "xing2 zhang3", "hang2 zhang3"),
        ("银行行长来了。", "行长", "xing2 zhang3", "hang2 zhang3"),  # inside a longer word
        ("朴树唱歌。", "朴树", "piao2 shu4", "pu3 shu4"),
        ("查良镛写小说。", "查良镛", "zha1 liang2 yong1", "cha2 liang2 yong1"),
        ("仇大哥来了。", "仇大哥", "qiu2 da4 ge1", "chou2 da4 ge1"),
    ],
)
def test_lexicon_overrides_and_does_not_leak(
    site: G2P, g2p: G2P, text: str, word: str, with_lexicon: str, without: str
) -> None:
    assert read(site, text, word) == with_lexicon
    assert read(g2p, text, word) == without  # a second instance is unaffected


def test_lexicon_word_stays_whole(site: G2P) -> None:
    assert "仇大哥" in [w.text for w in site.words("仇大哥来了。")]


def test_lexicon_does_not_touch_pypinyin_globals(site: G2P) -> None:
    site.words("朴树唱歌。")
    assert lazy_pinyin("朴树", style=Style.TONE3) == ["pu3", "shu4"]


def test_lexicon_accepts_tone_marks_and_erhua(cache_dir: Path) -> None:
    g = G2P({"花儿": ["huar1"], "六安": ["lù", "ān"]}, cache_dir=cache_dir, sandhi=False)
    assert read(g, "花儿开了。", "花儿") == "hua1 er5"
    assert read(g, "六安到了。", "六安") == "lu4 an1"


def test_lexicon_can_read_characters_pypinyin_does_not_know(cache_dir: Path) -> None:
    unknown = next(chr(c) for c in range(0x4E00, 0xA000) if c not in PINYIN_DICT)
    g = G2P({unknown: ["ke4"]}, cache_dir=cache_dir, sandhi=False)
    assert g.sentence(f"{unknown}好").syllables == ("ke4", "hao3")
    assert G2P(cache_dir=cache_dir).sentence(f"{unknown}好").syllables == ("hao3",)


@pytest.mark.parametrize(
    "lexicon",
    [{"行长": ["hang2"]}, {"行长": ["hang2", "zhang9"]}, {"": ["a1"]}, {"好": ["xyz1"]}],
)
def test_bad_lexicon_is_rejected_at_construction(lexicon: dict[str, list[str]]) -> None:
    with pytest.raises(ValueError):
        G2P(lexicon)


# --------------------------------------------------------------------------- punctuation, erhua


def test_punctuation_becomes_pause_words(g2p: G2P) -> None:
    words = g2p.words("你好，世界！真的吗？是的。好、对；注意：")
    marks = [w.text for w in words if w.is_punctuation]
    assert marks == ["，", "！", "？", "。", "、", "；", "："]
    assert all(w.pinyin == () for w in words if w.text in PUNCTUATION)


def test_ascii_punctuation_is_folded_to_full_width(g2p: G2P) -> None:
    marks = [w.text for w in g2p.words("你好,世界!") if w.is_punctuation]
    assert marks == ["，", "！"]


def test_leftover_characters_are_skipped(g2p: G2P) -> None:
    words = g2p.words("abc你好123《》😀")
    assert [w.text for w in words] == ["你好"]


@pytest.mark.parametrize(
    ("text", "word", "expected"),
    [
        ("你去哪儿了？", "哪儿", "na3 er5"),
        ("给我一点儿水。", "点儿", "dian3 er5"),
        ("这个好玩儿。", "玩儿", "wan2 er5"),
        ("一会儿见。", "会儿", "hui4 er5"),
        ("这儿很好。", "这儿", "zhe4 er5"),
        ("我们去那儿。", "那儿", "na4 er5"),
        ("他的女儿。", "女儿", "nv3 er2"),  # "child", not erhua
        ("婴儿睡了。", "婴儿", "ying1 er2"),
        ("儿子来了。", "儿子", "er2 zi5"),
    ],
)
def test_erhua(plain: G2P, text: str, word: str, expected: str) -> None:
    assert read(plain, text, word) == expected


@pytest.mark.parametrize("text", ["", " ", "\n\t ", "abc", "123", "😀", "《》", "\x00"])
def test_nothing_speakable_gives_empty(g2p: G2P, text: str) -> None:
    assert g2p.words(text) == []


@pytest.mark.parametrize("text", ["，", "。！？", " ，。 "])
def test_only_punctuation_gives_only_punctuation(g2p: G2P, text: str) -> None:
    words = g2p.words(text)
    assert words and all(w.is_punctuation for w in words)


def test_sentence_wraps_words(g2p: G2P) -> None:
    s = g2p.sentence("你好。")
    assert isinstance(s, Sentence)
    assert s.text == "你好。"
    assert s.syllables == ("ni2", "hao3")


def test_interjections_get_a_regular_syllable(g2p: G2P) -> None:
    assert all(syllable_ok(s) for s in g2p.sentence("嗯，呣。").syllables)


# --------------------------------------------------------------------------- syllables


@pytest.mark.parametrize("s", ["zhong4", "lv4", "nve4", "er5", "a1", "yi2", "shuang3", "biang2"])
def test_syllable_ok_accepts(s: str) -> None:
    assert syllable_ok(s)


@pytest.mark.parametrize(
    "s", ["zhong6", "zhong0", "zhong", "xx1", "n2", "hm5", "ng2", "ZHONG4", "zhong 4", "", "ü4"]
)
def test_syllable_ok_rejects(s: str) -> None:
    assert not syllable_ok(s)


CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
TEXT = st.text(st.one_of(CJK, st.sampled_from(sorted(PUNCTUATION))), max_size=30)


def _has_reading(c: str) -> bool:
    return ord(c) in PINYIN_DICT


@pytest.mark.parametrize("sandhi", [True, False])
@settings(max_examples=200, deadline=None)
@given(text=TEXT)
def test_any_cjk_gives_one_valid_syllable_per_character(
    cache_dir: Path, sandhi: bool, text: str
) -> None:
    g = _shared(cache_dir, sandhi)
    words = g.words(text)
    syllables = [s for w in words for s in w.pinyin]
    assert all(syllable_ok(s) for s in syllables), words
    assert len(syllables) == sum(1 for c in text if _has_reading(c))
    assert all(len(w.text) == len(w.pinyin) for w in words if not w.is_punctuation)


_SHARED: dict[bool, G2P] = {}


def _shared(cache_dir: Path, sandhi: bool) -> G2P:
    """One instance per sandhi setting across hypothesis examples (a fixture per example
    would rebuild jieba's dictionary each time)."""
    if sandhi not in _SHARED:
        _SHARED[sandhi] = G2P(sandhi=sandhi, cache_dir=cache_dir)
    return _SHARED[sandhi]


# --------------------------------------------------------------------------- loading


def test_jieba_cache_goes_to_the_given_directory(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    G2P(cache_dir=tmp_path / "c").warm_up()
    assert (tmp_path / "c" / "jieba.cache").is_file()
    assert "Building prefix dict" not in capfd.readouterr().err


def test_unwritable_cache_directory_falls_back_to_no_cache(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    g = G2P(cache_dir=blocker / "sub")
    assert read(g, "你好", "你好") == "ni2 hao3"
    assert not (blocker / "sub").exists()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for var in ("CACHE_DIRECTORY", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    yield monkeypatch


def test_default_cache_dir_prefers_systemd_then_xdg(clean_env: pytest.MonkeyPatch) -> None:
    assert default_cache_dir() == Path.home() / ".cache" / "sambertd"
    clean_env.setenv("XDG_CACHE_HOME", "/var/x")
    assert default_cache_dir() == Path("/var/x/sambertd")
    clean_env.setenv("CACHE_DIRECTORY", "/var/cache/sambertd")
    assert default_cache_dir() == Path("/var/cache/sambertd")


def test_tokenizer_loads_once_under_concurrency(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = g2p_module._load_tokenizer

    def counting(*args: object) -> object:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(g2p_module, "_load_tokenizer", counting)
    g = G2P(cache_dir=cache_dir)
    results: list[list[Word]] = []
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        results.append(g.words("这家银行的行长很忙。"))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(results) == 8 and all(r == results[0] for r in results)
