"""Placing chunk transcripts on the job's timeline and merging them: no word lost or
repeated at a seam, times exact, text and ids rebuilt."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from core.transcript import Segment, Transcript, Word
from worker.chunk_merge import SEAM_PAD_S, merge, place, window_of
from worker.chunk_plan import Span


def seg(i: int, words: list[Word], text: str | None = None) -> Segment:
    return Segment(
        i,
        words[0].start,
        words[-1].end,
        text if text is not None else " ".join(w.word for w in words),
        tokens=[1, 2, 3],
        words=words,
    )


def tr(segments: list[Segment], language: str = "en") -> Transcript:
    return Transcript(
        " ".join(s.text for s in segments), language, 30.0, segments, language_probability=0.9
    )


def test_place_shifts_times_by_where_the_window_began() -> None:
    local = tr([seg(0, [Word("hello", 1.0, 1.5), Word("world", 1.6, 2.0)])])
    placed = place(local, Span(60.0, 90.0), 59.5, 200.0)
    [s] = placed.segments
    assert (s.start, s.end) == (60.5, 61.5)
    assert [(w.word, w.start, w.end) for w in s.words] == [
        ("hello", 60.5, 61.0),
        ("world", 61.1, 61.5),
    ]
    assert s.tokens == [1, 2, 3] and s.text == "hello world"
    assert placed.duration == 30.0


def test_place_keeps_only_the_words_whose_midpoint_is_in_the_span() -> None:
    # Window 29.5-60.5 for the span 30-60: the pads belong to the neighbours.
    local = tr(
        [
            seg(0, [Word("prev", 0.0, 0.4), Word("mine", 0.6, 1.0)]),
            seg(1, [Word("also", 20.0, 20.5), Word("next", 30.6, 30.9)]),
        ]
    )
    placed = place(local, Span(30.0, 60.0), 29.5, 200.0)
    assert [w.word for w in placed.words] == ["mine", "also"]
    first, second = placed.segments
    assert (first.text, first.start, first.tokens) == ("mine", 30.1, [])
    assert (second.text, second.end) == ("also", 50.0)
    assert placed.text == "mine also"


def test_place_without_word_timestamps_goes_by_segment_midpoints() -> None:
    segments = [
        Segment(0, 0.0, 0.4, "tail of the previous chunk"),
        Segment(1, 0.5, 10.0, "my words"),
        Segment(2, 30.2, 31.0, "next chunk's words"),
    ]
    placed = place(tr(segments), Span(30.0, 60.0), 29.5, 200.0)
    assert [s.text for s in placed.segments] == ["my words"]
    assert (placed.segments[0].start, placed.segments[0].end) == (30.0, 39.5)


def test_the_first_and_last_chunks_own_to_the_ends_of_the_file() -> None:
    early = tr([seg(0, [Word("a", 0.0, 0.1)])])
    assert [w.word for w in place(early, Span(0.0, 30.0), 0.0, 90.0).words] == ["a"]
    late = tr([seg(0, [Word("z", 30.4, 30.5)])])  # past the probed end: still the last's
    assert [w.word for w in place(late, Span(60.0, 90.0), 59.5, 90.0).words] == ["z"]


def test_merge_renumbers_and_joins_in_order() -> None:
    a = tr([seg(5, [Word("one", 1, 2)]), seg(6, [Word("two", 3, 4)])])
    b = tr([seg(0, [Word("three", 31, 32)])])
    merged = merge([a, b], "en", 0.87, 60.0)
    assert [s.id for s in merged.segments] == [0, 1, 2]
    assert merged.text == "one two three"
    assert (merged.language, merged.language_probability, merged.duration) == ("en", 0.87, 60.0)


def test_merge_drops_a_repeat_that_overlaps_the_previous_chunk_in_time() -> None:
    a = tr([seg(0, [Word("ask", 28.0, 28.5), Word("not", 28.6, 29.95)])])
    b = tr([seg(0, [Word("not", 29.9, 30.2), Word("what", 30.3, 30.6)])])
    merged = merge([a, b], "en", 1.0, 60.0)
    assert [w.word for w in merged.words] == ["ask", "not", "what"]
    assert merged.text == "ask not what"
    assert merged.segments[1].start == 30.3


def test_merge_keeps_a_repeat_that_is_really_spoken_again() -> None:
    a = tr([seg(0, [Word("words,", 28.0, 28.5), Word("words,", 28.7, 29.2)])])
    b = tr([seg(0, [Word("words.", 30.4, 30.9)])])
    merged = merge([a, b], "en", 1.0, 60.0)
    assert [w.word for w in merged.words] == ["words,", "words,", "words."]


def test_merge_without_words_drops_repeated_text_that_overlaps_in_time() -> None:
    a = tr([Segment(0, 20.0, 30.2, "and so my fellow Americans")])
    b = tr([Segment(0, 29.8, 33.0, "fellow Americans, ask not"), Segment(1, 33, 35, "what")])
    merged = merge([a, b], "en", 1.0, 60.0)
    assert merged.text == "and so my fellow Americans ask not what"
    c = tr([Segment(0, 30.5, 33.0, "Americans again")])
    assert merge([a, c], "en", 1.0, 60.0).text == "and so my fellow Americans Americans again"


def test_languages_without_spaces_are_joined_without_them() -> None:
    a = tr([Segment(0, 0, 2, "你好")], language="zh")
    b = tr([Segment(0, 31, 33, "世界")], language="zh")
    assert merge([a, b], "zh", 1.0, 60.0).text == "你好世界"


def _truth(rng: np.random.Generator, duration: float) -> list[Word]:
    words: list[Word] = []
    t = 0.2
    while True:
        length = float(rng.uniform(0.15, 0.9))
        if t + length > duration - 0.2:
            return words
        words.append(Word(f"w{len(words)}", round(t, 3), round(t + length, 3), 1.0))
        t += length + float(rng.choice([0.02, 0.08, 0.3, 1.2]))


def _heard(truth: list[Word], lo: float, hi: float, rng: np.random.Generator) -> Transcript:
    """A recogniser on the window [lo, hi): whole words with their times (from lo), and a
    word cut by the window's edge either missed or heard with its clipped times."""
    heard: list[Word] = []
    for w in truth:
        if w.end <= lo or w.start >= hi:
            continue
        if w.start < lo or w.end > hi:
            if rng.random() < 0.5:
                continue
            w = Word(w.word, max(w.start, lo), min(w.end, hi), 1.0)
        heard.append(Word(w.word, round(w.start - lo, 3), round(w.end - lo, 3), 1.0))
    segments = [
        seg(i, heard[k : k + 4]) for i, k in enumerate(range(0, len(heard), 4)) if heard[k : k + 4]
    ]
    return tr(segments)


@pytest.mark.parametrize("seed", range(25))
def test_any_cuts_even_through_words_lose_and_repeat_nothing(seed: int) -> None:
    """Cuts anywhere, in pauses or through words: each word comes out once, on time."""
    rng = np.random.default_rng(seed)
    duration = 120.0
    truth = _truth(rng, duration)
    cuts = sorted(float(c) for c in rng.uniform(5, duration - 5, size=int(rng.integers(1, 6))))
    bounds = [0.0, *cuts, duration]
    spans = [Span(a, b) for a, b in pairwise(bounds)]
    parts = []
    for span in spans:
        lo, hi = window_of(span, duration)
        parts.append(place(_heard(truth, lo, hi, rng), span, lo, duration))
    merged = merge(parts, "en", 1.0, duration)
    assert [(w.word, w.start, w.end) for w in merged.words] == [
        (w.word, w.start, w.end) for w in truth
    ]
    assert merged.text == " ".join(w.word for w in truth)
    assert SEAM_PAD_S > 0.9 / 2  # a cut through a word leaves it whole in both windows
