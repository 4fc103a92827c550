"""Hang-ups cancel: a synchronous job all of whose callers have gone is cancelled.

Each synchronous request waits for its job while watching its connection (ASGI's
`http.disconnect`). When the last waiter of a job in this process has hung up, the job is
cancelled after `STT_SYNC_HANGUP_GRACE_S`, unless a retry attaches first. Jobs of the job
API have no waiters here and are never cancelled by a hang-up.

A retry may reach another API process than the call it repeats, so every waiter is also
counted in the job's row (`jobs.sync_callers`: +1 when it starts waiting, -1 when it hangs
up) and the cancel only takes a job that no process counts a caller of. A process that dies
leaves its count behind: that job is then never cancelled by a hang-up, it just finishes.
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
Count = Callable[[str, int], Awaitable[None]]
"""Add a change (+1, -1) to the job's shared count of synchronous callers."""
T = TypeVar("T")


async def until_disconnect(receive: Receive) -> None:
    """Return once the client has closed the connection (the body has been read)."""
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return


class HangUps:
    """Who waits on which synchronous job in this process, and the cancels pending."""

    def __init__(self, grace_s: float, cancel: Cancel, count: Count | None = None) -> None:
        self.grace_s, self._cancel, self._count = grace_s, cancel, count
        self._waiting: Counter[str] = Counter()
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._releases: set[asyncio.Task[None]] = set()

    async def arrive(self, job_id: str) -> None:
        """Count a caller of the job where every API process sees it, then `join`."""
        if self._count is not None:
            await self._count(job_id, 1)
        self.join(job_id)

    def join(self, job_id: str) -> None:
        """A caller waits on the job: a cancel pending for it is called off."""
        self._waiting[job_id] += 1
        timer = self._timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()

    def leave(self, job: Job, *, hung_up: bool) -> None:
        """A caller stops waiting; the last one to hang up starts the grace period."""
        self._waiting[job.id] -= 1
        last = self._waiting[job.id] <= 0
        if last:
            del self._waiting[job.id]
        # a job of the job API (met through an Idempotency-Key) is never cancelled here
        if not hung_up or job.queue != INTERACTIVE_QUEUE:
            return
        if last and job.id not in self._timers:
            log.info(
                "every caller of job %s hung up; it is cancelled in %g s unless one comes back",
                job.id,
                self.grace_s,
            )
            task = asyncio.create_task(self._cancel_later(job), name=f"hangup-{job.id}")
            self._timers[job.id] = task
        else:  # not the last here, or a cancel is already pending: just count it out
            release = asyncio.create_task(self._release(job.id), name=f"release-{job.id}")
            self._releases.add(release)
            release.add_done_callback(self._releases.discard)

    async def _release(self, job_id: str) -> None:
        if self._count is not None:
            try:
                await self._count(job_id, -1)
            except Exception:
                log.warning("could not count a hung-up caller of job %s out", job_id)

    def waiting(self, job_id: str) -> int:
        return self._waiting.get(job_id, 0)

    async def _cancel_later(self, job: Job) -> None:
        try:
            # shielded: a retry calling the cancel off must not stop the count halfway
            await asyncio.shield(self._release(job.id))
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

    async def settle(self) -> None:
        """Wait until the pending cancels and counts have run their course."""
        await asyncio.gather(*self._timers.values(), *self._releases, return_exceptions=True)

    async def close(self) -> None:
        """Stop the pending cancels (at shutdown)."""
        timers, self._timers = list(self._timers.values()), {}
        if self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)
        for timer in timers:
            timer.cancel()
        for timer in timers:
            with contextlib.suppress(asyncio.CancelledError):
                await timer


async def wait_or_hang_up(
    hangups: HangUps, job: Job, receive: Receive, wait: Awaitable[T]
) -> T | None:
    """`wait`'s result, or None once the caller has hung up (then `wait` is cancelled)."""
    try:
        await hangups.arrive(job.id)
    except BaseException:
        if asyncio.iscoroutine(wait):
            wait.close()  # never started: no "was never awaited" warning
        raise
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
