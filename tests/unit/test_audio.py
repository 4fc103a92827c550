"""`core.audio`: raw-format validation, raw PCM decoding, G.711 tables, and probing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from core.audio import (
    MAX_RAW_RATE,
    MIN_RAW_RATE,
    RAW_ENCODINGS,
    SAMPLE_RATE,
    RawFormat,
    _raw_to_float,
    decode,
    iter_decoded,
    probe_duration,
    raw_format,
)
from core.errors import InvalidRequest, UnsupportedMedia
from tests.support import clip

JFK = "en_jfk_inaugural.flac"
MP3 = "en_ljspeech_LJ001-0005.mp3"

Int16s = npt.NDArray[np.int16]
Bytes = npt.NDArray[np.uint8]


# --- raw_format ---------------------------------------------------------------------------


def test_no_encoding_means_a_container() -> None:
    assert raw_format(None, None) is None
    assert raw_format(None, "16000") is None


def test_no_encoding_still_checks_sample_rate() -> None:
    with pytest.raises(InvalidRequest) as info:
        raw_format(None, "fast")
    assert info.value.param == "sample_rate"


@pytest.mark.parametrize("encoding", list(RAW_ENCODINGS))
def test_every_encoding_is_accepted(encoding: str) -> None:
    fmt = raw_format(encoding, "8000")
    assert fmt == RawFormat(encoding, 8000)
    assert (
        fmt.sample_width
        == {"u1": 1, "<i2": 2, "<f2": 2, "<i4": 4, "<f4": 4}[RAW_ENCODINGS[encoding]]
    )


def test_integer_sample_rate_is_accepted() -> None:
    assert raw_format("pcm_s16le", 44100) == RawFormat("pcm_s16le", 44100)


@pytest.mark.parametrize("encoding", ["bogus", "PCM_S16LE", "pcm_s24le", "mp3", ""])
def test_bad_encoding(encoding: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        raw_format(encoding, "16000")
    assert info.value.param == "encoding"
    assert "pcm_s16le" in info.value.message


def test_missing_sample_rate() -> None:
    with pytest.raises(InvalidRequest, match="required") as info:
        raw_format("pcm_s16le", None)
    assert info.value.param == "sample_rate"


@pytest.mark.parametrize("rate", ["16k", "16000.5", "", "1e4"])
def test_non_integer_sample_rate(rate: str) -> None:
    with pytest.raises(InvalidRequest, match="integer") as info:
        raw_format("pcm_s16le", rate)
    assert info.value.param == "sample_rate"


@pytest.mark.parametrize("rate", [0, -16000, MIN_RAW_RATE - 1, MAX_RAW_RATE + 1, 10**9])
def test_out_of_range_sample_rate(rate: int) -> None:
    with pytest.raises(InvalidRequest, match="between") as info:
        raw_format("pcm_f32le", str(rate))
    assert info.value.param == "sample_rate"
    assert info.value.status == 400


@pytest.mark.parametrize("rate", [MIN_RAW_RATE, MAX_RAW_RATE])
def test_sample_rate_bounds_are_inclusive(rate: int) -> None:
    assert raw_format("pcm_f32le", str(rate)) == RawFormat("pcm_f32le", rate)


# --- raw PCM decoding ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def original() -> npt.NDArray[np.float32]:
    """The JFK clip at 16 kHz, clipped to what 16-bit PCM can hold."""
    audio = decode(clip(JFK).path)
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert abs(len(audio) / SAMPLE_RATE - clip(JFK).duration) < 0.05
    return np.clip(audio, -1.0, 1.0 - 1 / 32768)


def _encode(x: npt.NDArray[np.float32], encoding: str) -> bytes:
    if encoding == "pcm_s16le":
        return np.round(x * 32768).astype("<i2").tobytes()
    if encoding == "pcm_s32le":
        wide = np.round(x.astype(np.float64) * 2**31).clip(-(2**31), 2**31 - 1)
        return wide.astype("<i4").tobytes()
    if encoding == "pcm_f32le":
        return x.astype("<f4").tobytes()
    if encoding == "pcm_f16le":
        return x.astype("<f2").tobytes()
    pcm = np.round(x * 32768).clip(-32768, 32767).astype(np.int16)
    codes = mulaw_encode(pcm) if encoding == "pcm_mulaw" else alaw_encode(pcm)
    return codes.tobytes()


def _correlation(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


@pytest.mark.parametrize("rate", [16000, 8000])
@pytest.mark.parametrize("encoding", list(RAW_ENCODINGS))
def test_raw_pcm_decodes_like_the_original(
    tmp_path: Path, original: npt.NDArray[np.float32], encoding: str, rate: int
) -> None:
    source = original if rate == SAMPLE_RATE else original[:: SAMPLE_RATE // rate]
    path = tmp_path / "audio.raw"
    path.write_bytes(_encode(source, encoding))
    fmt = RawFormat(encoding, rate)

    assert probe_duration(path, fmt) == pytest.approx(len(source) / rate)
    audio = decode(path, fmt)
    assert audio.dtype == np.float32
    assert abs(len(audio) / SAMPLE_RATE - len(original) / SAMPLE_RATE) < 0.05
    assert _correlation(audio, original) > (0.999 if encoding.startswith("pcm_") else 0.99)
    if rate == SAMPLE_RATE and encoding in ("pcm_s16le", "pcm_s32le", "pcm_f32le"):
        assert np.abs(audio[: len(original)] - original).max() < 1e-4


def test_raw_decoding_streams_in_blocks(tmp_path: Path) -> None:
    """More than one read chunk, and a trailing odd byte that is ignored."""
    samples = (np.sin(np.arange(200_000) / 10) * 16000).astype("<i2")
    path = tmp_path / "long.raw"
    path.write_bytes(samples.tobytes() + b"\x01")
    fmt = RawFormat("pcm_s16le", SAMPLE_RATE)
    blocks = list(iter_decoded(path, fmt))
    assert len(blocks) > 1
    audio = np.concatenate(blocks)
    assert len(audio) == len(samples)
    assert np.allclose(audio, samples / 32768.0, atol=1e-4)
    assert probe_duration(path, fmt) == pytest.approx(200_000 / SAMPLE_RATE)


def test_float_raw_nan_and_inf_become_finite() -> None:
    data = np.array([np.nan, np.inf, -np.inf, 0.5], dtype="<f4").tobytes()
    out = _raw_to_float(data, RawFormat("pcm_f32le", 16000))
    assert out.tolist() == [0.0, 1.0, -1.0, 0.5]


@pytest.mark.parametrize(
    ("encoding", "data"), [("pcm_s16le", b""), ("pcm_s16le", b"\x00"), ("pcm_s32le", b"abc")]
)
def test_raw_with_no_whole_sample_is_refused(tmp_path: Path, encoding: str, data: bytes) -> None:
    path = tmp_path / "tiny.raw"
    path.write_bytes(data)
    fmt = RawFormat(encoding, 16000)
    with pytest.raises(UnsupportedMedia):
        probe_duration(path, fmt)
    with pytest.raises(UnsupportedMedia):
        decode(path, fmt)


# --- G.711 -------------------------------------------------------------------------------


def mulaw_encode(pcm: Int16s) -> Bytes:
    """The standard G.711 mu-law encoder (bias 0x84, clip 32635)."""
    x = pcm.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 7, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    codes: Bytes = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    return codes


def alaw_encode(pcm: Int16s) -> Bytes:
    """The standard G.711 A-law encoder (as in Sun's g711.c)."""
    x = pcm.astype(np.int32) >> 3
    mask = np.where(x >= 0, 0xD5, 0x55)
    x = np.where(x >= 0, x, -x - 1)
    seg_end = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    seg = np.searchsorted(seg_end, x)
    shift = np.where(seg < 2, 1, seg)
    aval = (np.minimum(seg, 7) << 4) | ((x >> shift) & 0x0F)
    aval = np.where(seg >= 8, 0x7F, aval)
    return ((aval ^ mask) & 0xFF).astype(np.uint8)


def _table(encoding: str) -> npt.NDArray[np.float32]:
    return _raw_to_float(bytes(range(256)), RawFormat(encoding, 8000))


def test_mulaw_known_values() -> None:
    table = _table("pcm_mulaw")
    assert table[0xFF] == 0.0
    assert table[0x7F] == 0.0
    assert table[0x00] == pytest.approx(-32124 / 32768)
    assert table[0x80] == pytest.approx(32124 / 32768)
    assert table[0xFE] == pytest.approx(8 / 32768)
    assert table[0x7E] == pytest.approx(-8 / 32768)


def test_alaw_known_values() -> None:
    table = _table("pcm_alaw")
    assert table[0xD5] == pytest.approx(8 / 32768)
    assert table[0x55] == pytest.approx(-8 / 32768)
    assert table[0xAA] == pytest.approx(32256 / 32768)
    assert table[0x2A] == pytest.approx(-32256 / 32768)


@pytest.mark.parametrize("encoding", ["pcm_mulaw", "pcm_alaw"])
def test_g711_tables_invert_the_standard_encoder(encoding: str) -> None:
    """Each code decodes to a value the standard encoder maps back to the same code."""
    table = _table(encoding)
    pcm = np.round(table * 32768).astype(np.int16)
    encode = mulaw_encode if encoding == "pcm_mulaw" else alaw_encode
    codes = encode(pcm)
    expected = np.arange(256, dtype=np.uint8)
    if encoding == "pcm_mulaw":
        expected[0x7F] = 0xFF  # mu-law's negative zero decodes to 0, which encodes as +0
    assert codes.tolist() == expected.tolist()
    assert np.all(np.diff(np.sort(table)) >= 0)
    assert np.abs(table).max() < 1.0


@pytest.mark.parametrize("encoding", ["pcm_mulaw", "pcm_alaw"])
def test_g711_quantisation_error_is_small(encoding: str) -> None:
    pcm = np.arange(-32768, 32768, 7, dtype=np.int32).astype(np.int16)
    encode = mulaw_encode if encoding == "pcm_mulaw" else alaw_encode
    decoded = _raw_to_float(encode(pcm).tobytes(), RawFormat(encoding, 8000)) * 32768
    error = np.abs(decoded - pcm)
    loud = np.abs(pcm.astype(np.float64)) >= 256
    assert error.max() <= 1024  # half the largest step, plus mu-law's clipping
    assert float((error[loud] / np.abs(pcm[loud])).max()) < 1 / 16


# --- probing containers --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        JFK,
        "en_fleurs_004.ogg",
        MP3,
        "ja_commonvoice_24511055.mp3",
        "es_mls_13697_11991_000000.opus",
        "fr_readalongs_ej-fra.m4a",
        "fr_speech_recognition_french.aiff",
        "en_one_two_three.wav",
        "zh_speech_recognition_chinese.flac",
    ],
)
def test_probe_duration_matches_manifest(name: str) -> None:
    c = clip(name)
    assert abs(probe_duration(c.path) - c.duration) < 0.1


def test_decode_a_stereo_44k_wav() -> None:
    c = clip("en_one_two_three.wav")
    audio = decode(c.path)
    assert abs(len(audio) / SAMPLE_RATE - c.duration) < 0.05
    assert 0.01 < float(np.abs(audio).max()) <= 1.5


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("random.bin", os.urandom(8192)),
        ("empty.wav", b""),
        ("notes.txt", b"This is a text file, not audio.\n" * 100),
        ("fake.mp3", b"ID3" + b"\x00" * 1000),
    ],
)
def test_not_audio_is_unsupported(tmp_path: Path, name: str, data: bytes) -> None:
    path = _write(tmp_path, name, data)
    with pytest.raises(UnsupportedMedia) as info:
        probe_duration(path)
    assert info.value.status == 415
    with pytest.raises(UnsupportedMedia):
        decode(path)


@pytest.mark.parametrize("name", [MP3, "en_librivox_shakespeare_sonnet001.mp3"])
def test_truncated_mp3_is_unsupported(tmp_path: Path, name: str) -> None:
    """The first 1 KB keeps the header that claims the full length, but not the audio."""
    path = _write(tmp_path, "cut.mp3", clip(name).path.read_bytes()[:1024])
    with pytest.raises(UnsupportedMedia):
        probe_duration(path)


def test_mp3_header_only_is_unsupported(tmp_path: Path) -> None:
    path = _write(tmp_path, "head.mp3", clip(MP3).path.read_bytes()[:256])
    with pytest.raises(UnsupportedMedia):
        probe_duration(path)


def test_slightly_short_mp3_is_still_accepted(tmp_path: Path) -> None:
    """Losing the tail of a file is not a reason to refuse what is there."""
    data = clip(MP3).path.read_bytes()
    path = _write(tmp_path, "most.mp3", data[: len(data) * 9 // 10])
    assert probe_duration(path) > 5.0
    assert len(decode(path)) > 5 * SAMPLE_RATE


def test_video_without_audio_stream(tmp_path: Path) -> None:
    """A container with no audio stream at all."""
    import av

    path = tmp_path / "silent.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=5)
        stream.width, stream.height = 16, 16
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with pytest.raises(UnsupportedMedia, match="no audio stream"):
        probe_duration(path)
    with pytest.raises(UnsupportedMedia, match="no audio stream"):
        decode(path)
