"""The job service behind `/stt/jobs`: a tenant's own jobs, long-polls and pages of them."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select

from api.state import AppState
from core.echo import quoted
from core.errors import InvalidRequest, NotFound
from core.models import Job, JobStatus, is_id


def cursor_of(job: Job) -> str:
    raw = json.dumps([job.created_at.isoformat(), job.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


MAX_CURSOR = 200
"""A cursor made by :func:`cursor_of` is about 90 characters."""


def parse_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a page ended at; 400 for anything :func:`cursor_of` did not make
    (decoded strictly: URL-safe base64 of a JSON pair of an aware ISO time and a job id)."""
    invalid = InvalidRequest("cursor is not valid", param="cursor")
    if len(cursor) > MAX_CURSOR or not _CURSOR.fullmatch(cursor):
        raise invalid
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        created, job_id = json.loads(raw)
        if not (isinstance(created, str) and isinstance(job_id, str) and is_id(job_id)):
            raise invalid
        when = datetime.fromisoformat(created)
    except (ValueError, TypeError) as exc:
        raise invalid from exc
    if when.tzinfo is None or when.isoformat() != created:  # exactly what cursor_of wrote
        raise invalid
    return when, job_id


_CURSOR = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    next_cursor: str | None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


@dataclass(frozen=True)
class JobService:
    state: AppState

    async def own(self, tenant: str, job_id: str) -> Job:
        """The tenant's job; 404 for another tenant's, as for one that does not exist, and
        for an id that is not one (never a query)."""
        if not is_id(job_id):
            raise NotFound(f"no job {quoted(job_id)}")
        async with self.state.sessions() as session:
            job = (
                await session.execute(select(Job).where(Job.id == job_id, Job.tenant == tenant))
            ).scalar_one_or_none()
        if job is None:
            raise NotFound(f"no job {quoted(job_id)}")
        return job

    async def own_after(self, tenant: str, job_id: str, wait: float) -> Job:
        """The job once its status changes, or after `wait` seconds (at once if it ended)."""
        job = await self.own(tenant, job_id)
        if wait > 0 and not JobStatus(job.status).ended:
            await self.state.waiter.wait(job_id, wait, changed_from=job.status)
            job = await self.own(tenant, job_id)
        return job

    async def page(self, tenant: str, limit: int, status: str | None, cursor: str | None) -> Page:
        """Newest first, `limit` at a time, after `cursor` (a page's `next_cursor`)."""
        query = select(Job).where(Job.tenant == tenant)
        if status:
            query = query.where(Job.status == status)
        if cursor:
            created, last_id = parse_cursor(cursor)
            query = query.where(
                or_(Job.created_at < created, and_(Job.created_at == created, Job.id < last_id))
            )
        query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
        async with self.state.sessions() as session:
            jobs = list((await session.execute(query)).scalars())
        page, more = jobs[:limit], len(jobs) > limit
        return Page(page, cursor_of(page[-1]) if more and page else None)
