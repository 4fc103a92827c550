"""`create_app(settings)`: the Litestar application, its state, routes and error handlers."""

from __future__ import annotations

import logging

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig

from api.cancel import cancel_job, count_caller
from api.deps import DEPENDENCIES
from api.errors import EXCEPTION_HANDLERS
from api.hangup import HangUps
from api.http_guard import body_timeout
from api.job_reads import JobReads
from api.keycache import KeyCache
from api.observe import HttpMetrics, observe
from api.operations import COMPONENTS
from api.ratelimit import RateLimiter
from api.routes import cartesia, health, jobs, metrics, openai, outputs, realtime, web
from api.state import AppState
from api.waiter import JobWaiter
from core.db import async_session_factory, make_async_engine, make_engine, make_read_engine
from core.logs import configure_logging
from core.models import Job
from core.queues import make_celery
from core.settings import Settings, load_settings
from core.storage import make_storage

FORM_OVERHEAD_BYTES = 1024 * 1024
"""Room for the form fields and multipart framing beside the file."""


def build_state(settings: Settings) -> AppState:
    settings.storage.audio_dir.mkdir(parents=True, exist_ok=True)
    engine = make_async_engine(settings.database.url)
    sessions = async_session_factory(engine)
    waiter = JobWaiter(
        sessions,
        settings.broker.redis_url,
        settings.broker.waiter_poll_s,
        events_dir=settings.storage.events_dir,
    )
    local = make_engine(settings.database.url) if engine.dialect.name == "sqlite" else None
    read_engine = make_read_engine(settings.database.url)
    reads = JobReads(
        read_engine or engine, settings.api.job_cache_s, local, driver_sql=read_engine is not None
    )
    waiter.listeners.append(reads.evict)

    async def cancel(job: Job) -> bool:
        return await cancel_job(state, job, unless_awaited=True)

    async def count(job_id: str, change: int) -> None:
        await count_caller(state, job_id, change)

    state = AppState(
        settings=settings,
        engine=engine,
        sessions=sessions,
        storage=make_storage(settings),
        celery=make_celery(settings, name="stt-api"),
        waiter=waiter,
        limiter=RateLimiter(
            settings.limits.rate_limit_per_minute,
            settings.broker.redis_url,
            poll_per_minute=settings.limits.poll_limit_per_minute,
        ),
        metrics=HttpMetrics(),
        reads=reads,
        keys=KeyCache(settings.api.key_cache_s),
        hangups=HangUps(settings.limits.sync_hangup_grace_s, cancel, count),
    )
    return state


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or load_settings()
    state = build_state(settings)

    async def on_startup() -> None:
        await state.waiter.start()

    async def on_shutdown() -> None:
        await state.hangups.close()
        await state.waiter.stop()
        await state.limiter.close()
        await state.engine.dispose()
        if state.reads.engine is not state.engine:
            await state.reads.engine.dispose()
        if state.reads.local is not None:
            state.reads.local.dispose()

    app = Litestar(
        route_handlers=[
            cartesia.stt,
            realtime.stt_websocket,
            openai.transcriptions,
            openai.translations,
            openai.list_models,
            openai.get_model,
            jobs.submit_job,
            jobs.get_job,
            jobs.list_jobs,
            jobs.delete_job,
            outputs.job_transcript,
            *web.routes(),
            health.live,
            health.ready,
            metrics.metrics,
        ],
        state=State({"stt": state}),
        dependencies=DEPENDENCIES,
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.limits.max_upload_bytes + FORM_OVERHEAD_BYTES,
        openapi_config=OpenAPIConfig(
            title="Self-hosted STT",
            version="0.1.0",
            components=COMPONENTS,
            render_plugins=[web.swagger_plugin(["/", "/swagger"])],
        ),
        logging_config=None,
    )
    app.asgi_handler = observe(
        body_timeout(app.asgi_handler, settings.api.body_timeout_s), state.metrics
    )
    return app


def serve_app() -> Litestar:
    """What `stt serve` runs in each API process (with STT_API_WORKERS > 1, each forked one
    builds its own app, after the fork); it sets up the service's logging first."""
    settings = load_settings()
    configure_logging(settings.logs.level, settings.logs.format)
    return create_app(settings)


logging.getLogger("stt").addHandler(logging.NullHandler())
