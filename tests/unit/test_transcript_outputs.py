"""`GET /stt/jobs/{id}/transcript` in-process: a job row finished by hand, every format."""

from __future__ import annotations

import io
import json

import httpx
import pysrt
import pytest
import webvtt
from sqlalchemy import update

from api.routes.outputs import content_disposition, download_name
from core.db import make_engine, session_factory, transaction
from core.models import Job
from core.transcript import Segment, Transcript, Word
from tests.unit import test_jobs_api as jobs_api
from tests.unit.test_jobs_api import KEY, OTHER_KEY, Service, cartesia_error

audio, start, svc = jobs_api.audio, jobs_api.start, jobs_api.svc  # the job API's fixtures

WORDS = [Word("Ask", 0.5, 0.9), Word(" not", 0.9, 1.3), Word(" what", 1.3, 1.8)]
TRANSCRIPT = Transcript(
    "Ask not what",
    "en",
    2.0,
    [Segment(0, 0.5, 1.8, "Ask not what", words=WORDS)],
)


def finish(svc: Service, job_id: str, status: str = "succeeded") -> None:
    """What a worker would write at the end."""
    engine = make_engine(svc.settings.database.url)
    try:
        with transaction(session_factory(engine)) as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(
                    status=status,
                    progress=1.0,
                    result=TRANSCRIPT.to_dict() if status == "succeeded" else None,
                    error_code="unsupported_audio" if status == "failed" else None,
                    error_message="the audio could not be decoded" if status == "failed" else None,
                )
            )
    finally:
        engine.dispose()


def transcript(svc: Service, job_id: str, fmt: str | None = None, key: str = KEY) -> httpx.Response:
    params = {"response_format": fmt} if fmt else {}
    return svc.get(f"/stt/jobs/{job_id}/transcript", key=key, **params)


def test_the_submitted_format_is_the_default(svc: Service) -> None:
    job = svc.accepted(data={"model": "ink-whisper", "response_format": "srt"})
    finish(svc, job["id"])
    r = transcript(svc, job["id"])
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert 'filename="jfk.srt"' in r.headers["content-disposition"]
    subs = pysrt.from_string(r.text)
    assert [s.text for s in subs] == ["Ask not what"]
    assert subs[0].start.ordinal == 500 and subs[0].end.ordinal == 1800
    # The job itself still answers in its own JSON, without words (none were asked for).
    assert "words" not in svc.get(f"/stt/jobs/{job['id']}").json()["result"]


def test_every_format_renders_from_the_stored_transcript(svc: Service) -> None:
    job = svc.accepted()
    finish(svc, job["id"])
    body = transcript(svc, job["id"])
    assert body.headers["content-type"].startswith("application/json")
    assert 'filename="jfk.json"' in body.headers["content-disposition"]
    assert body.json()["text"] == "Ask not what" and "words" not in body.json()
    text = transcript(svc, job["id"], "text")
    assert (
        text.text == "Ask not what\n"
        and 'filename="jfk.txt"' in text.headers["content-disposition"]
    )
    vtt = transcript(svc, job["id"], "vtt")
    assert vtt.headers["content-type"].startswith("text/vtt")
    captions = webvtt.from_buffer(io.StringIO(vtt.text))
    assert [c.text for c in captions.captions] == ["Ask not what"]
    verbose = transcript(svc, job["id"], "verbose_json").json()
    assert [w["word"] for w in verbose["words"]] == ["Ask", " not", " what"]
    assert verbose["segments"][0]["text"] == " Ask not what" and verbose["language"] == "english"


def test_words_are_computed_for_every_job(svc: Service) -> None:
    job = svc.accepted(data={"model": "ink-whisper", "response_format": "text"})
    row = svc.row(job["id"])
    assert row is not None and row.options["word_timestamps"] is True
    assert row.options["response_format"] == "text" and row.options["filename"] == "jfk.flac"


@pytest.mark.parametrize("status", ["queued", "running", "failed", "cancelled"])
def test_a_job_not_succeeded_is_409(svc: Service, status: str) -> None:
    job = svc.accepted()
    if status != "queued":
        finish(svc, job["id"], status)
    body = cartesia_error(transcript(svc, job["id"], "srt"), 409, "conflict")
    assert status in body["message"]
    if status == "failed":
        assert "could not be decoded" in body["message"]


def test_unknown_format_is_400(svc: Service) -> None:
    job = svc.accepted()
    finish(svc, job["id"])
    body = cartesia_error(transcript(svc, job["id"], "docx"), 400, "invalid_request")
    assert "response_format" in body["message"]


def test_diarized_json_of_a_job_without_diarization_is_400(svc: Service) -> None:
    job = svc.accepted()
    finish(svc, job["id"])
    body = cartesia_error(transcript(svc, job["id"], "diarized_json"), 400, "invalid_request")
    assert "diarize=true" in body["message"]


def test_another_tenants_job_is_404(svc: Service) -> None:
    svc.add_key(OTHER_KEY, "other")
    job = svc.accepted()
    finish(svc, job["id"])
    cartesia_error(transcript(svc, job["id"], key=OTHER_KEY), 404, "not_found")
    cartesia_error(transcript(svc, "nope"), 404, "not_found")


def test_a_key_is_needed(svc: Service) -> None:
    job = svc.accepted()
    r = svc.client.get(f"/stt/jobs/{job['id']}/transcript")
    cartesia_error(r, 401, "invalid_api_key")


@pytest.mark.parametrize(
    ("filename", "fmt", "expected"),
    [
        ("talk.mp3", "srt", "talk.srt"),
        ("dir/sub/talk.final.wav", "text", "talk.final.txt"),
        ("C:\\Users\\me\\talk.m4a", "vtt", "talk.vtt"),
        (None, "json", "transcript.json"),
        ('"; evil=1.mp3', "srt", "evil_1.srt"),
        ("...", "verbose_json", "transcript.json"),
    ],
)
def test_download_name(filename: str | None, fmt: str, expected: str) -> None:
    assert download_name(filename, fmt) == expected


def test_content_disposition_keeps_unicode_names() -> None:
    header = content_disposition("Grüße.srt")
    assert header.startswith('attachment; filename="Gr__e.srt"')
    assert header.endswith("filename*=UTF-8''Gr%C3%BC%C3%9Fe.srt")
    assert json.dumps(header).isascii()


@pytest.mark.parametrize(
    ("fmt", "media"), [("text", "text/plain"), ("srt", "text/plain"), ("vtt", "text/vtt")]
)
def test_text_formats_name_their_charset_once(svc: Service, fmt: str, media: str) -> None:
    job = svc.accepted()
    finish(svc, job["id"])
    r = transcript(svc, job["id"], fmt)
    assert r.headers["content-type"] == f"{media}; charset=utf-8"


def test_json_carries_usage(svc: Service) -> None:
    job = svc.accepted()
    finish(svc, job["id"])
    assert transcript(svc, job["id"], "json").json()["usage"] == {"type": "duration", "seconds": 2}
