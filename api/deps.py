"""Litestar dependency injection: what a handler asks for by parameter name.

`stt` is the `AppState`, `tenant` the caller's tenant (the key is checked, and a missing,
unknown or revoked one is a 401 in the shape of the path family), `jobs` the job service.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import Provide

from api.auth import authenticate
from api.jobs import JobService
from api.state import AppState


def provide_state(state: State) -> AppState:
    return AppState.of(state)


async def provide_tenant(request: Request[Any, Any, Any], stt: AppState) -> str:
    return await authenticate(request, stt.settings, stt.sessions, stt.limiter)


def provide_job_service(stt: AppState) -> JobService:
    return JobService(stt)


DEPENDENCIES = {
    "stt": Provide(provide_state, sync_to_thread=False),
    "tenant": Provide(provide_tenant),
    "jobs": Provide(provide_job_service, sync_to_thread=False),
}
