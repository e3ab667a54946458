"""The ``sambertd`` command as an operator runs it: real processes, real engine, real files."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

PARAGRAPH = (
    "各位市民：为进一步优化政务服务，本市政务服务中心自2026年3月1日起实行延时服务，"
    "工作日办理时间调整为8:30-18:00，周六上午照常受理社保、医保和不动产登记业务。"
    "如有疑问，请拨打政务服务热线12345咨询，感谢您的理解与支持。"
)


def run(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SAMBERTD_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "sambertd", *args],
        capture_output=True,
        env=full_env,
        input=stdin,
        timeout=300,
    )


def test_synth_a_government_paragraph(tmp_path: Path) -> None:
    assert len(PARAGRAPH) >= 100
    out = tmp_path / "p.wav"
    proc = run("synth", PARAGRAPH, "-o", str(out))
    assert proc.returncode == 0, proc.stderr.decode()
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "PCM_16")
    assert 20 < info.duration < 60, info.duration  # ~150 syllables of speech
    assert b"sentence(s)" in proc.stderr


def test_synth_from_file_to_stdout_as_telephony_alaw(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("您好。这里是政务服务热线。", encoding="utf-8")
    proc = run("synth", "-i", str(src), "-o", "-", "--format", "alaw")
    assert proc.returncode == 0, proc.stderr.decode()
    info = sf.info(io.BytesIO(proc.stdout))
    assert (info.samplerate, info.subtype) == (8000, "ALAW")


@pytest.mark.parametrize(
    ("fmt", "rate", "container"),
    [("wav", "16000", "WAV"), ("mp3", "22050", "MP3"), ("ulaw", "8000", "WAV")],
)
def test_formats_and_rates(tmp_path: Path, fmt: str, rate: str, container: str) -> None:
    out = tmp_path / f"x.{fmt}"
    proc = run("synth", "请耐心等待。", "-o", str(out), "--format", fmt, "--sample-rate", rate)
    assert proc.returncode == 0, proc.stderr.decode()
    info = sf.info(str(out))
    assert (info.format, info.samplerate) == (container, int(rate))


def test_voices_lists_the_embedded_voice() -> None:
    proc = run("voices")
    assert proc.returncode == 0
    lines = proc.stdout.decode().splitlines()
    assert lines[0].split()[:3] == ["VOICE", "ENGINE", "LANG"]
    assert lines[1].split() == ["baker", "baker", "zh-CN", "24000", "neutral"]


def test_frontend_shows_normalization_and_phonemes() -> None:
    proc = run("frontend", "请于2026年3月5日前到银行办理。")
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    assert "normalized: 请于二零二六年三月五日前到银行办理。" in out
    assert "银行 yin2 hang2" in out


def test_check_accepts_the_shipped_config() -> None:
    proc = run("-c", str(Path(__file__).parent.parent / "config" / "sambertd.toml"), "check")
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"is ok" in proc.stdout
    # where the embedded voice's vocoder runs, as the operator needs to know
    assert b"baker: acoustic model on LiteRT, vocoder on openvino" in proc.stdout


def test_check_names_the_litert_fallback() -> None:
    env = {"SAMBERTD_ENGINE_RUNTIME": "litert"}
    proc = run(
        "-c", str(Path(__file__).parent.parent / "config" / "sambertd.toml"), "check", env=env
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"vocoder on litert f32 (windows 192 frames)" in proc.stdout


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["synth", "", "-o", "{out}"], {}, "empty"),
        (["synth", "   \n\t ", "-o", "{out}"], {}, "empty"),
        (["synth", "😀😀😀", "-o", "{out}"], {}, "empty"),
        (["synth", "你好", "-o", "{out}", "--voice", "nobody"], {}, "unknown voice 'nobody'"),
        (["synth", "你好", "-o", "{out}", "--emotion", "happy"], {}, "no emotion 'happy'"),
        (["synth", "你好", "-o", "{out}", "--speed", "9"], {}, "speed must be between"),
        (["synth", "-i", "/nonexistent/in.txt", "-o", "{out}"], {}, "No such file"),
        (["synth", "你好", "-o", "/nonexistent/dir/out.wav"], {}, "No such file"),
        (["voices"], {"SAMBERTD_SERVER_PORT": "eighty"}, "expected int"),
        (["check"], {"SAMBERTD_ENGINE_ENGINES": "nosuch"}, "unknown engine(s) nosuch"),
    ],
)
def test_bad_input_gives_one_clear_line(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    out = tmp_path / "out.wav"
    proc = run(*[a.replace("{out}", str(out)) for a in args], env=env)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert message in err
    assert "Traceback" not in err
    assert not out.exists(), "a failed synth must not leave a partial file"


def test_usage_errors_exit_2() -> None:
    proc = run("synth", "-o", "x.wav")
    assert proc.returncode == 2
    assert b"give the text" in proc.stderr


def test_check_model_dir_good_and_broken(tmp_path: Path) -> None:
    from tests.modeldir import make_model_dir

    good = make_model_dir(tmp_path / "good", voices=("zhitian_emo", "zhiyan_emo"))
    proc = run("check", "--model-dir", str(good))
    out = proc.stdout.decode()
    assert proc.returncode == 0, out
    assert "voices: zhitian_emo, zhiyan_emo" in out and "layout ok" in out
    assert "configured voices not in this model: zhizhe_emo, zhibei_emo" in out
    (good / "voices" / "zhiyan_emo" / "voc" / "config.yaml").unlink()
    proc = run("check", "--model-dir", str(good))
    assert proc.returncode == 1
    assert "missing or broken: voices/zhiyan_emo/voc/config.yaml: missing" in proc.stdout.decode()


def test_voices_lists_sambert_voices_from_the_model_dir(tmp_path: Path) -> None:
    from tests.modeldir import make_model_dir

    model = make_model_dir(tmp_path / "m", voices=("zhitian_emo", "zhibei_emo"))
    proc = run(
        "voices",
        env={"SAMBERTD_ENGINE_ENGINES": "sambert,baker", "SAMBERTD_SAMBERT_MODEL_DIR": str(model)},
    )
    assert proc.returncode == 0, proc.stderr.decode()
    rows = [line.split() for line in proc.stdout.decode().splitlines()[1:]]
    assert [r[0] for r in rows] == ["zhitian_emo", "zhibei_emo", "baker"]
    assert rows[0][1:4] == ["sambert", "zh-CN", "16000"]
    assert rows[0][4] == "neutral,happy,sad,angry,fear,disgust,surprise"


def test_frontend_ssml_phoneme_changes_the_pinyin() -> None:
    plain = run("frontend", "<speak>银行</speak>")
    fixed = run(
        "frontend", "--ssml", '<speak><phoneme alphabet="py" ph="yin2 xing2">银行</phoneme></speak>'
    )
    assert plain.returncode == 0 and fixed.returncode == 0, fixed.stderr.decode()
    assert "yin2 hang2" in plain.stdout.decode()
    assert "yin2 xing2" in fixed.stdout.decode() and "hang2" not in fixed.stdout.decode()
    bad = run("frontend", "--ssml", "<speak>银行")
    assert bad.returncode == 1 and b"line 1, column" in bad.stderr


def test_synth_long_notice_with_subtitles(tmp_path: Path) -> None:
    notice = tmp_path / "notice.txt"
    notice.write_text(PARAGRAPH * 3, encoding="utf-8")
    out, srt, stamps = tmp_path / "n.wav", tmp_path / "n.srt", tmp_path / "n.json"
    proc = run(
        "synth", "-i", str(notice), "-o", str(out), "--srt", str(srt), "--timestamps", str(stamps)
    )
    assert proc.returncode == 0, proc.stderr.decode()
    cues = srt.read_text(encoding="utf-8").strip().split("\n\n")
    assert len(cues) >= 20 and cues[0].startswith("1\n00:00:00,")
    assert all(len(c.split("\n")[2]) <= 20 for c in cues)
    chars = json.loads(stamps.read_text(encoding="utf-8"))["characters"]
    assert abs(chars[-1]["end_ms"] - sf.info(str(out)).duration * 1000) <= 100


def test_token_issue_kid_picks_the_hs256_secret(tmp_path: Path) -> None:
    import jwt

    secrets = {"2026a": b"A" * 40, "2026b": b"B" * 40}
    for kid, secret in secrets.items():
        (tmp_path / kid).write_bytes(secret)
    listed = ",".join(f"{kid}={tmp_path / kid}" for kid in secrets)
    env = {"SAMBERTD_AUTH_HS256_SECRETS": listed}
    for kid, secret in secrets.items():
        proc = run("token", "issue", "--sub", "ivr-01", "--kid", kid, env=env)
        assert proc.returncode == 0, proc.stderr.decode()
        token = proc.stdout.decode().strip()
        assert jwt.get_unverified_header(token)["kid"] == kid
        claims = jwt.decode(token, secret, algorithms=["HS256"], audience="sambertd")
        assert claims["sub"] == "ivr-01"
    several = run("token", "issue", "--sub", "x", env=env)
    assert several.returncode == 1 and b"several HS256 secrets" in several.stderr
    unknown = run("token", "issue", "--sub", "x", "--kid", "2025z", env=env)
    assert unknown.returncode == 1 and b"no HS256 secret with kid '2025z'" in unknown.stderr
    single = run(
        "token",
        "issue",
        "--sub",
        "x",
        env={"SAMBERTD_AUTH_HS256_SECRETS": f"2026a={tmp_path / '2026a'}"},
    )
    assert single.returncode == 0
    assert jwt.get_unverified_header(single.stdout.decode().strip())["kid"] == "2026a"
    none = run("token", "issue", "--sub", "x")
    assert none.returncode == 1 and b"no auth.hs256_secrets" in none.stderr
