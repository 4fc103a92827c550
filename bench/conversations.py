"""Conversations stitched from real corpus voices, with the turn boundaries known.

Different recordings of different readers are different speakers: LJ Speech (one reader), the
LibriVox "Sense and Sensibility" reader, LibriSpeech speakers, JFK. Each voice's clips are
trimmed of leading and trailing silence, cut into turns of a few seconds, and the turns of the
voices interleaved with short silent gaps. The reference is the list of (start, end, voice).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

from bench.support import corpus_dir
from core.audio import decode

RATE = 16000
Audio = npt.NDArray[np.float32]

VOICES: dict[str, tuple[str, ...]] = {
    "ljspeech": (
        "en_ljspeech_LJ001-0001.wav",
        "en_ljspeech_LJ001-0003.flac",
        "en_ljspeech_LJ001-0005.mp3",
        "en_ljspeech_LJ001-0007.wav",
        "en_ljspeech_LJ001-0009.flac",
        "en_ljspeech_LJ001-0014.mp3",
    ),
    "sense": (
        "en_librivox_sense_and_sensibility_0870.wav",
        "en_librivox_sense_and_sensibility_0890.wav",
        "en_librivox_sense_and_sensibility_0920.wav",
        "en_librivox_sense_and_sensibility_0880.wav",
        "en_librivox_sense_and_sensibility_0930.wav",
    ),
    "ls1995": ("en_librispeech_1995-1837-0001.wav",),
    "ls2412": ("en_librispeech_2412-153948-0000.flac",),
    "jfk": ("en_jfk_inaugural.flac",),
    "ls1272": ("en_librispeech_1272-128104-0000.wav",),
    "ls61": ("en_librispeech_61-70968-0000.flac",),
}


@dataclass(frozen=True)
class Conversation:
    audio: Audio
    turns: list[tuple[float, float, str]]  # (start s, end s, voice)

    @property
    def voices(self) -> list[str]:
        return list(dict.fromkeys(v for _, _, v in self.turns))

    @property
    def duration(self) -> float:
        return len(self.audio) / RATE


def trim_silence(audio: Audio, floor_db: float = -35.0) -> Audio:
    """Drop leading/trailing 20 ms frames quieter than `floor_db` below the loudest frame."""
    frame = RATE // 50
    n = len(audio) // frame
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > floor_db)
    if loud.size == 0:
        return audio
    return audio[loud[0] * frame : (loud[-1] + 1) * frame]


@cache
def voice_audio(voice: str) -> Audio:
    """All of a voice's clips, each trimmed, back to back (0.2 s apart)."""
    gap = np.zeros(RATE // 5, np.float32)
    parts: list[Audio] = []
    for name in VOICES[voice]:
        parts += [trim_silence(decode(corpus_dir() / name)), gap]
    return np.concatenate(parts[:-1]).astype(np.float32)


def stitch(
    voices: list[str],
    turns_each: int,
    seed: int = 0,
    turn_s: tuple[float, float] = (2.5, 5.0),
    gap_s: tuple[float, float] = (0.3, 0.7),
) -> Conversation:
    """`turns_each` turns per voice, round robin in a shuffled order, gaps of silence between."""
    rng = np.random.default_rng(seed)
    cursor = dict.fromkeys(voices, 0)
    order = [v for _ in range(turns_each) for v in rng.permutation(voices).tolist()]
    # No voice follows itself, so every boundary between turns is a change of speaker.
    for i in range(1, len(order)):
        if order[i] == order[i - 1]:
            j = next((k for k in range(i + 1, len(order)) if order[k] != order[i]), None)
            if j is not None:
                order[i], order[j] = order[j], order[i]
    pieces: list[Audio] = []
    turns: list[tuple[float, float, str]] = []
    at = 0
    for voice in order:
        source = voice_audio(voice)
        length = int(rng.uniform(*turn_s) * RATE)
        start = cursor[voice]
        if start + length > len(source):
            start = 0
        piece = trim_silence(source[start : start + length])
        cursor[voice] = start + length
        gap = int(rng.uniform(*gap_s) * RATE)
        pieces.append(np.zeros(gap, np.float32))
        at += gap
        pieces.append(piece)
        turns.append((at / RATE, (at + len(piece)) / RATE, voice))
        at += len(piece)
    pieces.append(np.zeros(RATE // 2, np.float32))
    return Conversation(np.concatenate(pieces).astype(np.float32), turns)
