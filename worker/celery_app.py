"""The worker's Celery app, built from settings: queues, late acks, prefetch 1, tasks."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task
from sqlalchemy.exc import DBAPIError, OperationalError

from core.queues import (
    CHUNK_TASK,
    RECONCILE_TASK,
    TRANSCRIBE_TASK,
    WEBHOOK_TASK,
    make_celery,
    parse_chunk_ref,
)
from core.settings import Settings
from worker.chunked import fail_job, release_chunk, run_chunk
from worker.context import WorkerContext
from worker.jobs import finish, release, run_job

log = logging.getLogger("stt.worker")

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    DBAPIError,
    ConnectionError,
    TimeoutError,
)
"""Trouble that passes: retried with backoff. Anything else fails the job with its reason."""


def create_worker_app(settings: Settings) -> Celery:
    app = make_celery(settings, name="stt-worker")
    ctx = WorkerContext(settings, app)

    @app.task(
        shared=False,
        name=TRANSCRIBE_TASK,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        max_retries=settings.workers.max_attempts,
    )
    def transcribe_task(self: Task[Any, Any], job_id: str) -> None:
        """Thin: run the job; on transient trouble hand it back and retry with backoff."""
        try:
            run_job(ctx, job_id)
        except TRANSIENT_ERRORS as exc:  # all are Exception subclasses
            try:
                release(ctx, job_id)
            except Exception:
                log.warning("could not release job %s", job_id, exc_info=True)
            countdown = min(2**self.request.retries, 60)
            raise self.retry(exc=exc, countdown=countdown) from exc  # type: ignore[arg-type]
        except Exception as exc:
            log.exception("job %s failed", job_id)
            finish(
                ctx,
                job_id,
                {
                    "status": "failed",
                    "error_code": "transcription_failed",
                    "error_message": f"{type(exc).__name__}: {exc}"[:2000],
                },
            )
            raise

    @app.task(
        shared=False,
        name=CHUNK_TASK,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        max_retries=settings.workers.max_attempts,
    )
    def chunk_task(self: Task[Any, Any], ref: str) -> None:
        """One chunk of a long job (`<job id>:<index>`); retried like a job."""
        try:
            run_chunk(ctx, ref)
        except TRANSIENT_ERRORS as exc:
            try:
                release_chunk(ctx, ref)
            except Exception:
                log.warning("could not release chunk %s", ref, exc_info=True)
            countdown = min(2**self.request.retries, 60)
            raise self.retry(exc=exc, countdown=countdown) from exc  # type: ignore[arg-type]
        except Exception as exc:
            log.exception("chunk %s failed", ref)
            fail_job(
                ctx,
                parse_chunk_ref(ref)[0],
                "transcription_failed",
                f"{type(exc).__name__}: {exc}"[:2000],
            )
            raise

    @app.task(name=WEBHOOK_TASK, acks_late=True, shared=False)
    def webhook_task(job_id: str, attempt: int = 1) -> None:
        from worker.webhooks import deliver

        deliver(ctx, job_id, attempt)

    @app.task(name=RECONCILE_TASK, shared=False)
    def reconcile_task() -> int:
        from worker.reconciler import reconcile

        return reconcile(ctx, app)

    app.stt_context = ctx  # type: ignore[attr-defined]
    return app
