"""Chunk transcripts onto the job's timeline, and merged into one transcript.

Each chunk is decoded with `SEAM_PAD_S` of audio beyond both of its ends, so a word at a
seam is heard whole by both neighbours. `place` shifts a chunk's times by where its audio
began and keeps only what the chunk owns: the words (or, without word timestamps, the
segments) whose midpoint lies in its span. `merge` joins the chunks in order; as a last
guard it drops words at the head of a chunk that repeat the previous chunk's tail while
overlapping it in time (a repeat that is really spoken comes after, not on top of it).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace

from core.languages import NO_SPACE_LANGUAGES
from core.transcript import Segment, Transcript, Word
from worker.chunk_plan import Span

SEAM_PAD_S = 0.5
"""Audio decoded beyond each end of a chunk."""
SEAM_WORDS = 8
"""The longest repeat looked for at a seam."""


def window_of(span: Span, duration: float) -> tuple[float, float]:
    """The audio a chunk is decoded from: its span and the pads, inside the file."""
    return max(0.0, span.start_s - SEAM_PAD_S), min(duration, span.end_s + SEAM_PAD_S)


def joiner(language: str) -> str:
    return "" if language in NO_SPACE_LANGUAGES else " "


def _t(value: float) -> float:
    return round(value, 3)


def _mid(start: float, end: float) -> float:
    return (start + end) / 2


def _shift_words(words: list[Word], offset: float) -> list[Word]:
    return [replace(w, start=_t(w.start + offset), end=_t(w.end + offset)) for w in words]


def place(local: Transcript, span: Span, window_start: float, duration: float) -> Transcript:
    """`local` (times from the start of the decoded window) on the job's timeline, keeping
    only what lies in `span`: the first chunk owns from 0, the last up to `duration`."""
    lo = 0.0 if span.start_s <= 0 else span.start_s
    hi = duration if span.end_s >= duration else span.end_s

    def owned(start: float, end: float) -> bool:
        return lo <= _mid(start, end) < hi or (hi >= duration and _mid(start, end) >= hi)

    glue = joiner(local.language)
    segments: list[Segment] = []
    for seg in local.segments:
        start, end = _t(seg.start + window_start), _t(seg.end + window_start)
        if not seg.words:
            if owned(start, end):
                segments.append(replace(seg, start=start, end=end))
            continue
        words = [w for w in _shift_words(seg.words, window_start) if owned(w.start, w.end)]
        if not words:
            continue
        if len(words) == len(seg.words):
            segments.append(replace(seg, start=start, end=end, words=words))
        else:  # cut at a seam: the text is what is left of its words
            text = glue.join(w.word for w in words)
            segments.append(
                replace(
                    seg, start=words[0].start, end=words[-1].end, text=text, words=words, tokens=[]
                )
            )
    return replace(
        local,
        segments=segments,
        text=glue.join(s.text for s in segments if s.text),
        duration=_t(span.duration),
    )


def _norm(word: str) -> str:
    text = unicodedata.normalize("NFKC", word).lower()
    return re.sub(r"[^\w']", "", text)


def _repeat_at_seam(tail: list[Word], head: list[Word]) -> int:
    """How many words at the head repeat the tail while overlapping it in time."""
    for k in range(min(SEAM_WORDS, len(tail), len(head)), 0, -1):
        same = [_norm(w.word) for w in tail[-k:]] == [_norm(w.word) for w in head[:k]]
        if same and head[0].start < tail[-1].end:
            return k
    return 0


def _drop_head_words(segments: list[Segment], count: int, glue: str) -> list[Segment]:
    out: list[Segment] = []
    for seg in segments:
        if count <= 0 or not seg.words:
            out.append(seg)
            continue
        keep = seg.words[count:]
        count -= len(seg.words) - len(keep)
        if keep:
            text = glue.join(w.word for w in keep)
            out.append(replace(seg, start=keep[0].start, text=text, words=keep, tokens=[]))
    return out


def _drop_head_text(segments: list[Segment], previous: Segment) -> list[Segment]:
    """Without word timestamps: the first segment loses the words that repeat the previous
    segment's last words, when the two segments overlap in time."""
    if not segments or segments[0].start >= previous.end:
        return segments
    first = segments[0]
    tail, head = previous.text.split(), first.text.split()
    for k in range(min(SEAM_WORDS, len(tail), len(head)), 0, -1):
        if [_norm(w) for w in tail[-k:]] == [_norm(w) for w in head[:k]]:
            rest = " ".join(head[k:])
            if not rest:
                return segments[1:]
            return [replace(first, text=rest, tokens=[]), *segments[1:]]
    return segments


def merge(
    parts: list[Transcript], language: str, language_probability: float, duration: float
) -> Transcript:
    """The chunks' placed transcripts, in order, as one transcript of the whole audio."""
    glue = joiner(language)
    segments: list[Segment] = []
    for part in parts:
        incoming = list(part.segments)
        if segments and incoming:
            tail = [w for s in segments[-2:] for w in s.words]
            head = [w for s in incoming[:2] for w in s.words]
            if tail and head:
                incoming = _drop_head_words(incoming, _repeat_at_seam(tail, head), glue)
            elif not tail and not head:
                incoming = _drop_head_text(incoming, segments[-1])
        segments.extend(incoming)
    numbered = [replace(s, id=i) for i, s in enumerate(segments)]
    return Transcript(
        text=glue.join(s.text for s in numbered if s.text).strip(),
        language=language,
        duration=_t(duration),
        segments=numbered,
        language_probability=round(language_probability, 4),
    )
