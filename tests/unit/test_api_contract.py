"""The HTTP edge's contract, in-process: the OpenAPI document is generated from the response
Structs, the injected tenant answers 401 in each family's shape, and the bodies the
handlers build match their schemas."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from api import render
from api.app import create_app
from api.schemas import JobResponse, TranscriptResponse, VerboseTranscription
from core.jobview import failure_of, job_json
from core.migrate import upgrade
from core.models import Job, JobStatus, utcnow
from core.settings import load_settings
from core.transcript import Segment, Transcript, Word

KEY = "k1"
CARTESIA_KEYS = {"error_code", "title", "message", "request_id"}
OPENAI_KEYS = {"message", "type", "param", "code"}
SECURED = [
    ("POST", "/stt"),
    ("POST", "/stt/jobs"),
    ("GET", "/stt/jobs"),
    ("GET", "/stt/jobs/job_x"),
    ("DELETE", "/stt/jobs/job_x"),
    ("POST", "/audio/transcriptions"),
    ("POST", "/v1/audio/transcriptions"),
    ("POST", "/v1/audio/translations"),
    ("GET", "/models"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/whisper-1"),
]


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("contract")


@pytest.fixture(scope="module")
def client(app_dir: Path) -> Iterator[TestClient[Litestar]]:
    settings = load_settings({"STT_DATA_DIR": str(app_dir), "STT_API_KEY": KEY})
    upgrade(settings.database.url)
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def openapi(client: TestClient[Litestar]) -> dict[str, Any]:
    response = client.get("/schema/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _schema(openapi: dict[str, Any], path: str, method: str, status: str, media: str) -> Any:
    return openapi["paths"][path][method]["responses"][status]["content"][media]["schema"]


def _refs(schema: Any) -> set[str]:
    if isinstance(schema, dict):
        found = {schema["$ref"]} if "$ref" in schema else set()
        return found.union(*(_refs(v) for v in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_refs(v) for v in schema))
    return set()


JOB_REF = "#/components/schemas/JobResponse"
TRANSCRIPT_REF = "#/components/schemas/TranscriptResponse"


@pytest.mark.parametrize(
    ("path", "method", "status"),
    [
        ("/stt/jobs", "post", "202"),
        ("/stt/jobs/{job_id}", "get", "200"),
        ("/stt/jobs/{job_id}", "delete", "200"),
        ("/stt", "post", "202"),
        ("/v1/audio/transcriptions", "post", "202"),
    ],
)
def test_job_responses_reference_the_job_schema(
    openapi: dict[str, Any], path: str, method: str, status: str
) -> None:
    assert _schema(openapi, path, method, status, "application/json") == {"$ref": JOB_REF}


@pytest.mark.parametrize("path", ["/stt", "/audio/transcriptions", "/v1/audio/translations"])
def test_transcript_responses_reference_the_transcript_schema(
    openapi: dict[str, Any], path: str
) -> None:
    assert TRANSCRIPT_REF in _refs(_schema(openapi, path, "post", "200", "application/json"))


def test_component_schemas_come_from_the_structs(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    job = schemas["JobResponse"]
    assert job["properties"]["result"]["oneOf"][0] == {"$ref": TRANSCRIPT_REF}
    assert set(job["required"]) == set(JobResponse.__struct_fields__)
    transcript = schemas["TranscriptResponse"]
    assert "words" in transcript["properties"] and "words" not in transcript["required"]
    listing = _schema(openapi, "/stt/jobs", "get", "200", "application/json")
    assert listing == {"$ref": "#/components/schemas/JobList"}
    assert _schema(openapi, "/v1/models", "get", "200", "application/json") == {
        "$ref": "#/components/schemas/ModelList"
    }


def test_errors_are_documented_in_each_familys_shape(openapi: dict[str, Any]) -> None:
    """Written out at each response (not referenced), from the error Structs."""
    for status in ("400", "401", "409", "413", "415", "429", "503"):
        cartesia = _schema(openapi, "/stt", "post", status, "application/json")
        assert set(cartesia["properties"]) == CARTESIA_KEYS == set(cartesia["required"])
        openai = _schema(openapi, "/v1/audio/transcriptions", "post", status, "application/json")
        assert set(openai["properties"]["error"]["properties"]) == OPENAI_KEYS
    missing = _schema(openapi, "/v1/models/{model_id}", "get", "404", "application/json")
    assert set(missing["properties"]) == {"error"}
    job_404 = _schema(openapi, "/stt/jobs/{job_id}", "get", "404", "application/json")
    assert set(job_404["properties"]) == CARTESIA_KEYS


def test_non_json_formats_keep_their_media_types(openapi: dict[str, Any]) -> None:
    content = openapi["paths"]["/v1/audio/transcriptions"]["post"]["responses"]["200"]["content"]
    assert {"application/json", "text/plain", "text/vtt", "text/event-stream"} <= set(content)
    metrics = openapi["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert any(media.startswith("text/plain") for media in metrics)


def test_security_is_declared_on_every_secured_path_only(openapi: dict[str, Any]) -> None:
    assert set(openapi["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    for path, methods in openapi["paths"].items():
        for operation in methods.values():
            public = path in ("/health/live", "/health/ready", "/metrics")
            assert bool(operation.get("security")) is not public, path


def test_hand_read_query_parameters_are_documented(openapi: dict[str, Any]) -> None:
    wait = next(
        p
        for p in openapi["paths"]["/stt/jobs/{job_id}"]["get"]["parameters"]
        if p["name"] == "wait"
    )
    assert wait["schema"] == {
        "type": "number",
        "minimum": 0,
        "maximum": 60,
        "description": wait["description"],
    }
    listed = {p["name"] for p in openapi["paths"]["/stt/jobs"]["get"]["parameters"]}
    assert listed == {"status", "limit", "cursor"}
    raw = {p["name"] for p in openapi["paths"]["/stt"]["post"]["parameters"]}
    assert raw == {"encoding", "sample_rate"}


# --- the injected tenant ---------------------------------------------------------------------


def _stored(app_dir: Path) -> list[str]:
    return [n for _, _, names in os.walk(app_dir / "audio") for n in names]


@pytest.mark.parametrize(("method", "path"), SECURED)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "no"}])
def test_a_wrong_key_is_a_401_in_the_familys_shape(
    client: TestClient[Litestar],
    app_dir: Path,
    method: str,
    path: str,
    headers: dict[str, str],
) -> None:
    files = {"file": ("a.wav", b"RIFF" * 100, "audio/wav")} if method == "POST" else None
    r = client.request(method, path, headers=headers, files=files, data={"model": "whisper-1"})
    assert r.status_code == 401, r.text
    body = r.json()
    if path.startswith("/stt"):
        assert set(body) == CARTESIA_KEYS and body["error_code"] == "invalid_api_key"
    else:
        assert set(body) == {"error"} and set(body["error"]) == OPENAI_KEYS
        assert body["error"]["code"] == "invalid_api_key"
        assert body["error"]["type"] == "invalid_request_error"
    assert _stored(app_dir) == []  # refused before the upload was read


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}])
def test_the_right_key_reaches_the_handler(
    client: TestClient[Litestar], headers: dict[str, str]
) -> None:
    r = client.get("/stt/jobs/job_missing", headers=headers)
    assert r.status_code == 404 and r.json()["error_code"] == "not_found"
    listing = client.get("/stt/jobs", headers=headers)
    assert listing.status_code == 200
    assert listing.json() == {"data": [], "has_more": False, "next_cursor": None}


# --- bodies match their schemas ----------------------------------------------------------------


def _transcript() -> Transcript:
    words = [Word("Hello", 0.0, 0.5, 0.9), Word(" there.", 0.5, 1.0, 0.8)]
    segment = Segment(0, 0.0, 1.0, " Hello there.", tokens=[1, 2], words=words)
    return Transcript("Hello there.", "en", 1.0, [segment])


def _job(status: JobStatus, **values: Any) -> Job:
    now = utcnow()
    return Job(
        id="job_1",
        tenant="t",
        status=status.value,
        model="whisper-1",
        language=None,
        created_at=now,
        progress=0.5,
        options={"granularities": ["word"]},
        **values,
    )


def test_rendered_transcripts_match_their_structs() -> None:
    t = _transcript()
    for words in (True, False):
        body = render.transcript_json(t, "job_1", words=words)
        assert msgspec.to_builtins(msgspec.convert(body, TranscriptResponse)) == body
        for segments in (True, False):
            verbose = render.verbose_json(t, words=words, segments=segments)
            assert msgspec.to_builtins(msgspec.convert(verbose, VerboseTranscription)) == verbose
    translated = render.verbose_json(t, words=False, segments=True, task="translate")
    assert "usage" not in msgspec.to_builtins(msgspec.convert(translated, VerboseTranscription))


@pytest.mark.parametrize(
    "job",
    [
        _job(JobStatus.queued),
        _job(JobStatus.running, text_so_far="Hel"),
        _job(JobStatus.succeeded, result=_transcript().to_dict(), duration=1.0),
        _job(JobStatus.failed, error_code="unsupported_audio", error_message="bad"),
        _job(JobStatus.cancelled, error_code="cancelled", error_message="cancelled by its owner"),
    ],
    ids=lambda job: job.status,
)
def test_job_views_match_their_struct(job: Job) -> None:
    body = job_json(job)
    assert msgspec.to_builtins(msgspec.convert(body, JobResponse)) == body


# --- one failure for every surface --------------------------------------------------------------


def test_a_failed_jobs_error_is_the_same_everywhere() -> None:
    job = _job(JobStatus.failed, error_code="unsupported_audio", error_message="not audio")
    failure = failure_of(job)
    assert failure is not None
    assert job_json(job)["error"] == {"code": "unsupported_audio", "message": "not audio"}
    error = failure.error()
    assert (error.status, error.code, error.message) == (415, "unsupported_audio", "not audio")
    other = failure_of(_job(JobStatus.failed, error_code="audio_missing", error_message="gone"))
    assert other is not None
    assert (other.error().status, other.error().code) == (500, "transcription_failed")


def test_failures_without_a_reason_get_the_default_one() -> None:
    failed = failure_of(_job(JobStatus.failed))
    assert failed is not None
    assert (failed.code, failed.message) == ("transcription_failed", "the transcription failed")
    cancelled = failure_of(_job(JobStatus.cancelled))
    assert cancelled is not None and cancelled.code == "cancelled"
    assert cancelled.error().code == "transcription_failed"


@pytest.mark.parametrize("status", [JobStatus.queued, JobStatus.running, JobStatus.succeeded])
def test_jobs_that_did_not_fail_have_no_failure(status: JobStatus) -> None:
    assert failure_of(_job(status)) is None
    assert job_json(_job(status))["error"] is None
