"""The poll path (issue 14): ETag/304, the ended-job render cache, the key → tenant cache and
its revocation bound, per-job poll limits, and long-polls that read nothing while they wait.

In-process, on SQLite and the embedded broker with nobody consuming it; the worker's part
(a job starting, ending or disappearing) is played by writing the database directly.
"""

# ruff: noqa: F811 (the job API's fixtures, imported, are parameters here)

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import delete, event, select, update

from api.keycache import KeyCache
from api.waiter import JobWaiter
from core.db import async_session_factory, make_async_engine, transaction
from core.migrate import upgrade
from core.models import ApiKey, Job, utcnow
from tests.unit.test_jobs_api import (  # noqa: F401 (fixtures)
    JOBS,
    OTHER_KEY,
    Service,
    Start,
    audio,
    cartesia_error,
    start,
    svc,
)

RESULT = {
    "text": "And so, my fellow Americans",
    "language": "en",
    "duration": 11.0,
    "segments": [],
}


def until(condition: Callable[[], bool], deadline_s: float = 15.0) -> None:
    """Wait for `condition` with a bounded deadline (no sleep used as synchronisation)."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def write(svc: Service, job_id: str, **values: Any) -> None:
    with svc._sessions() as factory, transaction(factory) as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))


def succeed(svc: Service, job_id: str) -> None:
    now = utcnow()
    write(svc, job_id, status="succeeded", result=RESULT, started_at=now, completed_at=now)


def revoke(svc: Service, tenant: str) -> None:
    with svc._sessions() as factory, transaction(factory) as session:
        session.execute(update(ApiKey).where(ApiKey.tenant == tenant).values(revoked_at=utcnow()))


def away_from_a_minute_boundary() -> None:
    """The rate limiter's windows are calendar minutes: start a count well inside one."""
    until(lambda: time.time() % 60 < 50, deadline_s=15)


# --- ETag and 304 ---------------------------------------------------------------------------


def test_matching_if_none_match_is_304_without_a_body(svc: Service) -> None:
    job = svc.accepted()
    path = f"{JOBS}/{job['id']}"
    first = svc.get(path)
    etag = first.headers["etag"]
    assert first.status_code == 200 and etag.startswith('"')
    again = svc.client.get(path, headers={"Authorization": "Bearer k1", "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    weak_tag = {"Authorization": "Bearer k1", "If-None-Match": f"W/{etag}"}
    weak = svc.client.get(path, headers=weak_tag)
    assert weak.status_code == 304
    other = svc.client.get(path, headers={"Authorization": "Bearer k1", "If-None-Match": '"x"'})
    assert other.status_code == 200 and other.json() == first.json()
    # A change of the job is a new version.
    write(svc, job["id"], status="running", progress=0.5, text_so_far="And so")
    moved = svc.client.get(path, headers={"Authorization": "Bearer k1", "If-None-Match": etag})
    assert moved.status_code == 200
    assert moved.headers["etag"] != etag
    assert moved.json()["text_so_far"] == "And so"


def test_the_transcript_is_shown_only_once_the_job_succeeded(svc: Service) -> None:
    job = svc.accepted()
    path = f"{JOBS}/{job['id']}"
    write(svc, job["id"], status="running", result=RESULT, text_so_far="And so")
    running = svc.get(path).json()
    assert running["result"] is None and running["text_so_far"] == "And so"
    succeed(svc, job["id"])
    done = svc.get(path).json()
    assert done["status"] == "succeeded"
    assert done["result"]["text"] == RESULT["text"]
    assert done["result"]["request_id"] == job["id"]
    assert done["text_so_far"] is None


# --- the ended-job render cache -------------------------------------------------------------


def test_an_ended_job_is_served_from_memory_until_deleted(start: Start) -> None:
    svc = start(STT_JOB_CACHE_S="3600")
    job = svc.accepted()
    path = f"{JOBS}/{job['id']}"
    succeed(svc, job["id"])
    shown = svc.get(path).json()
    # Ended jobs never change; an edit behind the service's back is not read again...
    write(svc, job["id"], error_message="edited behind the service's back")
    assert svc.get(path).json() == shown
    # ...and another tenant still sees nothing.
    svc.add_key(OTHER_KEY, "other")
    cartesia_error(svc.get(path, key=OTHER_KEY), 404, "not_found")
    # Deleting through the API forgets the cached view at once.
    assert svc.delete(job["id"]).status_code == 204
    cartesia_error(svc.get(path), 404, "not_found")


def test_a_job_deleted_elsewhere_vanishes_within_the_bound(start: Start) -> None:
    svc = start(STT_JOB_CACHE_S="0.2")
    job = svc.accepted()
    path = f"{JOBS}/{job['id']}"
    succeed(svc, job["id"])
    assert svc.get(path).status_code == 200
    with svc._sessions() as factory, transaction(factory) as session:  # another API process
        session.execute(delete(Job).where(Job.id == job["id"]))
    until(lambda: svc.get(path).status_code == 404)
    cartesia_error(svc.get(path), 404, "not_found")


# --- the key → tenant cache -----------------------------------------------------------------


def test_key_cache_forgets_after_its_bound() -> None:
    now = [0.0]
    cache = KeyCache(5.0, max_keys=2, clock=lambda: now[0])
    cache.put("a", "tenant-a")
    assert cache.get("a") == "tenant-a"
    now[0] = 4.9
    assert cache.get("a") == "tenant-a"
    now[0] = 5.0
    assert cache.get("a") is None
    cache.put("a", "ta")
    cache.put("b", "tb")
    cache.put("c", "tc")
    assert len(cache) == 2 and cache.get("a") is None and cache.get("c") == "tc"
    off = KeyCache(0.0)
    off.put("a", "ta")
    assert off.get("a") is None


def test_a_revoked_key_is_refused_after_the_cache_bound(start: Start) -> None:
    svc = start(STT_KEY_CACHE_S="0.3")
    svc.add_key(OTHER_KEY, "other")
    assert svc.get(JOBS, key=OTHER_KEY).status_code == 200
    revoke(svc, "other")
    until(lambda: svc.get(JOBS, key=OTHER_KEY).status_code == 401)
    cartesia_error(svc.get(JOBS, key=OTHER_KEY), 401, "invalid_api_key")


def test_a_cached_key_is_not_looked_up_again_within_the_bound(start: Start) -> None:
    svc = start(STT_KEY_CACHE_S="3600")
    svc.add_key(OTHER_KEY, "other")
    assert svc.get(JOBS, key=OTHER_KEY).status_code == 200
    revoke(svc, "other")
    assert svc.get(JOBS, key=OTHER_KEY).status_code == 200  # within the documented bound
    cartesia_error(svc.get(JOBS, key="never-issued"), 401, "invalid_api_key")


# --- rate limits ------------------------------------------------------------------------------


def test_polls_of_own_jobs_do_not_use_up_the_key_limit(start: Start) -> None:
    svc = start(STT_RATE_LIMIT_PER_MINUTE="3")
    away_from_a_minute_boundary()
    job = svc.accepted()  # one request of three
    for _ in range(10):
        assert svc.get(f"{JOBS}/{job['id']}").status_code == 200
    # Polls of jobs that are not the caller's count as any other request.
    cartesia_error(svc.get(f"{JOBS}/{'0' * 32}"), 404, "not_found")
    cartesia_error(svc.get(f"{JOBS}/{'1' * 32}"), 404, "not_found")
    refused = svc.get(f"{JOBS}/{'2' * 32}")
    cartesia_error(refused, 429, "rate_limited")
    assert int(refused.headers["retry-after"]) > 0


def test_the_per_job_poll_limit_counts_a_long_poll_once(start: Start) -> None:
    svc = start(STT_POLL_LIMIT_PER_MINUTE="2")
    away_from_a_minute_boundary()
    first, second = svc.accepted(), svc.accepted()
    assert svc.get(f"{JOBS}/{first['id']}", wait="0.3").status_code == 200
    assert svc.get(f"{JOBS}/{first['id']}").status_code == 200
    cartesia_error(svc.get(f"{JOBS}/{first['id']}"), 429, "rate_limited")
    assert svc.get(f"{JOBS}/{second['id']}").status_code == 200  # each job has its own count


# --- long-polls --------------------------------------------------------------------------------


def test_a_long_poll_wakes_when_the_job_starts(svc: Service) -> None:
    job = svc.accepted()
    answers: list[dict[str, Any]] = []
    poll = threading.Thread(
        target=lambda: answers.append(svc.get(f"{JOBS}/{job['id']}", wait="30").json())
    )
    poll.start()
    try:
        write(svc, job["id"], status="running", started_at=utcnow())
    finally:
        poll.join(60)
    assert [a["status"] for a in answers] == ["running"]


async def _statements_while_waiting(
    tmp_path: Path, waiters: int
) -> tuple[list[str], list[str | None]]:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    upgrade(url)
    engine = make_async_engine(url)
    sessions = async_session_factory(engine)
    async with sessions() as session, session.begin():
        for n in range(waiters):
            session.add(Job(id=f"{n:032x}", tenant="t", queue="q", model="m", model_spec="m"))
    seen: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    waiter = JobWaiter(sessions, None, shared_poll_s=0.02)
    tasks = [
        asyncio.create_task(waiter.wait(f"{n:032x}", 30, changed_from="queued"))
        for n in range(waiters)
    ]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while len(seen) < 5 and loop.time() < deadline:  # noqa: ASYNC110 (a bounded condition)
        await asyncio.sleep(0.01)
    during = list(seen)
    async with sessions() as session, session.begin():
        await session.execute(update(Job).values(status="cancelled"))
    statuses = await asyncio.wait_for(asyncio.gather(*tasks), 15)
    async with sessions() as session:
        left = (await session.execute(select(Job.status))).scalars().all()
    await waiter.stop()
    await engine.dispose()
    assert set(left) == {"cancelled"}
    return during, list(statuses)


def test_waiting_costs_one_shared_query_per_interval(tmp_path: Path) -> None:
    during, statuses = asyncio.run(_statements_while_waiting(tmp_path, waiters=40))
    assert len(during) >= 5
    # Every statement while forty callers wait is the one shared poll over all their jobs.
    assert all(" IN " in sql and "jobs.status" in sql for sql in during), during
    assert statuses == ["cancelled"] * 40
