"""moto's S3 server, an emulator: no real S3 server (a site's MinIO) can be installed here.

``moto_server`` runs as a separate process on a loopback port and is spoken to over HTTP by
the real boto3 client, so addressing, signing, multipart uploads, ranged GETs and batched
deletes go over the wire as they would to MinIO.  Started and killed by pid by the tests.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class MotoServer:
    """``with MotoServer(workdir) as endpoint:`` — the emulator, up and answering."""

    def __init__(self, workdir: Path) -> None:
        self.binary = Path(sys.executable).parent / "moto_server"
        self.log = workdir / "moto.log"
        self.endpoint = f"http://{HOST}:{free_port()}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        if not self.binary.exists():
            raise RuntimeError(
                f"{self.binary} is missing: `make install` (moto[server], test extra)"
            )
        port = self.endpoint.rsplit(":", 1)[1]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(self.binary), "-H", HOST, "-p", port],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"moto_server exited {self.proc.returncode}: {self.log.read_text()}"
                )
            try:
                with urllib.request.urlopen(self.endpoint + "/", timeout=2) as answer:
                    if answer.status == 200:
                        return self.endpoint
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"moto_server did not answer in 60 s: {self.log.read_text()}")
            time.sleep(0.1)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def emulator_client(endpoint: str) -> Any:
    """A plain boto3 client of the emulator (moto takes any credentials)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
    )


def make_bucket(endpoint: str) -> str:
    """A new bucket with a random name."""
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    emulator_client(endpoint).create_bucket(Bucket=bucket)
    return bucket
