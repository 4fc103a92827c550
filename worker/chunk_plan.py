"""Where to cut long audio: in silences near every target length, found by faster-whisper's
Silero VAD, reading the audio once as a stream so that memory stays bounded.

The audio is cut into `n = round(duration / target)` chunks of about equal length `L`.
After each cut `c`, the search window is `[c + L - w, c + L + w]` (`w` is a tenth of `L`,
between 2 and 15 s). Only that window's samples are kept; when the stream has passed its
end, the VAD finds the speech in it and the cut goes in the middle of the longest silence
(any silence of a second or more counts as long enough; nearer the window's centre wins).
A window with no silence at all (music, noise) is cut at its quietest 100 ms, and counted
as `forced`. A tail shorter than a quarter of `L` joins the chunk before it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from core.audio import SAMPLE_RATE, Audio

MIN_SILENCE_S = 0.2
"""A pause shorter than this is not a place to cut."""
LONG_ENOUGH_S = 1.0
"""Silences at least this long are equally good; then the one nearest the target wins."""
HEAD_S = 120.0
"""The plan keeps the first this many seconds, to detect the language from."""

SpeechFinder = Callable[[Audio], list[tuple[int, int]]]
"""Speech in a window of 16 kHz samples, as (start, end) sample offsets."""


@dataclass(frozen=True)
class Span:
    start_s: float
    end_s: float

    @property
    def duration(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Plan:
    spans: list[Span]
    duration: float
    """Seconds of audio, as decoded (not as the header said)."""
    forced: int
    """Cuts that found no silence in their window."""
    head: Audio
    """The first `HEAD_S` seconds of audio."""


class PlanStopped(Exception):
    """`should_stop` said to stop (the job was cancelled or taken over)."""


def silero_speech(window: Audio) -> list[tuple[int, int]]:
    """faster-whisper's Silero VAD, tuned to report pauses between phrases."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(min_silence_duration_ms=100, speech_pad_ms=0, min_speech_duration_ms=0)
    return [(int(s["start"]), int(s["end"])) for s in get_speech_timestamps(window, options)]


def chunk_length(duration_s: float, target_s: float) -> float:
    """Equal chunks about `target_s` long that add up to the duration."""
    count = max(1, round(duration_s / target_s))
    return duration_s / count


def search_half_width(length_s: float) -> float:
    return min(max(0.1 * length_s, 2.0), 15.0, length_s / 4)


def _silences(length: int, speech: list[tuple[int, int]]) -> list[tuple[int, int]]:
    gaps: list[tuple[int, int]] = []
    position = 0
    for start, end in sorted(speech):
        if start > position:
            gaps.append((position, start))
        position = max(position, end)
    if position < length:
        gaps.append((position, length))
    return gaps


def _quietest(window: Audio) -> int:
    """The middle of the quietest 100 ms (10 ms frames, moving average): most often a gap
    between words even where the VAD hears no pause."""
    frame = SAMPLE_RATE // 100
    span = 10
    usable = len(window) // frame * frame
    if usable < frame * span:
        return len(window) // 2
    energy = np.square(window[:usable].reshape(-1, frame)).mean(axis=1)
    smoothed = np.convolve(energy, np.ones(span) / span, mode="valid")
    return int(np.argmin(smoothed)) * frame + frame * span // 2


def choose_cut(window: Audio, speech: list[tuple[int, int]]) -> tuple[int, bool]:
    """Where in the window to cut (a sample offset), and whether that is in a silence."""
    centre = len(window) / 2
    shortest = int(MIN_SILENCE_S * SAMPLE_RATE)
    enough = int(LONG_ENOUGH_S * SAMPLE_RATE)
    gaps = [(a, b) for a, b in _silences(len(window), speech) if b - a >= shortest]
    if not gaps:
        return _quietest(window), False
    start, end = max(
        gaps, key=lambda g: (min(g[1] - g[0], enough), -abs((g[0] + g[1]) / 2 - centre))
    )
    return (start + end) // 2, True


def plan_chunks(
    blocks: Iterable[Audio],
    duration_hint: float,
    target_s: float,
    find_speech: SpeechFinder = silero_speech,
    should_stop: Callable[[], bool] | None = None,
) -> Plan:
    """Cut points for the audio in `blocks` (16 kHz, read once); `duration_hint` (the probed
    length) sets the chunk length. Holds at most one search window of samples (plus `head`)."""
    length = round(chunk_length(max(duration_hint, target_s), target_s) * SAMPLE_RATE)
    half = round(search_half_width(length / SAMPLE_RATE) * SAMPLE_RATE)
    head_samples = round(HEAD_S * SAMPLE_RATE)
    head: list[Audio] = []
    kept: deque[Audio] = deque()
    kept_start = 0  # sample number of kept[0][0]
    total = 0
    cuts: list[int] = []
    forced = 0
    lo, hi = length - half, length + half
    for block in blocks:
        if should_stop is not None and should_stop():
            raise PlanStopped
        if total < head_samples:
            head.append(block[: head_samples - total].copy())
        kept.append(block)
        total += len(block)
        while total >= hi:
            joined = np.concatenate(kept)
            window = joined[lo - kept_start : hi - kept_start]
            offset, in_silence = choose_cut(window, find_speech(window))
            forced += not in_silence
            cut = lo + offset
            cuts.append(cut)
            lo, hi = cut + length - half, cut + length + half
            drop = min(max(lo - kept_start, 0), len(joined))
            kept = deque([joined[drop:]])
            kept_start += drop
        while kept and kept_start + len(kept[0]) <= lo:
            kept_start += len(kept.popleft())
    if total == 0:
        return Plan([], 0.0, 0, np.zeros(0, dtype=np.float32))
    bounds = [0, *cuts, total]
    if len(bounds) > 2 and total - cuts[-1] < length / 4:
        bounds.pop(-2)  # a short tail joins the chunk before it
    spans = [
        Span(round(a / SAMPLE_RATE, 3), round(b / SAMPLE_RATE, 3)) for a, b in pairwise(bounds)
    ]
    head_audio = np.concatenate(head) if head else np.zeros(0, dtype=np.float32)
    return Plan(spans, round(total / SAMPLE_RATE, 3), forced, head_audio)
