"""The runner a job's message calls: claim it, then run it whole or cut into chunks."""

from __future__ import annotations

from core.logs import job_id_var
from worker import chunked, lifecycle, whole
from worker.context import WorkerContext


def run_job(ctx: WorkerContext, job_id: str) -> None:
    """Do one job end to end. Raises for transient trouble, so the task can retry."""
    token = job_id_var.set(job_id)
    try:
        if lifecycle.is_chunked(ctx, job_id):
            return  # already cut into chunks: their own tasks carry it on
        claim = lifecycle.claim_job(ctx, job_id)
        if claim is None or chunked.run_long(ctx, claim):
            return
        whole.run_whole(ctx, claim)
    finally:
        job_id_var.reset(token)
