"""Operations on a live service: schema fuzzing, metrics, logs, readiness, rate limits,
retention, key management and graceful shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

import tests.support as support
from core.db import make_engine, session_factory
from core.models import Job
from tests.conftest import SERVICE_ENV, TEST_KEY
from tests.e2e.jobs_client import submit, wait_ended, wait_until
from tests.support import (
    ROOT,
    LiveService,
    clip,
    kill_group,
    long_audio,
    start_service,
    start_worker,
    stop_service_proc,
    wait_for_worker,
)

pytestmark = pytest.mark.e2e
SHORT = "en_librispeech_2830-3980-0043.wav"


def test_schemathesis_finds_no_server_error(service: LiveService) -> None:
    """Property-based requests generated from our own OpenAPI schema never get a 5xx."""
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{service.url}/schema/openapi.json",
            "--checks",
            "not_a_server_error",
            "--header",
            f"Authorization: Bearer {TEST_KEY}",
            "--max-examples",
            "25",
            "--phases",
            "examples,coverage,fuzzing",
            "--workers",
            "1",
            "--max-time",
            "150",
            # Fuzzed raw-PCM bodies are real audio and get transcribed: on a loaded machine
            # that outlasts schemathesis' 10 s default and reads as a failure, not a 5xx.
            "--request-timeout",
            "60",
            "--exclude-path",
            "/metrics",
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_openapi_documents_every_endpoint_field_and_error(service: LiveService) -> None:
    schema = httpx.get(f"{service.url}/schema/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/stt",
        "/audio/transcriptions",
        "/v1/audio/transcriptions",
        "/stt/jobs",
        "/stt/jobs/{job_id}",
        "/health/live",
        "/health/ready",
        "/metrics",
    ):
        assert path in paths, path
    form = paths["/stt"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"file", "model", "language", "timestamp_granularities[]"} <= set(form["properties"])
    assert {"400", "401", "413", "415", "503"} <= set(paths["/stt"]["post"]["responses"])
    openai_400 = paths["/v1/audio/transcriptions"]["post"]["responses"]["400"]
    assert "error" in openai_400["content"]["application/json"]["schema"]["properties"]
    assert (
        "webhook_url"
        in paths["/stt/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"][
            "properties"
        ]
    )
    assert {p["name"] for p in paths["/stt/jobs/{job_id}"]["get"]["parameters"]} >= {"wait"}


def test_metrics_after_a_job(service: LiveService) -> None:
    job_id = submit(service, clip(SHORT).path).json()["id"]
    assert wait_ended(service, job_id)["status"] == "succeeded"
    text = httpx.get(f"{service.url}/metrics").text
    assert 'stt_http_requests_total{method="POST",route="/stt/jobs",status="202"}' in text
    assert 'stt_jobs{state="succeeded"}' in text
    assert 'stt_queue_depth{queue="stt-batch"}' in text
    seconds = [
        line for line in text.splitlines() if line.startswith("stt_audio_seconds_succeeded ")
    ]
    assert seconds and float(seconds[0].split()[1]) > 0
    assert "stt_real_time_factor " in text
    assert "stt_job_failures_total" in text and "stt_webhook_deliveries_total" in text


def test_logs_are_json_with_ids_and_no_secrets(service: LiveService) -> None:
    c = clip("en_jfk_inaugural.flac")
    r = httpx.post(
        f"{service.url}/stt",
        headers={**service.headers(), "X-Request-Id": "trace-1"},
        files={"file": c.path.open("rb")},
        data={"model": "ink-whisper"},
        timeout=120,
    )
    job_id = r.json()["request_id"]
    # the client's request id is kept; the job is named beside it
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-1"
    assert r.headers["x-job-id"] == job_id
    entries: list[dict[str, object]] = []

    def logged() -> bool:  # the request's and the job's lines, once both are written
        entries[:] = [json.loads(ln) for ln in service.log().splitlines() if ln.startswith("{")]
        return any(e.get("request_id") == "trace-1" for e in entries) and any(
            e.get("job_id") == job_id for e in entries
        )

    support.wait_until(logged, 10, "the request's log lines")
    assert any(e.get("request_id") == "trace-1" for e in entries)
    assert any(e.get("job_id") == job_id for e in entries)
    log = service.log()
    assert TEST_KEY not in log
    assert "ask not what your country" not in log.lower()


def test_readiness_needs_a_worker(
    service: LiveService, tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    ready = httpx.get(f"{service.url}/health/ready").json()
    assert ready["status"] == "ok" and all(ready["checks"].values())
    lonely = start_service(
        tmp_path / "lonely",
        {"DATABASE_URL": pg_url, "REDIS_URL": redis_url, **SERVICE_ENV},
        workers=0,
    )
    try:
        r = httpx.get(f"{lonely.url}/health/ready")
        assert r.status_code == 503 and r.json()["checks"]["worker"] is False
        assert httpx.get(f"{lonely.url}/health/live").status_code == 200
    finally:
        stop_service_proc(lonely.proc)


def test_rate_limit_per_key(tmp_path: Path, pg_url: str, redis_url: str) -> None:
    svc = start_service(
        tmp_path / "limited",
        {
            "DATABASE_URL": pg_url,
            "REDIS_URL": redis_url,
            **SERVICE_ENV,
            "STT_RATE_LIMIT_PER_MINUTE": "3",
        },
        workers=0,
    )
    try:
        codes = [
            httpx.get(f"{svc.url}/stt/jobs", headers=svc.headers()).status_code for _ in range(3)
        ]
        assert codes == [200, 200, 200]
        over = httpx.get(f"{svc.url}/stt/jobs", headers=svc.headers())
        assert over.status_code == 429 and int(over.headers["retry-after"]) >= 1
        assert over.json()["error_code"] == "rate_limited"
        openai = httpx.post(
            f"{svc.url}/v1/audio/transcriptions", headers=svc.headers(), data={"model": "whisper-1"}
        )
        assert openai.status_code == 429 and openai.json()["error"]["code"] == "rate_limited"
    finally:
        stop_service_proc(svc.proc)


def test_retention_purges_transcripts_and_keeps_audio_when_asked(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    svc = start_service(
        tmp_path / "retention",
        {
            "DATABASE_URL": pg_url,
            "REDIS_URL": redis_url,
            **SERVICE_ENV,
            "STT_TRANSCRIPT_RETENTION_S": "4",
            "STT_AUDIO_RETENTION_S": "2",
            "STT_STALE_AFTER_S": "6",
        },
    )
    try:
        wait_for_worker(svc)
        job_id = submit(svc, clip(SHORT).path).json()["id"]
        assert wait_ended(svc, job_id)["status"] == "succeeded"
        stored = [p for p in (svc.data_dir / "audio").rglob("*") if p.is_file()]
        assert stored, "audio is kept while STT_AUDIO_RETENTION_S runs"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            gone = httpx.get(f"{svc.url}/stt/jobs/{job_id}", headers=svc.headers())
            if gone.status_code == 404:
                break
            time.sleep(0.5)
        assert gone.status_code == 404, "the transcript outlived its retention"
        assert not [p for p in (svc.data_dir / "audio").rglob("*") if p.is_file()]
    finally:
        stop_service_proc(svc.proc)


def test_keys_cli_create_list_revoke(service: LiveService, session_pg_url: str) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": session_pg_url,
        "STT_DATA_DIR": str(service.data_dir),
        "STT_LOG_LEVEL": "WARNING",
    }
    stt = [sys.executable, "-m", "api.cli"]
    made = subprocess.run(
        [*stt, "keys", "create", "--name", "acme"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    key = made.stdout.split("key (shown once): ")[1].strip()
    key_id = made.stdout.split("id: ")[1].split()[0]
    assert httpx.get(f"{service.url}/stt/jobs", headers=service.headers(key)).status_code == 200
    listed = subprocess.run(
        [*stt, "keys", "list"], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert key_id in listed and "acme" in listed and key not in listed
    subprocess.run(
        [*stt, "keys", "revoke", key_id], env=env, cwd=ROOT, check=True, capture_output=True
    )
    r = httpx.get(f"{service.url}/stt/jobs", headers=service.headers(key))
    assert r.status_code == 401


def test_worker_sigterm_finishes_its_job(tmp_path: Path, pg_url: str, redis_url: str) -> None:
    env = {"DATABASE_URL": pg_url, "REDIS_URL": redis_url, **SERVICE_ENV}
    svc = start_service(tmp_path / "api", env, workers=0)
    worker = start_worker({**env, "STT_DATA_DIR": str(svc.data_dir)}, tmp_path / "worker.log")
    try:
        audio, _ = long_audio(tmp_path / "long.wav", ["en_jfk_inaugural.flac"], repeat=6)
        job_id = submit(svc, audio).json()["id"]
        wait_until(svc, job_id, {"running"})
        os.killpg(worker.pid, signal.SIGTERM)  # what a deploy or an autoscaler sends
        done = wait_ended(svc, job_id, timeout=240)
        assert done["status"] == "succeeded"
        worker.wait(timeout=60)
        assert worker.returncode is not None
    finally:
        if worker.poll() is None:
            kill_group(worker)
        stop_service_proc(svc.proc)


def _jobs_in(db_url: str) -> int:
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as session:
            return int(session.execute(select(func.count()).select_from(Job)).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.parametrize("api_workers", ["1", "2"])
def test_api_drains_in_flight_requests_on_sigterm(
    tmp_path: Path, pg_url: str, redis_url: str, api_workers: str
) -> None:
    """One API process, or two under the supervisor: SIGTERM lets the request finish."""
    # The drain's bound is far off: on a loaded machine the call (the worker's start, then
    # the transcription) may outlast the default 30 s, and this test is not about the bound.
    env = {**SERVICE_ENV, "STT_API_WORKERS": api_workers, "STT_SHUTDOWN_GRACE_S": "600"}
    svc = start_service(tmp_path / "drain", {"DATABASE_URL": pg_url, "REDIS_URL": redis_url, **env})
    wait_for_worker(svc)
    result: dict[str, httpx.Response] = {}

    def call() -> None:
        with clip("en_jfk_inaugural.flac").path.open("rb") as f:
            result["r"] = httpx.post(
                f"{svc.url}/stt",
                headers=svc.headers(),
                files={"file": f},
                data={"model": "ink-whisper"},
                timeout=600,
            )

    thread = threading.Thread(target=call)
    thread.start()
    support.wait_until(lambda: _jobs_in(pg_url) > 0, 60, "the request to reach the API")
    svc.proc.send_signal(signal.SIGTERM)  # the API alone; it waits for the request
    thread.join(timeout=600)
    try:
        assert result["r"].status_code == 200 and result["r"].json()["text"]
        # then `stt serve` ends of itself: the API processes, then the workers it started
        assert svc.proc.wait(timeout=120) == 0
        assert "Traceback" not in svc.log()
    finally:
        stop_service_proc(svc.proc)


def test_an_oversized_upload_is_refused_before_its_body_is_read(service: LiveService) -> None:
    """A declared Content-Length over the limit gets 413 with not one body byte sent."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(service.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(
            (
                f"POST /stt HTTP/1.1\r\nHost: {parts.hostname}\r\n"
                f"Authorization: Bearer {TEST_KEY}\r\n"
                "Content-Type: multipart/form-data; boundary=b\r\n"
                f"Content-Length: {50 * 1024**3}\r\n\r\n"
            ).encode()
        )
        head = ""
        while "}" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                break
            head += chunk.decode("latin-1")
    assert head.startswith("HTTP/1.1 413")
    body = json.loads(head.split("\r\n\r\n", 1)[1])
    assert body["error_code"] == "payload_too_large"
