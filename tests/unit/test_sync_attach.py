# ruff: noqa: F811  (the fixtures of test_jobs_api are imported, then requested by name)
"""Retries attach, hang-ups cancel, quotas in audio seconds: in-process, SQLite, no worker
(every job stays queued, so a synchronous call ends in its timeout, naming its job)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.hangup import HangUps, wait_or_hang_up
from core.models import Job
from core.queues import BATCH_QUEUE, INTERACTIVE_QUEUE
from tests.unit.test_jobs_api import (  # noqa: F401 (fixtures)
    ASYNC,
    FORM,
    KEY,
    OPENAI,
    OTHER_KEY,
    Service,
    Start,
    audio,
    cartesia_error,
    openai_error,
    start,
)

STT = "/stt"
QUICK = {"STT_SYNC_TIMEOUT_S": "0.3"}
"""A synchronous call gives up quickly (no worker runs the job), naming the job it left."""


def left_job(response: httpx.Response) -> str:
    """The job a synchronous call that timed out says goes on."""
    assert response.status_code == 503, response.text
    message: str = response.json()["message"]
    return message.rsplit(" ", 1)[-1]


# --- retries attach ---------------------------------------------------------------------------


def test_an_identical_retry_waits_on_the_same_job(start: Start) -> None:
    svc = start(**QUICK)
    first = left_job(svc.submit(path=STT))
    retry = left_job(svc.submit(path=STT))
    assert retry == first
    assert svc.job_rows() == 1
    assert len(svc.audio_files()) == 1  # the retry's upload was discarded


def test_different_options_or_another_tenant_make_new_jobs(start: Start) -> None:
    svc = start(**QUICK)
    svc.add_key(OTHER_KEY, "other")
    first = left_job(svc.submit(path=STT))
    assert left_job(svc.submit({**FORM, "language": "fr"}, path=STT)) != first
    assert left_job(svc.submit(path=STT, key=OTHER_KEY)) != first
    assert svc.job_rows() == 3


def test_a_job_api_job_is_never_attached_to(start: Start) -> None:
    svc = start(**QUICK)
    queued = svc.accepted(path=STT, headers=ASYNC)["id"]
    assert left_job(svc.submit(path=STT)) != queued
    assert svc.job_rows() == 2


def test_an_idempotency_key_wins_over_attaching(start: Start) -> None:
    svc = start(**QUICK)
    a = left_job(svc.submit(path=STT, headers={"Idempotency-Key": "a"}))
    b = left_job(svc.submit(path=STT, headers={"Idempotency-Key": "b"}))
    plain = left_job(svc.submit(path=STT))
    assert len({a, b, plain}) == 3  # a keyed job is not a twin, and keys name their own
    assert left_job(svc.submit(path=STT, headers={"Idempotency-Key": "a"})) == a
    assert svc.job_rows() == 3


def test_identical_requests_at_once_make_one_job(start: Start) -> None:
    svc = start(**QUICK)

    async def both() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=svc.client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            files = {"file": ("jfk.flac", svc.audio, "audio/flac")}
            headers = {"Authorization": f"Bearer {KEY}"}
            calls = [client.post(STT, data=FORM, files=files, headers=headers) for _ in range(3)]
            return list(await asyncio.gather(*calls))

    with svc.client.portal() as portal:
        responses = portal.call(both)
    assert len({left_job(r) for r in responses}) == 1
    assert svc.job_rows() == 1


# --- quotas in audio seconds ------------------------------------------------------------------


def test_a_tenant_past_its_audio_quota_is_429_in_both_shapes(start: Start) -> None:
    svc = start(STT_MAX_QUEUED_AUDIO_S_PER_TENANT="15")  # the clip lasts 11 s
    svc.accepted()
    with svc.nothing_kept():
        refused = cartesia_error(svc.submit(), 429, "rate_limited")
        assert "15 s" in refused["message"]
        assert int(svc.submit().headers["retry-after"]) > 0
        openai = svc.submit(path=OPENAI, headers=ASYNC)
        openai_error(openai, 429, "rate_limited")
        assert int(openai.headers["retry-after"]) > 0


def test_the_total_audio_quota_counts_every_tenant(start: Start) -> None:
    svc = start(STT_MAX_QUEUED_AUDIO_S_TOTAL="15")
    svc.add_key(OTHER_KEY, "other")
    svc.accepted()
    with svc.nothing_kept():
        cartesia_error(svc.submit(key=OTHER_KEY), 429, "rate_limited")


def test_a_cancelled_job_frees_its_audio_quota_and_zero_is_no_limit(start: Start) -> None:
    svc = start(STT_MAX_QUEUED_AUDIO_S_PER_TENANT="15")
    first = svc.accepted()["id"]
    assert svc.delete(first).status_code == 200
    svc.accepted()
    unlimited = start(STT_MAX_QUEUED_AUDIO_S_PER_TENANT="0", STT_MAX_QUEUED_AUDIO_S_TOTAL="0")
    for _ in range(3):
        unlimited.accepted()


# --- hang-ups cancel (the bookkeeping; the live service is in tests/e2e/test_hangups.py) ----


def _job(queue: str = INTERACTIVE_QUEUE) -> Job:
    return Job(id="j1", tenant="t", queue=queue)


class _Cancels:
    def __init__(self) -> None:
        self.jobs: list[str] = []
        self.done = asyncio.Event()

    async def __call__(self, job: Job) -> bool:
        self.jobs.append(job.id)
        self.done.set()
        return True


async def _hang_up(hangups: HangUps, job: Job) -> Any:
    """One waiter whose client disconnects at once, its wait never ending."""

    async def receive() -> dict[str, str]:
        return {"type": "http.disconnect"}

    return await wait_or_hang_up(hangups, job, receive, asyncio.Event().wait())


def test_the_last_hang_up_cancels_after_the_grace() -> None:
    async def run() -> list[str]:
        cancels = _Cancels()
        hangups = HangUps(0.0, cancels)
        assert await _hang_up(hangups, _job()) is None
        await asyncio.wait_for(cancels.done.wait(), 10)
        return cancels.jobs

    assert asyncio.run(run()) == ["j1"]


def test_a_waiter_still_there_or_back_in_the_grace_keeps_the_job() -> None:
    async def run() -> list[str]:
        cancels = _Cancels()
        hangups = HangUps(3600.0, cancels)
        hangups.join("j1")  # another caller still waits
        await _hang_up(hangups, _job())
        assert hangups.waiting("j1") == 1
        hangups.leave(_job(), hung_up=True)  # now all have gone: the grace starts
        hangups.join("j1")  # a retry attaches within it
        hangups.leave(_job(), hung_up=False)  # and gets its answer
        await hangups.close()
        return cancels.jobs

    assert asyncio.run(run()) == []


def test_an_answered_or_job_api_wait_is_never_cancelled() -> None:
    async def run() -> list[str]:
        cancels = _Cancels()
        hangups = HangUps(0.0, cancels)

        async def never() -> dict[str, str]:
            await asyncio.Event().wait()
            return {}

        async def answer() -> str:
            return "text"

        assert await wait_or_hang_up(hangups, _job(), never, answer()) == "text"
        await _hang_up(hangups, _job(BATCH_QUEUE))
        await asyncio.sleep(0)  # a cancel would have been scheduled by now
        await hangups.close()
        return cancels.jobs

    assert asyncio.run(run()) == []


@pytest.mark.parametrize("grace", ["-1", "x"])
def test_a_bad_grace_setting_is_refused(grace: str) -> None:
    from core.errors import ConfigError
    from core.settings import load_settings

    with pytest.raises(ConfigError):
        load_settings({"STT_SYNC_HANGUP_GRACE_S": grace})


def test_a_retry_in_another_api_process_keeps_the_job(tmp_path: Path) -> None:
    """Two API processes over one database (two app states): a caller hangs up on one, its
    retry waits on the other; the first one's cancel leaves the job, the retry's hang-up
    cancels it (the count of callers is the job row's, not a process's)."""
    from sqlalchemy import select

    from api.app import build_state
    from core.db import make_engine, session_factory
    from core.migrate import upgrade
    from core.models import JobStatus
    from core.settings import load_settings

    settings = load_settings(
        {"STT_DATA_DIR": str(tmp_path), "STT_API_KEY": KEY, "STT_SYNC_HANGUP_GRACE_S": "0"}
    )
    upgrade(settings.database.url)
    engine = make_engine(settings.database.url)
    job = Job(id="j1", tenant="t", queue=INTERACTIVE_QUEUE, model="m", model_spec="m", options={})
    with session_factory(engine)() as session, session.begin():
        session.add(job)

    def row() -> tuple[str, int]:
        with session_factory(engine)() as session:
            found = session.execute(select(Job.status, Job.sync_callers)).one()
            return str(found.status), int(found.sync_callers)

    async def run() -> list[tuple[str, int]]:
        first, second = build_state(settings), build_state(settings)
        seen = []
        try:
            await first.hangups.arrive("j1")  # the call, on the first process
            await second.hangups.arrive("j1")  # its retry, on the second
            first.hangups.leave(job, hung_up=True)  # the call's client has gone
            await first.hangups.settle()
            seen.append(row())
            second.hangups.leave(job, hung_up=True)  # and now the retry's too
            await second.hangups.settle()
            seen.append(row())
        finally:
            for state in (first, second):
                await state.hangups.close()
                await state.engine.dispose()
        return seen

    try:
        assert asyncio.run(run()) == [
            (JobStatus.queued.value, 1),
            (JobStatus.cancelled.value, 0),
        ]
    finally:
        engine.dispose()
