"""A job as the API and webhooks show it, and why a job that ended has no transcript."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

from core.errors import InvalidSpeakerReference, SttError, TranscriptionFailed, UnsupportedMedia
from core.jobspec import JobOptions
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
    @property
    def attempts(self) -> int | None: ...


@dataclass(frozen=True)
class JobFailure:
    """Why a job ended without a transcript, as every surface tells the client: the job
    view's `error`, the stream's error event, and the synchronous call's error."""

    code: str
    message: str

    def error(self) -> SttError:
        """The error a synchronous call answers with."""
        if self.code == UnsupportedMedia.code:
            return UnsupportedMedia(self.message)
        if self.code == InvalidSpeakerReference.code:
            return InvalidSpeakerReference(self.message, param="known_speaker_references")
        return TranscriptionFailed(self.message)


def failure_of(job: JobFields) -> JobFailure | None:
    """The failure of a failed or cancelled job (from its row); None for any other."""
    if job.status == JobStatus.failed.value:
        default = (
            "the audio could not be decoded"
            if job.error_code == UnsupportedMedia.code
            else "the transcription failed"
        )
        return JobFailure(job.error_code or TranscriptionFailed.code, job.error_message or default)
    if job.status == JobStatus.cancelled.value:
        return JobFailure(
            job.error_code or "cancelled", job.error_message or "the job was cancelled"
        )
    return None


def retrying(job: JobFields) -> bool:
    """Whether the job is on another try: queued again after an attempt was lost (its worker
    stopped beating) or handed back, or running an attempt after the first."""
    attempts = job.attempts or 0
    if job.status == JobStatus.queued.value:
        return attempts > 0
    return job.status == JobStatus.running.value and attempts > 1


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def job_json(job: JobFields, *, include_result: bool = True) -> dict[str, Any]:
    words = JobOptions.from_dict(job.options).words
    result = None
    if include_result and job.result is not None:
        result = Transcript.from_dict(job.result).response(job.id, words=words)
    failure = failure_of(job)
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
        "attempts": job.attempts or 0,
        "retrying": retrying(job),
        "text_so_far": job.text_so_far if job.status == JobStatus.running.value else None,
        "error": asdict(failure) if failure else None,
        "result": result,
    }
