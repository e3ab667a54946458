"""Resampling and encoding, in one place, so every path (CLI, HTTP, cache) produces the same bytes.

libsndfile (through soundfile) writes the containers, soxr resamples.  Telephony formats are
8-bit A-law / µ-law in a WAV container (G.711), which IVR platforms play without transcoding.

Every file is made by one :class:`Encoder`, fed the whole signal (a plain request) or one unit
at a time (a stream): the bytes come out the same either way, so a stream and a plain request
with the same units share one cache entry.  What libsndfile does on close, per container
(recorded from its writes and seeks, and pinned by tests/test_audio.py):

* WAV (PCM_16, A-law, µ-law): the header is written at open and rewritten on close with the
  real sizes.  A stream sends it with both sizes set to 0xFFFFFFFF ("until the connection
  ends") instead, and the samples are appended as they come.
* FLAC: STREAMINFO (total samples, min/max frame size, MD5) is rewritten on close.  A stream
  keeps libFLAC's first STREAMINFO, where 0 means "unknown", as FLAC allows for streams.
* MP3: the first frame is LAME's placeholder for its Info tag (length, encoder delay and
  padding, for gapless decoding), rewritten on close.  A stream keeps the placeholder, which
  decoders play as one frame of silence; the rest is appended frame by frame.
* OGG/Opus: append-only, no rewrite.  libsndfile picks a random Ogg serial number, which
  would make every file differ; the encoder sets a fixed one (and the pages' CRCs) so the
  same samples give the same bytes.  Pages are cut every OGG_PAGE_MS (libsndfile's default,
  1 s, would hold a stream's audio back that long).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

SAMPLE_RATES = (8000, 16000, 22050, 24000)
# Opus takes only these; a rate in between is encoded at the next one up (22050 -> 24000).
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
OGG_PAGE_MS = 100.0
# MP3 is constant bit rate, 64 kbit/s at 16-24 kHz (32 at 8 kHz; libsndfile maps the level):
# a stream carries no Xing tag, and a player or libsndfile sizes a tagless MP3 from its first
# frame's bit rate, which for VBR cuts the audio short.
MP3_LEVEL = 0.6
OGG_SERIAL = 0x53424454  # fixed, so equal samples give equal files (libsndfile's is random)
_SFC_SET_OGG_PAGE_LATENCY_MS = 0x1302  # sndfile.h; soundfile does not wrap it


@dataclass(frozen=True)
class Format:
    """An output format: how libsndfile writes it and what HTTP calls it."""

    name: str
    content_type: str
    container: str | None  # None: headerless PCM
    subtype: str | None
    default_rate: int | None = None  # None: the voice's own rate
    rates: tuple[int, ...] = ()  # the only rates the codec takes; () = any of SAMPLE_RATES


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("wav", "audio/wav", "WAV", "PCM_16"),
        Format("pcm", "audio/pcm", None, None),  # s16le mono; rate in X-Sample-Rate
        Format("mp3", "audio/mpeg", "MP3", "MPEG_LAYER_III"),
        Format("flac", "audio/flac", "FLAC", "PCM_16"),
        Format("opus", "audio/ogg", "OGG", "OPUS", rates=OPUS_RATES),
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
    """The rate we will encode at: the request's, else the format's default, else native;
    for a codec with fixed rates (Opus), the next one up from that (never a lower one, which
    would drop bandwidth the caller asked for).  The response's X-Sample-Rate says which."""
    rate = requested or fmt.default_rate or native
    if rate not in SAMPLE_RATES:
        allowed = ", ".join(map(str, SAMPLE_RATES))
        raise AudioFormatError(f"sample_rate {rate} is not supported; use one of: {allowed}")
    if fmt.rates and rate not in fmt.rates:
        rate = min(r for r in fmt.rates if r >= rate)
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
    """Encode mono float PCM already at ``rate`` into ``fmt``: the complete file of an
    :class:`Encoder` fed the whole signal at once."""
    encoder = Encoder(fmt, rate)
    encoder.push(pcm)
    encoder.finish()
    complete = encoder.complete
    assert complete is not None, "a new encoder keeps its file"
    return complete


def open_writer(target: Any, fmt: Format, rate: int) -> sf.SoundFile:
    """libsndfile's writer of ``fmt`` (a container format) into ``target``, a path or a
    file-like object; MP3 at a constant bit rate (see MP3_LEVEL)."""
    mp3 = {"compression_level": MP3_LEVEL, "bitrate_mode": "CONSTANT"}
    return sf.SoundFile(
        target,
        "w",
        rate,
        1,
        format=fmt.container,
        subtype=fmt.subtype,
        **(mp3 if fmt.container == "MP3" else {}),
    )


def write_samples(file: sf.SoundFile, fmt: Format, pcm: npt.NDArray[np.float32]) -> None:
    """Write ``pcm`` to a writer of :func:`open_writer`: 16-bit formats quantized exactly as
    the raw ``pcm`` format is, the others from clipped floats."""
    if fmt.subtype == "PCM_16":
        file.write(np.frombuffer(to_int16(pcm), dtype="<i2"))
    else:
        file.write(np.clip(pcm, -1.0, 1.0))


def silence(seconds: float, rate: int) -> npt.NDArray[np.float32]:
    return np.zeros(round(seconds * rate), dtype=np.float32)


class Encoder:
    """One file written a piece at a time, for a stream and for the cache at once.

    :meth:`push` returns the bytes that are final and can be sent now; :meth:`finish` the
    rest.  Bytes libsndfile rewrites after they were sent (a header it fixes on close) reach
    only :attr:`complete`, the file a plain request gets; the stream keeps what it sent,
    which is valid on its own (see the module's notes per container).  :attr:`header` is
    what the stream sends before any sample (WAV's open-ended header; empty otherwise).
    Not thread-safe: one thread at a time, pieces in order.
    """

    def __init__(self, fmt: Format, rate: int) -> None:
        self.format = fmt
        self.rate = rate
        self.finished = False
        self._samples = 0
        self._padded = fmt.container == "WAV" and fmt.subtype in ("ALAW", "ULAW")  # 8-bit
        self._sink = _Sink(ogg=fmt.container == "OGG")
        self._file: sf.SoundFile | None = None
        if fmt.container is not None:
            self._file = open_writer(self._sink, fmt, rate)
            if fmt.container == "OGG":
                _ogg_page_latency(self._file, OGG_PAGE_MS)
        head = self._sink.take()
        self.header = _open_ended(head) if fmt.container == "WAV" else head

    @property
    def size(self) -> int:
        """Bytes of the file so far (what the cache would have to hold)."""
        return self._sink.length

    @property
    def complete(self) -> bytes | None:
        """The whole file once finished, rewrites applied; None before, or once dropped."""
        kept = self._sink.kept
        return bytes(kept) if self.finished and kept is not None else None

    def drop(self) -> None:
        """Stop keeping the complete file (too big to cache): memory stays one piece."""
        self._sink.kept = None

    def push(self, pcm: npt.NDArray[np.float32]) -> bytes:
        """Encode the next piece; the bytes that will not change any more."""
        self._samples += len(pcm)
        if self._file is None:
            self._sink.write(to_int16(pcm))
        else:
            write_samples(self._file, self.format, pcm)
        return self._sink.take()

    def finish(self) -> bytes:
        """Close the file: the encoder's tail (last frames, final pages) for the stream.
        An odd-sized WAV data chunk (8-bit G.711) gets a pad byte on close, which an
        open-ended stream would play as a sample: the stream goes without it."""
        if self._file is not None:
            self._file.close()
        self.finished = True
        tail = self._sink.take()
        if self._sink.pending:  # libsndfile ends an Ogg stream on a whole page
            raise AudioFormatError("the encoder left an unfinished Ogg page")
        if self._padded and self._samples % 2:
            return tail[:-1]
        return tail


class _Sink:
    """The file-like object libsndfile writes to (soundfile's virtual IO).

    The file is split at what was handed out: ``kept`` holds the bytes before (with later
    rewrites applied; None when not kept), ``pending`` the bytes after, not yet handed out.
    A rewrite of handed-out bytes changes only ``kept``.
    """

    def __init__(self, ogg: bool) -> None:
        self.kept: bytearray | None = bytearray()
        self.pending = bytearray()
        self.sent = 0
        self.pos = 0
        self._ogg = ogg

    @property
    def length(self) -> int:
        return self.sent + len(self.pending)

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self.pos, self.length)[whence]
        self.pos = base + offset
        return self.pos

    def write(self, data: bytes) -> int:
        size, pos = len(data), self.pos
        before = min(max(self.sent - pos, 0), size)  # the part that lands on sent bytes
        if before and self.kept is not None:
            self.kept[pos : pos + before] = data[:before]
        if before < size:
            at = pos + before - self.sent
            if at > len(self.pending):  # a seek past the end: the gap reads as zeros
                self.pending.extend(bytes(at - len(self.pending)))
            self.pending[at : at + size - before] = data[before:]
        self.pos = pos + size
        return size

    def take(self) -> bytes:
        """Hand out what is final: every pending byte (whole Ogg pages, reserialized)."""
        end = _ogg_restamp(self.pending) if self._ogg else len(self.pending)
        out = bytes(self.pending[:end])
        del self.pending[:end]
        if self.kept is not None:
            self.kept += out
        self.sent += end
        return out


def _open_ended(header: bytes) -> bytes:
    """A WAV header as libsndfile wrote it at open, with the RIFF and data sizes set to
    0xFFFFFFFF: what a stream of unknown length sends."""
    if header[:4] != b"RIFF" or header[-8:-4] != b"data":
        raise AudioFormatError("libsndfile wrote an unexpected WAV header")
    unknown = struct.pack("<I", 0xFFFFFFFF)
    return header[:4] + unknown + header[8:-4] + unknown


def _ogg_page_latency(file: sf.SoundFile, ms: float) -> None:
    """Ask libsndfile for an Ogg page every ``ms`` of audio (soundfile has no call for it)."""
    ffi: Any = getattr(sf, "_ffi", None)
    lib: Any = getattr(sf, "_snd", None)
    handle = getattr(file, "_file", None)
    if ffi is None or lib is None or handle is None:  # another soundfile: its default pages
        return
    lib.sf_command(handle, _SFC_SET_OGG_PAGE_LATENCY_MS, ffi.new("double*", ms), 8)


_BIT_REVERSED = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def _ogg_crc(page: bytes | bytearray) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, unreflected, init 0, no final xor), computed by
    zlib's reflected CRC-32 on bit-reversed bytes: the same CRC seen in a mirror."""
    raw = zlib.crc32(page.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{raw:032b}"[::-1], 2)


def _ogg_restamp(buf: bytearray) -> int:
    """Give each whole Ogg page at the start of ``buf`` the fixed serial number (and its
    CRC again); the length of those pages (a partial page waits for its end)."""
    pos = 0
    while len(buf) - pos >= 27:
        if buf[pos : pos + 4] != b"OggS":
            raise AudioFormatError("libsndfile wrote something that is not an Ogg page")
        segments = buf[pos + 26]
        if len(buf) - pos < 27 + segments:
            break
        end = pos + 27 + segments + sum(buf[pos + 27 : pos + 27 + segments])
        if end > len(buf):
            break
        struct.pack_into("<I", buf, pos + 14, OGG_SERIAL)
        struct.pack_into("<I", buf, pos + 22, 0)  # the CRC covers the page with this zeroed
        struct.pack_into("<I", buf, pos + 22, _ogg_crc(buf[pos:end]))
        pos = end
    return pos
