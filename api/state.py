"""What the API's handlers share, made once in `create_app` (no module-level singletons)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.hangup import HangUps
from api.job_reads import JobReads
from api.keycache import KeyCache
from api.observe import HttpMetrics
from api.ratelimit import RateLimiter
from api.waiter import JobWaiter
from core.settings import Settings
from core.storage import Storage


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    storage: Storage
    celery: Celery
    waiter: JobWaiter
    limiter: RateLimiter
    metrics: HttpMetrics
    reads: JobReads
    """The poll path's reads and its cache of ended jobs."""
    keys: KeyCache
    """Key → tenant, for STT_KEY_CACHE_S."""
    hangups: HangUps
    """The callers waiting on synchronous jobs, and the cancels once they hang up."""
    started_at: int = field(default_factory=lambda: int(time.time()))
    """When this API process started (the `created` of the models it lists)."""

    @classmethod
    def of(cls, app_state: Any) -> AppState:
        state: AppState = app_state.stt
        return state
