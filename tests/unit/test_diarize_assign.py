"""Speakers onto words: whole words only, by overlap, and runs of one speaker as segments."""

from __future__ import annotations

import pytest

from core.transcript import Word
from worker.diarize.assign import (
    FALLBACK_SPEAKER,
    assign_words,
    speaker_of,
    speaker_segments,
)
from worker.diarize.types import Turn


def test_a_turn_shorter_than_a_word_never_splits_it() -> None:
    turns = [Turn(0.0, 1.0, "A"), Turn(1.0, 1.1, "B"), Turn(1.1, 3.0, "A")]
    words = [Word(" long", 0.8, 1.4), Word(" word", 1.5, 2.0)]
    assert assign_words(words, turns) == ["A", "A"]
    segments = speaker_segments(words, assign_words(words, turns))
    assert [(s.speaker, s.text) for s in segments] == [("A", "long word")]


def test_a_word_goes_to_the_speaker_who_covers_most_of_it() -> None:
    turns = [Turn(0.0, 1.2, "A"), Turn(1.2, 3.0, "B")]
    assert speaker_of(1.0, 1.6, turns) == "B"  # 0.2 s of A, 0.4 s of B
    assert speaker_of(0.9, 1.3, turns) == "A"


def test_a_word_outside_every_turn_takes_the_nearest() -> None:
    turns = [Turn(0.0, 1.0, "A"), Turn(5.0, 6.0, "B")]
    assert speaker_of(1.5, 1.8, turns) == "A"
    assert speaker_of(4.0, 4.5, turns) == "B"


def test_no_turns_means_one_speaker() -> None:
    words = [Word(" hi", 0.0, 0.3)]
    assert assign_words(words, []) == [FALLBACK_SPEAKER]


def test_segments_are_runs_of_one_speaker() -> None:
    words = [
        Word(" Hello", 0.0, 0.4),
        Word(" there.", 0.5, 0.9),
        Word(" Hi", 1.5, 1.7),
        Word(" Bob.", 1.8, 2.1),
        Word(" Bye.", 3.0, 3.3),
    ]
    turns = [Turn(0.0, 1.0, "A"), Turn(1.4, 2.2, "B"), Turn(2.9, 3.4, "A")]
    segments = speaker_segments(words, assign_words(words, turns))
    assert [(s.speaker, s.text, s.start, s.end) for s in segments] == [
        ("A", "Hello there.", 0.0, 0.9),
        ("B", "Hi Bob.", 1.5, 2.1),
        ("A", "Bye.", 3.0, 3.3),
    ]
    assert [(s.first_word, s.last_word) for s in segments] == [(0, 1), (2, 3), (4, 4)]


def test_segments_need_one_speaker_per_word() -> None:
    with pytest.raises(ValueError, match="one speaker per word"):
        speaker_segments([Word(" a", 0, 1)], [])
