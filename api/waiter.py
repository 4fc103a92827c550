"""Waiting for jobs to end without a thread, or a query, per waiter.

With Redis, one pub/sub subscription per API process wakes the waiters of a job as soon as
a worker announces it; without Redis, a Unix datagram socket in `events_dir` does the same
for the workers of this machine (core.local_events). The database is polled as well, by one
shared query per interval over every job someone in this process waits on (briskly without
Redis, STT_WAITER_POLL_S; every 2 s with it, so a lost announcement costs latency, never a
hang): a thousand long-polls cost what one does, and nobody waiting costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.local_events import Listener
from core.models import Job, JobStatus
from core.notify import JOB_EVENTS_CHANNEL

log = logging.getLogger("stt.waiter")


_IDS_PER_QUERY = 500


class JobWaiter:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        redis_url: str | None,
        shared_poll_s: float = 0.05,
        events_dir: Path | None = None,
    ) -> None:
        self.sessions = sessions
        self.redis_url = redis_url
        self.shared_poll_s = shared_poll_s
        self._events: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._known: dict[str, str | None] = {}
        """The status each watched job had when last seen (None: not yet read)."""
        self._task: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._connected = False
        self._local = None if redis_url or events_dir is None else Listener(events_dir, self.notify)
        self.listeners: list[Callable[[str], None]] = []
        """Called with a job id whenever the job is announced (e.g. to drop a cached view)."""

    @property
    def poll_interval(self) -> float:
        """How often a stream re-reads its job's text (the job's status needs no polling)."""
        return 2.0 if self._connected else 0.25

    @property
    def _shared_interval(self) -> float:
        return 2.0 if self._connected else self.shared_poll_s

    async def start(self) -> None:
        if self.redis_url:
            self._task = asyncio.create_task(self._listen(), name="job-events")
        if self._local is not None:
            self._local.open(asyncio.get_running_loop().add_reader)

    async def stop(self) -> None:
        if self._local is not None:
            self._local.close(asyncio.get_running_loop().remove_reader)
        for task in (self._task, self._poller):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def notify(self, job_id: str) -> None:
        for listener in self.listeners:
            listener(job_id)
        for event in self._events.get(job_id, ()):
            event.set()

    def _ensure_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll_watched(), name="job-status-poll")

    async def _poll_watched(self) -> None:
        """While anyone waits: one query per interval for the statuses of all watched jobs,
        waking the waiters of each job whose status moved."""
        while self._events:
            await asyncio.sleep(self._shared_interval)
            ids = [job_id for job_id in self._events if job_id in self._known]
            if not ids:
                continue
            try:
                current: dict[str, str] = {}
                async with self.sessions() as session:
                    for at in range(0, len(ids), _IDS_PER_QUERY):
                        batch = ids[at : at + _IDS_PER_QUERY]
                        rows = await session.execute(
                            select(Job.id, Job.status).where(Job.id.in_(batch))
                        )
                        current.update((str(i), str(s)) for i, s in rows.all())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("could not poll the statuses of waited-on jobs", exc_info=True)
                continue
            for job_id in ids:
                status = current.get(job_id)
                if job_id in self._known and self._known[job_id] != status:
                    self._known[job_id] = status
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
        `timeout` passes; return its last status (None if the job is gone). Waiting itself
        reads nothing: the shared poll or an announcement wakes it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with self.watch(job_id, known=changed_from) as event:
            status = changed_from if changed_from is not None else await self.status(job_id)
            self._known[job_id] = status
            while True:
                if status is None or JobStatus(status).ended:
                    return status
                if changed_from is not None and status != changed_from:
                    return status
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return status
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
                if event.is_set():
                    event.clear()
                    status = await self.status(job_id)
                    self._known[job_id] = status

    @contextlib.contextmanager
    def watch(self, job_id: str, known: str | None = None) -> Iterator[asyncio.Event]:
        """An event set whenever the job is announced (it ended, or changed status), or
        the shared poll sees its status move from `known` (read now when not given)."""
        event = asyncio.Event()
        self._events[job_id].add(event)
        if known is not None:
            self._known.setdefault(job_id, known)
        self._ensure_poller()
        try:
            yield event
        finally:
            self._events[job_id].discard(event)
            if not self._events[job_id]:
                self._events.pop(job_id, None)
                self._known.pop(job_id, None)
