"""Hang-ups cancel: a synchronous job all of whose callers have gone is cancelled.

Each synchronous request waits for its job while watching its connection (ASGI's
`http.disconnect`). When the last waiter of a job in this process has hung up, the job is
cancelled after `STT_SYNC_HANGUP_GRACE_S`, unless a retry attaches first. Jobs of the job
API have no waiters here and are never cancelled by a hang-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from core.models import Job
from core.queues import INTERACTIVE_QUEUE

log = logging.getLogger("stt.api")

Receive = Callable[[], Awaitable[Any]]
Cancel = Callable[[Job], Awaitable[bool]]
T = TypeVar("T")


async def until_disconnect(receive: Receive) -> None:
    """Return once the client has closed the connection (the body has been read)."""
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return


class HangUps:
    """Who waits on which synchronous job in this process, and the cancels pending."""

    def __init__(self, grace_s: float, cancel: Cancel) -> None:
        self.grace_s, self._cancel = grace_s, cancel
        self._waiting: Counter[str] = Counter()
        self._timers: dict[str, asyncio.Task[None]] = {}

    def join(self, job_id: str) -> None:
        """A caller waits on the job: a cancel pending for it is called off."""
        self._waiting[job_id] += 1
        timer = self._timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()

    def leave(self, job: Job, *, hung_up: bool) -> None:
        """A caller stops waiting; the last one to hang up starts the grace period."""
        self._waiting[job.id] -= 1
        if self._waiting[job.id] > 0:
            return
        del self._waiting[job.id]
        # a job of the job API (met through an Idempotency-Key) is never cancelled here
        if hung_up and job.queue == INTERACTIVE_QUEUE and job.id not in self._timers:
            log.info(
                "every caller of job %s hung up; it is cancelled in %g s unless one comes back",
                job.id,
                self.grace_s,
            )
            task = asyncio.create_task(self._cancel_later(job), name=f"hangup-{job.id}")
            self._timers[job.id] = task

    def waiting(self, job_id: str) -> int:
        return self._waiting.get(job_id, 0)

    async def _cancel_later(self, job: Job) -> None:
        try:
            await asyncio.sleep(self.grace_s)
            if self._waiting.get(job.id, 0) == 0 and await self._cancel(job):
                log.info("job %s cancelled: every caller hung up", job.id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("could not cancel job %s after its callers hung up", job.id)
        finally:
            if self._timers.get(job.id) is asyncio.current_task():
                del self._timers[job.id]

    async def close(self) -> None:
        """Stop the pending cancels (at shutdown)."""
        timers, self._timers = list(self._timers.values()), {}
        for timer in timers:
            timer.cancel()
        for timer in timers:
            with contextlib.suppress(asyncio.CancelledError):
                await timer


async def wait_or_hang_up(
    hangups: HangUps, job: Job, receive: Receive, wait: Awaitable[T]
) -> T | None:
    """`wait`'s result, or None once the caller has hung up (then `wait` is cancelled)."""
    hangups.join(job.id)
    waiting = asyncio.ensure_future(wait)
    watching = asyncio.ensure_future(until_disconnect(receive))
    hung_up = True  # unless the wait ends: a cancelled handler counts as a hang-up
    try:
        await asyncio.wait({waiting, watching}, return_when=asyncio.FIRST_COMPLETED)
        if waiting.done():
            hung_up = False
            return waiting.result()
        return None
    finally:
        for task in (waiting, watching):
            task.cancel()
        for task in (waiting, watching):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        hangups.leave(job, hung_up=hung_up)
