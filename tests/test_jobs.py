"""The jobs API on one real daemon: local result directory, records in files (no Redis).

The jobs' audio is checked against what the daemon itself answers for the same text in one
request (``/v1/tts``): a job renders the same units and joins them, so at the voice's own
rate the file must be the same bytes, and at another rate the same length.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.daemon import DaemonProcess
from tests.notice import notice

SECRET = b"jobs-test-secret-0123456789abcdef-0123"
TEXT = "各位市民：今天下午三点起，沿江路实行临时交通管制。请提前规划出行路线，注意安全。"


def token(subject: str, scope: str = "tts:synthesize") -> str:
    now = int(time.time())
    claims = {
        "sub": subject,
        "scope": scope,
        "iss": "sambertd",
        "aud": "sambertd",
        "iat": now,
        "exp": now + 3600,
    }
    return jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": "hs256"})


ALICE, BOB = token("portal-a"), token("portal-b")


def call(
    d: DaemonProcess,
    method: str,
    path: str,
    who: str | None = ALICE,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    hdrs = {**({"Authorization": f"Bearer {who}"} if who else {}), **(headers or {})}
    return d.request(method, path, body, headers=hdrs, timeout=60)


def submit(d: DaemonProcess, body: dict[str, Any], who: str = ALICE) -> dict[str, Any]:
    status, headers, data = call(d, "POST", "/v1/jobs", who, body)
    assert status == 202, data
    job: dict[str, Any] = json.loads(data)
    assert headers["location"] == f"/v1/jobs/{job['id']}"
    return job


def state(d: DaemonProcess, job_id: str, who: str = ALICE) -> dict[str, Any]:
    status, _, data = call(d, "GET", f"/v1/jobs/{job_id}", who)
    assert status == 200, data
    result: dict[str, Any] = json.loads(data)
    return result


def finished(
    d: DaemonProcess, job_id: str, who: str = ALICE, timeout: float = 300
) -> dict[str, Any]:
    d.wait_until(lambda: state(d, job_id, who)["state"] in ("done", "failed", "cancelled"), timeout)
    return state(d, job_id, who)


def error(data: bytes) -> str:
    return str(json.loads(data)["error"]["code"])


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    tmp = tmp_path_factory.mktemp("jobs")
    (tmp / "secret").write_bytes(SECRET)
    d = DaemonProcess(
        tmp,
        auth_enabled="true",
        auth_hs256_secret_file=str(tmp / "secret"),
        jobs_directory=str(tmp / "results"),
        jobs_max_active_per_subject="2",
        jobs_max_chars="30000",
    )
    d.wait_ready()
    yield d
    d.stop()


def results(d: DaemonProcess) -> Path:
    return Path(d.log_path).parent / "results"


def test_job_audio_and_subtitles_are_the_one_request_synthesis(node: DaemonProcess) -> None:
    """At the voice's rate a job's file is byte for byte /v1/tts's; its subtitles give the
    same cues within a millisecond; range requests give the right bytes."""
    job = submit(node, {"text": TEXT, "subtitles": "vtt"})
    assert job["state"] == "queued" and job["progress"]["total"] > 1
    done = finished(node, job["id"])
    assert done["state"] == "done", done
    assert done["progress"]["done"] == done["progress"]["total"]
    status, headers, audio = call(node, "GET", f"/v1/jobs/{job['id']}/audio")
    assert status == 200 and headers["content-type"] == "audio/wav"
    assert headers["accept-ranges"] == "bytes" and int(headers["content-length"]) == len(audio)
    status, _, whole = call(node, "POST", "/v1/tts", ALICE, {"text": TEXT})
    assert status == 200 and audio == whole
    assert len(audio) == done["size"]

    status, _, data = call(node, "POST", "/v1/tts", ALICE, {"text": TEXT, "subtitles": "vtt"})
    expected = json.loads(data)["subtitles"]
    status, headers, got = call(node, "GET", f"/v1/jobs/{job['id']}/subtitles")
    assert status == 200 and headers["content-type"].startswith("text/vtt")
    assert _cues(got.decode()) == pytest.approx(_cues(expected), abs=0.0015)
    assert _texts(got.decode()) == _texts(expected)

    size = len(audio)
    for rng, first, last in (
        ("bytes=0-43", 0, 43),
        ("bytes=1000-", 1000, size - 1),
        ("bytes=-100", size - 100, size - 1),
        (f"bytes=500-{size + 99}", 500, size - 1),
    ):
        status, headers, part = call(
            node, "GET", f"/v1/jobs/{job['id']}/audio", headers={"Range": rng}
        )
        assert status == 206 and part == audio[first : last + 1], rng
        assert headers["content-range"] == f"bytes {first}-{last}/{size}"
    status, headers, _ = call(
        node, "GET", f"/v1/jobs/{job['id']}/audio", headers={"Range": f"bytes={len(audio)}-"}
    )
    assert status == 416 and headers["content-range"] == f"bytes */{len(audio)}"
    status, _, part = call(
        node, "GET", f"/v1/jobs/{job['id']}/audio", headers={"Range": "bytes=0-1,5-9"}
    )  # several ranges: whole file
    assert status == 200 and part == audio
    for ignored in ({"Range": "bytes=9-3"}, {"Range": "bytes=0-9", "If-Range": '"stale"'}):
        status, _, part = call(node, "GET", f"/v1/jobs/{job['id']}/audio", headers=ignored)
        assert status == 200 and part == audio, ignored
    status, headers, part = call(node, "HEAD", f"/v1/jobs/{job['id']}/audio")
    assert status == 200 and part == b"" and int(headers["content-length"]) == len(audio)


def _cues(vtt: str) -> list[float]:
    out = []
    for line in vtt.splitlines():
        if "-->" in line:
            for stamp in line.split("-->"):
                h, m, s = stamp.strip().split(":")
                out.append(int(h) * 3600 + int(m) * 60 + float(s))
    return out


def _texts(vtt: str) -> list[str]:
    return [ln for ln in vtt.splitlines()[1:] if ln and "-->" not in ln and not ln.isdigit()]


def test_other_rate_gives_the_same_length(node: DaemonProcess) -> None:
    job = submit(node, {"text": TEXT, "format": "wav", "sample_rate": 16000})
    assert finished(node, job["id"])["state"] == "done"
    _, headers, audio = call(node, "GET", f"/v1/jobs/{job['id']}/audio")
    _, whole_headers, whole = call(
        node, "POST", "/v1/tts", ALICE, {"text": TEXT, "sample_rate": 16000}
    )
    assert headers["x-sample-rate"] == "16000" and len(audio) == len(whole)
    assert headers["x-audio-duration"] == whole_headers["x-audio-duration"]


def test_jobs_belong_to_their_subject(node: DaemonProcess) -> None:
    job = submit(node, {"text": TEXT})
    for method, path in (("GET", ""), ("GET", "/audio"), ("DELETE", "")):
        status, _, data = call(node, method, f"/v1/jobs/{job['id']}{path}", BOB)
        assert (status, error(data)) == (404, "job_not_found"), (method, path)
    status, _, data = call(node, "GET", f"/v1/jobs/{job['id']}", None)
    assert (status, error(data)) == (401, "missing_token")
    status, _, data = call(node, "GET", f"/v1/jobs/{job['id']}", token("portal-a", "tts:admin"))
    assert (status, error(data)) == (403, "insufficient_scope")
    assert finished(node, job["id"])["state"] == "done"  # BOB's DELETE did nothing


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"text": "你好", "voice": "nobody"}, 404, "unknown_voice"),
        ({"text": "你好", "stream": True}, 422, "unsupported_parameter"),
        ({"text": "你好", "timestamps": True}, 422, "unsupported_parameter"),
        ({"text": "你好", "format": "aiff"}, 422, "invalid_parameter"),
        ({"text": "你好", "subtitles": "ass"}, 422, "invalid_parameter"),
        ({"text": "<speak><p>未闭合</speak>"}, 400, "invalid_ssml"),
        ({"voice": "baker"}, 422, "missing_parameter"),
        ({"text": "好" * 30001}, 413, "text_too_long"),
        (["text"], 422, "invalid_body"),
    ],
)
def test_bad_submissions_are_refused_at_once(
    node: DaemonProcess, body: Any, status: int, code: str
) -> None:
    got, _, data = call(node, "POST", "/v1/jobs", ALICE, body)
    assert (got, error(data)) == (status, code), data


def test_unknown_ids_and_unfinished_audio(node: DaemonProcess) -> None:
    status, _, data = call(node, "GET", "/v1/jobs/nosuchjob")
    assert (status, error(data)) == (404, "job_not_found")
    mine = submit(node, {"text": TEXT})["id"]
    for other_key in (f"{mine}:text", f"{mine}:lease", "..%2F..%2Fstate%2Fx", "A" * 23):
        status, _, data = call(node, "GET", f"/v1/jobs/{other_key}")
        assert (status, error(data)) == (404, "job_not_found"), other_key
    job = submit(node, {"text": notice(3000)})
    status, headers, data = call(node, "GET", f"/v1/jobs/{job['id']}/audio")
    assert (status, error(data)) == (409, "job_not_done") and headers["retry-after"]
    status, _, data = call(node, "GET", f"/v1/jobs/{job['id']}/subtitles")
    assert (status, error(data)) == (404, "no_subtitles")
    status, _, data = call(node, "DELETE", f"/v1/jobs/{job['id']}")
    assert status == 200 and json.loads(data)["state"] == "cancelled"
    assert finished(node, mine)["state"] == "done"  # leaves the quota as it found it


def test_quota_cancel_and_delete(node: DaemonProcess) -> None:
    """Two unfinished jobs per subject (this node's setting): a third is 429 until one is
    cancelled.  A cancelled job's stored units go; a finished job's DELETE removes it all."""
    long = notice(4000)
    first, second = submit(node, {"text": long}), submit(node, {"text": long})
    status, headers, data = call(node, "POST", "/v1/jobs", ALICE, {"text": TEXT})
    assert (status, error(data)) == (429, "quota_exceeded") and headers["retry-after"]
    assert submit(node, {"text": TEXT}, BOB)["state"] == "queued"  # another subject's quota
    node.wait_until(lambda: state(node, first["id"])["progress"]["done"] > 0, 120)
    status, _, data = call(node, "DELETE", f"/v1/jobs/{first['id']}")
    assert status == 200 and json.loads(data)["state"] == "cancelled"
    third = submit(node, {"text": TEXT})
    job_dir = results(node) / "jobs" / first["id"]
    node.wait_until(lambda: not job_dir.exists(), 60)  # the runner dropped its units
    status, _, data = call(node, "GET", f"/v1/jobs/{first['id']}/audio")
    assert (status, error(data)) == (409, "job_not_done")
    call(node, "DELETE", f"/v1/jobs/{second['id']}")
    done = finished(node, third["id"])
    assert done["state"] == "done"
    assert (results(node) / "jobs" / third["id"] / "audio").is_file()
    status, _, _ = call(node, "DELETE", f"/v1/jobs/{third['id']}")
    assert status == 204
    assert not (results(node) / "jobs" / third["id"]).exists()
    assert call(node, "GET", f"/v1/jobs/{third['id']}")[0] == 404


def test_jobs_are_audited_and_counted(node: DaemonProcess) -> None:
    before = node.metric('sambertd_jobs_finished_total{state="done"}')
    job = submit(node, {"text": TEXT})
    assert finished(node, job["id"])["state"] == "done"
    node.wait_until(
        lambda: any(
            r.get("job") == job["id"] and r["route"] == "job" for r in node.audit_records()
        ),
        30,
    )
    records = [r for r in node.audit_records() if r.get("job") == job["id"]]
    posted = next(r for r in records if r["route"] == "/v1/jobs")
    assert posted["status"] == 202 and posted["subject"] == "portal-a"
    assert posted["text_len"] == len(TEXT) and "text" not in posted
    ended = next(r for r in records if r["route"] == "job")
    assert ended["state"] == "done" and ended["subject"] == "portal-a" and ended["audio_s"] > 1
    # (other tests' jobs may finish meanwhile: at least this one counted)
    assert node.metric('sambertd_jobs_finished_total{state="done"}') >= before + 1


def test_disabled_jobs_answer_404(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path, jobs_enabled="false")
    try:
        d.wait_ready()
        status, _, data = d.post("/v1/jobs", {"text": TEXT})
        assert (status, error(data)) == (404, "jobs_disabled")
    finally:
        d.stop()


def test_finished_jobs_expire_after_retention(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path, jobs_retention_s="3", jobs_scan_interval_s="0.5")
    try:
        d.wait_ready()
        status, _, data = d.post("/v1/jobs", {"text": TEXT})
        assert status == 202
        job_id = json.loads(data)["id"]
        d.wait_until(lambda: json.loads(d.get(f"/v1/jobs/{job_id}")[2])["state"] == "done", 120)
        stored = tmp_path / f"jobs-{d.port}" / "jobs" / job_id
        assert (stored / "audio").is_file()
        d.wait_until(lambda: d.get(f"/v1/jobs/{job_id}")[0] == 404, 60)
        assert not stored.exists()
    finally:
        d.stop()


def test_killed_node_resumes_its_job_after_restart_same_bytes(tmp_path: Path) -> None:
    """SIGKILL mid-job; a new daemon on the same directory resumes after the last stored
    unit (not from the start) and the file is byte for byte the one-request synthesis."""
    text = notice(4500)
    first = DaemonProcess(tmp_path, jobs_directory=str(tmp_path / "results"))
    first.wait_ready()
    try:
        status, _, data = first.post("/v1/jobs", {"text": text})
        job_id = json.loads(data)["id"]

        def progress() -> dict[str, Any]:
            return json.loads(first.get(f"/v1/jobs/{job_id}")[2])["progress"]

        first.wait_until(lambda: progress()["done"] >= progress()["total"] // 3, 300)
        first.signal(signal.SIGKILL)
        first.proc.wait(30)
    finally:
        first.stop()
    second = DaemonProcess(tmp_path, jobs_directory=str(tmp_path / "results"))
    try:
        second.wait_ready()
        at_kill = json.loads(second.get(f"/v1/jobs/{job_id}")[2])
        assert at_kill["state"] == "running" and at_kill["progress"]["done"] > 0
        second.wait_until(
            lambda: json.loads(second.get(f"/v1/jobs/{job_id}")[2])["state"] == "done", 600
        )
        done = json.loads(second.get(f"/v1/jobs/{job_id}")[2])
        assert done["runs"] == 2 and second.metric("sambertd_jobs_resumed_total") == 1
        rendered = second.metric("sambertd_job_units_total")
        assert rendered == done["progress"]["total"] - at_kill["progress"]["done"]
        audio = second.get(f"/v1/jobs/{job_id}/audio")[2]
        status, _, whole = second.post("/v1/tts", {"text": text})
        assert status == 200 and audio == whole
    finally:
        second.stop()


def cli(node: DaemonProcess, *args: str, who: str = ALICE) -> subprocess.CompletedProcess[str]:
    """``sambertd jobs …`` against the node, address and token from the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAMBERTD_")}
    env.update(SAMBERTD_URL=f"http://127.0.0.1:{node.port}", SAMBERTD_TOKEN=who)
    return subprocess.run(
        [sys.executable, "-m", "sambertd", "jobs", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_cli_submit_wait_status_fetch_cancel(node: DaemonProcess, tmp_path: Path) -> None:
    source = tmp_path / "notice.txt"
    source.write_text(notice(600), encoding="utf-8")
    out = tmp_path / "notice.wav"
    run = cli(node, "submit", "-i", str(source), "--subtitles", "srt", "--wait", "-o", str(out))
    assert run.returncode == 0, run.stderr
    job_id = run.stdout.strip()
    assert f"{job_id}: done" in run.stderr and " units" in run.stderr  # progress lines
    whole = call(node, "POST", "/v1/tts", ALICE, {"text": notice(600)})[2]
    assert out.read_bytes() == whole

    view = json.loads(cli(node, "status", job_id).stdout)
    assert view["state"] == "done" and view["links"]["subtitles"].endswith("/subtitles")
    subs, again = tmp_path / "n.srt", tmp_path / "again.wav"
    run = cli(node, "fetch", job_id, "-o", str(again), "--subtitles", str(subs))
    assert run.returncode == 0 and again.read_bytes() == whole, run.stderr
    assert subs.read_text(encoding="utf-8").startswith("1\n00:00:00,")

    run = cli(node, "status", job_id, who=BOB)
    assert run.returncode == 1 and "HTTP 404 job_not_found" in run.stderr
    run = cli(node, "submit", "你好", who="not-a-token")
    assert run.returncode == 1 and "HTTP 401 invalid_token" in run.stderr
    assert cli(node, "cancel", job_id).stderr.strip() == "deleted"
    assert "HTTP 404" in cli(node, "fetch", job_id, "-o", str(again)).stderr
    assert not list(tmp_path.glob(".*.partial"))


def test_stop_hands_the_job_back_and_a_restart_resumes_it(tmp_path: Path) -> None:
    """SIGTERM (systemctl stop) mid-job: the daemon stops after the units in hand, not after
    the whole job, exits 0, and the job is left running with its progress; the next start
    takes it back at once and finishes it."""
    text = notice(4500)
    first = DaemonProcess(tmp_path, jobs_directory=str(tmp_path / "results"))
    first.wait_ready()
    status, _, data = first.post("/v1/jobs", {"text": text})
    assert status == 202
    job_id = json.loads(data)["id"]

    def progress() -> dict[str, Any]:
        return json.loads(first.get(f"/v1/jobs/{job_id}")[2])["progress"]

    first.wait_until(lambda: progress()["done"] >= 5, 300)
    assert first.stop() == 0
    assert "handed back at unit" in first.log()
    second = DaemonProcess(tmp_path, jobs_directory=str(tmp_path / "results"))
    try:
        second.wait_ready()
        view = json.loads(second.get(f"/v1/jobs/{job_id}")[2])
        assert (
            view["state"] == "running" and 5 <= view["progress"]["done"] < view["progress"]["total"]
        )
        second.wait_until(
            lambda: json.loads(second.get(f"/v1/jobs/{job_id}")[2])["state"] == "done", 600
        )
        assert json.loads(second.get(f"/v1/jobs/{job_id}")[2])["runs"] == 2
    finally:
        second.stop()
