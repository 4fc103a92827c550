"""Delivering a job's end to its webhook: signed, recorded, retried with backoff."""

from __future__ import annotations

import json
import logging

import httpx
from sqlalchemy import select, update

from core.errors import InvalidRequest
from core.jobview import job_json
from core.models import Job, WebhookDelivery
from core.queues import enqueue_webhook
from core.webhooks import SIGNATURE_HEADER, check_target, sign
from worker.context import WorkerContext

log = logging.getLogger("stt.webhooks")


def _record(
    ctx: WorkerContext,
    job_id: str,
    attempt: int,
    *,
    status_code: int | None,
    error: str | None,
    delivered: bool,
    final_status: str | None,
) -> None:
    with ctx.db()() as session, session.begin():
        session.add(
            WebhookDelivery(
                job_id=job_id,
                attempt=attempt,
                status_code=status_code,
                error=error,
                delivered=delivered,
            )
        )
        if final_status is not None:
            session.execute(update(Job).where(Job.id == job_id).values(webhook_status=final_status))


def deliver(ctx: WorkerContext, job_id: str, attempt: int) -> None:
    """One attempt. A failing receiver never touches the job, only its delivery records."""
    settings = ctx.settings
    with ctx.db()() as session:
        job = session.execute(select(Job).where(Job.id == job_id)).scalar_one_or_none()
        if job is None or not job.webhook_url:
            return
        url = job.webhook_url
        body = json.dumps(job_json(job), separators=(",", ":")).encode()
    if not settings.webhooks.secret:
        _record(
            ctx,
            job_id,
            attempt,
            status_code=None,
            error="no STT_WEBHOOK_SECRET configured",
            delivered=False,
            final_status="failed",
        )
        return
    try:
        check_target(url, settings.webhooks.allow)  # again at delivery: DNS may have changed
        response = httpx.post(
            url,
            content=body,
            timeout=settings.webhooks.timeout_s,
            follow_redirects=False,
            headers={
                "Content-Type": "application/json",
                "STT-Webhook-Id": job_id,
                "STT-Webhook-Attempt": str(attempt),
                SIGNATURE_HEADER: sign(settings.webhooks.secret, body),
            },
        )
        status, error = response.status_code, None if response.is_success else response.text[:500]
    except InvalidRequest as exc:
        _record(
            ctx,
            job_id,
            attempt,
            status_code=None,
            error=exc.message,
            delivered=False,
            final_status="failed",
        )
        return
    except httpx.HTTPError as exc:
        status, error = None, f"{type(exc).__name__}: {exc}"[:500]
    ok = status is not None and 200 <= status < 300
    last = attempt >= settings.webhooks.max_attempts
    _record(
        ctx,
        job_id,
        attempt,
        status_code=status,
        error=error,
        delivered=ok,
        final_status="delivered" if ok else ("failed" if last else None),
    )
    if not ok and not last:
        delay = min(settings.webhooks.backoff_s * 2 ** (attempt - 1), 300.0)
        log.info("webhook for job %s failed (attempt %d); retry in %.1f s", job_id, attempt, delay)
        enqueue_webhook(ctx.app, job_id, attempt + 1, countdown=delay)
