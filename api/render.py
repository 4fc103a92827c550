"""Transcript → response bodies: the shared JSON, and OpenAI's text / srt / vtt / verbose_json."""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from core.languages import NO_SPACE_LANGUAGES, language_name
from core.settings import Settings
from core.transcript import Segment, Transcript, Word

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json", "diarized_json")
DIARIZED = "diarized_json"
SUBTITLE_FORMATS = ("srt", "vtt")
GRANULARITIES = ("word", "segment")
TRANSLATED_LANGUAGE = "english"
"""What OpenAI's verbose_json reports as `language` for a translation."""


def usage(t: Transcript) -> dict[str, Any]:
    """OpenAI's `usage` of a transcription billed by duration (`UsageDuration`)."""
    return {"type": "duration", "seconds": math.ceil(t.duration)}


def transcript_json(
    t: Transcript, request_id: str, *, words: bool, with_usage: bool = False
) -> dict[str, Any]:
    """The body both families return for `json` (Cartesia's batch STT shape), with OpenAI's
    `usage` for a transcription (a translation has none on OpenAI)."""
    body = t.response(request_id, words=words)
    if with_usage:
        body["usage"] = usage(t)
    return body


def whisper_text(text: str, language: str) -> str:
    """A segment's text as Whisper gives it: with its leading space, in languages written
    with spaces (stored segments are stripped; chunked ones are rebuilt from words)."""
    if not text or text[0].isspace() or language in NO_SPACE_LANGUAGES:
        return text
    return f" {text}"


def _segment_json(s: Segment, language: str) -> dict[str, Any]:
    return {
        "id": s.id,
        "seek": int(s.start * 100),
        "start": s.start,
        "end": s.end,
        "text": whisper_text(s.text, language),
        "tokens": s.tokens,
        "temperature": s.temperature,
        "avg_logprob": s.avg_logprob,
        "compression_ratio": s.compression_ratio,
        "no_speech_prob": s.no_speech_prob,
    }


def verbose_json(
    t: Transcript, *, words: bool, segments: bool, task: str = "transcribe"
) -> dict[str, Any]:
    """OpenAI's verbose_json; segments are listed unless only words were asked for.

    `language` is Whisper's English name of the language, as OpenAI reports it ("english");
    for a translation it is the output language, always "english"."""
    translating = task == "translate"
    body: dict[str, Any] = {
        "task": task,
        "language": TRANSLATED_LANGUAGE if translating else language_name(t.language),
        "duration": t.duration,
        "text": t.text,
    }
    if segments:
        body["segments"] = [_segment_json(s, t.language) for s in t.segments]
    if words:
        body["words"] = [{"word": w.word, "start": w.start, "end": w.end} for w in t.words]
    if not translating:
        body["usage"] = usage(t)
    return body


def diarized_segments(t: Transcript) -> list[dict[str, Any]]:
    """OpenAI's diarized segments (also the stream's `transcript.text.segment` events)."""
    return [
        {
            "type": "transcript.text.segment",
            "id": f"seg_{i}",
            "start": sp.start,
            "end": sp.end,
            "text": sp.text,
            "speaker": sp.speaker,
        }
        for i, sp in enumerate(t.speakers or [])
    ]


def diarized_json(t: Transcript) -> dict[str, Any]:
    """OpenAI's `diarized_json` (`openai.types.audio.TranscriptionDiarized`)."""
    return {
        "task": "transcribe",
        "duration": t.duration,
        "text": t.text,
        "segments": diarized_segments(t),
        "usage": {"type": "duration", "seconds": math.ceil(t.duration)},
    }


def plain_text(t: Transcript) -> str:
    """`text`: the transcript, or for a diarized one a `A: …` line per speaker turn."""
    if t.speakers is None:
        return t.text + "\n"
    return "".join(f"{sp.speaker}: {sp.text}\n" for sp in t.speakers)


# --- subtitles -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SubtitleLayout:
    """How long a subtitle line and a cue may be (`STT_SUBTITLE_*`)."""

    max_line_chars: int = 42
    max_lines: int = 2
    max_cue_s: float = 6.0

    @classmethod
    def of(cls, settings: Settings) -> SubtitleLayout:
        return cls(
            settings.subtitles.max_line_chars,
            settings.subtitles.max_lines,
            settings.subtitles.max_cue_s,
        )


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]
    speaker: str | None = None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class _Piece:
    """A word (or a token of text) with its place in the segment's text and its times."""

    begin: int
    end_char: int
    start: float
    end: float


_CLAUSE_END = re.compile(r"[.!?;:,…。！？；：，、]['\")\]»”’]*$")
_UNSPACED = re.compile(
    r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef]"
)
"""Scripts written without spaces between words (Thai, Lao, Myanmar, Khmer, CJK)."""


def _cuttable(token: str) -> bool:
    """A token that may be cut between any two characters: it is in a script written
    without spaces. A long word in other scripts is never cut."""
    return bool(_UNSPACED.search(token))


def wrap(text: str, width: int) -> list[str]:
    """Lines of at most `width` characters where possible, balanced in length; text written
    without spaces (Chinese, Japanese) is cut between characters."""
    text = " ".join(text.split())
    if len(text) <= width:
        return [text] if text else []
    if " " not in text and _cuttable(text):
        n = math.ceil(len(text) / width)
        size = math.ceil(len(text) / n)
        return [text[i : i + size] for i in range(0, len(text), size)]
    natural = textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)
    for w in range(math.ceil(len(text) / len(natural)), width):
        lines = textwrap.wrap(text, w, break_long_words=False, break_on_hyphens=False)
        if len(lines) <= len(natural):
            return lines
    return natural


def _pieces(s: Segment, text: str, width: int) -> list[_Piece]:
    """The segment's words placed in its text; without word timestamps (or if the words
    cannot be found in the text), its whitespace-separated tokens with times interpolated."""
    pieces: list[_Piece] = []
    pos = 0
    for w in s.words:
        at = text.find(w.word, pos)
        if at < 0:
            pieces = []
            break
        pos = at + len(w.word)
        pieces.append(_Piece(at, pos, w.start, w.end))
    if pieces:
        return pieces
    span = max(s.end - s.start, 0.0)

    def time_at(char: int) -> float:
        return round(s.start + span * char / max(len(text), 1), 3)

    for match in re.finditer(r"\S+", text):
        step = width if _cuttable(match.group()) else len(match.group())
        for begin in range(match.start(), match.end(), step):
            end = min(begin + step, match.end())
            pieces.append(_Piece(begin, end, time_at(begin), time_at(end)))
    return pieces


def _segment_cues(s: Segment, layout: SubtitleLayout) -> Iterator[Cue]:
    text = s.text.strip()
    if not text:
        return
    width, max_lines = layout.max_line_chars, layout.max_lines
    if len(wrap(text, width)) <= max_lines and s.end - s.start <= layout.max_cue_s:
        yield Cue(s.start, s.end, tuple(wrap(text, width)))
        return
    pieces = _pieces(s, text, width)

    def fits(group: list[_Piece]) -> bool:
        if len(group) <= 1:
            return True
        chunk = text[group[0].begin : group[-1].end_char]
        return (
            len(wrap(chunk, width)) <= max_lines
            and group[-1].end - group[0].start <= layout.max_cue_s
        )

    groups: list[list[_Piece]] = []
    group: list[_Piece] = []
    for piece in pieces:
        if fits([*group, piece]):
            group.append(piece)
            continue
        # Close the cue, at the last clause end in its second half if there is one.
        cut = next(
            (
                i + 1
                for i in range(len(group) - 2, len(group) // 2 - 1, -1)
                if _CLAUSE_END.search(text[group[i].begin : group[i].end_char])
            ),
            len(group),
        )
        groups.append(group[:cut])
        group = group[cut:]
        if not fits([*group, piece]):
            groups.append(group)
            group = []
        group.append(piece)
    if group:
        groups.append(group)
    groups = [g for g in groups if g]
    previous_end = s.start
    for index, g in enumerate(groups):
        begin = 0 if index == 0 else g[0].begin
        end_char = len(text) if index == len(groups) - 1 else groups[index + 1][0].begin
        start = max(g[0].start, previous_end)  # a cue shows while its words are spoken
        end = max(g[-1].end, start)
        lines = wrap(text[begin:end_char], width)
        if lines:
            yield Cue(start, end, tuple(lines))
            previous_end = end


def cues(t: Transcript, layout: SubtitleLayout | None = None) -> list[Cue]:
    """Readable cues: each segment, split with its word timestamps where it is longer than
    `max_lines` lines of `max_line_chars` or lasts more than `max_cue_s`."""
    layout = layout or SubtitleLayout()
    if t.speakers is not None:
        return [
            replace(cue, speaker=speaker)
            for speaker, s in _speaker_runs(t)
            for cue in _segment_cues(s, layout)
        ]
    return [cue for s in t.segments for cue in _segment_cues(s, layout)]


def _speaker_runs(t: Transcript) -> list[tuple[str, Segment]]:
    """A diarized transcript's words cut where the speaker changes, each run a segment."""
    runs: list[tuple[str, Segment]] = []
    words: list[Word] = []
    for w in [*t.words, None]:
        if words and (w is None or w.speaker != words[-1].speaker):
            text = "".join(x.word for x in words)
            segment = Segment(len(runs), words[0].start, words[-1].end, text, words=words)
            runs.append((words[-1].speaker or "", segment))
            words = []
        if w is not None:
            words.append(w)
    return runs


def clock(seconds: float, sep: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{millis:03d}"


def srt(t: Transcript, layout: SubtitleLayout | None = None) -> str:
    """SubRip; a diarized transcript's cues begin with the speaker, `[A] `."""
    return "".join(
        f"{i}\n{clock(c.start, ',')} --> {clock(c.end, ',')}\n"
        f"{f'[{c.speaker}] ' if c.speaker else ''}{c.text}\n\n"
        for i, c in enumerate(cues(t, layout), start=1)
    )


def _vtt_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def vtt(t: Transcript, layout: SubtitleLayout | None = None) -> str:
    """WebVTT; a diarized transcript's cues carry a voice tag, `<v A>`."""
    return "WEBVTT\n\n" + "".join(
        f"{clock(c.start, '.')} --> {clock(c.end, '.')}\n"
        f"{f'<v {_vtt_text(c.speaker)}>' if c.speaker else ''}{_vtt_text(c.text)}\n\n"
        for c in cues(t, layout)
    )
