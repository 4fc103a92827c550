"""Chunk planning: cuts in silences near each target, contiguous spans, bounded memory."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.audio import SAMPLE_RATE, Audio, iter_decoded
from tests.longaudio import bursts, energy_speech, write_bursts_wav
from worker.chunk_merge import window_of
from worker.chunk_plan import (
    PlanStopped,
    choose_cut,
    chunk_length,
    plan_chunks,
    search_half_width,
    silero_speech,
)

SR = SAMPLE_RATE


def test_chunk_length_divides_the_duration_evenly() -> None:
    assert chunk_length(620, 300) == 310
    assert chunk_length(10800, 300) == 300
    assert chunk_length(601, 300) == 300.5
    assert chunk_length(200, 300) == 200


def test_search_window_is_a_tenth_within_bounds() -> None:
    assert search_half_width(300) == 15.0
    assert search_half_width(60) == 6.0
    assert search_half_width(10) == 2.0
    assert search_half_width(4) == 1.0  # never more than a quarter of the chunk


def test_cut_goes_in_the_middle_of_the_longest_silence() -> None:
    window = np.zeros(10 * SR, dtype=np.float32)
    speech = [(0, 2 * SR), (int(2.3 * SR), 6 * SR), (int(6.8 * SR), 10 * SR)]
    cut, in_silence = choose_cut(window, speech)
    assert in_silence and cut == int(6.4 * SR)


def test_long_silences_tie_and_the_one_nearer_the_centre_wins() -> None:
    window = np.zeros(10 * SR, dtype=np.float32)
    speech = [(int(1.5 * SR), 4 * SR), (int(5.5 * SR), int(8.5 * SR))]
    # silences: 0-1.5 (1.5 s), 4-5.5 (1.5 s, centred), 8.5-10 (1.5 s)
    cut, in_silence = choose_cut(window, speech)
    assert in_silence and cut == int(4.75 * SR)


def test_pauses_too_short_are_not_cuts_and_then_the_quietest_point_is() -> None:
    rng = np.random.default_rng(1)
    window = rng.normal(0, 0.3, 4 * SR).astype(np.float32)
    window[int(2.9 * SR) : int(3.0 * SR)] *= 0.01  # a 100 ms dip, not a pause to the VAD
    speech = [(0, int(2.95 * SR)), (int(3.05 * SR), 4 * SR)]
    cut, in_silence = choose_cut(window, speech)
    assert not in_silence
    assert abs(cut - int(2.95 * SR)) < 0.03 * SR


def _block_stream(audio: Audio, block: int = 4096) -> Iterator[Audio]:
    for i in range(0, len(audio), block):
        yield audio[i : i + block]


def test_plan_covers_the_audio_and_never_cuts_a_word(tmp_path: Path) -> None:
    words = bursts(200.0)
    path = write_bursts_wav(tmp_path / "b.wav", 200.0, words)
    plan = plan_chunks(iter_decoded(path), 200.0, 30, find_speech=energy_speech)
    assert plan.duration == 200.0 and plan.forced == 0
    assert plan.spans[0].start_s == 0 and plan.spans[-1].end_s == 200.0
    assert all(a.end_s == b.start_s for a, b in zip(plan.spans, plan.spans[1:], strict=False))
    length = chunk_length(200, 30)
    half = search_half_width(length)
    assert len(plan.spans) == round(200 / 30)
    for span in plan.spans[:-1]:
        assert length - half - 0.01 <= span.duration <= length + half + 0.01
    for span in plan.spans[1:]:
        cut = span.start_s
        assert not any(w.start - 0.05 < cut < w.end + 0.05 for w in words), cut
    assert len(plan.head) == 120 * SR


def test_the_real_vad_cuts_speech_in_its_pauses(corpus: Path, tmp_path: Path) -> None:
    from tests.support import long_audio

    path, _ = long_audio(
        tmp_path / "speech.wav",
        ["en_librivox_shakespeare_sonnet001.mp3", "en_jfk_inaugural.flac"],
        repeat=2,
    )
    audio = np.concatenate(list(iter_decoded(path)))
    plan = plan_chunks(_block_stream(audio), len(audio) / SR, 30)
    assert len(plan.spans) == round(len(audio) / SR / 30)
    for span in plan.spans[1:]:
        cut = round(span.start_s * SR)
        around = audio[cut - SR // 10 : cut + SR // 10]
        assert silero_speech(np.concatenate([np.zeros(SR, np.float32), around])) == [], span


def test_a_short_tail_joins_the_chunk_before_it() -> None:
    audio = np.zeros(95 * SR, dtype=np.float32)
    # 95 s heard as 90 s: chunks of 30 s; the 5 s left after the third cut is a tail.
    plan = plan_chunks(_block_stream(audio), 90.0, 30, find_speech=energy_speech)
    assert plan.duration == 95.0
    assert [(s.start_s, s.end_s) for s in plan.spans] == [(0, 30), (30, 60), (60, 95)]


def test_longer_than_the_header_said_goes_on_cutting() -> None:
    audio = np.zeros(200 * SR, dtype=np.float32)
    plan = plan_chunks(_block_stream(audio), 60.0, 30, find_speech=energy_speech)
    assert plan.spans[-1].end_s == 200.0
    assert max(s.duration for s in plan.spans) < 40


def test_planning_stops_when_asked() -> None:
    audio = np.zeros(100 * SR, dtype=np.float32)
    calls = iter(range(1000))
    with pytest.raises(PlanStopped):
        plan_chunks(
            _block_stream(audio),
            100,
            30,
            find_speech=energy_speech,
            should_stop=lambda: next(calls) > 50,
        )


def test_planning_two_hours_holds_one_window_of_samples() -> None:
    """The stream is read once; what is held is a search window and the head, not the file
    (two hours of float32 would be 460 MB)."""
    hours = 2
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 0.1, SR).astype(np.float32)

    def stream() -> Iterator[Audio]:
        for second in range(hours * 3600):
            yield noise if second % 4 else np.zeros(SR, dtype=np.float32)

    tracemalloc.start()
    try:
        plan = plan_chunks(stream(), hours * 3600.0, 300, find_speech=energy_speech)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(plan.spans) == hours * 12
    assert plan.duration == hours * 3600
    assert peak < 25 * 1024**2, f"peak {peak / 1024**2:.1f} MB"


def test_window_of_pads_inside_the_file() -> None:
    from worker.chunk_plan import Span

    assert window_of(Span(0.0, 30.0), 100.0) == (0.0, 30.5)
    assert window_of(Span(30.0, 60.0), 100.0) == (29.5, 60.5)
    assert window_of(Span(60.0, 100.0), 100.0) == (59.5, 100.0)
