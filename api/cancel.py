"""Cancel a job from the API: the shared end (`core.job_end`), then what follows it."""

from __future__ import annotations

import anyio

from api.service import drop_audio
from api.state import AppState
from core.job_end import after_end, callers_statement, cancel_statement
from core.models import Job
from core.queues import enqueue_webhook


async def cancel_job(state: AppState, job: Job, *, unless_awaited: bool = False) -> bool:
    """Cancel `job` if it is still queued or running (its worker notices at its next
    heartbeat); drop its audio, announce it, send its webhook. False if it had ended, or,
    `unless_awaited`, if a synchronous caller still waits on it in some API process."""
    async with state.sessions() as session, session.begin():
        result = await session.execute(cancel_statement(job.id, unless_awaited=unless_awaited))
        changed = bool(result.rowcount)  # type: ignore[attr-defined]
    if changed:
        end = after_end(job.audio_key, job.webhook_url, keep_audio=False)
        if end.drop_audio:
            await drop_audio(state, end.drop_audio)
        await state.waiter.publish(job.id)
        if end.send_webhook:
            await anyio.to_thread.run_sync(enqueue_webhook, state.celery, job.id)
    return changed


async def count_caller(state: AppState, job_id: str, change: int) -> None:
    """A synchronous caller starts (+1) or stops (-1) waiting on the job, for every API
    process to see."""
    async with state.sessions() as session, session.begin():
        await session.execute(callers_statement(job_id, change))
