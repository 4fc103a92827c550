"""Liveness and readiness."""

from __future__ import annotations

from datetime import timedelta

import anyio
from litestar import Response, route
from sqlalchemy import select, text

from api import operations as doc
from api.schemas import Liveness, Readiness
from api.state import AppState
from core.liveness import seen_window_s
from core.models import WorkerSeen, utcnow


@route("/health/live", http_method=["GET", "HEAD"], summary="The process is up")
async def live() -> Liveness:
    return Liveness(status="ok")


def _broker_ok(state: AppState) -> bool:
    try:
        with state.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        return False


async def _worker_seen(state: AppState) -> bool:
    """Some worker said it was alive within the last few sweep intervals."""
    window = timedelta(seconds=seen_window_s(state.settings.workers.stale_after_s))
    async with state.sessions() as session:
        seen = (
            await session.execute(
                select(WorkerSeen.name).where(WorkerSeen.seen_at > utcnow() - window).limit(1)
            )
        ).first()
    return seen is not None


@route(
    "/health/ready",
    http_method=["GET", "HEAD"],
    summary="Database, broker, storage and a worker are available",
    responses={
        200: doc.ok(Readiness, "Everything is available"),
        503: doc.ok(Readiness, "Something is unavailable (see `checks`)"),
    },
)
async def ready(stt: AppState) -> Response[Readiness]:
    state = stt
    checks: dict[str, bool] = {}
    try:
        async with state.sessions() as session:
            await session.execute(text("SELECT 1"))
        checks["database"] = True
    except Exception:
        checks["database"] = False
    checks["broker"] = await anyio.to_thread.run_sync(_broker_ok, state)
    checks["storage"] = await anyio.to_thread.run_sync(state.storage.ready)
    checks["worker"] = await _worker_seen(state) if checks["database"] else False
    ok = all(checks.values())
    body = Readiness(status="ok" if ok else "unavailable", checks=checks)
    return Response(body, status_code=200 if ok else 503)
