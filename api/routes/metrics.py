"""`/metrics` in Prometheus' text format: HTTP traffic (summed over the API processes of one
`stt serve`, see api.observe), and job, queue, audio and webhook figures read from the
database and the broker at scrape time (so every API process reports the same, whichever
workers did the work)."""

from __future__ import annotations

from typing import Any

import anyio
from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from api.metrics_port import metrics_here
from api.state import AppState
from core.models import Job, JobStatus, WebhookDelivery
from core.queues import ALL_QUEUES, queue_depths


class _Snapshot(Collector):
    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> Any:
        return iter(self.families)


async def _job_families(state: AppState) -> list[Any]:
    async with state.sessions() as session:
        rows = (await session.execute(select(Job.status, func.count()).group_by(Job.status))).all()
        by_state: dict[str, int] = {str(status): int(count) for status, count in rows}
        failures = (
            await session.execute(
                select(Job.error_code, func.count())
                .where(Job.status == JobStatus.failed.value)
                .group_by(Job.error_code)
            )
        ).all()
        done = (
            await session.execute(
                select(func.coalesce(func.sum(Job.duration), 0.0), func.count()).where(
                    Job.status == JobStatus.succeeded.value
                )
            )
        ).one()
        timed = (
            await session.execute(
                select(Job.started_at, Job.completed_at, Job.duration)
                .where(Job.status == JobStatus.succeeded.value, Job.started_at.is_not(None))
                .order_by(Job.completed_at.desc())
                .limit(100)
            )
        ).all()
        webhooks = (
            await session.execute(
                select(WebhookDelivery.delivered, func.count()).group_by(WebhookDelivery.delivered)
            )
        ).all()
    jobs = GaugeMetricFamily("stt_jobs", "Jobs by state", labels=["state"])
    for status in JobStatus:
        jobs.add_metric([status.value], float(by_state.get(status.value, 0)))
    failed = CounterMetricFamily("stt_job_failures", "Failed jobs by reason", labels=["reason"])
    for code, count in failures:
        failed.add_metric([code or "unknown"], float(count))
    # A gauge, not a counter: it is summed from the jobs the database holds, so it falls
    # when a job is deleted (a counter must never decrease).
    audio = GaugeMetricFamily(
        "stt_audio_seconds_succeeded",
        "Seconds of audio in the succeeded jobs the database holds now (falls on deletion)",
    )
    audio.add_metric([], float(done[0]))
    rtf = GaugeMetricFamily(
        "stt_real_time_factor",
        "Processing time over audio duration, mean of the last 100 succeeded jobs",
    )
    ratios = [(c - s).total_seconds() / d for s, c, d in timed if s and c and d and d > 0]
    rtf.add_metric([], sum(ratios) / len(ratios) if ratios else 0.0)
    hooks = CounterMetricFamily(
        "stt_webhook_deliveries", "Webhook delivery attempts by outcome", labels=["outcome"]
    )
    for delivered, count in webhooks:
        hooks.add_metric(["delivered" if delivered else "failed"], float(count))
    return [jobs, failed, audio, rtf, hooks]


@get("/metrics", summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
async def metrics(stt: AppState, request: Request[Any, Any, Any]) -> Response[bytes]:
    state = stt
    if not metrics_here(state.settings, request.scope):  # kept off the public port
        raise NotFoundException()
    families = await _job_families(state)
    depth = GaugeMetricFamily("stt_queue_depth", "Messages waiting per queue", labels=["queue"])
    depths = await anyio.to_thread.run_sync(queue_depths, state.celery)
    for queue in ALL_QUEUES:
        depth.add_metric([queue], float(depths.get(queue, 0)))
    families.append(depth)
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_Snapshot(families))
    body = state.metrics.exposition() + generate_latest(scrape)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
