"""Retries attach, hang-ups cancel, quotas in audio seconds: a live API and one worker on
Postgres and Redis.

A job of the job API keeps the only worker busy (a "blocker"), so a synchronous job waits
in the queue for as long as a test needs; cancelling the blocker lets it run.
"""

from __future__ import annotations

import socket
import threading
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from cartesia import Cartesia

from tests.conftest import SERVICE_ENV
from tests.e2e.jobs_client import submit, wait_ended
from tests.e2e.jobs_client import wait_until as wait_status
from tests.support import (
    LiveService,
    clip,
    error_rate,
    long_audio,
    start_service,
    stop_service_proc,
    wait_for_worker,
    wait_until,
)

pytestmark = pytest.mark.e2e

SHORT = clip("en_jfk_inaugural.flac")
QUOTA_S = 1200
GRACE_S = 10
FORM = {"model": "ink-whisper", "language": "en"}


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, module_pg_url: str, module_redis_url: str
) -> Iterator[LiveService]:
    svc = start_service(
        tmp_path_factory.mktemp("hangups"),
        {
            "DATABASE_URL": module_pg_url,
            "REDIS_URL": module_redis_url,
            **SERVICE_ENV,
            "STT_SYNC_HANGUP_GRACE_S": str(GRACE_S),
            "STT_MAX_QUEUED_AUDIO_S_PER_TENANT": str(QUOTA_S),
            "STT_CHUNK_THRESHOLD_S": "3600",  # the blocker stays one job on one worker
        },
    )
    wait_for_worker(svc)
    yield svc
    stop_service_proc(svc.proc)


@pytest.fixture(scope="module")
def very_long(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 9 minutes of speech: it holds the worker until it is cancelled."""
    path, _ = long_audio(
        tmp_path_factory.mktemp("audio") / "long.wav", ["de_librivox_aeneas_de.mp3"], repeat=8
    )
    return path


def job_ids(service: LiveService) -> set[str]:
    r = httpx.get(
        f"{service.url}/stt/jobs", headers=service.headers(), params={"limit": 100}, timeout=30
    )
    assert r.status_code == 200, r.text
    return {job["id"] for job in r.json()["data"]}


def one_new_job(service: LiveService, before: set[str]) -> str:
    """Wait for the one job made since `before`; fail if there are more."""
    wait_until(lambda: job_ids(service) - before, 60, "a new job")
    new = job_ids(service) - before
    assert len(new) == 1, new
    return new.pop()


def cancel(service: LiveService, job_id: str) -> None:
    r = httpx.delete(f"{service.url}/stt/jobs/{job_id}", headers=service.headers(), timeout=30)
    assert r.status_code == 200, r.text


@pytest.fixture
def blocker(service: LiveService, very_long: Path) -> Iterator[str]:
    """A job-API job running on the only worker; cancelled at the end if still running."""
    job_id = submit(service, very_long).json()["id"]
    wait_status(service, job_id, {"running"})
    yield job_id
    httpx.delete(f"{service.url}/stt/jobs/{job_id}", headers=service.headers(), timeout=30)


def send_and_hold(
    service: LiveService, path: str, audio: Path, headers: dict[str, str] | None = None
) -> socket.socket:
    """Send a synchronous request on a raw socket and read nothing: closing the socket is
    the caller hanging up."""
    url = f"{service.url}{path}"
    request = httpx.Request(
        "POST",
        url,
        headers={**service.headers(), **(headers or {})},
        files={"file": (audio.name, audio.read_bytes())},
        data=FORM,
    )
    body = request.read()
    head = f"POST {path} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in request.headers.items()
    )
    parts = urlsplit(service.url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80))
    sock.sendall(head.encode() + b"\r\n" + body)
    return sock


def hung_up(service: LiveService, job_id: str) -> bool:
    return f"every caller of job {job_id} hung up" in service.log()


def post_sync(service: LiveService, path: str, audio: Path, **kwargs: Any) -> httpx.Response:
    with audio.open("rb") as f:
        return httpx.post(
            f"{service.url}{path}",
            headers=service.headers(),
            files={"file": (audio.name, f)},
            data=FORM,
            timeout=240,
            **kwargs,
        )


def test_a_hung_up_callers_job_is_cancelled_and_frees_its_worker(
    service: LiveService, very_long: Path
) -> None:
    before = job_ids(service)
    sock = send_and_hold(service, "/stt", very_long)
    job_id = one_new_job(service, before)
    wait_status(service, job_id, {"running"})
    sock.close()
    assert wait_ended(service, job_id, timeout=120)["status"] == "cancelled"
    assert hung_up(service, job_id)
    # The worker takes the next job.
    r = post_sync(service, "/stt", SHORT.path)
    assert r.status_code == 200, r.text
    assert error_rate(SHORT.reference, r.json()["text"], "en") < 0.2


def test_a_retry_within_the_grace_attaches_to_the_same_job(
    service: LiveService, blocker: str
) -> None:
    before = job_ids(service) | {blocker}
    sock = send_and_hold(service, "/v1/audio/transcriptions", SHORT.path)
    job_id = one_new_job(service, before)
    sock.close()
    wait_until(lambda: hung_up(service, job_id), 30, "the server to notice the hang-up")
    answer: dict[str, httpx.Response] = {}
    retry = threading.Thread(
        target=lambda: answer.update(r=post_sync(service, "/v1/audio/transcriptions", SHORT.path))
    )
    retry.start()
    cancel(service, blocker)  # the worker is free: the synchronous job runs
    retry.join(timeout=240)
    r = answer["r"]
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == job_id
    assert error_rate(SHORT.reference, r.json()["text"], "en") < 0.2
    assert job_ids(service) - before == {job_id}


def test_an_idempotency_key_makes_its_own_job(service: LiveService, blocker: str) -> None:
    before = job_ids(service) | {blocker}
    plain = send_and_hold(service, "/stt", SHORT.path)
    first = one_new_job(service, before)
    keyed = send_and_hold(service, "/stt", SHORT.path, {"Idempotency-Key": "mine-1"})
    second = one_new_job(service, before | {first})  # the key's own job, not the twin
    for sock in (plain, keyed):
        sock.close()
    assert job_ids(service) - before == {first, second}
    for job_id in (first, second):
        assert wait_ended(service, job_id, timeout=120)["status"] == "cancelled"


def test_the_cartesia_sdk_with_a_short_timeout_makes_one_job_and_succeeds(
    service: LiveService, blocker: str
) -> None:
    before = job_ids(service) | {blocker}
    client = Cartesia(base_url=service.url, api_key=service.key or "", timeout=20)
    answer: dict[str, Any] = {}

    def call() -> None:
        with SHORT.path.open("rb") as f:
            answer["result"] = client.stt.transcribe(file=f, model="ink-whisper", language="en")

    sdk = threading.Thread(target=call)
    sdk.start()
    job_id = one_new_job(service, before)
    # The first attempt times out while the worker is busy; the SDK retries.
    wait_until(lambda: hung_up(service, job_id), 60, "the SDK's first attempt to time out")
    cancel(service, blocker)
    sdk.join(timeout=240)
    assert error_rate(SHORT.reference, answer["result"].text, "en") < 0.2
    assert job_ids(service) - before == {job_id}
    assert wait_ended(service, job_id)["status"] == "succeeded"


def silence(path: Path, seconds: int) -> Path:
    """A WAV of silence, 8 kHz: long in seconds, small in bytes."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(np.zeros(8000 * seconds, dtype="<i2").tobytes())
    return path


def test_a_file_past_the_audio_quota_is_429_in_both_shapes(
    service: LiveService, tmp_path: Path
) -> None:
    audio = silence(tmp_path / "silence.wav", QUOTA_S + 100)
    before = job_ids(service)
    cartesia = submit(service, audio)
    assert cartesia.status_code == 429, cartesia.text
    assert cartesia.json()["error_code"] == "rate_limited"
    assert f"{QUOTA_S} s" in cartesia.json()["message"]
    assert int(cartesia.headers["retry-after"]) > 0
    openai = post_sync(service, "/v1/audio/transcriptions", audio)
    assert openai.status_code == 429, openai.text
    assert openai.json()["error"]["code"] == "rate_limited"
    assert int(openai.headers["retry-after"]) > 0
    assert job_ids(service) == before
