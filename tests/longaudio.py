"""Long synthetic audio for chunking tests, written block by block (never held whole)."""

from __future__ import annotations

import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from core.audio import SAMPLE_RATE, Audio
from core.transcript import Segment, Transcript, Word


def _blocks(duration_s: float, inserts: list[tuple[float, Audio]]) -> Iterator[Audio]:
    """Silence of `duration_s` with each (second, samples) insert laid over it, in blocks."""
    total = round(duration_s * SAMPLE_RATE)
    block = 10 * SAMPLE_RATE
    placed = sorted((round(at * SAMPLE_RATE), samples) for at, samples in inserts)
    for start in range(0, total, block):
        end = min(start + block, total)
        out = np.zeros(end - start, dtype=np.float32)
        for at, samples in placed:
            lo, hi = max(at, start), min(at + len(samples), end)
            if hi > lo:
                out[lo - start : hi - start] = samples[lo - at : hi - at]
        yield out


def write_flac(path: Path, duration_s: float, inserts: list[tuple[float, Audio]]) -> Path:
    """A 16 kHz mono FLAC: silence with `inserts` laid over it (cheap even for hours)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("flac", rate=SAMPLE_RATE, layout="mono")
        stream.format = "s16"
        pts = 0
        for samples in _blocks(duration_s, inserts):
            pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = pts
            pts += pcm.shape[1]
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


@dataclass(frozen=True)
class Burst:
    """A 'word': a run of constant amplitude that names itself (see `burst_words`)."""

    number: int
    start: float
    end: float

    @property
    def level(self) -> float:
        return (1000 + 40 * self.number) / 32768


def bursts(duration_s: float, seed: int = 7) -> list[Burst]:
    """'Words' of 0.3-0.8 s with pauses of 0.15-1.5 s between them, across the duration."""
    rng = np.random.default_rng(seed)
    out: list[Burst] = []
    t = 0.5
    while True:
        length = float(rng.uniform(0.3, 0.8))
        if t + length > duration_s - 0.5:
            return out
        out.append(Burst(len(out), round(t, 3), round(t + length, 3)))
        t += length + float(rng.uniform(0.15, 1.5))


def write_bursts_wav(path: Path, duration_s: float, words: list[Burst]) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        inserts = [
            (b.start, np.full(round((b.end - b.start) * SAMPLE_RATE), b.level, np.float32))
            for b in words
        ]
        for samples in _blocks(duration_s, inserts):
            out.writeframes((np.round(samples * 32768)).astype("<i2").tobytes())
    return path


def _runs(audio: Audio) -> list[tuple[int, int]]:
    loud = np.abs(audio) > 500 / 32768
    edges = np.flatnonzero(np.diff(np.concatenate([[False], loud, [False]]).astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def energy_speech(window: Audio) -> list[tuple[int, int]]:
    """A VAD for burst audio: the loud runs."""
    return _runs(window)


def burst_words(audio: Audio, language: str = "en") -> Transcript:
    """What a perfect recogniser would say about burst audio: each run of constant level as
    the word `w<number>`, with its times; one segment per word."""
    segments: list[Segment] = []
    for start, end in _runs(audio):
        level = float(np.median(audio[start:end])) * 32768
        number = round((level - 1000) / 40)
        word = Word(f"w{number}", round(start / SAMPLE_RATE, 3), round(end / SAMPLE_RATE, 3), 1.0)
        segments.append(Segment(len(segments), word.start, word.end, word.word, words=[word]))
    return Transcript(
        text=" ".join(s.text for s in segments),
        language=language,
        duration=round(len(audio) / SAMPLE_RATE, 3),
        segments=segments,
    )
