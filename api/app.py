"""`create_app(settings)`: the Litestar application, its state, routes and error handlers."""

from __future__ import annotations

import logging

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig

from api.errors import EXCEPTION_HANDLERS
from api.routes import cartesia, health, jobs, openai
from api.state import AppState
from api.waiter import JobWaiter
from core.db import async_session_factory, make_async_engine
from core.queues import make_celery
from core.settings import Settings, load_settings
from core.storage import LocalStorage

FORM_OVERHEAD_BYTES = 1024 * 1024
"""Room for the form fields and multipart framing beside the file."""


def build_state(settings: Settings) -> AppState:
    settings.audio_dir.mkdir(parents=True, exist_ok=True)
    engine = make_async_engine(settings.database_url)
    sessions = async_session_factory(engine)
    return AppState(
        settings=settings,
        engine=engine,
        sessions=sessions,
        storage=LocalStorage(settings.audio_dir),
        celery=make_celery(settings, name="stt-api"),
        waiter=JobWaiter(sessions, settings.redis_url),
    )


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or load_settings()
    state = build_state(settings)

    async def on_startup() -> None:
        await state.waiter.start()

    async def on_shutdown() -> None:
        await state.waiter.stop()
        await state.engine.dispose()

    return Litestar(
        route_handlers=[
            cartesia.stt,
            openai.transcriptions,
            openai.translations,
            openai.list_models,
            openai.get_model,
            jobs.submit_job,
            jobs.get_job,
            jobs.list_jobs,
            jobs.delete_job,
            health.live,
            health.ready,
        ],
        state=State({"stt": state}),
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_upload_bytes + FORM_OVERHEAD_BYTES,
        openapi_config=OpenAPIConfig(title="Self-hosted STT", version="0.1.0"),
        logging_config=None,
    )


logging.getLogger("stt").addHandler(logging.NullHandler())
