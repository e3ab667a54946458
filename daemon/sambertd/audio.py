"""Resampling and encoding, in one place, so every path (CLI, HTTP, cache) produces the same bytes.

libsndfile (through soundfile) writes the containers, soxr resamples.  Telephony formats are
8-bit A-law / µ-law in a WAV container (G.711), which IVR platforms play without transcoding.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

SAMPLE_RATES = (8000, 16000, 22050, 24000)


@dataclass(frozen=True)
class Format:
    """An output format: how libsndfile writes it and what HTTP calls it."""

    name: str
    content_type: str
    container: str | None  # None: headerless PCM
    subtype: str | None
    default_rate: int | None = None  # None: the voice's own rate


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("wav", "audio/wav", "WAV", "PCM_16"),
        Format("pcm", "audio/pcm", None, None),  # s16le mono; rate in X-Sample-Rate
        Format("mp3", "audio/mpeg", "MP3", "MPEG_LAYER_III"),
        Format("alaw", "audio/wav", "WAV", "ALAW", default_rate=8000),
        Format("ulaw", "audio/wav", "WAV", "ULAW", default_rate=8000),
    )
}


class AudioFormatError(ValueError):
    """A format or sample rate we do not produce."""


def get_format(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise AudioFormatError(
            f"unknown format {name!r}; use one of: {', '.join(FORMATS)}"
        ) from None


def output_rate(fmt: Format, requested: int | None, native: int) -> int:
    """The rate we will encode at: the request's, else the format's default, else native."""
    rate = requested or fmt.default_rate or native
    if rate not in SAMPLE_RATES:
        allowed = ", ".join(map(str, SAMPLE_RATES))
        raise AudioFormatError(f"sample_rate {rate} is not supported; use one of: {allowed}")
    return rate


def resample(pcm: npt.NDArray[np.float32], rate_in: int, rate_out: int) -> npt.NDArray[np.float32]:
    """Band-limited resampling (soxr HQ): no aliasing when going down to 8 kHz telephony."""
    if rate_in == rate_out or pcm.size == 0:
        return pcm
    out = soxr.resample(pcm, rate_in, rate_out, quality="HQ")
    return np.asarray(out, dtype=np.float32)


class Resampler:
    """Resamples a signal that arrives in pieces (one synthesis unit at a time) exactly as if
    it had come whole: soxr's stream keeps the filter state across pieces, so a stream's
    chunks joined are sample for sample the file a plain request gets (soxr gives the same
    output both ways; a test checks it)."""

    def __init__(self, rate_in: int, rate_out: int) -> None:
        self._stream = (
            None
            if rate_in == rate_out
            else soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality="HQ")
        )

    def push(self, pcm: npt.NDArray[np.float32], last: bool) -> npt.NDArray[np.float32]:
        """The next piece at the output rate; ``last`` flushes the filter's tail."""
        if self._stream is None:
            return pcm
        out = self._stream.resample_chunk(np.ascontiguousarray(pcm, np.float32), last=last)
        return np.asarray(out, dtype=np.float32)


def to_int16(pcm: npt.NDArray[np.float32]) -> bytes:
    """Little-endian signed 16-bit samples, clipped (the ``pcm`` format and WAV's payload)."""
    scaled = np.clip(pcm, -1.0, 1.0) * 32767.0
    return np.round(scaled).astype("<i2").tobytes()


def encode(pcm: npt.NDArray[np.float32], rate: int, fmt: Format) -> bytes:
    """Encode mono float PCM already at ``rate`` into ``fmt``."""
    if fmt.container is None:
        return to_int16(pcm)
    buf = io.BytesIO()
    data: npt.NDArray[np.generic] = np.clip(pcm, -1.0, 1.0)
    if fmt.subtype == "PCM_16":  # same quantization as the raw ``pcm`` format, sample for sample
        data = np.frombuffer(to_int16(pcm), dtype="<i2")
    sf.write(buf, data, rate, format=fmt.container, subtype=fmt.subtype)
    return buf.getvalue()


def silence(seconds: float, rate: int) -> npt.NDArray[np.float32]:
    return np.zeros(round(seconds * rate), dtype=np.float32)


def _wav_header(rate: int, data_bytes: int) -> bytes:
    """The 44-byte header of a 16-bit mono PCM WAV holding ``data_bytes`` of samples."""
    riff = 0xFFFFFFFF if data_bytes == 0xFFFFFFFF else 36 + data_bytes
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def wav_stream_header(rate: int) -> bytes:
    """A WAV header for a stream of unknown length (sizes set to 0xFFFFFFFF, which players
    and IVR media servers read as 'until the connection ends')."""
    return _wav_header(rate, 0xFFFFFFFF)


def wav_from_int16(pieces: list[bytes], rate: int) -> bytes:
    """A complete 16-bit mono WAV around already-quantized samples (a finished stream),
    joined in one copy."""
    return b"".join([_wav_header(rate, sum(map(len, pieces))), *pieces])
