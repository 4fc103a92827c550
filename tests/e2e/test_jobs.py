"""The job API on a live server and worker over Postgres and Redis."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from core.db import make_engine, session_factory, transaction
from core.keys import hash_key
from core.models import ApiKey, Job, WebhookDelivery
from core.webhooks import SIGNATURE_HEADER, verify
from tests.conftest import WEBHOOK_SECRET
from tests.e2e.jobs_client import get, submit, wait_ended, wait_until
from tests.support import LiveService, clip, error_rate, free_port, long_audio

pytestmark = pytest.mark.e2e

LONG = "de_librivox_aeneas_de.mp3"  # 68 s: long enough to watch it run
SHORT = "en_librispeech_2830-3980-0043.wav"


@pytest.fixture(scope="module")
def very_long(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 4.5 minutes of speech: a job that runs long enough to be cancelled mid-way."""
    path, _ = long_audio(tmp_path_factory.mktemp("audio") / "long.wav", [LONG], repeat=4)
    return path


@pytest.fixture(scope="module")
def other_key(session_pg_url: str) -> str:
    """A key of a second tenant."""
    key = "sk-stt-other-tenant-key"
    with transaction(session_factory(make_engine(session_pg_url))) as session:
        session.add(ApiKey(tenant="other", name="other", key_hash=hash_key(key), prefix=key[:11]))
    return key


def db_job(pg_url: str, job_id: str) -> Job:
    with session_factory(make_engine(pg_url))() as session:
        return session.execute(select(Job).where(Job.id == job_id)).scalar_one()


def test_submit_and_poll_to_completion(service: LiveService) -> None:
    c = clip("en_jfk_inaugural.flac")
    r = submit(service, c.path, data={"timestamp_granularities[]": "word"})
    assert r.status_code == 202
    job = r.json()
    assert r.headers["location"] == f"/stt/jobs/{job['id']}"
    assert job["status"] == "queued" and job["result"] is None and job["model"] == "ink-whisper"
    done = wait_ended(service, job["id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["progress"] == 1.0 and done["error"] is None
    assert done["started_at"] and done["completed_at"] and done["created_at"]
    assert abs(done["duration"] - c.duration) < 0.1
    result = done["result"]
    assert result["type"] == "transcript" and result["request_id"] == job["id"]
    assert error_rate(c.reference, result["text"], "en") <= 0.1
    assert result["words"] and result["language"] == "en"


@pytest.mark.parametrize("path", ["/stt", "/audio/transcriptions", "/v1/audio/transcriptions"])
def test_prefer_respond_async_on_every_transcription_path(service: LiveService, path: str) -> None:
    c = clip(SHORT)
    r = submit(
        service,
        c.path,
        url=path,
        headers={"Prefer": "respond-async, wait=5"},
        data={"model": "whisper-1"},
    )
    assert r.status_code == 202
    assert r.headers["preference-applied"] == "respond-async"
    job_id = r.json()["id"]
    assert r.headers["location"] == f"/stt/jobs/{job_id}"
    assert wait_ended(service, job_id)["status"] == "succeeded"


def test_progress_rises_and_text_so_far_grows(service: LiveService) -> None:
    job_id = submit(service, clip(LONG).path).json()["id"]
    seen: list[tuple[float, str]] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        body = get(service, job_id).json()
        if body["status"] == "running":
            seen.append((body["progress"], body["text_so_far"] or ""))
        if body["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    assert body["status"] == "succeeded"
    progress = [p for p, _ in seen]
    texts = [t for _, t in seen]
    assert progress == sorted(progress), progress
    assert len(set(progress)) >= 3, "progress should be seen rising while the job runs"
    assert all(0.0 <= p < 1.0 for p in progress)
    assert all(texts[i + 1].startswith(texts[i]) for i in range(len(texts) - 1))
    assert texts[-1] and body["text_so_far"] is None
    assert body["result"]["text"].startswith(texts[-1][:20])


def test_cancel_a_running_job(service: LiveService, session_pg_url: str, very_long: Path) -> None:
    job_id = submit(service, very_long).json()["id"]
    wait_until(service, job_id, {"running"})
    r = httpx.delete(f"{service.url}/stt/jobs/{job_id}", headers=service.headers())
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    # The worker notices at its next segment and takes the next job.
    nxt = submit(service, clip(SHORT).path).json()["id"]
    assert wait_ended(service, nxt, timeout=60)["status"] == "succeeded"
    job = db_job(session_pg_url, job_id)
    assert job.status == "cancelled" and job.result is None
    assert job.error_code == "cancelled"


def test_cancel_a_queued_job(service: LiveService, session_pg_url: str, very_long: Path) -> None:
    busy = submit(service, very_long).json()["id"]
    queued = submit(service, clip(SHORT).path).json()["id"]
    assert get(service, queued).json()["status"] == "queued"
    r = httpx.delete(f"{service.url}/stt/jobs/{queued}", headers=service.headers())
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    httpx.delete(f"{service.url}/stt/jobs/{busy}", headers=service.headers())
    later = submit(service, clip(SHORT).path).json()["id"]
    assert wait_ended(service, later)["status"] == "succeeded"
    job = db_job(session_pg_url, queued)
    assert job.status == "cancelled" and job.attempts == 0 and job.result is None


def test_delete_a_finished_job(service: LiveService) -> None:
    job_id = submit(service, clip(SHORT).path).json()["id"]
    assert wait_ended(service, job_id)["status"] == "succeeded"
    r = httpx.delete(f"{service.url}/stt/jobs/{job_id}", headers=service.headers())
    assert r.status_code == 204
    assert get(service, job_id).status_code == 404
    again = httpx.delete(f"{service.url}/stt/jobs/{job_id}", headers=service.headers())
    assert again.status_code == 404 and again.json()["error_code"] == "not_found"


def test_idempotency_key_returns_one_job_run_once(
    service: LiveService, session_pg_url: str
) -> None:
    c = clip(SHORT)
    headers = {"Idempotency-Key": f"idem-{time.time_ns()}"}
    first = submit(service, c.path, headers=headers)
    second = submit(service, c.path, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    job_id = first.json()["id"]
    assert wait_ended(service, job_id)["status"] == "succeeded"
    third = submit(service, c.path, headers=headers)
    assert third.json()["id"] == job_id and third.json()["status"] == "succeeded"
    assert db_job(session_pg_url, job_id).attempts == 1
    with session_factory(make_engine(session_pg_url))() as session:
        count = len(
            session.execute(
                select(Job.id).where(Job.idempotency_key == headers["Idempotency-Key"])
            ).all()
        )
    assert count == 1
    different = submit(service, c.path, headers=headers, data={"language": "en"})
    assert different.status_code == 409
    assert different.json()["error_code"] == "conflict"


def test_idempotency_key_too_long(service: LiveService) -> None:
    r = submit(service, clip(SHORT).path, headers={"Idempotency-Key": "k" * 300})
    assert r.status_code == 400 and r.json()["error_code"] == "invalid_request"


def test_long_poll_returns_on_a_change_of_status(service: LiveService) -> None:
    job_id = submit(service, clip(SHORT).path).json()["id"]
    body = get(service, job_id, wait=30).json()
    assert body["status"] in ("running", "succeeded")
    assert wait_ended(service, job_id)["status"] == "succeeded"


@pytest.mark.parametrize("wait", ["-1", "abc", "1000"])
def test_bad_wait_is_a_400(service: LiveService, wait: str) -> None:
    job_id = submit(service, clip(SHORT).path).json()["id"]
    r = httpx.get(
        f"{service.url}/stt/jobs/{job_id}", params={"wait": wait}, headers=service.headers()
    )
    assert r.status_code == 400 and r.json()["error_code"] == "invalid_request"


def test_list_is_newest_first_with_cursor_and_filter(service: LiveService, other_key: str) -> None:
    ids = [submit(service, clip(SHORT).path, key=other_key).json()["id"] for _ in range(3)]
    for job_id in ids:
        wait_ended(service, job_id, key=other_key)
    page1 = httpx.get(
        f"{service.url}/stt/jobs", params={"limit": 2}, headers=service.headers(other_key)
    ).json()
    assert [j["id"] for j in page1["data"]] == ids[::-1][:2] and page1["has_more"]
    page2 = httpx.get(
        f"{service.url}/stt/jobs",
        params={"limit": 2, "cursor": page1["next_cursor"]},
        headers=service.headers(other_key),
    ).json()
    assert ids[0] in [j["id"] for j in page2["data"]]
    done = httpx.get(
        f"{service.url}/stt/jobs",
        params={"status": "succeeded", "limit": 100},
        headers=service.headers(other_key),
    ).json()
    assert set(ids) <= {j["id"] for j in done["data"]}
    assert all(j["status"] == "succeeded" for j in done["data"])
    for params in ({"status": "nope"}, {"limit": "0"}, {"cursor": "!!"}):
        r = httpx.get(f"{service.url}/stt/jobs", params=params, headers=service.headers())
        assert r.status_code == 400, params


def test_tenants_see_only_their_own_jobs(service: LiveService, other_key: str) -> None:
    job_id = submit(service, clip(SHORT).path).json()["id"]
    r = get(service, job_id, key=other_key)
    assert r.status_code == 404 and r.json()["error_code"] == "not_found"
    listed = httpx.get(
        f"{service.url}/stt/jobs", params={"limit": 100}, headers=service.headers(other_key)
    ).json()
    assert job_id not in {j["id"] for j in listed["data"]}
    r = httpx.delete(f"{service.url}/stt/jobs/{job_id}", headers=service.headers(other_key))
    assert r.status_code == 404
    assert get(service, job_id).status_code == 200
    assert wait_ended(service, job_id)["status"] == "succeeded"


class Receiver:
    """A webhook receiver on loopback that fails its first `failures` deliveries."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[tuple[int, dict[str, str], bytes]] = []
        self.done = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 500 if len(receiver.calls) < receiver.failures else 200
                receiver.calls.append((status, dict(self.headers), body))
                self.send_response(status)
                self.end_headers()
                if status == 200:
                    receiver.done.set()

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(failures=2)
    yield r
    r.server.shutdown()


def test_webhook_signed_and_retried_until_delivered(
    service: LiveService, receiver: Receiver, session_pg_url: str
) -> None:
    job_id = submit(service, clip(SHORT).path, data={"webhook_url": receiver.url}).json()["id"]
    assert wait_ended(service, job_id)["status"] == "succeeded"
    assert receiver.done.wait(60), receiver.calls
    assert [status for status, _, _ in receiver.calls] == [500, 500, 200]
    _, headers, body = receiver.calls[-1]
    assert verify(WEBHOOK_SECRET, body, headers[SIGNATURE_HEADER])
    assert not verify("wrong-secret", body, headers[SIGNATURE_HEADER])
    assert not verify(WEBHOOK_SECRET, body + b" ", headers[SIGNATURE_HEADER])
    sent = json.loads(body)
    assert sent["id"] == job_id and sent["status"] == "succeeded" and sent["result"]["text"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with session_factory(make_engine(session_pg_url))() as session:
            rows = (
                session.execute(
                    select(WebhookDelivery)
                    .where(WebhookDelivery.job_id == job_id)
                    .order_by(WebhookDelivery.attempt)
                )
                .scalars()
                .all()
            )
            status = session.execute(select(Job.webhook_status).where(Job.id == job_id)).scalar()
        if status == "delivered":
            break
        time.sleep(0.2)
    assert [(d.attempt, d.status_code, d.delivered) for d in rows] == [
        (1, 500, False),
        (2, 500, False),
        (3, 200, True),
    ]
    assert status == "delivered"
    assert db_job(session_pg_url, job_id).status == "succeeded"


@pytest.mark.parametrize(
    "url",
    ["http://10.1.2.3/hook", "http://169.254.169.254/latest", "ftp://example.com/x", "not a url"],
)
def test_webhook_to_private_targets_is_refused(service: LiveService, url: str) -> None:
    r = submit(service, clip(SHORT).path, data={"webhook_url": url})
    assert r.status_code == 400
    assert r.json()["error_code"] == "invalid_request"
