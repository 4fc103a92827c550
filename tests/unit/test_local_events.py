"""Job-ended announcements without Redis (core.local_events): a worker's datagram wakes the
API's waiter at once, where otherwise only the shared database poll would."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import update

from api.waiter import JobWaiter
from core import local_events
from core.db import async_session_factory, make_async_engine
from core.migrate import upgrade
from core.models import Job
from core.queues import make_celery
from core.settings import load_settings
from worker.context import WorkerContext
from worker.lifecycle import announce

JOB = "a" * 32


def test_announce_reaches_every_listener_and_skips_dead_sockets(tmp_path: Path) -> None:
    folder = tmp_path / "events"

    async def scenario() -> tuple[list[str], list[str], int, bool]:
        loop = asyncio.get_running_loop()
        got_a: list[str] = []
        got_b: list[str] = []
        both = asyncio.Event()

        def on(into: list[str]) -> Callable[[str], None]:
            def take(job_id: str) -> None:
                into.append(job_id)
                if got_a and got_b:
                    both.set()

            return take

        a = local_events.Listener(folder, on(got_a))
        b = local_events.Listener(folder, on(got_b))
        assert a.open(loop.add_reader) and b.open(loop.add_reader)
        (folder / "gone.sock").touch()  # a stale name no process listens on
        sent = local_events.announce(folder, JOB)
        await asyncio.wait_for(both.wait(), 15)
        a.close(loop.remove_reader)
        b.close(loop.remove_reader)
        return got_a, got_b, sent, a.path.exists() or b.path.exists()

    got_a, got_b, sent, left = asyncio.run(scenario())
    assert (got_a, got_b, sent) == ([JOB], [JOB], 2)
    assert not left  # each listener removes its own socket
    assert not (folder / "gone.sock").exists()  # and a dead one is cleared by the sender


def test_announce_without_listeners_sends_nothing(tmp_path: Path) -> None:
    assert local_events.announce(tmp_path / "missing", JOB) == 0


def test_a_waiter_wakes_on_the_local_announcement_not_the_poll(tmp_path: Path) -> None:
    """The shared poll is set to an hour: only the datagram can end the wait within its
    30 s timeout (a missed one returns the old status, "running")."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    upgrade(url)

    async def scenario() -> str | None:
        engine = make_async_engine(url)
        sessions = async_session_factory(engine)
        async with sessions() as session, session.begin():
            session.add(
                Job(id=JOB, tenant="t", queue="q", model="m", model_spec="m", status="running")
            )
        waiter = JobWaiter(sessions, None, shared_poll_s=3600, events_dir=tmp_path / "events")
        await waiter.start()
        try:
            waiting = asyncio.create_task(waiter.wait(JOB, 30))
            while JOB not in waiter._known:  # noqa: ASYNC110 (until the waiter has read it)
                await asyncio.sleep(0.01)
            async with sessions() as session, session.begin():
                await session.execute(update(Job).values(status="succeeded"))
            assert local_events.announce(tmp_path / "events", JOB) == 1
            return await asyncio.wait_for(waiting, 60)
        finally:
            await waiter.stop()
            await engine.dispose()

    assert asyncio.run(scenario()) == "succeeded"


def test_a_worker_without_redis_announces_an_ended_job_to_the_api(tmp_path: Path) -> None:
    """`worker.lifecycle.announce` on the embedded default reaches the API's listener in the
    data dir (with Redis it publishes instead)."""
    settings = load_settings({"STT_DATA_DIR": str(tmp_path)})
    assert settings.broker.redis_url is None
    ctx = WorkerContext(settings, make_celery(settings))

    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        got: list[str] = []
        arrived = asyncio.Event()

        def take(job_id: str) -> None:
            got.append(job_id)
            arrived.set()

        listener = local_events.Listener(settings.storage.events_dir, take)
        assert listener.open(loop.add_reader)
        try:
            announce(ctx, JOB)
            await asyncio.wait_for(arrived.wait(), 10)
        finally:
            listener.close(loop.remove_reader)
        return got

    assert asyncio.run(scenario()) == [JOB]
