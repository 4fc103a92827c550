"""Faults: a worker killed mid-job, Redis restarted with jobs queued, Postgres unreachable,
and 500 callers waiting at once. Nothing accepted is lost; nothing answers a 500."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from core.db import make_engine, session_factory
from core.models import Job
from core.settings import load_settings
from tests.conftest import SERVICE_ENV
from tests.e2e.jobs_client import get, submit, wait_ended, wait_until
from tests.support import (
    LiveService,
    RedisServer,
    TcpProxy,
    clip,
    error_rate,
    kill_group,
    long_audio,
    start_service,
    start_worker,
    stop_service_proc,
)
from tests.support import wait_until as poll_until
from worker.reconciler import sweep_interval

pytestmark = pytest.mark.e2e

FAST_RECOVERY = {**SERVICE_ENV, "STT_STALE_AFTER_S": "4", "STT_WORKER_HEARTBEAT_S": "0.5"}
FAST_RECOVERY_KEYS = ("STT_STALE_AFTER_S", "STT_WORKER_HEARTBEAT_S")
SHORT = "en_librispeech_2830-3980-0043.wav"


def job_row(pg_url: str, job_id: str) -> Job:
    with session_factory(make_engine(pg_url))() as session:
        return session.execute(select(Job).where(Job.id == job_id)).scalar_one()


@pytest.fixture
def api_only(
    tmp_path: Path, pg_url: str, redis_url: str
) -> Iterator[tuple[LiveService, dict[str, str]]]:
    """The API with no worker beside it; tests start (and kill) workers themselves."""
    env = {"DATABASE_URL": pg_url, "REDIS_URL": redis_url, **FAST_RECOVERY}
    svc = start_service(tmp_path / "api", env, workers=0)
    yield svc, {**env, "STT_DATA_DIR": str(svc.data_dir)}
    stop_service_proc(svc.proc)


@pytest.mark.timeout(600)  # the long job runs once and a half, on a loaded machine
def test_worker_killed_mid_job_is_requeued_within_the_staleness_and_succeeds_once(
    api_only: tuple[LiveService, dict[str, str]], pg_url: str, tmp_path: Path
) -> None:
    """On the default heartbeat and staleness (2 s, 10 s): the job of a worker killed with
    SIGKILL is claimed again by another worker within the staleness plus one sweep, the view
    shows the retry with its attempt count and a fresh start, and the job succeeds once."""
    service, api_env = api_only
    env = {k: v for k, v in api_env.items() if k not in FAST_RECOVERY_KEYS}
    settings = load_settings(env)
    assert settings.workers.stale_after_s < 30 and settings.workers.heartbeat_s <= 2
    audio, reference = long_audio(tmp_path / "long.wav", ["en_jfk_inaugural.flac"], repeat=8)
    first = start_worker(env, tmp_path / "worker1.log")
    job_id = submit(service, audio).json()["id"]
    before = wait_until(service, job_id, {"running"})
    assert (before["attempts"], before["retrying"]) == (1, False)
    # The second worker is up and idle before the first dies, so what the wait below
    # measures is the failover, not a worker's start.
    second = start_worker(env, tmp_path / "worker2.log")
    try:
        poll_until(lambda: "ready." in (tmp_path / "worker2.log").read_text(), 120, "worker 2")
        kill_group(first)  # kill -9 the worker and its pool children mid-transcription
        killed_at = time.monotonic()
        seen: list[dict[str, Any]] = []

        def claimed_again() -> bool:
            seen.append(get(service, job_id).json())
            return bool(seen[-1]["attempts"] >= 2)

        # A heartbeat is stale after STT_STALE_AFTER_S; a sweep runs every third of that.
        poll_until(
            claimed_again,
            settings.workers.stale_after_s + sweep_interval(settings) + 5,
            "the lost job to be claimed again within the configured staleness",
        )
        # Reported, not asserted (docs/faults.md quotes it; `pytest -rP` shows it).
        print(f"failover: claimed again {time.monotonic() - killed_at:.1f} s after the kill")
        again = seen[-1]
        assert again["retrying"] is True and again["status"] in ("queued", "running")
        assert again["started_at"] is None or again["started_at"] > before["started_at"]
        done = wait_ended(service, job_id, timeout=240)
    finally:
        kill_group(second)
    assert done["status"] == "succeeded", done["error"]
    assert (done["attempts"], done["retrying"]) == (2, False)
    # The audio is one sentence eight times over: Whisper may fold or skip a repeat (0.22
    # was seen once with twelve), so the bound only shows it is the right speech, not the
    # model's best.
    assert error_rate(reference, done["result"]["text"], "en") <= 0.35
    row = job_row(pg_url, job_id)
    assert row.attempts == 2
    log = (tmp_path / "worker2.log").read_text()
    assert log.count("succeeded in") == 1, "the job must run to completion exactly once"


def test_redis_restarted_with_jobs_queued_all_still_succeed(tmp_path: Path, pg_url: str) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    env = {"DATABASE_URL": pg_url, "REDIS_URL": redis.url, **FAST_RECOVERY}
    service = start_service(tmp_path / "api", env, workers=0)
    worker = None
    try:
        ids = [submit(service, clip(SHORT).path).json()["id"] for _ in range(3)]
        redis.stop()  # the queued messages die with it
        redis.start()
        worker = start_worker(
            {**env, "STT_DATA_DIR": str(service.data_dir)}, tmp_path / "worker.log"
        )
        results = [wait_ended(service, job_id, timeout=180) for job_id in ids]
    finally:
        if worker is not None:
            kill_group(worker)
        stop_service_proc(service.proc)
        redis.stop()
    assert [r["status"] for r in results] == ["succeeded"] * 3
    assert all(job_row(pg_url, job_id).attempts == 1 for job_id in ids)


@pytest.fixture
def behind_proxy(
    tmp_path: Path, pg_url: str, redis_url: str
) -> Iterator[tuple[LiveService, TcpProxy]]:
    """An API (no worker) whose Postgres is reached through a proxy the test can cut."""
    proxy = TcpProxy(5432)
    proxy.start()
    proxied = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    service = start_service(
        tmp_path / "api",
        {"DATABASE_URL": proxied, "REDIS_URL": redis_url, **SERVICE_ENV},
        workers=0,
    )
    try:
        yield service, proxy
    finally:
        stop_service_proc(service.proc)
        proxy.stop()


def test_postgres_unreachable_is_a_503_in_each_shape_and_recovers(
    behind_proxy: tuple[LiveService, TcpProxy],
) -> None:
    service, proxy = behind_proxy
    c = clip(SHORT)
    assert submit(service, c.path).status_code == 202
    proxy.stop()
    cartesia = submit(service, c.path, url="/stt")
    assert cartesia.status_code == 503
    assert cartesia.json()["error_code"] == "service_unavailable"
    assert cartesia.headers["retry-after"]
    openai = submit(service, c.path, url="/v1/audio/transcriptions", data={"model": "whisper-1"})
    assert openai.status_code == 503
    assert openai.json()["error"]["code"] == "service_unavailable"
    listing = httpx.get(f"{service.url}/stt/jobs", headers=service.headers())
    assert listing.status_code == 503 and listing.json()["error_code"]
    ready = httpx.get(f"{service.url}/health/ready")
    assert ready.status_code == 503 and ready.json()["checks"]["database"] is False
    stored = [p for p in (service.data_dir / "audio").rglob("*") if p.is_file()]
    assert len(stored) == 1, "only the accepted job's audio is kept; refused uploads go"
    proxy.start()
    again = submit(service, c.path)
    assert again.status_code == 202
    assert httpx.get(f"{service.url}/health/ready").json()["checks"]["database"] is True


def test_polls_after_the_database_dropped_its_connections_are_answered(
    behind_proxy: tuple[LiveService, TcpProxy],
) -> None:
    """The poll path's pool has no pre-ping: the first read on a connection the database
    dropped (a restart, here every connection cut) is retried once on a fresh one, so
    the caller never sees the restart."""
    service, proxy = behind_proxy
    job_id = submit(service, clip(SHORT).path).json()["id"]
    for _ in range(3):  # the read pool now holds a connection (or more)
        assert get(service, job_id).json()["status"] == "queued"
    proxy.stop()  # every connection broken...
    proxy.start()  # ...and the database back at once, before any request noticed
    polled = get(service, job_id)
    assert polled.status_code == 200, polled.text
    assert polled.json()["status"] == "queued"
    listing = httpx.get(f"{service.url}/stt/jobs", headers=service.headers(), timeout=30)
    assert listing.status_code == 200 and [j["id"] for j in listing.json()["data"]] == [job_id]


def test_polls_while_the_database_is_unreachable_are_503(
    behind_proxy: tuple[LiveService, TcpProxy],
) -> None:
    """With no pre-ping and one retry, a poll of a database that stays away is still a clear
    503, and polls answer again once it is back."""
    service, proxy = behind_proxy
    job_id = submit(service, clip(SHORT).path).json()["id"]
    assert get(service, job_id).status_code == 200
    proxy.stop()
    down = get(service, job_id)
    assert down.status_code == 503, down.text
    assert down.json()["error_code"] == "service_unavailable"
    proxy.start()
    assert get(service, job_id).json()["status"] == "queued"


def test_five_hundred_callers_waiting_at_once(
    api_only: tuple[LiveService, dict[str, str]],
) -> None:
    """Long-polls hold no thread: 500 at once all answer, and the API stays responsive."""
    service, _ = api_only
    job_id = submit(service, clip(SHORT).path).json()["id"]  # no worker: it stays queued

    async def run() -> tuple[list[int], int]:
        limits = httpx.Limits(max_connections=600, max_keepalive_connections=600)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            waits = [
                client.get(
                    f"{service.url}/stt/jobs/{job_id}",
                    params={"wait": "5"},
                    headers=service.headers(),
                )
                for _ in range(500)
            ]
            pending = asyncio.gather(*waits)
            # Part of the behaviour, not a synchronisation: the probe is sent a second into the
            # 5 s the polls are held, so it lands while all 500 wait (they answer at 5 s).
            await asyncio.sleep(1.0)
            live = await client.get(f"{service.url}/health/live")
            responses = await pending
        return [r.status_code for r in responses], live.status_code

    statuses, live = asyncio.run(run())
    assert live == 200
    assert statuses == [200] * 500
