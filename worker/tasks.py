"""The worker's Celery tasks, kept thin: take the message, retry on transient trouble,
call a runner. Job and chunk tasks share one wrapper (`_register_runner`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Celery, Task
from sqlalchemy.exc import DBAPIError, OperationalError

from core.errors import FailureCode
from core.queues import CHUNK_TASK, RECONCILE_TASK, TRANSCRIBE_TASK, WEBHOOK_TASK
from worker import chunked, lifecycle
from worker.context import WorkerContext
from worker.jobs import run_job
from worker.reconciler import reconcile
from worker.webhooks import deliver

log = logging.getLogger("stt.worker")

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    DBAPIError,
    ConnectionError,
    TimeoutError,
)
"""Trouble that passes: retried with backoff. Anything else fails the job with its reason."""


@dataclass(frozen=True)
class Runner:
    """What a task does with its message (a job id, or a chunk's `<job id>:<index>`)."""

    kind: str
    run: Callable[[WorkerContext, str], None]
    release: Callable[[WorkerContext, str], None]
    """Hand the work back to the queue before a retry."""
    fail: Callable[[WorkerContext, str, FailureCode, str], Any]
    """Fail the job for good, with its reason."""


JOB = Runner("job", run_job, lifecycle.release, lifecycle.fail)
CHUNK = Runner("chunk", chunked.run_chunk, chunked.release_chunk, chunked.fail_chunk)


def run_message(task: Task[Any, Any], ctx: WorkerContext, runner: Runner, ref: str) -> None:
    """Run; on transient trouble hand the work back and retry with backoff; on anything
    else fail the job with the error and re-raise (so the failure is visible)."""
    try:
        runner.run(ctx, ref)
    except TRANSIENT_ERRORS as exc:  # all are Exception subclasses
        try:
            runner.release(ctx, ref)
        except Exception:
            log.warning("could not release %s %s", runner.kind, ref, exc_info=True)
        countdown = min(2**task.request.retries, 60)
        raise task.retry(exc=exc, countdown=countdown) from exc  # type: ignore[arg-type]
    except Exception as exc:
        log.exception("%s %s failed", runner.kind, ref)
        runner.fail(ctx, ref, FailureCode.transcription_failed, f"{type(exc).__name__}: {exc}")
        raise


def _register_runner(app: Celery, ctx: WorkerContext, name: str, runner: Runner) -> None:
    def task(self: Task[Any, Any], ref: str) -> None:
        run_message(self, ctx, runner, ref)

    task.__name__ = task.__qualname__ = f"{runner.kind}_task"
    app.task(
        shared=False,
        name=name,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        max_retries=ctx.settings.workers.max_attempts,
    )(task)


def register_tasks(app: Celery, ctx: WorkerContext) -> None:
    """Add every worker task to the app, each bound to this process's context."""
    _register_runner(app, ctx, TRANSCRIBE_TASK, JOB)
    _register_runner(app, ctx, CHUNK_TASK, CHUNK)

    @app.task(name=WEBHOOK_TASK, acks_late=True, shared=False)
    def webhook_task(job_id: str, attempt: int = 1) -> None:
        deliver(ctx, job_id, attempt)

    @app.task(name=RECONCILE_TASK, shared=False)
    def reconcile_task() -> int:
        return reconcile(ctx, app)
