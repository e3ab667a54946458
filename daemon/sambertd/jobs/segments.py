"""A job's audio, one stored object per unit, and the finished file made from them.

A segment holds one unit at the voice's own rate as 16-bit samples (what every format is
quantized to anyway) with the unit's timing, so any node can resume a job after its last
stored segment and the finished file is the same as one synthesis of the whole text: the
units are joined first and then resampled and encoded in one pass (``audio.Resampler``
carries its filter across the joins, as for a plain request).
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sambertd import audio
from sambertd.audio import Format
from sambertd.timeline import UnitTiming

MAGIC = b"SJS1"
_HEAD = struct.Struct("<4sI")


@dataclass(frozen=True)
class Segment:
    """One unit: s16le samples at the voice's rate, and its timing from its own start."""

    pcm: bytes
    timing: UnitTiming

    @property
    def samples(self) -> int:
        return len(self.pcm) // 2

    def pack(self) -> bytes:
        meta = json.dumps(self.timing.pack()).encode()
        return _HEAD.pack(MAGIC, len(meta)) + meta + self.pcm

    @classmethod
    def unpack(cls, data: bytes) -> Segment:
        magic, size = _HEAD.unpack_from(data)
        if magic != MAGIC:
            raise ValueError("not a job segment")
        start = _HEAD.size
        timing = UnitTiming.unpack(json.loads(data[start : start + size]))
        return cls(data[start + size :], timing)


def to_float(pcm: bytes) -> npt.NDArray[np.float32]:
    return (np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32767.0).astype(np.float32)


class FileWriter:
    """One format written to a real file, a piece at a time: libsndfile seeks back on close
    to fix the header (WAV sizes, FLAC STREAMINFO, MP3's Info tag), so the file on disk is
    the complete file a plain request would get, however long."""

    def __init__(self, path: Path, fmt: Format, rate: int) -> None:
        self.format = fmt
        self.samples = 0
        self._raw = None if fmt.container is not None else open(path, "wb")  # noqa: SIM115
        self._file = audio.open_writer(path, fmt, rate) if fmt.container is not None else None

    def write(self, pcm: npt.NDArray[np.float32]) -> None:
        self.samples += len(pcm)
        if self._raw is not None:
            self._raw.write(audio.to_int16(pcm))
        elif self._file is not None:
            audio.write_samples(self._file, self.format, pcm)

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
        if self._file is not None:
            self._file.close()


def assemble(
    segments: Iterator[Segment], native: int, fmt: Format, rate: int, spool: Path | None
) -> tuple[Path, int, list[UnitTiming]]:
    """Join the segments (in order) into one ``fmt`` file at ``rate`` in ``spool`` (the
    system's temporary directory when None): its path, its samples and the units' timing,
    each moved to where its unit starts in the whole.  Memory stays one segment."""
    if spool is not None:
        spool.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="sambertd-job-", suffix=f".{fmt.name}", dir=spool)
    path = Path(name)
    os.close(fd)
    writer = FileWriter(path, fmt, rate)
    resampler = audio.Resampler(native, rate)
    timing: list[UnitTiming] = []
    try:
        pending: Segment | None = None
        offset = 0  # samples at the voice's rate before this segment
        for segment in segments:
            if pending is not None:
                writer.write(resampler.push(to_float(pending.pcm), last=False))
            timing.append(segment.timing.shifted(round(offset * 1000 / native)))
            offset += segment.samples
            pending = segment
        if pending is not None:
            writer.write(resampler.push(to_float(pending.pcm), last=True))
        writer.close()
    except BaseException:
        writer.close()
        path.unlink(missing_ok=True)
        raise
    return path, writer.samples, timing


def read_all(get: Callable[[int], bytes | None], total: int) -> Iterator[Segment]:
    """Segments 0..total-1 through ``get``; a missing one is an error (never a gap)."""
    for i in range(total):
        data = get(i)
        if data is None:
            raise FileNotFoundError(f"segment {i} of {total} is missing from the store")
        yield Segment.unpack(data)
