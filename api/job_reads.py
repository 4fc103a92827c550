"""The poll path: a job's view read with one prebuilt Core statement of only the columns it
shows, its transcript loaded only once it has succeeded, and the rendered JSON of ended jobs
(they never change) kept in memory with an ETag, so a poll of a finished job asks nothing
of the database and a matching `If-None-Match` is answered 304 without a body.

An ended job's entry is trusted for `ttl_s` (STT_JOB_CACHE_S) and then revalidated with a
one-column lookup (it may have been deleted by its owner through another API process, or by
the retention sweep); a delete through this process, or announced through Redis, evicts it
at once.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from litestar import Response
from sqlalchemy import Engine, Row, Select, and_, bindparam, or_, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.cursors import make_cursor, parse_cursor
from core.db import retry_once_if_disconnected
from core.jobview import job_json
from core.models import Job, JobStatus

MAX_CACHE_BYTES = 32 * 1024 * 1024
"""Rendered ended jobs kept per API process, least recently polled dropped first."""
MAX_ENTRY_BYTES = 4 * 1024 * 1024
"""A larger transcript is rendered on every poll rather than crowd out the others."""

_VIEW_COLUMNS = (
    Job.id,
    Job.status,
    Job.model,
    Job.language,
    Job.created_at,
    Job.started_at,
    Job.completed_at,
    Job.duration,
    Job.progress,
    Job.text_so_far,
    Job.error_code,
    Job.error_message,
    Job.attempts,
)
_ONE = select(*_VIEW_COLUMNS).where(
    Job.id == bindparam("job_id"), Job.tenant == bindparam("tenant")
)
_TRANSCRIPT = select(Job.result, Job.options).where(Job.id == bindparam("job_id"))
_STILL_THERE = select(Job.status).where(
    Job.id == bindparam("job_id"), Job.tenant == bindparam("tenant")
)


@dataclass(frozen=True)
class JobRow:
    """The columns a job's view shows (satisfies `core.jobview.JobFields`)."""

    id: str
    status: str
    model: str
    language: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    duration: float | None
    progress: float | None
    text_so_far: str | None
    error_code: str | None
    error_message: str | None
    attempts: int | None = None
    options: dict[str, Any] | None = None
    result: dict[str, Any] | None = None


def _mapping(row: Row[Any]) -> Mapping[str, Any]:
    return cast(Mapping[str, Any], row._mapping)


@dataclass(frozen=True)
class RenderedJob:
    job_id: str
    tenant: str
    status: str
    body: bytes
    etag: str

    @property
    def ended(self) -> bool:
        return JobStatus(self.status).ended


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def render(tenant: str, row: JobRow, *, include_result: bool = True) -> RenderedJob:
    body = json.dumps(
        job_json(row, include_result=include_result), separators=(",", ":"), ensure_ascii=False
    ).encode()
    return RenderedJob(row.id, tenant, row.status, body, etag_of(body))


def matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an `If-None-Match` header names `etag` (weak comparison, as RFC 9110 asks)."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def respond(job: RenderedJob, if_none_match: str | None) -> Response[bytes]:
    """200 with the job's JSON, or 304 when the caller already holds this version."""
    headers = {"ETag": job.etag, "Cache-Control": "private, no-cache"}
    if matches(if_none_match, job.etag):
        return Response(b"", status_code=304, headers=headers)
    return Response(job.body, media_type="application/json", headers=headers)


@dataclass
class _Entry:
    job: RenderedJob
    checked_at: float


@dataclass
class JobReads:
    """Reads of jobs for their owners, with the ended-job render cache.

    On SQLite (`local` given: a sync engine on the same file) a read runs on the event loop
    itself: a primary-key lookup in WAL mode takes microseconds and never waits on a writer,
    while aiosqlite's thread costs five hops per query, most of a poll's CPU. On Postgres
    `engine` is the read engine (`core.db.make_read_engine`): autocommit, no pre-ping, a
    read retried once on a dropped connection."""

    engine: AsyncEngine
    ttl_s: float
    local: Engine | None = None
    clock: Callable[[], float] = time.monotonic
    max_bytes: int = MAX_CACHE_BYTES
    _ended: OrderedDict[str, _Entry] = field(default_factory=OrderedDict)
    _bytes: int = 0

    driver_sql: bool = False
    """Run the prebuilt statements as SQL on the driver's connection (Postgres' read engine):
    a third of a read's CPU was SQLAlchemy's execution and result layers."""
    _sql: dict[int, str] = field(default_factory=dict)

    async def _rows(
        self, *queries: tuple[Select[Any], dict[str, Any]], prebuilt: bool = True
    ) -> list[list[Mapping[str, Any]]]:
        """Each query's rows, in one connection; the next query runs only when the one before
        found rows (a missing job asks no more). `prebuilt`: the queries are this module's
        constant statements (their SQL is compiled once)."""
        out: list[list[Mapping[str, Any]]] = []
        if self.local is not None:
            with self.local.connect() as conn:
                for query, params in queries:
                    out.append([_mapping(r) for r in conn.execute(query, params)])
                    if not out[-1]:
                        break
            return out

        async def read() -> list[list[Mapping[str, Any]]]:
            out.clear()
            async with self.engine.connect() as aconn:
                if self.driver_sql and prebuilt:
                    await self._driver_rows(aconn, queries, out)
                    return out
                for query, params in queries:
                    out.append([_mapping(r) for r in await aconn.execute(query, params)])
                    if not out[-1]:
                        break
            return out

        return await retry_once_if_disconnected(read)

    async def _driver_rows(
        self,
        aconn: AsyncConnection,
        queries: tuple[tuple[Select[Any], dict[str, Any]], ...],
        out: list[list[Mapping[str, Any]]],
    ) -> None:
        raw = await aconn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None  # checked out, so connected
        for query, params in queries:
            sql = self._sql.get(id(query))
            if sql is None:
                sql = self._sql[id(query)] = str(query.compile(dialect=self.engine.dialect))
            try:
                cursor = await driver.execute(sql, params)
                names = [column.name for column in cursor.description]
                out.append([dict(zip(names, row, strict=True)) for row in await cursor.fetchall()])
            except Exception as exc:
                raise await self._driver_error(aconn, driver, sql, params, exc) from exc
            if not out[-1]:
                break

    async def _driver_error(
        self, aconn: AsyncConnection, driver: Any, sql: str, params: dict[str, Any], exc: Exception
    ) -> Exception:
        """The driver's error as SQLAlchemy would have raised it (so the 503 handlers and the
        retry see it); on a lost connection the pool is dropped as SQLAlchemy drops it."""
        dialect = self.engine.dialect
        dbapi = dialect.loaded_dbapi
        if not isinstance(exc, dbapi.Error):
            return exc
        lost = dialect.is_disconnect(exc, driver, None)
        if lost:
            await aconn.invalidate(exc)
            await self.engine.dispose(close=False)  # the pool's other connections are stale
        return DBAPIError.instance(
            sql, params, exc, dbapi.Error, connection_invalidated=lost, dialect=dialect
        )

    async def one(self, tenant: str, job_id: str) -> RenderedJob | None:
        """The tenant's job rendered, or None when there is no such job of theirs."""
        entry = self._ended.get(job_id)
        if entry is not None and entry.job.tenant == tenant:
            if self.clock() - entry.checked_at < self.ttl_s or await self._still_there(
                tenant, job_id
            ):
                self._ended.move_to_end(job_id)
                return entry.job
            self.evict(job_id)
            return None
        [found] = await self._rows((_ONE, {"job_id": job_id, "tenant": tenant}))
        if not found:
            return None
        row = JobRow(**found[0])
        if row.status == JobStatus.succeeded.value:
            [extra] = await self._rows((_TRANSCRIPT, {"job_id": job_id}))
            if extra:
                row = JobRow(**{**row.__dict__, **extra[0]})
        job = render(tenant, row)
        if job.ended:
            self._keep(job)
        return job

    async def _still_there(self, tenant: str, job_id: str) -> bool:
        [found] = await self._rows((_STILL_THERE, {"job_id": job_id, "tenant": tenant}))
        if not found:
            return False
        self._ended[job_id].checked_at = self.clock()
        return True

    def _keep(self, job: RenderedJob) -> None:
        if self.ttl_s <= 0 or len(job.body) > MAX_ENTRY_BYTES:
            return
        self.evict(job.job_id)
        self._ended[job.job_id] = _Entry(job, self.clock())
        self._bytes += len(job.body)
        while self._bytes > self.max_bytes and self._ended:
            _, dropped = self._ended.popitem(last=False)
            self._bytes -= len(dropped.job.body)

    def evict(self, job_id: str) -> None:
        """Forget a job (deleted, or announced as changed)."""
        entry = self._ended.pop(job_id, None)
        if entry is not None:
            self._bytes -= len(entry.job.body)

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._ended

    async def page(
        self, tenant: str, status: str | None, cursor: str | None, limit: int
    ) -> dict[str, Any]:
        """A page of the tenant's jobs, newest first, without transcripts."""
        query = select(*_VIEW_COLUMNS).where(Job.tenant == tenant)
        if status:
            query = query.where(Job.status == status)
        if cursor:
            created, last_id = parse_cursor(cursor)
            query = query.where(
                or_(Job.created_at < created, and_(Job.created_at == created, Job.id < last_id))
            )
        query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
        [found] = await self._rows((query, {}), prebuilt=False)
        rows = [JobRow(**r) for r in found]
        page, more = rows[:limit], len(rows) > limit
        return {
            "data": [job_json(r, include_result=False) for r in page],
            "has_more": more,
            "next_cursor": make_cursor(page[-1].created_at, page[-1].id) if more and page else None,
        }
