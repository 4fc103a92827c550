"""`api.render` bodies and the `core.transcript` round trip."""

from __future__ import annotations

import json

import pytest

from api import render
from core.transcript import Segment, Transcript, Word

SEGMENT_FIELDS = {
    "id",
    "seek",
    "start",
    "end",
    "text",
    "tokens",
    "temperature",
    "avg_logprob",
    "compression_ratio",
    "no_speech_prob",
}


@pytest.fixture
def transcript() -> Transcript:
    return Transcript(
        text="Hello world. Goodbye.",
        language="en",
        duration=3700.25,
        language_probability=0.97,
        segments=[
            Segment(
                id=0,
                start=0.0,
                end=1.25,
                text="Hello world.",
                avg_logprob=-0.2,
                compression_ratio=1.1,
                no_speech_prob=0.01,
                temperature=0.0,
                tokens=[50364, 2425, 1002, 13],
                words=[
                    Word("Hello", 0.0, 0.5, 0.9),
                    Word(" world.", 0.5, 1.25, 0.8),
                ],
            ),
            Segment(id=1, start=2.0, end=2.5, text=""),
            Segment(
                id=2,
                start=3661.5,
                end=3662.004,
                text="Goodbye.",
                temperature=0.2,
                tokens=[7083],
                words=[Word("Goodbye.", 3661.5, 3662.004, 0.7)],
            ),
        ],
    )


def test_transcript_json_without_words(transcript: Transcript) -> None:
    body = render.transcript_json(transcript, "req-1", words=False)
    assert body == {
        "type": "transcript",
        "request_id": "req-1",
        "text": "Hello world. Goodbye.",
        "language": "en",
        "duration": 3700.25,
    }


def test_transcript_json_with_words(transcript: Transcript) -> None:
    body = render.transcript_json(transcript, "req-1", words=True)
    assert body["words"] == [
        {"word": "Hello", "start": 0.0, "end": 0.5},
        {"word": " world.", "start": 0.5, "end": 1.25},
        {"word": "Goodbye.", "start": 3661.5, "end": 3662.004},
    ]
    json.dumps(body)


def test_transcript_json_words_when_there_are_none() -> None:
    t = Transcript(text="", language="fr", duration=1.0)
    assert render.transcript_json(t, "r", words=True)["words"] == []


def test_verbose_json_has_openai_segment_fields(transcript: Transcript) -> None:
    body = render.verbose_json(transcript, words=False, segments=True)
    assert body["task"] == "transcribe"
    assert body["language"] == "english"  # OpenAI names the language
    assert body["duration"] == 3700.25
    assert body["usage"] == {"type": "duration", "seconds": 3701}
    assert body["text"] == transcript.text
    assert "words" not in body
    segments = body["segments"]
    assert [s["id"] for s in segments] == [0, 1, 2]
    for s in segments:
        assert set(s) == SEGMENT_FIELDS
        assert isinstance(s["seek"], int)
        assert isinstance(s["tokens"], list)
    first = segments[0]
    assert first["tokens"] == [50364, 2425, 1002, 13]
    assert first["avg_logprob"] == -0.2
    assert first["compression_ratio"] == 1.1
    assert first["no_speech_prob"] == 0.01
    # Whisper's (and OpenAI's) segment text keeps its leading space
    assert (first["start"], first["end"], first["text"]) == (0.0, 1.25, " Hello world.")
    assert segments[2]["temperature"] == 0.2
    assert segments[2]["seek"] == 366150
    json.dumps(body)


def test_verbose_json_words_only(transcript: Transcript) -> None:
    body = render.verbose_json(transcript, words=True, segments=False, task="translate")
    assert body["task"] == "translate"
    assert body["language"] == "english"  # a translation's language is its output's
    assert "segments" not in body
    assert "usage" not in body  # OpenAI's translation type has none
    assert [w["word"] for w in body["words"]] == ["Hello", " world.", "Goodbye."]


def test_verbose_json_language_names() -> None:
    for code, name in [("fr", "french"), ("yue", "cantonese"), ("haw", "hawaiian")]:
        t = Transcript(text="", language=code, duration=0.0)
        assert render.verbose_json(t, words=False, segments=True)["language"] == name


def test_verbose_json_both(transcript: Transcript) -> None:
    body = render.verbose_json(transcript, words=True, segments=True)
    assert len(body["segments"]) == 3
    assert len(body["words"]) == 3


def test_srt(transcript: Transcript) -> None:
    assert render.srt(transcript) == (
        "1\n00:00:00,000 --> 00:00:01,250\nHello world.\n\n"
        "2\n01:01:01,500 --> 01:01:02,004\nGoodbye.\n\n"
    )


def test_vtt(transcript: Transcript) -> None:
    assert render.vtt(transcript) == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:01.250\nHello world.\n\n"
        "01:01:01.500 --> 01:01:02.004\nGoodbye.\n\n"
    )


def test_srt_and_vtt_of_no_segments() -> None:
    t = Transcript(text="", language="en", duration=0.0)
    assert render.srt(t) == ""
    assert render.vtt(t) == "WEBVTT\n\n"


@pytest.mark.parametrize(
    ("seconds", "srt_clock"),
    [
        (0.0, "00:00:00,000"),
        (0.0005, "00:00:00,000"),
        (0.0015, "00:00:00,002"),
        (59.9996, "00:01:00,000"),
        (61.001, "00:01:01,001"),
        (3661.5, "01:01:01,500"),
        (36000.0, "10:00:00,000"),
        (360000.25, "100:00:00,250"),
        (-0.5, "00:00:00,000"),
    ],
)
def test_clock(seconds: float, srt_clock: str) -> None:
    t = Transcript(
        text="x",
        language="en",
        duration=seconds,
        segments=[Segment(id=0, start=seconds, end=seconds, text="x")],
    )
    assert render.srt(t) == f"1\n{srt_clock} --> {srt_clock}\nx\n\n"
    vtt_clock = srt_clock.replace(",", ".")
    assert render.vtt(t) == f"WEBVTT\n\n{vtt_clock} --> {vtt_clock}\nx\n\n"


def test_round_trip(transcript: Transcript) -> None:
    data = transcript.to_dict()
    assert Transcript.from_dict(data) == transcript
    assert Transcript.from_dict(json.loads(json.dumps(data))) == transcript
    assert data["segments"][0]["words"][1] == {
        "word": " world.",
        "start": 0.5,
        "end": 1.25,
        "probability": 0.8,
    }


def test_from_dict_defaults() -> None:
    t = Transcript.from_dict(
        {
            "text": "hi",
            "language": "en",
            "duration": 1.0,
            "segments": [{"id": 0, "start": 0.0, "end": 1.0, "text": "hi"}],
        }
    )
    assert t.language_probability == 0.0
    assert t.segments[0].words == []
    assert t.segments[0].tokens == []
    assert t.words == []


def test_words_span_segments(transcript: Transcript) -> None:
    assert [w.word for w in transcript.words] == ["Hello", " world.", "Goodbye."]


@pytest.mark.parametrize(
    ("text", "language", "shown"),
    [
        ("Hello.", "en", " Hello."),
        (" Hello.", "en", " Hello."),  # already Whisper's: not doubled
        ("你好。", "zh", "你好。"),  # written without spaces: none added
        ("", "en", ""),
    ],
)
def test_segment_text_keeps_whispers_leading_space(text: str, language: str, shown: str) -> None:
    t = Transcript(
        text=text.strip(),
        language=language,
        duration=1.0,
        segments=[Segment(id=0, start=0.0, end=1.0, text=text)],
    )
    assert render.verbose_json(t, words=False, segments=True)["segments"][0]["text"] == shown
    assert render.verbose_json(t, words=False, segments=True)["text"] == text.strip()


def test_json_carries_openais_duration_usage(transcript: Transcript) -> None:
    body = render.transcript_json(transcript, "r", words=False, with_usage=True)
    assert body["usage"] == {"type": "duration", "seconds": 3701}
    assert "usage" not in render.transcript_json(transcript, "r", words=False)
