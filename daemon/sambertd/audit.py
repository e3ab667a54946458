"""Append-only, tamper-evident audit log (等保 level 3: security audit records).

Why it looks like this:

* One JSON object per line in ``audit-YYYY-MM-DD.jsonl`` (UTC day), hash-chained: every line
  carries ``seq`` (one more than the line before, across files and restarts), ``prev`` (sha256
  of the previous line's bytes) and ``hash`` (sha256 of its own canonical form without
  ``hash``).  Editing, deleting, reordering or inserting a record breaks the chain, and
  :func:`verify` names the file and line.  A chain cannot catch someone who rewrites *every*
  later line, so each record's seq and hash also go to journald: that copy is the independent
  anchor to compare :attr:`VerifyReport.last_hash` with.
* Values only ever reach the file through :func:`json.dumps`, which escapes newlines and
  control characters, so client text cannot forge a second line.  Lone surrogates (which
  cannot be encoded as UTF-8) are replaced with U+FFFD *before* hashing, so the stored record,
  its hash and what verify() re-reads are the same thing.
* A dedicated writer thread owns the file: the event loop never waits on the disk.
  :meth:`AuditLog.write` resolves once ``os.write`` has put the line into the kernel (a
  ``kill -9`` afterwards cannot lose it); fsync runs in batches every ``fsync_interval_s``, so a
  power cut loses at most that window.  An fsync error is fatal: the log stops accepting
  records rather than claim durability it no longer has.
* A torn last line (power cut mid-write) is never rewritten: on restart a newline is appended
  to seal it and the chain continues from the last complete record; verify() reports the torn
  line separately from tampering.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import hashlib
import json
import logging
import math
import os
import queue
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from sambertd.logs import escape

__all__ = [
    "GENESIS",
    "JOURNAL_SOCKET",
    "AuditLog",
    "VerifyReport",
    "canonical",
    "day_path",
    "encode_journal",
    "format_report",
    "journal_fields",
    "record_hash",
    "verify",
]

log = logging.getLogger(__name__)

GENESIS = "0" * 64
JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
RESERVED = frozenset({"seq", "prev", "hash"})
DIR_MODE = 0o750
FILE_MODE = 0o640
_FILE_NAME = re.compile(r"^audit-(\d{4}-\d{2}-\d{2})\.jsonl$")
_SURROGATE = re.compile("[\ud800-\udfff]")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_JOURNAL_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_NOT_NAME = re.compile(r"[^A-Z0-9_]")
_CHUNK = 64 * 1024


# --------------------------------------------------------------------------- serialization


def canonical(record: Mapping[str, object]) -> bytes:
    """The one byte form a record is hashed and stored in (sorted keys, no spaces, UTF-8).

    ``surrogatepass`` only matters to verify(): a tampered line may contain ``\\udXXX``
    escapes, and re-hashing it must report a mismatch rather than crash.  The writer never
    produces surrogates (see :func:`_clean`).
    """
    text = json.dumps(
        record, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
    )
    return text.encode("utf-8", "surrogatepass")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_hash(record: Mapping[str, object]) -> str:
    """The ``hash`` field a record must carry: sha256 of its canonical form without ``hash``."""
    return _sha256(canonical({k: v for k, v in record.items() if k != "hash"}))


def _text(value: str) -> str:
    """A plain ``str`` (not a subclass) with lone surrogates replaced by U+FFFD.

    UTF-8 cannot encode lone surrogates; replacing them before hashing keeps the record
    writable and verifiable, and the replacement character marks where input was broken.
    """
    return _SURROGATE.sub("\ufffd", str.__str__(value))


def _clean(value: object, where: str) -> object:
    """Deep-copy ``value`` as plain JSON data, so the caller cannot change it after write().

    Raises TypeError/ValueError in the caller's thread: a record that cannot be stored is a
    programming error and should surface where it was made, not in the writer thread.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"audit field {where}: {value!r} is not valid JSON")
        return float(value)
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, Mapping):
        return {_key(k, where): _clean(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"audit field {where}: {type(value).__name__} is not JSON data")


def _key(key: object, where: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f"audit field {where}: key {key!r} is not a string")
    return _text(key)


def _prepare(record: Mapping[str, object]) -> dict[str, object]:
    """Validate a caller's record; the chain fields are ours alone."""
    clash = RESERVED.intersection(record)
    if clash:
        raise ValueError(f"audit record may not set {sorted(clash)}: the log assigns them")
    return {_key(k, "record"): _clean(v, str(k)) for k, v in record.items()}


# --------------------------------------------------------------------------- journald


def encode_journal(fields: Iterable[tuple[str, str]]) -> bytes:
    """Encode fields in journald's native datagram protocol.

    A value containing a newline must use the binary form (name, newline, 64-bit little-endian
    length, bytes, newline); anything else is ``NAME=value``.  Names are checked because a bad
    one makes journald drop the whole datagram.
    """
    out = bytearray()
    for name, value in fields:
        if not _JOURNAL_NAME.match(name):
            raise ValueError(f"invalid journal field name {name!r}")
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name.encode() + b"=" + data + b"\n"
    return bytes(out)


def _scalar(value: object) -> str | None:
    """A journal field value for a scalar; containers stay in the file only."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return None


def journal_fields(record: Mapping[str, object]) -> list[tuple[str, str]]:
    """The journald fields for one written record (with its seq/prev/hash).

    MESSAGE is for people (control characters escaped); the exact values travel in the
    ``SAMBERTD_*`` fields.  A caller key that maps onto a name already used is skipped.
    """
    words = (escape(str(record.get(k, "-"))) for k in ("route", "status", "subject"))
    fields = [
        ("MESSAGE", "audit " + " ".join(words)),
        ("PRIORITY", "6"),
        ("SYSLOG_IDENTIFIER", "sambertd-audit"),
        ("SAMBERTD_AUDIT_SEQ", str(record.get("seq"))),
        ("SAMBERTD_AUDIT_HASH", str(record.get("hash"))),
        ("SAMBERTD_AUDIT_PREV", str(record.get("prev"))),
    ]
    used = {name for name, _ in fields}
    for key in sorted(record):
        value = _scalar(record[key])
        name = ("SAMBERTD_" + _NOT_NAME.sub("_", key.upper()))[:64]
        if key in RESERVED or value is None or name in used:
            continue
        used.add(name)
        fields.append((name, value))
    return fields


# --------------------------------------------------------------------------- files


def day_path(directory: Path, day: dt.date) -> Path:
    """Where the records of one UTC day live."""
    return directory / f"audit-{day.isoformat()}.jsonl"


def _utc_day(timestamp: float) -> dt.date:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).date()


def _file_day(path: Path) -> dt.date | None:
    match = _FILE_NAME.match(path.name)
    if not match:
        return None
    try:
        return dt.date.fromisoformat(match.group(1))
    except ValueError:
        return None


def _day_files(directory: Path) -> list[tuple[dt.date, Path]]:
    """The day files in ``directory``, oldest first; other names are not ours and are ignored."""
    found = []
    for path in directory.iterdir():
        day = _file_day(path)
        if day is not None and path.is_file():
            found.append((day, path))
    return sorted(found)


def _lines_from_end(path: Path) -> Iterator[tuple[bytes, bool]]:
    """Yield ``(line, terminated)`` from the end of the file backwards, without the newline.

    Reads 64 KiB chunks so that starting up after a busy day does not read the whole file.
    The first item may be an unterminated tail (``terminated`` False).
    """
    with path.open("rb") as f:
        pos = f.seek(0, os.SEEK_END)
        pending = b""
        seen_newline = False
        while pos > 0:
            step = min(_CHUNK, pos)
            pos -= step
            f.seek(pos)
            parts = (f.read(step) + pending).split(b"\n")
            pending = parts.pop(0)
            if parts and not seen_newline:
                seen_newline = True
                tail = parts.pop()
                if tail:
                    yield tail, False
            for line in reversed(parts):
                yield line, True
        if pending or seen_newline:
            yield pending, seen_newline


def _parse(raw: bytes) -> tuple[dict[str, object] | None, str]:
    """A line as a record, or None and why it is not one."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return None, f"not valid JSON ({type(exc).__name__})"
    if not isinstance(record, dict):
        return None, "not a JSON object"
    seq, prev, digest = record.get("seq"), record.get("prev"), record.get("hash")
    if type(seq) is not int:
        return None, "no integer seq"
    if not (isinstance(prev, str) and _HEX64.match(prev)):
        return None, "no valid prev"
    if not (isinstance(digest, str) and _HEX64.match(digest)):
        return None, "no valid hash"
    return record, ""


def _hash_ok(record: Mapping[str, object]) -> bool:
    try:
        return record.get("hash") == record_hash(record)
    except ValueError:  # NaN/Infinity smuggled into a line: not something we wrote
        return False


def _last_record(path: Path) -> tuple[bytes, dict[str, object]] | None:
    """The last line of ``path`` that is a record: where a restarted log continues the chain.

    An unterminated tail that parses as a whole record counts (only its newline was lost, and
    verify() counts it too); a torn fragment is skipped.
    """
    for line, _ in _lines_from_end(path):
        record, _ = _parse(line)
        if record is not None:
            return line, record
    return None


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        if f.seek(0, os.SEEK_END) == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _fsync_dir(directory: Path) -> None:
    """Make a new file's directory entry durable too, not only its contents."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- writer


@dataclass
class _Item:
    fields: dict[str, object]
    future: concurrent.futures.Future[str]


def _settle(
    future: concurrent.futures.Future[str],
    result: str = "",
    error: BaseException | None = None,
) -> None:
    """Resolve a waiter; one that gave up (cancelled) is simply skipped.

    The record is written either way: the audited event happened whether or not its caller
    is still waiting.
    """
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass


class AuditLog:
    """The daemon's audit trail; see the module docstring for the guarantees.

    Use ``await start()`` / ``await write(record)`` / ``await close()`` from asyncio, or
    ``start_sync()`` / ``write_sync()`` / ``close_sync()`` (or ``with``) from plain threads.
    """

    def __init__(
        self,
        directory: Path,
        *,
        fsync_interval_s: float = 0.2,
        retention_days: int = 180,
        journal: bool = True,
        clock: Callable[[], float] = time.time,
        journal_socket: Path = JOURNAL_SOCKET,
    ) -> None:
        self.directory = Path(directory)
        self.fsync_interval_s = fsync_interval_s
        self.retention_days = retention_days
        self._journal = journal
        self._journal_socket = journal_socket
        self._clock = clock
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._state = "new"  # new -> running -> closing -> closed
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        # Owned by the writer thread once started:
        self._fd = -1
        self._day: dt.date | None = None
        self._seq = 0
        self._prev = GENESIS
        self._last_hash: str | None = None
        self._dirty = False
        self._sync_due = 0.0
        self._torn: bytes | None = None  # unterminated bytes at the end of the open file
        self._sock: socket.socket | None = None
        self._journal_to: str | None = None
        #: Counters for metrics (written by the writer thread only).
        self.records_written = 0
        self.journal_sent = 0
        self.journal_errors = 0

    # ------------------------------------------------------------------ public API

    @property
    def last_seq(self) -> int:
        """The seq of the last record written (0 before the first ever)."""
        return self._seq

    @property
    def last_hash(self) -> str | None:
        """The ``hash`` of the last record written by this process or found at start."""
        return self._last_hash

    async def start(self) -> None:
        """Open the directory and continue the chain, in the writer thread (no loop blocking)."""
        await asyncio.wrap_future(self._launch())

    def start_sync(self) -> None:
        """:meth:`start` for non-async callers."""
        self._launch().result()

    async def write(self, record: Mapping[str, object]) -> str:
        """Append ``record``; return its hash once the line is in the kernel.

        Records land in the order write() was called.  Raises TypeError/ValueError for a
        record that is not JSON data or sets seq/prev/hash, OSError if the line could not be
        written, RuntimeError if the log is not running.
        """
        return await asyncio.wrap_future(self._submit(record))

    def write_sync(self, record: Mapping[str, object]) -> str:
        """:meth:`write` for non-async callers (blocks; never call it on the event loop)."""
        return self._submit(record).result()

    async def close(self) -> None:
        """Write what is queued, fsync, and stop the writer thread."""
        thread = self._begin_close()
        if thread is not None:
            await asyncio.to_thread(thread.join)

    def close_sync(self) -> None:
        """:meth:`close` for non-async callers."""
        thread = self._begin_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> AuditLog:
        self.start_sync()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close_sync()

    async def __aenter__(self) -> AuditLog:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ caller side

    def _launch(self) -> concurrent.futures.Future[None]:
        """Start the writer thread.  It is a daemon thread: an un-closed log must not hang
        interpreter exit, and acknowledged records are already in the kernel anyway."""
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._lock:
            if self._state != "new":
                raise RuntimeError(f"audit log already {self._state}")
            self._state = "running"
            self._thread = threading.Thread(
                target=self._run, args=(ready,), name="audit-writer", daemon=True
            )
            self._thread.start()
        return ready

    def _submit(self, record: Mapping[str, object]) -> concurrent.futures.Future[str]:
        """Queue a record; the lock makes "check running, then enqueue" atomic against close."""
        item = _Item(_prepare(record), concurrent.futures.Future())
        with self._lock:
            if self._state != "running":
                why = f": {self._failure!r}" if self._failure else ""
                raise RuntimeError(f"audit log is {self._state}{why}")
            self._queue.put(item)
        return item.future

    def _begin_close(self) -> threading.Thread | None:
        with self._lock:
            if self._state == "new":
                self._state = "closed"
            if self._state == "running":
                self._state = "closing"
                self._queue.put(None)
            return self._thread

    # ------------------------------------------------------------------ writer thread

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            self._open_chain()
        except BaseException as exc:
            self._fail(exc)
            ready.set_exception(exc)
            self._release()
            return
        ready.set_result(None)
        try:
            self._serve()
        except BaseException as exc:
            log.exception("audit writer stopped; no further records are accepted")
            self._fail(exc)
        finally:
            self._release()

    def _serve(self) -> None:
        """Write records as they come; fsync once per window while there is unsynced data."""
        while True:
            timeout = max(0.0, self._sync_due - time.monotonic()) if self._dirty else None
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                self._sync()
                continue
            if item is None:
                break
            self._handle(item)
            if self._dirty and time.monotonic() >= self._sync_due:
                self._sync()
        self._sync()
        with self._lock:
            self._state = "closed"

    def _handle(self, item: _Item) -> None:
        try:
            record = self._append(item.fields)
        except Exception as exc:  # e.g. a full disk: the caller decides what that means
            _settle(item.future, error=exc)
            return
        self.records_written += 1
        _settle(item.future, str(record["hash"]))
        self._send_journal(record)

    def _append(self, fields: dict[str, object]) -> dict[str, object]:
        """Chain, serialize and write one record; rotate first if the UTC day moved on."""
        day = _utc_day(self._clock())
        if self._day is None or day > self._day:  # never back: a clock step must not fork files
            self._rotate(day)
        self._seal()
        record = {**fields, "seq": self._seq + 1, "prev": self._prev}
        record["hash"] = record_hash(record)
        line = canonical(record)
        self._write_line(line)
        self._commit(line, record)
        return record

    def _write_line(self, line: bytes) -> None:
        """One line per os.write loop; a short write that then fails leaves a torn tail that
        the next record seals (and commits, if only the newline was missing)."""
        data = line + b"\n"
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, data[done:])
        except OSError:
            if done:
                self._torn = line if done == len(line) else b""
                self._mark_dirty()
            raise
        self._mark_dirty()

    def _seal(self) -> None:
        """Terminate a torn tail with a newline so the next record starts on its own line."""
        if self._torn is None:
            return
        os.write(self._fd, b"\n")
        self._mark_dirty()
        if self._torn:
            record, _ = _parse(self._torn)
            if record is not None:
                self._commit(self._torn, record)
        self._torn = None

    def _commit(self, line: bytes, record: Mapping[str, object]) -> None:
        seq = record["seq"]
        assert isinstance(seq, int)
        self._seq = seq
        self._prev = _sha256(line)
        self._last_hash = str(record["hash"])

    def _mark_dirty(self) -> None:
        if not self._dirty:
            self._dirty = True
            self._sync_due = time.monotonic() + self.fsync_interval_s

    def _sync(self) -> None:
        if self._dirty and self._fd >= 0:
            os.fsync(self._fd)
        self._dirty = False

    def _open_chain(self) -> None:
        """Find where the chain stopped, open the file to append to, apply retention."""
        self._make_directory()
        files = _day_files(self.directory)
        for _, path in reversed(files):
            found = _last_record(path)
            if found is not None:
                line, record = found
                self._commit(line, record)
                break
        today = _utc_day(self._clock())
        self._open_day(max([today, *(day for day, _ in files[-1:])]))
        self._expire(today)
        if self._journal and self._journal_socket.exists():
            self._journal_to = str(self._journal_socket)

    def _make_directory(self) -> None:
        if not self.directory.is_dir():
            self.directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            os.chmod(self.directory, DIR_MODE)  # mkdir's mode is filtered by the umask

    def _rotate(self, day: dt.date) -> None:
        if self._fd >= 0:
            self._seal()
            self._sync()
            os.close(self._fd)
            self._fd = -1
        self._open_day(day)
        self._expire(day)

    def _open_day(self, day: dt.date) -> None:
        path = day_path(self.directory, day)
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        self._fd, self._day = fd, day
        if created:
            os.fchmod(fd, FILE_MODE)
            _fsync_dir(self.directory)
        elif not _ends_with_newline(path):
            log.warning("audit file %s ends in a torn line; sealing it", path)
            self._torn = b""

    def _expire(self, today: dt.date) -> None:
        """Delete day files older than the retention period (never today's or yesterday's)."""
        keep_days = max(self.retention_days, 1)
        for day, path in _day_files(self.directory):
            if (today - day).days > keep_days and day != self._day:
                try:
                    path.unlink()
                    log.info("audit retention: deleted %s", path)
                except OSError as exc:
                    log.warning("audit retention: cannot delete %s: %s", path, exc)

    def _send_journal(self, record: Mapping[str, object]) -> None:
        """Copy a record to journald; best effort, counted, never raised.

        The socket is non-blocking: a backed-up journald must not stall the audit file.
        """
        if self._journal_to is None:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            self._sock.sendto(encode_journal(journal_fields(record)), self._journal_to)
        except (OSError, ValueError) as exc:
            self.journal_errors += 1
            if self.journal_errors == 1 or self.journal_errors % 1000 == 0:
                log.warning("audit: journald send failed (%d so far): %s", self.journal_errors, exc)
        else:
            self.journal_sent += 1

    def _fail(self, exc: BaseException) -> None:
        """Stop accepting records and fail every queued one: nobody may wait forever."""
        with self._lock:
            self._state = "closed"
            self._failure = exc
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                _settle(item.future, error=RuntimeError(f"audit writer stopped: {exc!r}"))

    def _release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._sock is not None:
            self._sock.close()
            self._sock = None


# --------------------------------------------------------------------------- verify


@dataclass
class VerifyReport:
    """What :func:`verify` found.  ``ok`` means no evidence of tampering; torn lines (lost
    writes after a power cut) are listed in ``torn`` and do not make it false."""

    ok: bool
    records: int
    problems: list[str]
    last_hash: str | None
    torn: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    first_seq: int | None = None
    last_seq: int | None = None


@dataclass
class _Last:
    seq: int
    line_sha: str
    where: str
    key: tuple[int, int]
    modified: bool


@dataclass
class _Gap:
    first: int
    last: int
    after: str
    at: str
    key: tuple[int, int]
    crosses_files: bool


def _seqs(first: int, last: int) -> str:
    return f"seq {first}" if first == last else f"seq {first}..{last}"


def _looks_torn(raw: bytes) -> bool:
    """An interrupted write leaves a prefix of a JSON line, or zeros from a lost page."""
    return raw == b"" or raw.startswith(b"{") or raw.startswith(b"\x00")


class _Verifier:
    """Streams the lines once, keeping only the last link and open seq gaps in memory."""

    def __init__(self) -> None:
        self.records = 0
        self.first_seq: int | None = None
        self.last_hash: str | None = None
        self.torn: list[str] = []
        self._problems: list[tuple[tuple[int, int], str]] = []
        self._last: _Last | None = None
        self._invalid: list[tuple[tuple[int, int], str, bytes, str]] = []
        self._gaps: list[_Gap] = []

    def file(self, index: int, path: Path) -> None:
        try:
            with path.open("rb") as f:
                for lineno, raw in enumerate(f, 1):
                    terminated = raw.endswith(b"\n")
                    line = raw[:-1] if terminated else raw
                    self._line((index, lineno), f"{path}:{lineno}", line, terminated)
        except OSError as exc:
            self._problem((index, 0), f"{path}: cannot read: {exc}")

    def _problem(self, key: tuple[int, int], message: str) -> None:
        self._problems.append((key, message))

    def _line(self, key: tuple[int, int], where: str, raw: bytes, terminated: bool) -> None:
        record, why = _parse(raw)
        if record is not None:  # a torn fragment never parses: it lacks the closing brace
            self._record(key, where, raw, record)
        elif not terminated and _looks_torn(raw):
            self.torn.append(
                f"{where}: torn last line ({len(raw)} bytes, no newline): an incomplete write, "
                "e.g. a power cut; not counted, the chain continues from the last complete record"
            )
        else:
            self._invalid.append((key, where, raw, why or "incomplete"))

    def _continues(self, seq: int, prev: str) -> bool:
        last = self._last
        if last is None:
            return seq != 1 or prev == GENESIS
        return seq == last.seq + 1 and prev == last.line_sha

    def _settle_invalid(self, chain_intact: bool) -> None:
        """Judge the unparseable lines seen since the last record: a torn fragment sealed by a
        restart leaves the chain intact around it; anything else is a foreign line."""
        for key, where, raw, why in self._invalid:
            if chain_intact and _looks_torn(raw):
                self.torn.append(
                    f"{where}: torn record (incomplete write sealed by a restart; {why}); "
                    "the chain continues across it"
                )
            else:
                self._problem(key, f"{where}: not an audit record: {why}")
        self._invalid.clear()

    def _record(
        self, key: tuple[int, int], where: str, raw: bytes, record: dict[str, object]
    ) -> None:
        seq, prev = record["seq"], str(record["prev"])
        assert isinstance(seq, int)
        self.records += 1
        modified = not _hash_ok(record)
        if modified:
            self._problem(
                key, f"{where}: record modified: content does not match its hash (seq {seq})"
            )
        self._settle_invalid(self._continues(seq, prev))
        last = self._last
        if last is None:
            self.first_seq = seq
            if seq == 1 and prev != GENESIS:
                self._problem(key, f"{where}: seq 1 must start the chain (prev of 64 zeros)")
        elif seq == last.seq + 1:
            if prev != last.line_sha and not last.modified:
                self._problem(
                    key,
                    f"{where}: prev does not match the line before it ({last.where}, seq "
                    f"{last.seq}): that record was altered (hash recomputed) or this one forged",
                )
        elif seq > last.seq + 1:
            crosses = key[0] != last.key[0]
            self._gaps.append(_Gap(last.seq + 1, seq - 1, last.where, where, key, crosses))
        else:
            self._out_of_order(key, where, seq, last)
            return
        self._last = _Last(seq, _sha256(raw), where, key, modified)
        self.last_hash = str(record["hash"])

    def _out_of_order(self, key: tuple[int, int], where: str, seq: int, last: _Last) -> None:
        if self._fill_gap(seq):
            message = f"seq {seq} out of order: it comes after seq {last.seq} ({last.where})"
            self._problem(key, f"{where}: {message}; records were reordered")
        elif seq == last.seq:
            self._problem(
                key, f"{where}: seq {seq} repeated (also {last.where}): a record was inserted"
            )
        else:
            self._problem(
                key,
                f"{where}: seq {seq} goes backwards after seq {last.seq} ({last.where}): "
                "a record was inserted or replayed",
            )

    def _fill_gap(self, seq: int) -> bool:
        """A record that turns up late closes its part of a gap: reordered, not deleted."""
        for i, gap in enumerate(self._gaps):
            if gap.first <= seq <= gap.last:
                del self._gaps[i]
                parts = [(gap.first, seq - 1), (seq + 1, gap.last)]
                for first, last in parts:
                    if first <= last:
                        self._gaps.append(
                            _Gap(first, last, gap.after, gap.at, gap.key, gap.crosses_files)
                        )
                return True
        return False

    def report(self, files: list[Path]) -> VerifyReport:
        self._settle_invalid(True)
        for gap in self._gaps:
            count = gap.last - gap.first + 1
            if gap.crosses_files:
                what = f"missing between {gap.after} and here ({count} records): records or a "
                what += "whole day file were deleted"
            else:
                what = f"missing after {gap.after} ({count} record(s) deleted)"
            self._problem(gap.key, f"{gap.at}: {_seqs(gap.first, gap.last)} {what}")
        if not files:
            self._problem((0, 0), "no audit files found")
        problems = [message for _, message in sorted(self._problems, key=lambda p: p[0])]
        return VerifyReport(
            ok=not problems,
            records=self.records,
            problems=problems,
            last_hash=self.last_hash,
            torn=self.torn,
            files=files,
            first_seq=self.first_seq,
            last_seq=self._last.seq if self._last else None,
        )


def _expand(paths: Sequence[Path] | Path) -> list[Path]:
    """Directories become their day files; day files are read oldest first."""
    given = [paths] if isinstance(paths, Path) else [Path(p) for p in paths]
    files: list[Path] = []
    for path in given:
        if path.is_dir():
            files.extend(p for _, p in _day_files(path))
        elif path not in files:
            files.append(path)
    if all(_file_day(p) is not None for p in files):
        files.sort(key=lambda p: (_file_day(p), str(p)))
    return files


def verify(paths: Sequence[Path] | Path) -> VerifyReport:
    """Check the chain over day files (or directories of them), oldest first.

    Per line: valid JSON record, ``hash`` matches the content (modified), ``prev`` matches the
    line before (altered/inserted), ``seq`` is one more (deleted, reordered, repeated); across
    files the first line of a day continues the previous day's last.  The first record given
    anchors the chain, since retention deletes the oldest days.
    """
    files = _expand(paths)
    verifier = _Verifier()
    for index, path in enumerate(files):
        verifier.file(index, path)
    return verifier.report(files)


def format_report(report: VerifyReport) -> str:
    """The text ``sambertd audit verify`` prints."""
    span = (
        f"seq {report.first_seq}..{report.last_seq}"
        if report.records and report.last_seq is not None
        else "no records"
    )
    head = "OK" if report.ok else f"FAILED ({len(report.problems)} problem(s))"
    lines = [f"{head}: {report.records} records in {len(report.files)} file(s), {span}"]
    if report.first_seq not in (None, 1):
        lines.append(
            f"note: the chain starts at seq {report.first_seq}; older records are not included"
        )
    if report.last_hash:
        lines.append(f"last hash: {report.last_hash}")
    lines.extend(f"torn: {t}" for t in report.torn)
    lines.extend(f"problem: {p}" for p in report.problems)
    return "\n".join(lines)
