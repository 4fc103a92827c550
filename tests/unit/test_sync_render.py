"""The synchronous answer's headers: text, srt and vtt name their charset once, and json
carries OpenAI's `usage`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar, Request, Response, get
from litestar.testing import TestClient

from api.respond import render_transcript
from api.service import TranscriptionSpec
from core.transcript import Segment, Transcript, Word

T = Transcript(
    text="Ask not.",
    language="en",
    duration=2.2,
    segments=[
        Segment(
            id=0,
            start=0.0,
            end=2.0,
            text="Ask not.",
            words=[Word("Ask", 0.0, 1.0), Word("not.", 1.0, 2.0)],
        )
    ],
)


@get("/render/{fmt:str}/{task:str}")
async def render(request: Request[Any, Any, Any], fmt: str, task: str) -> Response[object]:
    spec = TranscriptionSpec("whisper-1", "bundled:base", None, (), fmt, task=task)
    return render_transcript(T, "job123", spec, request=request)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient[Litestar]]:
    with TestClient(Litestar([render], logging_config=None)) as c:
        yield c


@pytest.mark.parametrize(
    ("fmt", "media"), [("text", "text/plain"), ("srt", "text/plain"), ("vtt", "text/vtt")]
)
def test_charset_once(client: TestClient[Litestar], fmt: str, media: str) -> None:
    r = client.get(f"/render/{fmt}/transcribe")
    assert r.headers["content-type"] == f"{media}; charset=utf-8"


def test_json_usage_for_a_transcription_not_a_translation(client: TestClient[Litestar]) -> None:
    assert client.get("/render/json/transcribe").json()["usage"] == {
        "type": "duration",
        "seconds": 3,
    }
    assert "usage" not in client.get("/render/json/translate").json()


def test_the_openai_sdk_reads_usage(client: TestClient[Litestar]) -> None:
    from openai.types.audio import Transcription

    parsed = Transcription.model_validate(client.get("/render/json/transcribe").json())
    assert parsed.usage is not None and parsed.usage.type == "duration"
    assert parsed.usage.seconds == 3


def test_a_clients_request_id_is_kept_and_the_job_id_is_named(
    client: TestClient[Litestar],
) -> None:
    r = client.get("/render/json/transcribe", headers={"X-Request-Id": "trace-42.a_b"})
    assert r.headers["x-request-id"] == "trace-42.a_b"
    assert r.headers["x-job-id"] == "job123"


@pytest.mark.parametrize("sent", [None, "", "x" * 65, "bad id!"])
def test_without_a_valid_request_id_the_job_id_is_the_request_id(
    client: TestClient[Litestar], sent: str | None
) -> None:
    headers = {"X-Request-Id": sent} if sent is not None else {}
    r = client.get("/render/text/transcribe", headers=headers)
    assert r.headers["x-request-id"] == "job123" == r.headers["x-job-id"]
