"""Where a job's audio lives: its sentences as they are made, then the finished file.

Keys are ``jobs/<id>/…`` paths.  A store is blocking (file system or HTTP calls): the job
runner and the routes call it in a worker thread.  Two kinds:

* :class:`LocalStore`, a directory (the default).  For a pair it must be one both nodes
  mount (NFS), else a job can only be resumed and fetched on the node that made it.
* ``S3Store`` (``jobs/s3.py``), any S3-compatible object store, a site's MinIO: both nodes
  see every object, which is what lets the peer finish a job and serve its audio.

Every write is atomic: a reader sees a whole object or none (a file is written beside its
name, flushed and renamed; an S3 PUT is atomic by itself).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sambertd.config import JobsConfig


class StoreError(Exception):
    """The result store cannot be used (unreachable, refused, misconfigured)."""


class ResultStore(Protocol):
    """What the jobs need of a store.  Blocking; run in a worker thread."""

    def check(self) -> None:
        """Raise :class:`StoreError` unless the store can be written and read now."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically (replacing what was there)."""

    def put_file(self, key: str, path: Path) -> None:
        """Store the finished local file ``path`` under ``key`` (the file may be moved)."""

    def get(self, key: str) -> bytes | None:
        """The whole object, or None when there is none."""

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None when there is none."""

    def read(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes from ``start`` (fewer only at the end of the object)."""

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix``; how many there were."""


def _safe(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StoreError(f"bad store key {key!r}")
    return key


class LocalStore:
    """A directory: ``<directory>/<key>``.  Atomic writes by rename in the same directory."""

    def __init__(self, directory: str | Path) -> None:
        self.root = Path(directory)

    def _path(self, key: str) -> Path:
        return self.root / _safe(key)

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".probe"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise StoreError(f"result directory {self.root}: {exc}") from exc

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc}") from exc

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "rb+") as f:
                os.fsync(f.fileno())
            shutil.move(path, target)  # a rename on the same file system
        except OSError as exc:
            raise StoreError(f"cannot store {target}: {exc}") from exc

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {key}: {exc}") from exc

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {key}: {exc}") from exc

    def read(self, key: str, start: int, length: int) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                f.seek(start)
                return f.read(length)
        except OSError as exc:
            raise StoreError(f"cannot read {key}: {exc}") from exc

    def delete_prefix(self, prefix: str) -> int:
        path = self._path(prefix.rstrip("/"))
        if not path.exists():
            return 0
        count = sum(1 for p in path.rglob("*") if p.is_file()) if path.is_dir() else 1
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as exc:
            raise StoreError(f"cannot delete {prefix}: {exc}") from exc
        return count


def open_store(config: JobsConfig) -> ResultStore:
    """The store ``jobs.store`` names (S3's client library is imported only then)."""
    if config.store == "s3":
        from sambertd.jobs.s3 import S3Store

        return S3Store(config)
    return LocalStore(config.directory)
