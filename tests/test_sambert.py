"""The sambert adapter's plain code, and what cannot happen on this machine.

Model-directory validation, ttsfrd symbol rewriting and device choice are plain code tested for
real.  A GPU (count, failing probe, out-of-memory, a faulting engine for the breaker) and
Alibaba's ttsfrd cannot be had here: ``tests/standin_modelscope.py`` — a test double at that
boundary, named as such — plays them.  The real modelscope + KAN-TTS code runs in
``tests/test_sambert_real.py``.
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sambertd.config import Config, EngineConfig, SambertConfig
from sambertd.engines import EngineError
from sambertd.engines.baker import BakerEngine
from sambertd.engines.modelscope_backend import need
from sambertd.engines.sambert import EMOTIONS, SambertEngine, set_emotion, symbol_lines
from sambertd.engines.sambert_model import check_model_dir, latest_checkpoint, pick_device
from sambertd.synth import EngineUnavailable, Synthesizer
from sambertd.types import Request
from tests.modeldir import make_model_dir
from tests.standin_modelscope import EMOTION_HZ, StandInBackend

# A line as ttsfrd emits it for 您好，再见 (KAN-TTS lfeat order: sy, tone, syllable_flag,
# word_segment, emo_category, speaker_category).
KANTTS_LINE = (
    "{n_c$tone2$s_begin$word_begin$emotion_neutral$F7} {in_c$tone2$s_end$word_begin$emotion_"
    "neutral$F7} {h_c$tone3$s_begin$word_end$emotion_neutral$F7} {ao_c$tone3$s_end$word_end$"
    "emotion_neutral$F7} {#3$tone_none$s_none$word_none$emotion_neutral$F7} {z_c$tone4$s_begin"
    "$word_begin$emotion_neutral$F7} {ai_c$tone4$s_end$word_begin$emotion_neutral$F7} {j_c$"
    "tone4$s_begin$word_end$emotion_neutral$F7} {ian_c$tone4$s_end$word_end$emotion_neutral$F7}"
)


# -- model directory -----------------------------------------------------------------------


def test_good_model_dir(tmp_path: Path) -> None:
    layout = check_model_dir(make_model_dir(tmp_path / "m"), wanted=["zhitian_emo"])
    assert layout.ok, layout.problems
    assert layout.voices == ["zhitian_emo", "zhiyan_emo", "zhizhe_emo", "zhibei_emo"]


def test_latest_checkpoint_is_the_highest_step(tmp_path: Path) -> None:
    root = make_model_dir(tmp_path / "m", voices=("v",))
    ckpt = latest_checkpoint(root / "voices" / "v" / "am" / "ckpt")
    assert ckpt is not None and ckpt.name == "checkpoint_1200000.pth"
    assert latest_checkpoint(tmp_path / "nowhere") is None


def _break(root: Path, how: str) -> None:
    v = root / "voices" / "zhitian_emo"
    match how:
        case "no resource":
            (root / "resource.zip").unlink()
        case "bad resource":
            (root / "resource.zip").write_bytes(b"not a zip")
        case "no voices.json":
            (root / "voices" / "voices.json").unlink()
        case "bad voices.json":
            (root / "voices" / "voices.json").write_text('{"voices": []}')
        case "not json":
            (root / "voices" / "voices.json").write_text("{oops")
        case "no am ckpt":
            for f in (v / "am" / "ckpt").iterdir():
                f.unlink()
        case "no voc config":
            (v / "voc" / "config.yaml").unlink()
        case "no audio config":
            (v / "audio_config.yaml").unlink()
        case "misnamed ckpt":
            for f in (v / "voc" / "ckpt").iterdir():
                f.rename(f.with_name("model.pt"))


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("no resource", "resource.zip (front-end resources): missing"),
        ("bad resource", "resource.zip: not a zip archive"),
        ("no voices.json", "voices/voices.json:"),
        ("bad voices.json", 'must be {"voices"'),
        ("not json", "voices/voices.json:"),
        ("no am ckpt", "voices/zhitian_emo/am/ckpt/: no checkpoint*_N.pth"),
        ("no voc config", "voices/zhitian_emo/voc/config.yaml: missing"),
        ("no audio config", "voices/zhitian_emo/audio_config.yaml: missing"),
        ("misnamed ckpt", "voices/zhitian_emo/voc/ckpt/: no checkpoint*_N.pth"),
    ],
)
def test_broken_model_dirs_say_what_is_missing(tmp_path: Path, how: str, message: str) -> None:
    root = make_model_dir(tmp_path / "m")
    _break(root, how)
    layout = check_model_dir(root)
    assert not layout.ok
    assert any(message in p for p in layout.problems), layout.problems


def test_wanted_voice_absent_and_not_a_directory(tmp_path: Path) -> None:
    root = make_model_dir(tmp_path / "m", voices=("zhitian_emo",))
    assert check_model_dir(root, wanted=["zhibei_emo"]).problems == [
        "voices not in voices.json: zhibei_emo"
    ]
    assert "not a directory" in check_model_dir(tmp_path / "nope").problems[0]


# -- KAN-TTS symbols -----------------------------------------------------------------------


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_emotion_rewrite_changes_only_the_emotion_field(emotion: str) -> None:
    out = set_emotion(KANTTS_LINE, emotion)
    before, after = KANTTS_LINE.split(" "), out.split(" ")
    assert len(before) == len(after) == 9
    for b, a in zip(before, after, strict=True):
        bf, af = b.strip("{}").split("$"), a.strip("{}").split("$")
        assert af[4] == f"emotion_{emotion}"
        assert af[:4] + af[5:] == bf[:4] + bf[5:]


def test_emotion_field_found_by_prefix_not_position() -> None:
    line = "{emotion_neutral$F7$ni$tone3} {F7$hao$emotion_neutral$tone3}"
    assert set_emotion(line, "sad") == "{emotion_sad$F7$ni$tone3} {F7$hao$emotion_sad$tone3}"


def test_breaks_keep_emotion_none() -> None:
    line = (
        "{n_c$tone2$s_begin$word_begin$emotion_neutral$F7} "
        "{#1$tone_none$s_none$word_none$emotion_none$F7}"
    )
    assert set_emotion(line, "happy") == line.replace("emotion_neutral", "emotion_happy")


def test_unknown_emotion_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown emotion 'joy'"):
        set_emotion(KANTTS_LINE, "joy")


def test_symbol_lines_parse_ttsfrd_output() -> None:
    raw = f"0\t{KANTTS_LINE}\n1\t{{sil$tone_none$s_none$word_none$emotion_neutral$F7}}\n\n2\t\n"
    lines = symbol_lines(raw)
    assert lines[0] == KANTTS_LINE and len(lines) == 2


# -- devices ---------------------------------------------------------------------------------


def healthy(device: str) -> str | None:
    return None


@pytest.mark.parametrize(
    ("setting", "gpus", "bad", "device", "degraded"),
    [
        ("cpu", 2, set(), "cpu", None),
        ("auto", 0, set(), "cpu", None),  # a CPU server is not degraded
        ("auto", 2, set(), "cuda:0", None),
        ("auto", 2, {"cuda:0"}, "cuda:1", None),
        ("auto", 2, {"cuda:0", "cuda:1"}, "cpu", "cuda:0 failed its health probe"),
        ("cuda", 1, set(), "cuda:0", None),
        ("cuda:1", 2, set(), "cuda:1", None),
        ("cuda:3", 1, set(), "cpu", "cuda:3 not present (1 GPU(s))"),
        ("cuda:0", 1, {"cuda:0"}, "cpu", "cuda:0 failed its health probe: ECC"),
        ("cuda", 0, set(), "cpu", "cuda:0 not present"),
    ],
)
def test_device_choice(
    setting: str, gpus: int, bad: set[str], device: str, degraded: str | None
) -> None:
    got, why = pick_device(setting, gpus, lambda d: "ECC error" if d in bad else None)
    assert got == device
    assert (why is None) if degraded is None else (why is not None and degraded in why)


# -- the engine against the stand-in ---------------------------------------------------------


def engine(tmp_path: Path, backend: StandInBackend, **cfg: object) -> SambertEngine:
    root = make_model_dir(tmp_path / "model")
    config = dataclasses.replace(SambertConfig(model_dir=str(root)), **cfg)  # type: ignore[arg-type]
    return SambertEngine(config, backend=backend, cache_dir=tmp_path / "cache")


def test_voices_come_from_the_model_dir(tmp_path: Path) -> None:
    e = engine(tmp_path, StandInBackend(), voices=("zhitian_emo", "zhibei_emo", "other"))
    assert [v.id for v in e.voices()] == ["zhitian_emo", "zhibei_emo"]
    v = e.voices()[0]
    assert (v.sample_rate, v.emotions) == (16000, EMOTIONS)


def test_emotion_reaches_the_model(tmp_path: Path, frontend) -> None:  # type: ignore[no-untyped-def]
    backend = StandInBackend()
    e = engine(tmp_path, backend)
    (sentence,) = frontend.sentences("您好，再见。")
    for emotion in ("neutral", "happy", "sad"):
        pcm = e.synthesize(sentence, "zhitian_emo", emotion)
        peak_hz = np.argmax(np.abs(np.fft.rfft(pcm))) * 16000 / len(pcm)
        assert abs(peak_hz - EMOTION_HZ[emotion]) < 5
    # resource.zip was unpacked into the cache, not into the (maybe read-only) model dir
    assert backend.resource_dirs == [tmp_path / "cache" / "sambert" / "model" / "resource"]
    assert not (tmp_path / "model" / "resource").exists()


def test_cuda_oom_frees_and_retries_once_on_cpu(tmp_path: Path, frontend) -> None:  # type: ignore[no-untyped-def]
    backend = StandInBackend(gpu_count=1, oom_on={"cuda:0"})
    e = engine(tmp_path, backend)
    (sentence,) = frontend.sentences("您好，再见。")
    pcm = e.synthesize(sentence, "zhitian_emo")
    assert e.device == "cuda:0" and pcm.size > 0
    assert [c[1] for c in backend.calls] == ["cuda:0", "cpu"]
    assert backend.freed == ["cuda:0"] and e.oom_retries == 1


def test_failed_gpu_probe_flips_to_cpu_and_reports_degraded(tmp_path: Path) -> None:
    backend = StandInBackend(gpu_count=1)
    e = engine(tmp_path, backend, device="cuda:0")
    e.load()
    assert e.device == "cuda:0" and e.degraded() is None
    backend.bad_gpus.add("cuda:0")
    e.check_health()
    assert e.device == "cpu"
    assert "cuda:0 failed its health probe: ECC error" in (e.degraded() or "")


def test_missing_libraries_are_named() -> None:
    with pytest.raises(EngineError, match=r"needs PyTorch .*make install-sambert"):
        need("torch_that_is_not_there", "PyTorch")


def test_broken_model_dir_fails_load_with_the_list(tmp_path: Path) -> None:
    e = engine(tmp_path, StandInBackend())
    (tmp_path / "model" / "resource.zip").unlink()
    with pytest.raises(EngineError, match=r"resource\.zip"):
        e.load()
    with pytest.raises(EngineError, match="model_dir is not set"):
        SambertEngine(SambertConfig(), backend=StandInBackend()).load()


# -- ladder and breaker (in-process; the HTTP versions are in test_ladder_http.py) ------------


class Clock:
    """The breakers' clock, moved by the test: a slow machine cannot outlast open_s."""

    now = 1000.0

    def __call__(self) -> float:
        return self.now


def ladder(
    tmp_path: Path, backend: StandInBackend, degrade: bool = True, clock: Clock | None = None
) -> Synthesizer:
    cfg = Config(
        engine=EngineConfig(
            engines=("sambert", "baker"),
            default_voice="zhitian_emo",
            degrade=degrade,
            breaker_min_calls=3,
            breaker_error_rate=0.5,
            breaker_open_s=0.3,
        )
    )
    return Synthesizer(
        cfg, engines=[engine(tmp_path, backend), BakerEngine()], clock=clock or Clock()
    )


def test_breaker_opens_on_failures_and_closes_after_a_good_trial(tmp_path: Path) -> None:
    backend = StandInBackend()
    clock = Clock()
    synth = ladder(tmp_path, backend, clock=clock)
    synth.warm_up()
    ok = synth.render(Request(text="您好。"))
    assert (ok.engine, ok.degraded) == ("sambert", False)
    backend.fail_next = 100
    served = [synth.render(Request(text="您好。")) for _ in range(4)]
    # Each failure is redone on baker at once; after 3 calls at > 50 % errors the breaker
    # opens and requests go straight to baker.
    assert all(r.engine == "baker" and r.degraded for r in served)
    assert synth.rungs[0].breaker.state == "open"
    calls_while_open = len(backend.calls)
    synth.render(Request(text="您好。"))
    assert len(backend.calls) == calls_while_open  # sambert not even tried
    backend.fail_next = 0
    clock.now += 0.35  # past breaker_open_s
    trial = synth.render(Request(text="您好。"))
    assert (trial.engine, trial.degraded) == ("sambert", False)
    assert synth.rungs[0].breaker.state == "closed"


def test_without_degrade_an_open_breaker_is_503(tmp_path: Path) -> None:
    synth = ladder(tmp_path, StandInBackend(), degrade=False)
    synth.rungs[0].breaker.trip("GPU gone")
    with pytest.raises(EngineUnavailable, match="GPU gone"):
        synth.render(Request(text="您好。"))
    # the baker voice itself is still served
    assert synth.render(Request(text="您好。", voice="baker")).engine == "baker"


def test_unloadable_first_engine_trips_at_warm_up(tmp_path: Path) -> None:
    # The breakers read a clock that only this test moves: baker's warm-up runs after
    # sambert's breaker trips and takes seconds on a slow machine, longer than open_s
    # (0.3 s), which on the real clock made the breaker half-open by the time we looked.
    clock = Clock()
    synth = ladder(tmp_path, StandInBackend(), clock=clock)
    with zipfile.ZipFile(tmp_path / "model" / "resource.zip", "w"):
        pass
    (tmp_path / "model" / "voices" / "voices.json").write_text("{}")
    synth.warm_up()
    breaker = synth.rungs[0].breaker
    assert breaker.state == "open" and breaker.reason.startswith("cannot load")
    assert "cannot load" in synth.health()["sambert"]
    result = synth.render(Request(text="您好。", voice="zhitian_emo", emotion="happy"))
    assert (result.engine, result.voice, result.degraded) == ("baker", "baker", True)
    # Past open_s the one trial goes to sambert, still unloadable: open again, baker serves.
    clock.now += 0.35
    assert breaker.state == "half-open"
    result = synth.render(Request(text="您好。", voice="zhitian_emo"))
    assert (result.engine, result.degraded) == ("baker", True)
    assert breaker.state == "open"
