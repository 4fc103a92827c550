"""A job as the API and webhooks show it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from core.models import JobStatus
from core.transcript import Transcript


class JobFields(Protocol):
    """What a job's view is made of: a `Job` row, or only the columns the view shows."""

    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def language(self) -> str | None: ...
    @property
    def options(self) -> dict[str, Any] | None: ...
    @property
    def result(self) -> dict[str, Any] | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def completed_at(self) -> datetime | None: ...
    @property
    def duration(self) -> float | None: ...
    @property
    def progress(self) -> float | None: ...
    @property
    def text_so_far(self) -> str | None: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def error_message(self) -> str | None: ...


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def job_json(job: JobFields, *, include_result: bool = True) -> dict[str, Any]:
    options = job.options or {}
    words = "word" in (options.get("granularities") or [])
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
