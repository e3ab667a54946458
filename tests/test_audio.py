"""Encoding and resampling with real libsndfile/soxr; decoded back to check what a player sees."""

from __future__ import annotations

import io
import itertools
import struct

import numpy as np
import pytest
import soundfile as sf

from sambertd import audio


def tone(freq: float, rate: int, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize(
    ("name", "container", "subtype"),
    [
        ("wav", "WAV", "PCM_16"),
        ("mp3", "MP3", "MPEG_LAYER_III"),
        ("flac", "FLAC", "PCM_16"),
        ("opus", "OGG", "OPUS"),
        ("alaw", "WAV", "ALAW"),
        ("ulaw", "WAV", "ULAW"),
    ],
)
def test_containers_decode_back(name: str, container: str, subtype: str) -> None:
    fmt = audio.get_format(name)
    rate = 8000 if name in ("alaw", "ulaw") else 24000
    data = audio.encode(tone(440, rate), rate, fmt)
    info = sf.info(io.BytesIO(data))
    assert (info.format, info.subtype, info.samplerate, info.channels) == (
        container,
        subtype,
        rate,
        1,
    )
    decoded, _ = sf.read(io.BytesIO(data), dtype="float32")
    assert abs(len(decoded) - rate * 0.5) < rate * 0.1  # a lossy codec may pad a frame
    assert 0.3 < np.sqrt(np.mean(decoded**2)) / np.sqrt(np.mean(tone(440, rate) ** 2)) < 1.2


def test_pcm_is_raw_little_endian_int16() -> None:
    data = audio.encode(
        np.array([0.0, 1.0, -1.0, 2.0, 0.5], np.float32), 16000, audio.get_format("pcm")
    )
    assert struct.unpack("<5h", data) == (0, 32767, -32767, 32767, 16384)


def test_wav_payload_matches_pcm_format() -> None:
    pcm = tone(300, 16000)
    wav = audio.encode(pcm, 16000, audio.get_format("wav"))
    raw = audio.encode(pcm, 16000, audio.get_format("pcm"))
    assert wav.endswith(raw) and len(wav) - len(raw) == 44


@pytest.mark.parametrize("rate_out", [8000, 16000, 22050])
def test_resample_keeps_a_tone_and_its_length(rate_out: int) -> None:
    out = audio.resample(tone(440, 24000, 1.0), 24000, rate_out)
    assert abs(len(out) - rate_out) <= 1
    spectrum = np.abs(np.fft.rfft(out))
    peak_hz = np.argmax(spectrum) * rate_out / len(out)
    assert abs(peak_hz - 440) < 3


def test_downsampling_to_telephony_removes_what_8k_cannot_carry() -> None:
    # A 6 kHz tone is above 8 kHz's Nyquist: a proper resampler filters it, naive decimation
    # would fold it back to 2 kHz at nearly full strength.
    out = audio.resample(tone(6000, 24000, 1.0), 24000, 8000)
    assert np.sqrt(np.mean(out**2)) < 0.01


def test_output_rate_rules() -> None:
    wav, alaw = audio.get_format("wav"), audio.get_format("alaw")
    assert audio.output_rate(wav, None, 24000) == 24000
    assert audio.output_rate(alaw, None, 24000) == 8000
    assert audio.output_rate(alaw, 16000, 24000) == 16000
    with pytest.raises(audio.AudioFormatError, match="sample_rate 44100"):
        audio.output_rate(wav, 44100, 24000)
    with pytest.raises(audio.AudioFormatError, match="unknown format 'ogg'"):
        audio.get_format("ogg")
    opus = audio.get_format("opus")  # Opus takes 8/12/16/24/48 kHz: the next one up
    assert [audio.output_rate(opus, r, 16000) for r in audio.SAMPLE_RATES] == [
        8000,
        16000,
        24000,
        24000,
    ]
    assert audio.output_rate(opus, None, 22050) == 24000


def open_ended_wav_header(rate: int) -> bytes:
    """The 44-byte header IVR media servers have always got from our WAV streams: 16-bit
    mono PCM, both sizes 0xFFFFFFFF ('until the connection ends'), written out by hand."""
    return (
        b"RIFF"
        + struct.pack("<I", 0xFFFFFFFF)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", 0xFFFFFFFF)
    )


def test_stream_header_is_a_valid_open_ended_wav() -> None:
    header = audio.Encoder(audio.get_format("wav"), 16000).header
    assert header == open_ended_wav_header(16000)
    body = audio.to_int16(tone(440, 16000, 0.1))
    decoded, rate = sf.read(io.BytesIO(header + body), dtype="int16")
    assert rate == 16000 and len(decoded) == 1600


def test_empty_audio_encodes() -> None:
    empty = np.zeros(0, np.float32)
    assert audio.resample(empty, 24000, 8000).size == 0
    assert sf.info(io.BytesIO(audio.encode(empty, 8000, audio.get_format("wav")))).frames == 0


def test_the_wav_encoder_streams_todays_open_ended_header() -> None:
    """A WAV stream starts as it always did: the open-ended header, then the raw samples."""
    encoder = audio.Encoder(audio.get_format("wav"), 16000)
    assert encoder.header == open_ended_wav_header(16000)
    pcm = tone(440, 16000)
    assert encoder.push(pcm) == audio.to_int16(pcm)


@pytest.mark.parametrize(("rate_in", "rate_out"), [(24000, 8000), (16000, 22050), (24000, 24000)])
def test_resampling_in_pieces_equals_resampling_whole(rate_in: int, rate_out: int) -> None:
    """What lets a stream and a plain request of the same units share one cache entry."""
    rng = np.random.default_rng(7)
    pcm = (rng.standard_normal(rate_in * 2) * 0.1).astype(np.float32)
    resampler = audio.Resampler(rate_in, rate_out)
    cuts = [0, 1234, 1300, 20000, len(pcm)]
    pieces = [resampler.push(pcm[a:b], last=b == len(pcm)) for a, b in itertools.pairwise(cuts)]
    assert np.array_equal(np.concatenate(pieces), audio.resample(pcm, rate_in, rate_out))


# -- the incremental encoder: one file, streamed or whole -----------------------------------

LOSSLESS = ("wav", "pcm", "flac")
MP3_FRAME = 576  # samples per MPEG-2 layer III frame (16-24 kHz; 8 kHz is MPEG-2.5, same)


def speechlike(rate: int, seconds: float = 2.5) -> np.ndarray:
    """A tone under noise, so every codec has real work (and nothing is all zeros)."""
    rng = np.random.default_rng(rate)
    noise = rng.standard_normal(int(rate * seconds)).astype(np.float32) * 0.05
    return tone(330, rate, seconds) * 0.8 + noise


def streamed(fmt: audio.Format, rate: int, pcm: np.ndarray) -> tuple[bytes, audio.Encoder]:
    """The bytes a stream sends when the signal comes in awkward pieces (one sample, none)."""
    encoder = audio.Encoder(fmt, rate)
    cuts = [0, 1, 1000, 1000, rate, len(pcm)]
    out = [encoder.header]
    out += [encoder.push(pcm[a:b]) for a, b in itertools.pairwise(cuts)]
    out.append(encoder.finish())
    return b"".join(out), encoder


def decode_stream(data: bytes) -> np.ndarray:
    """What a player reading to the end hears.  libsndfile is read without seeking: a FLAC
    stream says "length unknown", which soundfile's seek after each read trips over."""
    with sf.SoundFile(io.BytesIO(data)) as f:
        f.seekable = lambda: False  # type: ignore[method-assign]
        blocks = []
        while len(block := f.read(4096, dtype="float32")):
            blocks.append(block)
    return np.concatenate(blocks)


def rates_for(name: str) -> list[int]:
    fmt = audio.get_format(name)
    return sorted({audio.output_rate(fmt, r, 24000) for r in audio.SAMPLE_RATES})


CASES = [(name, rate) for name in audio.FORMATS for rate in rates_for(name)]


@pytest.mark.parametrize(("name", "rate"), CASES)
def test_a_stream_keeps_the_same_file_as_a_plain_request(name: str, rate: int) -> None:
    """What lets a stream and a plain request of the same units share one cache entry:
    fed in pieces, the encoder's complete file is the plain file, byte for byte (and a
    plain file is the same every time: Opus's random Ogg serial number is fixed)."""
    fmt, pcm = audio.get_format(name), speechlike(rate)
    plain = audio.encode(pcm, rate, fmt)
    _, encoder = streamed(fmt, rate, pcm)
    assert encoder.complete == plain
    assert audio.encode(pcm, rate, fmt) == plain


@pytest.mark.parametrize(("name", "rate"), CASES)
def test_streamed_bytes_decode_to_the_same_audio(name: str, rate: int) -> None:
    fmt, pcm = audio.get_format(name), speechlike(rate)
    stream, encoder = streamed(fmt, rate, pcm)
    assert encoder.complete is not None
    pad = name in ("alaw", "ulaw") and len(pcm) % 2  # an odd 8-bit data chunk's pad byte
    assert len(stream) == len(encoder.complete) - pad
    if name == "pcm":
        assert stream == audio.to_int16(pcm)
        return
    whole, _ = sf.read(io.BytesIO(encoder.complete), dtype="float32")
    heard = decode_stream(stream)
    if name in LOSSLESS or name in ("alaw", "ulaw"):  # G.711 is lossy but exact both ways
        assert np.array_equal(heard, whole)
        if name in LOSSLESS:
            assert np.array_equal(np.round(heard * 32768), np.round(pcm.clip(-1, 1) * 32767))
    elif name == "opus":  # append-only: the stream is the file, pre-skip and end trim too
        assert stream == encoder.complete and len(heard) == len(pcm)
    else:  # mp3: the stream lacks the Info tag, so no gapless trim: delay and padding stay
        assert len(whole) == len(pcm)
        assert 0 <= len(heard) - len(pcm) < 5 * MP3_FRAME


def differing(a: bytes, b: bytes) -> set[int]:
    return {i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y}


def test_what_libsndfile_rewrites_on_close() -> None:
    """Recorded behaviour, pinned: which bytes a stream sends that the complete file has
    otherwise (rewritten on close), per container.  Anything else would be a stream that
    lies about its own bytes."""
    rate = 16000
    pcm = speechlike(rate)
    found = {}
    for name in audio.FORMATS:
        stream, encoder = streamed(audio.get_format(name), rate, pcm)
        assert encoder.complete is not None
        found[name] = differing(stream, encoder.complete)
    wav_sizes = {4, 5, 6, 7, 40, 41, 42, 43}  # RIFF size, data size
    assert found["wav"] <= wav_sizes and found["wav"]
    assert found["pcm"] == set() and found["opus"] == set()  # nothing to rewrite
    for g711 in ("alaw", "ulaw"):  # 58-byte header: RIFF size, fact's count, data size
        assert found[g711] and max(found[g711]) < 58
    assert found["flac"] and min(found["flac"]) >= 8 and max(found["flac"]) < 42  # STREAMINFO
    mp3 = audio.encode(pcm, rate, audio.get_format("mp3"))
    frame = 72 * 64000 // rate  # bytes in one 64 kbit/s MPEG-2 frame: the Info tag's
    assert found["mp3"] and max(found["mp3"]) < frame and mp3[frame : frame + 2] == b"\xff\xf3"


def test_wav_streams_send_unknown_sizes_and_g711_too() -> None:
    for name in ("alaw", "ulaw"):
        header = audio.Encoder(audio.get_format(name), 8000).header
        assert header[:4] == b"RIFF" and header[4:8] == b"\xff\xff\xff\xff"
        assert header[-8:] == b"data\xff\xff\xff\xff"


def test_an_encoder_that_drops_its_file_streams_the_same_bytes() -> None:
    """A stream too big to cache stops keeping the file; what it sends does not change."""
    rate, fmt = 16000, audio.get_format("flac")
    pcm = speechlike(rate)
    kept, _ = streamed(fmt, rate, pcm)
    encoder = audio.Encoder(fmt, rate)
    out = [encoder.header, encoder.push(pcm[:rate])]
    encoder.drop()
    out += [encoder.push(pcm[rate:]), encoder.finish()]
    assert b"".join(out) == kept and encoder.complete is None


def test_opus_pages_leave_every_100_ms() -> None:
    """libsndfile's default page is 1 s of audio: a stream would hold that much back."""
    encoder = audio.Encoder(audio.get_format("opus"), 24000)
    first = encoder.push(tone(440, 24000, 0.5))
    assert first.count(b"OggS") >= 2 + 3  # OpusHead, OpusTags, then audio pages


def test_ogg_crc_matches_libsndfile() -> None:
    buf = io.BytesIO()
    sf.write(buf, tone(440, 16000), 16000, format="OGG", subtype="OPUS")
    data = buf.getvalue()
    size = 27 + data[26] + sum(data[27 : 27 + data[26]])
    page = bytearray(data[:size])
    crc = struct.unpack_from("<I", page, 22)[0]
    struct.pack_into("<I", page, 22, 0)
    assert audio._ogg_crc(page) == crc


def test_mp3_is_constant_bit_rate() -> None:
    """A tagless MP3 (a stream) is sized from its first frame's bit rate: CBR keeps that
    right.  Every frame header after the Info tag says 64 kbit/s at 16 kHz."""
    data = audio.encode(speechlike(16000), 16000, audio.get_format("mp3"))
    frame = 72 * 64000 // 16000
    headers = {data[i : i + 3] for i in range(0, len(data) - frame, frame)}
    assert len(headers) == 1
