"""Delivering a job's end to its webhook: signed, recorded, retried with backoff.

Runs only in webhook workers (`python -m worker --webhooks`), with short connect and read
timeouts, and at most STT_WEBHOOK_PER_RECEIVER deliveries at once to one receiver host: a
delivery that finds its receiver's slots taken is sent back to the queue for a moment,
without counting as an attempt."""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select, update

from core.errors import InvalidRequest
from core.jobview import job_json
from core.models import Job, WebhookDelivery
from core.queues import enqueue_webhook
from core.webhooks import SIGNATURE_HEADER, check_target, sign
from worker.context import WorkerContext

log = logging.getLogger("stt.webhooks")
BUSY_RECEIVER_WAIT_S = 1.0
"""How long a delivery whose receiver has no free slot waits before it is tried again."""


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
    """One attempt, once a slot for its receiver is free (else it goes back to the queue)."""
    with ctx.db()() as session:
        url = session.execute(select(Job.webhook_url).where(Job.id == job_id)).scalar()
    if not url:
        return
    host = urlsplit(url).hostname or ""
    if not ctx.receiver_slots.take(host):
        enqueue_webhook(ctx.app, job_id, attempt, countdown=BUSY_RECEIVER_WAIT_S)
        return
    try:
        _attempt(ctx, job_id, attempt)
    finally:
        ctx.receiver_slots.give(host)


def _attempt(ctx: WorkerContext, job_id: str, attempt: int) -> None:
    """A failing receiver never touches the job, only its delivery records."""
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
            timeout=httpx.Timeout(
                settings.webhooks.timeout_s, connect=settings.webhooks.connect_timeout_s
            ),
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
