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
    assert abs(len(decoded) - rate * 0.5) < rate * 0.1  # mp3 pads a frame or two
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


def test_stream_header_is_a_valid_open_ended_wav() -> None:
    header = audio.wav_stream_header(16000)
    assert len(header) == 44
    body = audio.to_int16(tone(440, 16000, 0.1))
    decoded, rate = sf.read(io.BytesIO(header + body), dtype="int16")
    assert rate == 16000 and len(decoded) == 1600


def test_empty_audio_encodes() -> None:
    empty = np.zeros(0, np.float32)
    assert audio.resample(empty, 24000, 8000).size == 0
    assert sf.info(io.BytesIO(audio.encode(empty, 8000, audio.get_format("wav")))).frames == 0


def test_wav_from_int16_matches_the_encoder() -> None:
    pcm = tone(440, 16000)
    raw = audio.to_int16(pcm)
    pieces = [raw[:1000], raw[1000:1002], raw[1002:]]
    assert audio.wav_from_int16(pieces, 16000) == audio.encode(pcm, 16000, audio.get_format("wav"))


@pytest.mark.parametrize(("rate_in", "rate_out"), [(24000, 8000), (16000, 22050), (24000, 24000)])
def test_resampling_in_pieces_equals_resampling_whole(rate_in: int, rate_out: int) -> None:
    """What lets a stream and a plain request of the same units share one cache entry."""
    rng = np.random.default_rng(7)
    pcm = (rng.standard_normal(rate_in * 2) * 0.1).astype(np.float32)
    resampler = audio.Resampler(rate_in, rate_out)
    cuts = [0, 1234, 1300, 20000, len(pcm)]
    pieces = [resampler.push(pcm[a:b], last=b == len(pcm)) for a, b in itertools.pairwise(cuts)]
    assert np.array_equal(np.concatenate(pieces), audio.resample(pcm, rate_in, rate_out))
