"""The worker's Celery app, built from settings (queues, late acks, prefetch 1: see
`core.queues.make_celery`), with the tasks of `worker.tasks` bound to one context."""

from __future__ import annotations

from celery import Celery

from core.queues import make_celery
from core.settings import Settings
from worker.context import WorkerContext
from worker.tasks import register_tasks


def create_worker_app(settings: Settings) -> Celery:
    app = make_celery(settings, name="stt-worker")
    ctx = WorkerContext(settings, app)
    register_tasks(app, ctx)
    app.stt_context = ctx  # type: ignore[attr-defined]
    return app
