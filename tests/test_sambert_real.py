"""The real modelscope ``Voice`` and KAN-TTS code, in-process, with no ttsfrd and no stand-in:
our symbols against the model's own symbol sets, emotion ids reaching the torch module, speed
and pitch inside the model, and the GPU-server start without a process group.

Random weights (tests/kantts_model.py): what is asserted is what the code does with its
inputs — shapes, ids, lengths — never how it sounds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from sambertd.config import SambertConfig
from sambertd.engines import Prosody
from sambertd.engines.kantts_symbols import SymbolError, Symbolizer, SymbolSets
from sambertd.engines.sambert import SambertEngine
from sambertd.frontend import Frontend
from sambertd.frontend.g2p import _valid_bases
from sambertd.frontend.types import Sentence, Word


@pytest.fixture(scope="module")
def engine(kantts_model: Path, tmp_path_factory: pytest.TempPathFactory) -> SambertEngine:
    e = SambertEngine(
        SambertConfig(model_dir=str(kantts_model), voices=()),
        cache_dir=tmp_path_factory.mktemp("cache"),
    )
    e.load()
    return e


def torch_voice(engine: SambertEngine, name: str = "zhitian_emo") -> Any:
    return engine._model(name, engine.device)


def test_without_ttsfrd_the_builtin_front_end_is_chosen(engine: SambertEngine) -> None:
    assert engine.frontend_mode == "builtin"
    assert [v.id for v in engine.voices()] == ["zhitian_emo", "zhida"]


def test_symbols_follow_kantts_conventions(engine: SambertEngine, frontend: Frontend) -> None:
    (sentence,) = frontend.sentences("您好，再见。")
    (line,) = engine.symbols(sentence, "zhitian_emo", "happy")
    assert line == (
        "{n_c$tone2$s_begin$word_begin$emotion_happy$F7} "
        "{in_c$tone2$s_end$word_middle$emotion_happy$F7} "
        "{h_c$tone3$s_begin$word_middle$emotion_happy$F7} "
        "{ao_c$tone3$s_end$word_end$emotion_happy$F7} "
        "{#3$tone_none$s_none$word_none$emotion_none$F7} "
        "{z_c$tone4$s_begin$word_begin$emotion_happy$F7} "
        "{ai_c$tone4$s_end$word_middle$emotion_happy$F7} "
        "{j_c$tone4$s_begin$word_middle$emotion_happy$F7} "
        "{ian_c$tone4$s_end$word_end$emotion_happy$F7} "
        "{#4$tone_none$s_none$word_none$emotion_none$F7}"
    )
    # the plain voice's speaker field comes from its own linguistic_unit.speaker_list
    (plain,) = engine.symbols(sentence, "zhida")
    assert plain.endswith("$M1}") and "emotion_neutral" in plain


def test_every_syllable_our_g2p_can_emit_reaches_the_model_whole(engine: SambertEngine) -> None:
    """Each (syllable, tone) becomes phones kantts knows: encoding keeps every token (kantts
    would drop an unknown phone from the phone stream only, and the model would fail)."""
    unit = torch_voice(engine).ling_unit
    symbolizer = engine._symbolizer("zhitian_emo")
    bases = sorted(_valid_bases())
    assert len(bases) > 400
    for base in bases:
        for tone in "12345":
            sentence = Sentence(base, (Word("字", (f"{base}{tone}",)),))
            line = symbolizer.symbols(sentence)
            sy, tones, *_ = unit.encode_symbol_sequence(line)
            assert len(sy) == len(tones) == line.count("{") + 1, (base, line)  # + EOS


def test_a_value_the_model_lacks_is_an_error_not_a_silent_drop(engine: SambertEngine) -> None:
    real = engine._symbolizer("zhitian_emo")
    sets = SymbolSets(**{**real.sets.__dict__, "phones": real.sets.phones - {"ao_c"}})
    symbolizer = Symbolizer(real.phone_map, sets, "F7")
    with pytest.raises(SymbolError, match="no phone 'ao_c'"):
        symbolizer.symbols(Sentence("好", (Word("好", ("hao3",)),)))


def test_the_emotion_reaches_the_model(engine: SambertEngine, frontend: Frontend) -> None:
    """A forward hook on the real KanTtsSAMBERT's emotion embedding sees the request's
    emotion id on every phone (breaks carry emotion_none)."""
    voice = torch_voice(engine)
    ids = voice.ling_unit._emo_category_to_id
    seen: list[list[int]] = []
    hook = voice.am.emo_tokenizer.register_forward_hook(
        lambda _m, inputs, _out: seen.append(inputs[0][0].tolist())
    )
    try:
        (sentence,) = frontend.sentences("您好，再见。")
        for emotion in ("neutral", "happy", "sad"):
            engine.synthesize(sentence, "zhitian_emo", emotion)
    finally:
        hook.remove()
    for emotion, got in zip(("neutral", "happy", "sad"), seen, strict=True):
        assert set(got) == {ids[f"emotion_{emotion}"], ids["emotion_none"]}, (emotion, got)


@pytest.mark.parametrize("speed", [0.5, 1.5, 2.0])
def test_audio_length_scales_with_one_over_speed(
    engine: SambertEngine, frontend: Frontend, speed: float
) -> None:
    (sentence,) = frontend.sentences("欢迎致电政务服务热线。")
    normal = len(engine.synthesize(sentence, "zhida"))
    scaled = len(engine.synthesize(sentence, "zhida", prosody=Prosody(speed=speed)))
    assert abs(scaled / normal - 1 / speed) <= 0.1 / speed, (normal, scaled)


def test_pitch_moves_the_predicted_f0_inside_the_model(
    engine: SambertEngine, frontend: Frontend
) -> None:
    """What the pitch embedding receives: normalised f0 moved as f0 × 1.5 would move it."""
    from sambertd.engines.modelscope_backend import F0_MEAN_OVER_STD

    voice = torch_voice(engine, "zhida")
    seen: list[Any] = []
    hook = voice.am.variance_adaptor.pitch_emb.register_forward_hook(
        lambda _m, inputs, _out: seen.append(inputs[0].detach().clone())
    )
    try:
        (sentence,) = frontend.sentences("您好。")
        engine.synthesize(sentence, "zhida")
        engine.synthesize(sentence, "zhida", prosody=Prosody(pitch=1.5))
    finally:
        hook.remove()
    plain, raised = seen
    expected = plain * 1.5 + 0.5 * F0_MEAN_OVER_STD
    assert float((raised - expected).abs().max()) < 1e-4


def test_a_gpu_server_builds_voices_without_a_process_group(
    kantts_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """modelscope's Voice calls KAN-TTS's distributed_init() when CUDA is available, which
    starts NCCL when WORLD_SIZE > 1 is set.  CUDA's presence is faked (no GPU here) and
    init_process_group made to fail: the voice still builds, and the environment is back."""
    import torch

    from sambertd.engines.modelscope_backend import TorchVoice

    def no_group(*_a: object, **_k: object) -> None:
        raise AssertionError("init_process_group was called")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "init_process_group", no_group)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    voice = TorchVoice("zhida", kantts_model / "voices" / "zhida", "cpu", fp16=True)
    assert voice.device == "cpu" and voice.fp16 is False  # FP16 only on a GPU
    assert (os.environ["WORLD_SIZE"], os.environ["RANK"]) == ("2", "1")


def test_timing_comes_from_the_duration_predictor(
    engine: SambertEngine, frontend: Frontend
) -> None:
    """Each syllable's samples are the symbols' durations (frames × hop) as KAN-TTS's length
    regulator used them: in order, inside the audio, and shorter at speed 2."""
    (sentence,) = frontend.sentences("您好，再见。")
    speech = engine.speak(sentence, "zhitian_emo")
    assert speech.measured and len(speech.syllables) == len(sentence.syllables) == 4
    starts = [a for a, _ in speech.syllables]
    assert starts == sorted(starts) and all(a < b for a, b in speech.syllables)
    assert speech.syllables[1][1] <= speech.syllables[2][0]  # the comma's break lies between
    assert speech.syllables[-1][1] <= len(speech.pcm)
    fast = engine.speak(sentence, "zhitian_emo", prosody=Prosody(speed=2.0))
    total = speech.syllables[-1][1] - speech.syllables[0][0]
    fast_total = fast.syllables[-1][1] - fast.syllables[0][0]
    assert total > 0 and fast_total < total and fast.syllables[-1][1] <= len(fast.pcm)
