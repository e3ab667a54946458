"""A 20 000-character notice as a job on a pair: records in Redis through Sentinel, audio in
an S3 store (moto's S3 server, an emulator: no real S3 server can be installed here).

The node running the job is killed (SIGKILL) a third of the way in; the other node takes it
over when the lease lapses and finishes it from the last stored unit.  The finished file's
length is compared with the same text synthesized in one piece (in this process, while the
pair works): within 2 %.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import soundfile

from sambertd.config import load
from sambertd.synth import Synthesizer
from sambertd.types import Request
from tests.daemon import DaemonProcess
from tests.notice import notice
from tests.redis_cluster import RedisTopology
from tests.s3_emulator import MotoServer, make_bucket

NOTICE_CHARS = 20_000


def one_piece(text: str, out: dict[str, Any]) -> None:
    """The reference: the whole text in one ``Synthesizer.render`` (as ``sambertd synth``)."""
    synthesizer = Synthesizer(load(env={}))
    synthesizer.warm_up()
    started = time.monotonic()
    result = synthesizer.render(Request(text=text))
    out.update(duration=result.duration, units=result.sentences, seconds=time.monotonic() - started)


def status(d: DaemonProcess, job_id: str) -> dict[str, Any]:
    code, _, data = d.get(f"/v1/jobs/{job_id}")
    assert code == 200, data
    result: dict[str, Any] = json.loads(data)
    return result


def test_notice_job_survives_killing_its_node(tmp_path: Path) -> None:
    text = notice(NOTICE_CHARS)
    reference: dict[str, Any] = {}
    with (
        RedisTopology(tmp_path / "redis", down_after_ms=1000) as topo,
        MotoServer(tmp_path) as endpoint,
    ):
        (tmp_path / "s3-secret").write_text("moto-secret\n")
        settings = {
            "cache_sentinels": ",".join(f"{h}:{p}" for h, p in topo.sentinels),
            "cache_master_name": "sambertd",
            "jobs_store": "s3",
            "jobs_s3_endpoint": endpoint,
            "jobs_s3_bucket": make_bucket(endpoint),
            "jobs_s3_access_key": "moto",
            "jobs_s3_secret_key_file": str(tmp_path / "s3-secret"),
            "jobs_lease_s": "3",
            "jobs_scan_interval_s": "0.5",
        }
        nodes = {name: DaemonProcess(tmp_path, server_node_name=name, **settings) for name in "ab"}
        worker = threading.Thread(target=one_piece, args=(text, reference), daemon=True)
        try:
            for d in nodes.values():
                d.wait_ready()
            code, _, data = nodes["a"].post("/v1/jobs", {"text": text})
            assert code == 202, data
            job_id = json.loads(data)["id"]
            worker.start()
            began = time.monotonic()

            def a_third_done() -> bool:
                views = [status(d, job_id) for d in nodes.values()]  # either node answers
                assert (
                    views[0]["progress"] == views[1]["progress"] or views[0]["state"] == "running"
                )
                p = views[0]["progress"]
                return views[0]["state"] == "running" and p["done"] >= p["total"] // 3

            nodes["a"].wait_until(a_third_done, 1200)
            view = status(nodes["a"], job_id)
            running, total = view["node"], view["progress"]["total"]
            other = "b" if running == "a" else "a"
            nodes[running].signal(signal.SIGKILL)
            nodes[running].proc.wait(30)
            killed_at = time.monotonic()
            done_at_kill = view["progress"]["done"]

            survivor = nodes[other]
            survivor.wait_until(lambda: status(survivor, job_id)["node"] == other, 60)
            taken_after = time.monotonic() - killed_at
            survivor.wait_until(lambda: status(survivor, job_id)["state"] == "done", 1800)
            final = status(survivor, job_id)
            assert final["runs"] == 2 and final["node"] == other
            assert survivor.metric("sambertd_jobs_resumed_total") == 1
            rendered = survivor.metric("sambertd_job_units_total")
            assert 0 < rendered <= total - done_at_kill  # resumed, not started over

            audio = tmp_path / "job.wav"
            code, _, body = survivor.request("GET", f"/v1/jobs/{job_id}/audio", timeout=300)
            assert code == 200 and len(body) == final["size"]
            audio.write_bytes(body)
            info = soundfile.info(str(audio))
            job_seconds = info.frames / info.samplerate

            # The killed node comes back and serves the same file (records and audio are
            # shared): a range of it equals the survivor's bytes.
            back = DaemonProcess(tmp_path, server_node_name=running, **settings)
            nodes[running] = back
            back.wait_ready()
            code, _, part = back.request(
                "GET", f"/v1/jobs/{job_id}/audio", headers={"Range": "bytes=1000000-1099999"}
            )
            assert code == 206 and part == body[1_000_000:1_100_000]

            worker.join(1800)
            assert not worker.is_alive(), "the one-piece synthesis did not finish"
            gap = abs(job_seconds - reference["duration"]) / reference["duration"]
            print(
                f"\njob: {len(text)} chars, {total} units, {job_seconds:.1f} s of audio in "
                f"{time.monotonic() - began:.0f} s; killed {running} at unit {done_at_kill}, "
                f"{other} took over after {taken_after:.1f} s and rendered {rendered:.0f}; "
                f"one piece: {reference['duration']:.1f} s of audio in "
                f"{reference['seconds']:.0f} s; difference {gap:.4%}"
            )
            assert gap < 0.02 and reference["units"] == total
        finally:
            for d in nodes.values():
                d.stop()
            worker.join(0)
