"""Waiting for jobs to end without a thread per waiter.

With Redis, one pub/sub subscription per API process wakes the waiters of a job as soon as
a worker announces it; the database is polled as a fallback (slowly with Redis, briskly
without it), so a lost announcement costs latency, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator

import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.models import Job, JobStatus
from core.notify import JOB_EVENTS_CHANNEL

log = logging.getLogger("stt.waiter")


class JobWaiter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], redis_url: str | None) -> None:
        self.sessions = sessions
        self.redis_url = redis_url
        self._events: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._connected = False

    @property
    def poll_interval(self) -> float:
        return 2.0 if self._connected else 0.25

    async def start(self) -> None:
        if self.redis_url:
            self._task = asyncio.create_task(self._listen(), name="job-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def notify(self, job_id: str) -> None:
        for event in self._events.get(job_id, ()):
            event.set()

    async def _listen(self) -> None:
        assert self.redis_url
        while True:
            client = aioredis.Redis.from_url(self.redis_url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(JOB_EVENTS_CHANNEL)
                    self._connected = True
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self.notify(message["data"].decode())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("job events subscription lost; polling until it is back")
            finally:
                self._connected = False
                await client.aclose()
            await asyncio.sleep(1.0)

    async def status(self, job_id: str) -> str | None:
        async with self.sessions() as session:
            status = (
                await session.execute(select(Job.status).where(Job.id == job_id))
            ).scalar_one_or_none()
            return None if status is None else str(status)

    async def publish(self, job_id: str) -> None:
        """Wake this process's waiters and, through Redis, every other API process's."""
        self.notify(job_id)
        if not self.redis_url:
            return
        client = aioredis.Redis.from_url(self.redis_url, socket_timeout=2)
        try:
            await client.publish(JOB_EVENTS_CHANNEL, job_id)
        except Exception:
            log.warning("could not announce job %s", job_id)
        finally:
            await client.aclose()

    async def wait(
        self,
        job_id: str,
        timeout: float,  # noqa: ASYNC109 (a deadline for the caller, not a cancel scope)
        changed_from: str | None = None,
    ) -> str | None:
        """Wait until the job has ended, or its status is no longer `changed_from`, or
        `timeout` passes; return its last status (None if the job is gone)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with self.watch(job_id) as event:
            while True:
                status = await self.status(job_id)
                if status is None or JobStatus(status).ended:
                    return status
                if changed_from is not None and status != changed_from:
                    return status
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return status
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(self.poll_interval, remaining))
                event.clear()

    @contextlib.contextmanager
    def watch(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever the job is announced (it ended, or changed status)."""
        event = asyncio.Event()
        self._events[job_id].add(event)
        try:
            yield event
        finally:
            self._events[job_id].discard(event)
            if not self._events[job_id]:
                self._events.pop(job_id, None)
