"""How a job ends, for the worker and the API's cancel alike.

The statements are plain SQL (the worker runs them on a sync session, the API on an async
one); `failure` cuts the error text, in this one place; `after_end` says what follows a
stored end: drop the audio (unless it is kept), announce the job, send its webhook.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Update, update

from core.errors import FailureCode
from core.models import Job, JobStatus, utcnow

MAX_ERROR_CHARS = 2000
"""A stored error message is cut to this many characters."""

CANCEL_MESSAGE = "cancelled by its owner"


def failure(code: FailureCode, message: str) -> dict[str, Any]:
    """The column values of a failed job (the message cut to `MAX_ERROR_CHARS`)."""
    return {
        "status": JobStatus.failed.value,
        "error_code": code.value,
        "error_message": message[:MAX_ERROR_CHARS],
        "completed_at": utcnow(),
    }


def end_statement(where: ColumnElement[bool], values: dict[str, Any]) -> Update:
    """Store an end on the job rows `where` matches (the caller checks the row count)."""
    return update(Job).where(where).values(values)


def cancel_statement(job_id: str, *, unless_awaited: bool = False) -> Update:
    """Cancel the job if it is still queued or running (and, `unless_awaited`, if no
    synchronous caller waits on it in any API process)."""
    where = (Job.id == job_id) & Job.status.in_((JobStatus.queued.value, JobStatus.running.value))
    if unless_awaited:
        where = where & (Job.sync_callers <= 0)
    return end_statement(
        where,
        {
            "status": JobStatus.cancelled.value,
            "completed_at": utcnow(),
            "error_code": FailureCode.cancelled.value,
            "error_message": CANCEL_MESSAGE,
        },
    )


@dataclass(frozen=True)
class AfterEnd:
    """What follows a stored end; the job is always announced."""

    drop_audio: str | None
    """The audio key to delete, or None to keep it."""
    send_webhook: bool


def callers_statement(job_id: str, change: int) -> Update:
    """Count a synchronous caller in (+1) or out (-1) of the job's `sync_callers`."""
    return update(Job).where(Job.id == job_id).values(sync_callers=Job.sync_callers + change)


def after_end(audio_key: str | None, webhook_url: str | None, *, keep_audio: bool) -> AfterEnd:
    return AfterEnd(
        drop_audio=None if keep_audio or not audio_key else audio_key,
        send_webhook=bool(webhook_url),
    )
