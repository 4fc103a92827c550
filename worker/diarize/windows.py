"""Where the speech is, and the 1.6 s windows the encoder embeds.

Speech spans come from Silero VAD (shipped inside faster-whisper) or from the caller (word times,
a chunk's own VAD). Each span gets windows `step` apart; every window speaks for a `region` of
the span (from half-way to the previous window's centre to half-way to the next), so regions
tile the speech without overlapping and a label per window becomes a speaker turn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps

from worker.diarize.embedder import WINDOW_S
from worker.diarize.mel import SAMPLE_RATE
from worker.diarize.types import FloatArray, Span

STEP_S = 0.8
"""Window spacing: half a window, so turn boundaries land within 0.4 s."""
MIN_SPEECH_S = 0.3
"""Spans shorter than this get no window (a cough, a click); their words take the nearest turn."""

VAD = VadOptions(min_silence_duration_ms=250, speech_pad_ms=60, min_speech_duration_ms=200)
"""Silero settings that split at the short pauses between speakers (faster-whisper's
transcription default waits for 2 s of silence, which would put two voices in one span)."""


def speech_spans(audio: FloatArray, options: VadOptions = VAD) -> list[Span]:
    """Speech in 16 kHz audio, in seconds, by Silero VAD."""
    stamps = get_speech_timestamps(np.asarray(audio, dtype=np.float32), options)
    return [Span(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]


def spans_from_words(words: Sequence[tuple[float, float]], join_gap_s: float = 0.3) -> list[Span]:
    """Speech spans from word times: words closer than `join_gap_s` form one span."""
    spans: list[Span] = []
    for start, end in sorted(words):
        if spans and start - spans[-1].end <= join_gap_s:
            spans[-1] = Span(spans[-1].start, max(spans[-1].end, end))
        else:
            spans.append(Span(start, end))
    return spans


@dataclass(frozen=True)
class Windows:
    """Encoder windows (each WINDOW_S long) and the region of speech each one speaks for."""

    windows: list[Span]
    regions: list[Span]


def plan_windows(speech: Sequence[Span], duration: float, step: float = STEP_S) -> Windows:
    """Windows over every speech span longer than MIN_SPEECH_S, within [0, duration]."""
    windows: list[Span] = []
    regions: list[Span] = []
    latest = max(0.0, duration - WINDOW_S)
    for span in sorted(speech, key=lambda s: s.start):
        start, end = max(0.0, span.start), min(duration, span.end)
        if end - start < MIN_SPEECH_S:
            continue
        if end - start <= WINDOW_S:
            first = min(max(0.0, (start + end - WINDOW_S) / 2), latest)
            windows.append(Span(first, first + WINDOW_S))
            regions.append(Span(start, end))
            continue
        count = math.ceil((end - start - WINDOW_S) / step) + 1
        starts = np.linspace(start, end - WINDOW_S, count)
        centres = starts + WINDOW_S / 2
        bounds = [start, *((centres[:-1] + centres[1:]) / 2).tolist(), end]
        for n, first in enumerate(starts.tolist()):
            windows.append(Span(first, first + WINDOW_S))
            regions.append(Span(bounds[n], bounds[n + 1]))
    return Windows(windows, regions)
