"""The diarization contract at the HTTP edge, in-process (no worker): what is accepted and
carried to the worker, every 400, and a diarized transcript in every format."""

from __future__ import annotations

import base64
import io
import json
import wave

import numpy as np
import pysrt
import pytest
import webvtt
from openai.types.audio import TranscriptionDiarized, TranscriptionTextSegmentEvent
from sqlalchemy import select, update

from api.streaming import LiveText, _final
from bench.conversations import voice_audio
from core.db import make_engine, session_factory, transaction
from core.jobspec import JobOptions
from core.models import Job
from core.transcript import Segment, SpeakerSegment, Transcript, Word
from tests.unit import test_jobs_api as jobs_api
from tests.unit.test_jobs_api import ASYNC, KEY, OPENAI, Service, cartesia_error, openai_error

audio, start, svc = jobs_api.audio, jobs_api.start, jobs_api.svc  # the job API's fixtures

DIARIZE = {"model": "ink-whisper", "language": "en", "diarize": "true"}


def wav_url(samples: np.ndarray) -> str:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def reference() -> str:
    """6 s of a real voice as a 16 kHz WAV data URL: 256 KB (192 KB of audio), above the
    form's ordinary per-field limit of 64 KB."""
    return wav_url(voice_audio("ljspeech")[: 6 * 16000])


def stored_options(svc: Service, job_id: str) -> JobOptions:
    engine = make_engine(svc.settings.database.url)
    try:
        with session_factory(engine)() as session:
            row = session.execute(select(Job.options).where(Job.id == job_id)).scalar_one()
    finally:
        engine.dispose()
    return JobOptions.from_dict(row)


def test_a_diarized_job_carries_its_speakers_and_hints(svc: Service, reference: str) -> None:
    assert len(reference) > 190_000
    data = {
        **DIARIZE,
        "min_speakers": "2",
        "max_speakers": "3",
        "known_speaker_names[]": "Linda",
        "known_speaker_references[]": reference,
    }
    job = svc.accepted(data=data)
    options = stored_options(svc, job["id"])
    assert options.diarize and options.word_timestamps
    assert (options.min_speakers, options.max_speakers) == (2, 3)
    assert [k.name for k in options.known_speakers] == ["Linda"]
    assert options.known_speakers[0].audio == base64.b64decode(reference.split(",", 1)[1])


def test_the_diarize_model_alias_means_diarization(svc: Service) -> None:
    data = {
        "model": "gpt-4o-transcribe-diarize",
        "response_format": "diarized_json",
        "chunking_strategy": "auto",
    }
    response = svc.submit(data=data, path=OPENAI, headers=ASYNC)
    assert response.status_code == 202, response.text
    options = stored_options(svc, response.json()["id"])
    assert options.diarize and options.response_format == "diarized_json"
    vad = json.dumps({"type": "server_vad", "threshold": 0.5})
    response = svc.submit(data={**data, "chunking_strategy": vad}, path=OPENAI, headers=ASYNC)
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("fields", "code", "param"),
    [
        ({"response_format": "diarized_json"}, "invalid_request", "response_format"),
        ({"min_speakers": "2"}, "invalid_request", "min_speakers"),
        ({"diarize": "maybe"}, "invalid_request", "diarize"),
        ({"diarize": "true", "min_speakers": "0"}, "invalid_request", "min_speakers"),
        ({"diarize": "true", "max_speakers": "two"}, "invalid_request", "max_speakers"),
        (
            {"diarize": "true", "min_speakers": "3", "max_speakers": "2"},
            "invalid_request",
            "min_speakers",
        ),
        ({"diarize": "true", "chunking_strategy": "fixed"}, "invalid_request", "chunking_strategy"),
        (
            {"diarize": "true", "chunking_strategy[type]": "fixed"},
            "invalid_request",
            "chunking_strategy",
        ),
        (
            {"diarize": "true", "known_speaker_names[]": "Ann"},
            "invalid_speaker_reference",
            "known_speaker_references",
        ),
        (
            {
                "diarize": "true",
                "known_speaker_names[]": "Ann",
                "known_speaker_references[]": "https://example.invalid/ann.wav",
            },
            "invalid_speaker_reference",
            "known_speaker_references",
        ),
        (
            {
                "diarize": "true",
                "known_speaker_names[]": "Ann",
                "known_speaker_references[]": "data:audio/wav;base64,"
                + base64.b64encode(b"not audio at all" * 64).decode(),
            },
            "invalid_speaker_reference",
            "known_speaker_references",
        ),
        (
            {
                "diarize": "true",
                "known_speaker_names[]": "Ann",
                "known_speaker_references[]": wav_url(np.zeros(8000, np.float32)),
            },
            "invalid_speaker_reference",
            "known_speaker_references",
        ),
    ],
)
def test_bad_diarization_requests_are_400_in_openais_shape(
    svc: Service, fields: dict[str, str], code: str, param: str
) -> None:
    with svc.nothing_kept():
        response = svc.submit(data={"model": "whisper-1", **fields}, path=OPENAI, headers=ASYNC)
        error = openai_error(response, 400, code, param)
    assert error["type"] == "invalid_request_error"


def test_more_than_four_known_speakers_is_400(svc: Service, reference: str) -> None:
    names = [f"p{i}" for i in range(5)]
    files = [("file", ("jfk.flac", svc.audio, "audio/flac"))]
    fields = {
        "model": "ink-whisper",
        "diarize": "true",
        "known_speaker_names[]": names,
        "known_speaker_references[]": [reference] * len(names),
    }
    with svc.nothing_kept():
        response = svc.client.post(
            jobs_api.JOBS, data=fields, files=files, headers=jobs_api.bearer(KEY)
        )
        body = cartesia_error(response, 400, "invalid_speaker_reference")
    assert "at most 4" in body["message"]


def test_diarization_off_is_a_clear_400_on_both_families(start: jobs_api.Start) -> None:
    off = start(STT_DIARIZATION="off")
    with off.nothing_kept():
        body = cartesia_error(off.submit(data=DIARIZE), 400, "diarization_unavailable")
        assert "not enabled" in body["message"]
        response = off.submit(
            data={"model": "gpt-4o-transcribe-diarize"}, path=OPENAI, headers=ASYNC
        )
        openai_error(response, 400, "diarization_unavailable", "diarize")


# --- a diarized transcript, rendered --------------------------------------------------------

WORDS = [
    Word(" Hello", 0.0, 0.4, speaker="Linda"),
    Word(" there.", 0.4, 0.9, speaker="Linda"),
    Word(" Hi", 1.5, 1.8, speaker="A"),
    Word(" back.", 1.8, 2.2, speaker="A"),
]
DIARIZED = Transcript(
    "Hello there. Hi back.",
    "en",
    2.5,
    [Segment(0, 0.0, 2.2, " Hello there. Hi back.", words=WORDS)],
    speakers=[
        SpeakerSegment(0.0, 0.9, "Hello there.", "Linda"),
        SpeakerSegment(1.5, 2.2, "Hi back.", "A"),
    ],
)


def finished(svc: Service, fmt: str) -> str:
    job = svc.accepted(data={**DIARIZE, "response_format": fmt})
    engine = make_engine(svc.settings.database.url)
    try:
        with transaction(session_factory(engine)) as session:
            session.execute(
                update(Job)
                .where(Job.id == job["id"])
                .values(status="succeeded", progress=1.0, result=DIARIZED.to_dict())
            )
    finally:
        engine.dispose()
    job_id: str = job["id"]
    return job_id


def test_diarized_json_is_what_the_openai_sdk_parses(svc: Service) -> None:
    job_id = finished(svc, "diarized_json")
    response = svc.get(f"/stt/jobs/{job_id}/transcript")
    assert response.status_code == 200, response.text
    parsed = TranscriptionDiarized.model_validate(response.json())
    assert parsed.task == "transcribe" and parsed.text == DIARIZED.text
    assert [(s.type, s.speaker, s.text) for s in parsed.segments] == [
        ("transcript.text.segment", "Linda", "Hello there."),
        ("transcript.text.segment", "A", "Hi back."),
    ]
    assert len({s.id for s in parsed.segments}) == 2
    assert parsed.usage is not None and parsed.usage.type == "duration"


def test_every_format_carries_the_speaker(svc: Service) -> None:
    job_id = finished(svc, "json")

    def get(fmt: str) -> str:
        r = svc.get(f"/stt/jobs/{job_id}/transcript", response_format=fmt)
        assert r.status_code == 200, r.text
        return r.text

    body = json.loads(get("json"))
    assert [w["speaker"] for w in body["words"]] == ["Linda", "Linda", "A", "A"]
    assert [s["speaker"] for s in body["speakers"]] == ["Linda", "A"]
    assert get("text") == "Linda: Hello there.\nA: Hi back.\n"
    cues = pysrt.from_string(get("srt"))
    assert [c.text for c in cues] == ["[Linda] Hello there.", "[A] Hi back."]
    captions = webvtt.from_buffer(io.StringIO(get("vtt")))
    assert [(c.voice, c.text) for c in captions.captions] == [
        ("Linda", "Hello there."),
        ("A", "Hi back."),
    ]
    job = svc.get(f"{jobs_api.JOBS}/{job_id}").json()
    assert job["result"]["speakers"][0]["speaker"] == "Linda"


def test_a_transcript_stored_before_diarization_still_loads() -> None:
    old = DIARIZED.to_dict()
    del old["speakers"]
    for segment in old["segments"]:
        for word in segment["words"]:
            del word["speaker"]
    loaded = Transcript.from_dict(old)
    assert loaded.speakers is None and not loaded.diarized
    assert "speakers" not in loaded.response("r", words=True)
    assert "speaker" not in loaded.response("r", words=True)["words"][0]


def test_a_diarized_stream_ends_with_speaker_segments_then_done() -> None:
    job = Job(id="j", status="succeeded", result=DIARIZED.to_dict())
    events = [
        json.loads(e.decode().removeprefix("data: "))
        for e in _final(job, LiveText(), diarized=True)
    ]
    segments = [TranscriptionTextSegmentEvent.model_validate(e) for e in events[:-1]]
    assert [s.speaker for s in segments] == ["Linda", "A"]
    assert events[-1] == {"type": "transcript.text.done", "text": DIARIZED.text}
