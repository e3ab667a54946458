"""Timestamps and subtitles from the embedded engine's real durations (FastSpeech2)."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from sambertd import subtitles
from sambertd.cache import Entry
from sambertd.config import Config
from sambertd.synth import Route, Synthesizer
from sambertd.timeline import timestamps
from sambertd.types import Request, Result

TWENTY = "".join(
    [
        "各位市民：为进一步优化营商环境，本市将于2025年3月1日起全面推行企业开办一网通办。",
        "申请人可通过政务服务网提交材料，审核通过后3个工作日内领取营业执照。",
        "咨询电话12345，或拨打0571-87654321转803。",
        "今年一季度，全市新增市场主体1.2万户，同比增长15%。",
        "办理时间为工作日上午9:00至下午5:30。",
        "请携带本人身份证原件及复印件。",
        "如需帮助，可前往各区政务服务中心咨询。",
        "老年人可由家属代办，须出具授权委托书。",
        "网上申请提交后，系统将通过短信告知办理进度。",
        "逾期未领取的，材料将退回申请人。",
        "本通知自发布之日起施行。",
        "感谢您的理解与支持！",
        "下面播报天气情况：今天晴转多云，气温18到26摄氏度。",
        "明天有小雨，请出门携带雨具。",
        "本周末将迎来降温，最低气温8摄氏度。",
        "请注意交通安全，雨天路滑，减速慢行。",
        "地铁2号线延长运营至23:30。",
        "公交101路临时改道，途经人民路、解放路。",
        "详情请关注政务服务网公告。",
        "谢谢收听，再见。",
    ]
)


@pytest.fixture(scope="module")
def synth() -> Synthesizer:
    return Synthesizer(Config())


def render(synth: Synthesizer, text: str, **kw: Any) -> tuple[Route, Result, dict[str, Any]]:
    route = synth.route(Request(text, **kw), origins=True)
    result = synth.render(route)
    return route, result, timestamps(text, route.units, result.timing, route.ssml)


def test_twenty_sentences_cover_the_audio_in_order(synth: Synthesizer) -> None:
    _route, result, stamps = render(synth, TWENTY)
    chars, sentences = stamps["characters"], stamps["sentences"]
    assert stamps["measured"] is True  # FastSpeech2's own durations, not an estimate
    assert len(sentences) >= 20 and len(chars) > 300
    previous_end = 0
    for c in chars:
        assert 0 <= c["start_ms"] <= c["end_ms"], c
        assert c["start_ms"] >= previous_end, c  # monotonic, never overlapping
        previous_end = c["end_ms"]
        assert c["text"] == TWENTY[c["begin"] : c["end"]]
    duration_ms = result.duration * 1000
    assert abs(chars[-1]["end_ms"] - duration_ms) <= 100
    # sentences tile the audio: each starts where the one before ended
    assert sentences[0]["start_ms"] == 0
    for a, b in itertools.pairwise(sentences):
        assert a["end_ms"] == b["start_ms"]
    assert abs(sentences[-1]["end_ms"] - duration_ms) <= 1


def test_rewritten_numbers_map_back_to_what_the_client_wrote(synth: Synthesizer) -> None:
    _, _, stamps = render(synth, "本市将于2025年3月1日起施行。")
    year = next(c for c in stamps["characters"] if c["text"] == "2025")
    assert year["reading"] == "二零二五" and year["end_ms"] > year["start_ms"]


def test_subtitle_cues_are_short_ordered_and_cut_at_clauses(synth: Synthesizer) -> None:
    _, result, stamps = render(synth, TWENTY)
    cues = subtitles.cues(TWENTY, stamps, False)
    assert len(cues) >= 25
    for a, b in itertools.pairwise(cues):
        assert a.start_ms <= a.end_ms <= b.start_ms
    assert all(len(c.text) <= subtitles.MAX_CHARS for c in cues)
    assert any(c.text.endswith("，") for c in cues)  # cut at a clause, comma kept
    assert abs(cues[-1].end_ms - result.duration * 1000) <= 100
    srt = subtitles.render(cues, "srt")
    assert re.match(r"1\n00:00:00,\d{3} --> 00:00:\d\d,\d{3}\n各位市民：\n", srt)
    vtt = subtitles.render(cues, "vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.") and vtt.count(" --> ") == len(cues)


def test_ssml_break_moves_the_words_after_it(synth: Synthesizer) -> None:
    _, plain, plain_stamps = render(synth, "<speak>您好。欢迎。</speak>")
    _, broken, stamps = render(synth, '<speak>您好。<break time="800ms"/>欢迎。</speak>')
    first = {c["text"]: c for c in plain_stamps["characters"]}
    later = {c["text"]: c for c in stamps["characters"]}
    assert later["欢"]["start_ms"] > first["欢"]["start_ms"]
    # the break is the pause between the words: 800 ms, plus at most the kept onset margins
    assert 800 <= later["欢"]["start_ms"] - later["好"]["end_ms"] <= 1100
    assert broken.duration > plain.duration  # 800 ms instead of the 300 ms sentence pause
    cues = subtitles.cues('<speak>您好。<break time="800ms"/>欢迎。</speak>', stamps, True)
    assert [c.text for c in cues] == ["您好。", "欢迎。"]


def test_timing_survives_the_cache_round_trip(synth: Synthesizer) -> None:
    _, result, _ = render(synth, "您好，欢迎致电。")
    entry = Entry.from_result(result)
    again = Entry.unpack(entry.pack())
    assert again.timing == result.timing and again.audio == result.audio
