"""Put speakers on words, and words into speaker segments.

A word takes the speaker whose turns overlap it most; a word no turn touches takes the nearest
turn's speaker. A word is never split: however short a turn inside it is, the word goes whole
to one speaker. Segments are runs of consecutive words of the same speaker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from worker.diarize.types import Turn

FALLBACK_SPEAKER = "A"
"""The speaker of every word when diarization found no turn at all (one voice, or none)."""


class TimedWord(Protocol):
    """What a word needs to be assigned (core.transcript.Word qualifies)."""

    @property
    def word(self) -> str: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...


@dataclass(frozen=True)
class SpeakerSegment:
    """Consecutive words of one speaker: the `speakers` segments and diarized_json's segments."""

    start: float
    end: float
    text: str
    speaker: str
    first_word: int
    last_word: int  # inclusive indices into the word list


def speaker_of(start: float, end: float, turns: Sequence[Turn]) -> str:
    """The speaker who talks most during [start, end] (nearest turn when nobody does)."""
    if not turns:
        return FALLBACK_SPEAKER
    overlap: dict[str, float] = {}
    for t in turns:
        shared = min(end, t.end) - max(start, t.start)
        if shared > 0:
            overlap[t.speaker] = overlap.get(t.speaker, 0.0) + shared
    if overlap:
        return max(overlap.items(), key=lambda kv: kv[1])[0]
    mid = (start + end) / 2
    nearest = min(turns, key=lambda t: max(t.start - mid, mid - t.end, 0.0))
    return nearest.speaker


def assign_words(words: Sequence[TimedWord], turns: Sequence[Turn]) -> list[str]:
    """One speaker per word, in word order."""
    ordered = sorted(turns, key=lambda t: t.start)
    return [speaker_of(w.start, w.end, ordered) for w in words]


def speaker_segments(words: Sequence[TimedWord], speakers: Sequence[str]) -> list[SpeakerSegment]:
    """Runs of consecutive same-speaker words, with their text joined as Whisper spaced it."""
    if len(words) != len(speakers):
        raise ValueError("one speaker per word")
    segments: list[SpeakerSegment] = []
    first = 0
    for i in range(1, len(words) + 1):
        if i == len(words) or speakers[i] != speakers[first]:
            run = words[first:i]
            text = "".join(w.word for w in run).strip()
            segments.append(
                SpeakerSegment(run[0].start, run[-1].end, text, speakers[first], first, i - 1)
            )
            first = i
    return segments
