"""Transcript → response bodies: the shared JSON, and OpenAI's text / srt / vtt / verbose_json."""

from __future__ import annotations

from typing import Any

from core.transcript import Segment, Transcript

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("word", "segment")


def transcript_json(t: Transcript, request_id: str, *, words: bool) -> dict[str, Any]:
    """The body both families return for `json` (Cartesia's batch STT shape)."""
    return t.response(request_id, words=words)


def _segment_json(s: Segment) -> dict[str, Any]:
    return {
        "id": s.id,
        "seek": int(s.start * 100),
        "start": s.start,
        "end": s.end,
        "text": s.text,
        "tokens": s.tokens,
        "temperature": s.temperature,
        "avg_logprob": s.avg_logprob,
        "compression_ratio": s.compression_ratio,
        "no_speech_prob": s.no_speech_prob,
    }


def verbose_json(
    t: Transcript, *, words: bool, segments: bool, task: str = "transcribe"
) -> dict[str, Any]:
    """OpenAI's verbose_json; segments are listed unless only words were asked for."""
    body: dict[str, Any] = {
        "task": task,
        "language": t.language,
        "duration": t.duration,
        "text": t.text,
    }
    if segments:
        body["segments"] = [_segment_json(s) for s in t.segments]
    if words:
        body["words"] = [{"word": w.word, "start": w.start, "end": w.end} for w in t.words]
    return body


def _clock(seconds: float, sep: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{millis:03d}"


def srt(t: Transcript) -> str:
    cues = [s for s in t.segments if s.text]
    return "".join(
        f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text}\n\n"
        for i, s in enumerate(cues, start=1)
    )


def vtt(t: Transcript) -> str:
    cues = [s for s in t.segments if s.text]
    return "WEBVTT\n\n" + "".join(
        f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text}\n\n" for s in cues
    )
