"""Probing and decoding audio with PyAV (FFmpeg). Bad audio becomes UnsupportedMedia.

Raw PCM (no container) is read with numpy, then resampled with FFmpeg's resampler.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from core.errors import InvalidRequest, UnsupportedMedia

SAMPLE_RATE = 16000
"""What Whisper listens at."""

RAW_ENCODINGS: dict[str, str] = {
    "pcm_s16le": "<i2",
    "pcm_s32le": "<i4",
    "pcm_f16le": "<f2",
    "pcm_f32le": "<f4",
    "pcm_mulaw": "u1",
    "pcm_alaw": "u1",
}
MIN_RAW_RATE = 1000
MAX_RAW_RATE = 384000
_CHUNK_SAMPLES = 1 << 16

Audio = npt.NDArray[np.float32]


@dataclass(frozen=True)
class RawFormat:
    """Headerless PCM: one channel, the given encoding and sample rate."""

    encoding: str
    sample_rate: int

    @property
    def sample_width(self) -> int:
        return np.dtype(RAW_ENCODINGS[self.encoding]).itemsize


def raw_format(encoding: str | None, sample_rate: str | int | None) -> RawFormat | None:
    """Validate `/stt`'s `encoding` and `sample_rate` query parameters."""
    if encoding is None:
        if sample_rate is not None:
            try:
                int(sample_rate)
            except (TypeError, ValueError) as exc:
                raise InvalidRequest("sample_rate must be an integer", param="sample_rate") from exc
        return None
    if encoding not in RAW_ENCODINGS:
        raise InvalidRequest(
            f"encoding must be one of {', '.join(RAW_ENCODINGS)}", param="encoding"
        )
    if sample_rate is None:
        raise InvalidRequest(
            "sample_rate is required when encoding is given (raw PCM has no header)",
            param="sample_rate",
        )
    try:
        rate = int(sample_rate)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest("sample_rate must be an integer", param="sample_rate") from exc
    if not MIN_RAW_RATE <= rate <= MAX_RAW_RATE:
        raise InvalidRequest(
            f"sample_rate must be between {MIN_RAW_RATE} and {MAX_RAW_RATE} Hz",
            param="sample_rate",
        )
    return RawFormat(encoding, rate)


def _mulaw_table() -> Audio:
    u = ~np.arange(256, dtype=np.uint8)
    sign = (u & 0x80) != 0
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = ((mantissa.astype(np.int32) << 3) + 0x84) << exponent
    value = np.where(sign, 0x84 - magnitude, magnitude - 0x84)
    return (value / 32768.0).astype(np.float32)


def _alaw_table() -> Audio:
    a = np.arange(256, dtype=np.uint8) ^ 0x55
    sign = (a & 0x80) != 0
    exponent = (a >> 4) & 0x07
    mantissa = (a & 0x0F).astype(np.int32)
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent.astype(np.int32) - 1, 0),
    )
    value = np.where(sign, magnitude, -magnitude)
    return (value / 32768.0).astype(np.float32)


def _raw_to_float(data: bytes, fmt: RawFormat) -> Audio:
    usable = len(data) - len(data) % fmt.sample_width
    samples = np.frombuffer(data[:usable], dtype=RAW_ENCODINGS[fmt.encoding])
    if fmt.encoding == "pcm_mulaw":
        return np.asarray(_mulaw_table()[samples], dtype=np.float32)
    if fmt.encoding == "pcm_alaw":
        return np.asarray(_alaw_table()[samples], dtype=np.float32)
    if fmt.encoding == "pcm_s16le":
        return (samples / 32768.0).astype(np.float32)
    if fmt.encoding == "pcm_s32le":
        return (samples / 2147483648.0).astype(np.float32)
    return np.nan_to_num(samples.astype(np.float32), nan=0.0, posinf=1.0, neginf=-1.0)


def raw_to_float(data: bytes, fmt: RawFormat) -> Audio:
    """Headerless PCM bytes as float32 samples at their own rate (a trailing partial
    sample is ignored)."""
    return _raw_to_float(data, fmt)


def probe_duration(path: Path, raw: RawFormat | None = None) -> float:
    """Seconds of audio in the file; raises UnsupportedMedia when nothing decodes."""
    if raw is not None:
        samples = path.stat().st_size // raw.sample_width
        if samples == 0:
            raise UnsupportedMedia("the audio is empty")
        return samples / raw.sample_rate
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise UnsupportedMedia("the file has no audio stream")
            stream = container.streams.audio[0]
            if stream.sample_rate and not MIN_RAW_RATE <= stream.sample_rate <= MAX_RAW_RATE:
                raise UnsupportedMedia(
                    f"a sample rate of {stream.sample_rate} Hz is not supported "
                    f"({MIN_RAW_RATE} to {MAX_RAW_RATE} Hz)"
                )
            duration: float | None = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            if duration is not None and stream.bit_rate:
                # The header's length is only believed if the file is big enough to hold it
                # (a cut-off upload keeps its header: an mp3's Xing frame, an mp4's moov).
                holds = path.stat().st_size * 8 / stream.bit_rate
                if holds < duration / 2:
                    raise UnsupportedMedia(
                        f"the file is truncated: its header says {duration:.1f} s, "
                        f"it holds about {holds:.1f} s"
                    )
            decoded = 0.0
            for frame in _frames(container, stream):
                decoded += frame.samples / (frame.sample_rate or SAMPLE_RATE)
                if duration is not None and decoded > 0:
                    break  # one frame proves it decodes; the header gives the length
            if decoded == 0:
                raise UnsupportedMedia("the file contains no decodable audio")
            if duration is not None and duration > 2 * _TAIL_S:
                _check_tail(container, stream, duration)
            return duration if duration is not None and duration > 0 else decoded
    except UnsupportedMedia:
        raise
    except (av.FFmpegError, ValueError, IndexError, OSError, EOFError) as exc:
        raise UnsupportedMedia(f"the audio could not be decoded: {_reason(exc)}") from exc


_TAIL_S = 1.0


def _check_tail(
    container: av.container.InputContainer, stream: av.AudioStream, duration: float
) -> None:
    """Audio near the end the header claims must decode: a cut-off upload (FLAC, MP4…)
    keeps its header and would otherwise pass for the whole recording."""
    assert stream.time_base is not None
    target = duration - 2 * _TAIL_S
    try:
        container.seek(int(target / stream.time_base), stream=stream, any_frame=False)
        for frame in _frames(container, stream):
            if frame.time is None or frame.time >= target - 2 * _TAIL_S:
                return
    except (av.FFmpegError, OSError):
        pass
    raise UnsupportedMedia(
        f"the file is truncated: its header says {duration:.1f} s of audio, "
        "but the end of it is missing"
    )


def _reason(exc: BaseException) -> str:
    return str(exc).split(": '")[0] or type(exc).__name__


def _frames(
    container: av.container.InputContainer, stream: av.AudioStream
) -> Iterator[av.AudioFrame]:
    """Decoded frames, skipping corrupt packets the way FFmpeg's command line does."""
    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.error.InvalidDataError:
            continue


def _resampled(frames: Iterator[av.AudioFrame]) -> Iterator[Audio]:
    """16 kHz mono through 16-bit samples, exactly as faster-whisper's own `decode_audio`:
    resampling to float instead changed the odd word (en FLEURS 007 "and" → "in", es FLEURS
    001 "blogs" → "blocs") against the bare library on the same file."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    for frame in frames:
        frame.pts = None
        for out in resampler.resample(frame):
            yield _s16_to_float(out)
    for out in resampler.resample(None):
        yield _s16_to_float(out)


def _s16_to_float(frame: av.AudioFrame) -> Audio:
    return np.asarray(frame.to_ndarray(), dtype=np.float32).reshape(-1) / 32768.0


def _raw_frames(path: Path, fmt: RawFormat) -> Iterator[av.AudioFrame]:
    chunk_bytes = _CHUNK_SAMPLES * fmt.sample_width
    with path.open("rb") as handle:
        while data := handle.read(chunk_bytes):
            samples = _raw_to_float(data, fmt)
            if samples.size == 0:
                continue
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = fmt.sample_rate
            yield frame


def iter_decoded(path: Path, raw: RawFormat | None = None) -> Iterator[Audio]:
    """16 kHz mono float32 blocks, decoded and resampled as the file is read."""
    if raw is not None:
        yield from _resampled(_raw_frames(path, raw))
        return
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise UnsupportedMedia("the file has no audio stream")
            yield from _resampled(_frames(container, container.streams.audio[0]))
    except UnsupportedMedia:
        raise
    except (av.FFmpegError, ValueError, IndexError, OSError, EOFError) as exc:
        raise UnsupportedMedia(f"the audio could not be decoded: {_reason(exc)}") from exc


def decode(path: Path, raw: RawFormat | None = None) -> Audio:
    """The whole file as 16 kHz mono float32."""
    blocks = list(iter_decoded(path, raw))
    if not blocks:
        raise UnsupportedMedia("the file contains no decodable audio")
    audio = np.concatenate(blocks).astype(np.float32, copy=False)
    if audio.size == 0:
        raise UnsupportedMedia("the file contains no decodable audio")
    return audio


SEEK_PREROLL_S = 1.0
"""Decoding starts this long before a window, so that codecs with overlapping frames (mp3,
aac, opus) have settled by the window's first sample; the extra samples are dropped."""


def _raw_window_frames(
    path: Path, fmt: RawFormat, start_s: float
) -> tuple[float, Iterator[av.AudioFrame]]:
    first = max(0, int(start_s * fmt.sample_rate))

    def frames() -> Iterator[av.AudioFrame]:
        chunk_bytes = _CHUNK_SAMPLES * fmt.sample_width
        with path.open("rb") as handle:
            handle.seek(first * fmt.sample_width)
            while data := handle.read(chunk_bytes):
                samples = _raw_to_float(data, fmt)
                if samples.size == 0:
                    continue
                frame = av.AudioFrame.from_ndarray(
                    samples.reshape(1, -1), format="flt", layout="mono"
                )
                frame.sample_rate = fmt.sample_rate
                yield frame

    return first / fmt.sample_rate, frames()


def _seeked_frames(
    container: av.container.InputContainer, stream: av.AudioStream, start_s: float
) -> tuple[float, Iterator[av.AudioFrame]] | None:
    """Frames from a keyframe at or before `start_s` and the time of the first one (on the
    timeline `decode` uses: its first sample is 0), or None where the file cannot seek."""
    tb = stream.time_base
    if tb is None:
        return None
    origin = float(stream.start_time * tb) if stream.start_time is not None else 0.0
    target = max(0.0, start_s - SEEK_PREROLL_S)
    if target <= 0:
        return None
    try:
        container.seek(int((origin + target) / tb), stream=stream, backward=True)
    except (av.FFmpegError, ValueError, OSError):
        return None
    frames = _frames(container, stream)
    for frame in frames:
        if frame.pts is None:
            return None
        first = float(frame.pts * tb) - origin
        if first > start_s or first < 0:
            return None  # overshot (or an odd timeline): decode from the start instead

        def chained(head: av.AudioFrame = frame) -> Iterator[av.AudioFrame]:
            yield head
            yield from frames

        return first, chained()
    return None


def _take(blocks: Iterator[Audio], block_start: int, first: int, count: int) -> tuple[Audio, int]:
    """Samples [first, first + count) of a stream of blocks whose first sample is number
    `block_start`; also how many samples were seen (to tell the end of the file)."""
    out = np.zeros(count, dtype=np.float32)
    filled = 0
    position = block_start
    for block in blocks:
        end = position + len(block)
        if end > first:
            lo = max(first - position, 0)
            hi = min(len(block), first + count - position)
            if hi > lo:
                out[filled : filled + hi - lo] = block[lo:hi]
                filled += hi - lo
        position = end
        if filled >= count:
            break
    return out[:filled], position


def read_window(path: Path, start_s: float, end_s: float, raw: RawFormat | None = None) -> Audio:
    """Samples [start_s, end_s) of the file at 16 kHz mono, on the same timeline as
    `decode`, holding no more than the window: the file is seeked to just before the
    window where its format allows (else decoded from the start, keeping nothing before)."""
    first = max(0, round(start_s * SAMPLE_RATE))
    count = max(0, round(end_s * SAMPLE_RATE) - first)
    if count == 0:
        return np.zeros(0, dtype=np.float32)
    if raw is not None:
        begins, frames = _raw_window_frames(path, raw, start_s)
        block_start = round(begins * SAMPLE_RATE)
        audio, _ = _take(_resampled(frames), block_start, first, count)
        return audio
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise UnsupportedMedia("the file has no audio stream")
            stream = container.streams.audio[0]
            seeked = _seeked_frames(container, stream, start_s)
            if seeked is not None:
                begins, frames = seeked
                block_start = round(begins * SAMPLE_RATE)
                audio, _ = _take(_resampled(frames), block_start, first, count)
                return audio
        return _take(iter_decoded(path), 0, first, count)[0]
    except UnsupportedMedia:
        raise
    except (av.FFmpegError, ValueError, IndexError, OSError, EOFError) as exc:
        raise UnsupportedMedia(f"the audio could not be decoded: {_reason(exc)}") from exc
