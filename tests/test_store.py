"""The jobs' result store: one behaviour suite run against both backends.

* :class:`LocalStore` in a temporary directory (the real thing).
* :class:`S3Store` against moto's S3 server, an emulator: no real S3 server (MinIO) can be
  installed here.  ``moto_server`` runs as a separate process on a loopback port and is
  spoken to over HTTP by the real boto3 client, so addressing, signing, multipart uploads,
  ranged GETs and batched deletes all go over the wire as they would to MinIO.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from sambertd.config import JobsConfig
from sambertd.jobs.store import LocalStore, ResultStore, StoreError, open_store
from tests.s3_emulator import MotoServer, emulator_client, free_port, make_bucket

HOST = "127.0.0.1"
SECRET = "moto-secret-key-do-not-print"


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server (an emulator), once per session."""
    with MotoServer(tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint


def s3_config(endpoint: str, bucket: str, secret_file: Path, **extra: Any) -> JobsConfig:
    secret_file.write_text(SECRET + "\n")
    settings: dict[str, Any] = {
        "store": "s3",
        "s3_endpoint": endpoint,
        "s3_bucket": bucket,
        "s3_access_key": "moto-access",
        "s3_secret_key_file": str(secret_file),
    }
    settings.update(extra)
    return JobsConfig(**settings)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ResultStore:
    """Each backend, fresh: a new directory, or a new bucket on the shared moto server."""
    if request.param == "local":
        return LocalStore(tmp_path / "results")
    endpoint: str = request.getfixturevalue("moto_endpoint")
    s3 = open_store(s3_config(endpoint, make_bucket(endpoint), tmp_path / "secret"))
    s3.check()
    return s3


def test_put_get_round_trip(store: ResultStore) -> None:
    store.check()
    store.put("jobs/a/0001.pcm", b"\x00\x01 hello")
    assert store.get("jobs/a/0001.pcm") == b"\x00\x01 hello"
    assert store.size("jobs/a/0001.pcm") == 8
    store.put("jobs/a/empty", b"")
    assert store.get("jobs/a/empty") == b""
    assert store.size("jobs/a/empty") == 0


def test_missing_key_is_none(store: ResultStore) -> None:
    assert store.get("jobs/nope/x") is None
    assert store.size("jobs/nope/x") is None
    with pytest.raises(StoreError):
        store.read("jobs/nope/x", 0, 10)


def test_put_replaces_atomically(store: ResultStore) -> None:
    """A reader racing the writer sees one whole version or the other, never a mix or a
    truncated object."""
    old, new = b"o" * 300_000, b"N" * 200_000
    store.put("jobs/r/audio", old)
    seen: set[bytes | None] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.add(store.get("jobs/r/audio"))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(20):
            store.put("jobs/r/audio", new if i % 2 == 0 else old)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert seen <= {old, new}
    store.put("jobs/r/audio", new)
    assert store.get("jobs/r/audio") == new
    assert store.size("jobs/r/audio") == len(new)


def test_put_file_big_moves_the_file(store: ResultStore, tmp_path: Path) -> None:
    """12 MB: above boto3's 8 MiB multipart threshold, so S3 gets a multipart upload."""
    data = os.urandom(12 * 1024 * 1024)
    local = tmp_path / "finished.mp3"
    local.write_bytes(data)
    parts: list[str] = []
    client = getattr(store, "_client", None)
    if client is not None:  # S3: count the parts that went over the wire
        client.meta.events.register("before-call.s3.UploadPart", lambda **_: parts.append("p"))
    store.put_file("jobs/big/audio.mp3", local)
    if client is not None:
        assert len(parts) == 2  # 8 MiB + 4 MiB
    assert not local.exists()
    assert store.size("jobs/big/audio.mp3") == len(data)
    assert store.get("jobs/big/audio.mp3") == data
    assert store.read("jobs/big/audio.mp3", 9 * 1024 * 1024, 100) == data[9437184:9437284]


def test_read_ranges(store: ResultStore) -> None:
    data = bytes(range(256)) * 4
    store.put("jobs/rr/pcm", data)
    assert store.read("jobs/rr/pcm", 0, 10) == data[:10]
    assert store.read("jobs/rr/pcm", 500, 24) == data[500:524]
    assert store.read("jobs/rr/pcm", 1000, 24) == data[1000:]
    assert store.read("jobs/rr/pcm", 1020, 100) == data[1020:]  # fewer at the end
    assert store.read("jobs/rr/pcm", 1024, 10) == b""  # at the end
    assert store.read("jobs/rr/pcm", 5000, 10) == b""  # past it


def test_delete_prefix_counts_and_spares_neighbours(store: ResultStore) -> None:
    """1200 objects: more than S3's 1000 keys per DeleteObjects, so two batches."""
    keys = [f"jobs/many/{i:05d}.pcm" for i in range(1200)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: store.put(k, b"x"), keys))
    store.put("jobs/many/sub/deeper", b"y")
    store.put("jobs/manyother/keep", b"k")  # shares the string prefix, not the directory
    store.put("jobs/other/keep", b"k")
    assert store.delete_prefix("jobs/many/") == 1201
    assert store.get(keys[0]) is None and store.get(keys[-1]) is None
    assert store.get("jobs/many/sub/deeper") is None
    assert store.get("jobs/manyother/keep") == b"k"
    assert store.get("jobs/other/keep") == b"k"
    assert store.delete_prefix("jobs/many/") == 0
    assert store.delete_prefix("jobs/never/") == 0


@pytest.mark.parametrize("key", ["../x", "/abs", "a//b", "", "a/./b", "a/../../b", "a/"])
def test_bad_keys_refused(store: ResultStore, key: str) -> None:
    with pytest.raises(StoreError, match="bad store key"):
        store.put(key, b"x")
    with pytest.raises(StoreError, match="bad store key"):
        store.get(key)
    if key != "a/":  # "a/" is a fine prefix (a directory), only a bad key
        with pytest.raises(StoreError, match="bad store key"):
            store.delete_prefix(key)


# --- S3 only -----------------------------------------------------------------------------


def test_s3_prefixes_are_isolated(moto_endpoint: str, tmp_path: Path) -> None:
    """Two stores on one bucket with different prefixes (two clusters, say) never meet."""
    bucket = make_bucket(moto_endpoint)
    a = open_store(s3_config(moto_endpoint, bucket, tmp_path / "s", s3_prefix="site-a/"))
    b = open_store(s3_config(moto_endpoint, bucket, tmp_path / "s", s3_prefix="site-b"))
    a.put("jobs/1/x", b"from a")
    b.put("jobs/1/x", b"from b")
    b.put("jobs/2/y", b"only b")
    assert a.get("jobs/1/x") == b"from a" and b.get("jobs/1/x") == b"from b"
    assert a.get("jobs/2/y") is None and a.size("jobs/2/y") is None
    assert a.delete_prefix("jobs/") == 1
    assert b.get("jobs/1/x") == b"from b" and b.get("jobs/2/y") == b"only b"

    raw = emulator_client(moto_endpoint)
    listed = raw.list_objects_v2(Bucket=bucket)
    assert sorted(o["Key"] for o in listed["Contents"]) == ["site-b/jobs/1/x", "site-b/jobs/2/y"]


def test_s3_missing_bucket(moto_endpoint: str, tmp_path: Path) -> None:
    store = open_store(s3_config(moto_endpoint, "no-such-bucket-here", tmp_path / "s"))
    with pytest.raises(StoreError) as caught:
        store.check()
    message = str(caught.value)
    assert "no-such-bucket-here" in message and "no such bucket" in message
    assert moto_endpoint in message
    assert SECRET not in message
    with pytest.raises(StoreError, match="no-such-bucket-here"):
        store.put("jobs/x/y", b"z")


def test_s3_secret_is_read_from_file(moto_endpoint: str, tmp_path: Path) -> None:
    store = open_store(s3_config(moto_endpoint, make_bucket(moto_endpoint), tmp_path / "s"))
    credentials = store._client._request_signer._credentials  # type: ignore[attr-defined]
    assert credentials.access_key == "moto-access"
    assert credentials.secret_key == SECRET  # stripped of its newline
    assert SECRET not in repr(store) and SECRET not in str(vars(store))


def test_s3_secret_file_unreadable_or_empty(tmp_path: Path) -> None:
    config = s3_config("http://127.0.0.1:9", "b", tmp_path / "s")
    (tmp_path / "s").unlink()
    with pytest.raises(StoreError, match="s3_secret_key_file"):
        open_store(config)
    (tmp_path / "s").write_text("\n")
    with pytest.raises(StoreError, match="is empty"):
        open_store(config)


def test_s3_endpoint_down_fails_fast(tmp_path: Path) -> None:
    """A closed port: a StoreError in seconds (short timeouts, few retries), not a hang and
    not a botocore exception escaping to the job runner."""
    endpoint = f"http://{HOST}:{free_port()}"  # nothing listens there any more
    store = open_store(s3_config(endpoint, "bucket", tmp_path / "s"))
    calls: list[Callable[[], object]] = [
        store.check,
        lambda: store.put("jobs/a/b", b"x"),
        lambda: store.get("jobs/a/b"),
        lambda: store.size("jobs/a/b"),
        lambda: store.read("jobs/a/b", 0, 1),
        lambda: store.delete_prefix("jobs/a/"),
    ]
    for call in calls:
        began = time.monotonic()
        with pytest.raises(StoreError) as caught:
            call()
        assert time.monotonic() - began < 10
        assert endpoint in str(caught.value) and SECRET not in str(caught.value)
    local = tmp_path / "f"
    local.write_bytes(b"x")
    with pytest.raises(StoreError):
        store.put_file("jobs/a/f", local)
    assert local.exists()  # kept when the upload failed


def test_s3_without_boto3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(StoreError, match=r"needs boto3: pip install 'sambertd\[s3\]'"):
        open_store(s3_config("http://127.0.0.1:9", "b", tmp_path / "s"))


# --- local only --------------------------------------------------------------------------


def test_local_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    store = open_store(JobsConfig(store="local", directory=str(blocker / "results")))
    with pytest.raises(StoreError, match="result directory"):
        store.check()
