"""Retries attach: a synchronous request that repeats one still queued or running (same
tenant, same audio, same options) waits on that job instead of making a new one.

Finding the twin and writing the new job happen under one lock per (tenant, request hash),
so two identical requests at once make one job: a transaction-scoped advisory lock on
Postgres (across API processes), and a process-local lock everywhere (enough on SQLite,
whose database one host owns).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from weakref import WeakValueDictionary

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Job, JobStatus
from core.queues import INTERACTIVE_QUEUE

PENDING = (JobStatus.queued.value, JobStatus.running.value)

_locks: WeakValueDictionary[str, asyncio.Lock] = WeakValueDictionary()


def _lock_of(name: str) -> asyncio.Lock:
    lock = _locks.get(name)
    if lock is None:
        lock = asyncio.Lock()
        _locks[name] = lock
    return lock


def _advisory_key(name: str) -> int:
    """A signed 64-bit key for `pg_advisory_xact_lock`."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextlib.asynccontextmanager
async def twin_guard(tenant: str, digest: str | None) -> AsyncIterator[None]:
    """This process's lock of (tenant, digest), held until the new job is committed
    (nothing when `digest` is None)."""
    if digest is None:
        yield
        return
    async with _lock_of(f"{tenant}\x00{digest}"):
        yield


async def lock_twins(session: AsyncSession, tenant: str, digest: str) -> None:
    """On Postgres, hold the lock of (tenant, digest) to the end of `session`'s transaction,
    so API processes on other hosts serialise too."""
    if session.get_bind().dialect.name == "postgresql":
        key = _advisory_key(f"{tenant}\x00{digest}")
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


async def pending_twin(session: AsyncSession, tenant: str, digest: str) -> Job | None:
    """The tenant's synchronous job, still queued or running, made by the same request
    (one made with an Idempotency-Key belongs to that key, and is never a twin)."""
    return (
        (
            await session.execute(
                select(Job)
                .where(
                    Job.tenant == tenant,
                    Job.request_hash == digest,
                    Job.queue == INTERACTIVE_QUEUE,
                    Job.idempotency_key.is_(None),
                    Job.status.in_(PENDING),
                )
                .order_by(Job.created_at)
                .limit(1)
            )
        )
        .scalars()
        .first()
    )
