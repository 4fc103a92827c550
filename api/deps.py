"""Litestar dependency injection: what a handler asks for by parameter name.

`stt` is the `AppState`, `tenant` the caller's tenant (the key is checked, and a missing,
unknown or revoked one is a 401 in the shape of the path family), `jobs` the job service.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import Provide

from api.auth import Caller, authenticate, authenticate_caller
from api.jobs import JobService
from api.state import AppState


def provide_state(state: State) -> AppState:
    return AppState.of(state)


async def provide_tenant(request: Request[Any, Any, Any], stt: AppState) -> str:
    return await authenticate(request, stt.settings, stt.sessions, stt.limiter)


async def provide_caller(request: Request[Any, Any, Any], stt: AppState) -> Caller:
    """The caller, authenticated but not yet counted (polls count per job: api.ratelimit)."""
    return await authenticate_caller(request, stt.settings, stt.sessions)


def provide_job_service(stt: AppState) -> JobService:
    return JobService(stt)


DEPENDENCIES = {
    "stt": Provide(provide_state, sync_to_thread=False),
    "tenant": Provide(provide_tenant),
    "caller": Provide(provide_caller),
    "jobs": Provide(provide_job_service, sync_to_thread=False),
}
