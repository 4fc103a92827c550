"""A job as the API and webhooks show it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.jobspec import JobOptions
from core.models import Job, JobStatus
from core.transcript import Transcript


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def job_json(job: Job, *, include_result: bool = True) -> dict[str, Any]:
    words = JobOptions.from_dict(job.options).words
    result = None
    if include_result and job.result is not None:
        result = Transcript.from_dict(job.result).response(job.id, words=words)
    error = (
        {"code": job.error_code, "message": job.error_message}
        if job.status == JobStatus.failed.value or job.error_code
        else None
    )
    return {
        "id": job.id,
        "status": job.status,
        "model": job.model,
        "language": job.language,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "completed_at": _iso(job.completed_at),
        "duration": job.duration,
        "progress": round(job.progress or 0.0, 4),
        "text_so_far": job.text_so_far if job.status == JobStatus.running.value else None,
        "error": error,
        "result": result,
    }
