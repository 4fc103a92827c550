"""The job service behind `/stt/jobs`: a tenant's own jobs, long-polls and pages of them."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, or_, select

from api.cursors import make_cursor, parse_cursor
from api.state import AppState
from core.echo import quoted
from core.errors import NotFound
from core.models import Job, JobStatus, is_id


def cursor_of(job: Job) -> str:
    return make_cursor(job.created_at, job.id)


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
