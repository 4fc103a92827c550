"""Transcription requests: validate the form, store the audio, write the job, queue it, wait."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import anyio
from kombu.exceptions import OperationalError as BrokerError
from litestar import Request
from sqlalchemy import delete, select

from api.forms import Form, read_form
from api.render import GRANULARITIES, RESPONSE_FORMATS
from api.state import AppState
from core.audio import RawFormat, probe_duration, raw_format
from core.errors import (
    InvalidRequest,
    PayloadTooLarge,
    ServiceUnavailable,
    SttError,
    TranscriptionFailed,
    UnsupportedMedia,
)
from core.languages import validate_language
from core.model_registry import resolve_model
from core.models import Job, JobStatus, new_id, utcnow
from core.queues import enqueue
from core.transcript import Transcript


@dataclass(frozen=True)
class TranscriptionSpec:
    """A validated request: what to run and how to answer."""

    model: str
    model_spec: str
    language: str | None
    granularities: tuple[str, ...]
    response_format: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def words(self) -> bool:
        return "word" in self.granularities


def _granularities(form: Form) -> tuple[str, ...]:
    values = form.getlist("timestamp_granularities[]", "timestamp_granularities")
    for value in values:
        if value not in GRANULARITIES:
            raise InvalidRequest(
                f"timestamp_granularities must be among {', '.join(GRANULARITIES)}; got {value!r}",
                param="timestamp_granularities",
            )
    return tuple(dict.fromkeys(values))


def _temperature(raw: str | None) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise InvalidRequest("temperature must be a number", param="temperature") from exc
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise InvalidRequest("temperature must be between 0 and 1", param="temperature")
    return value


def parse_spec(form: Form, state: AppState, raw: RawFormat | None) -> TranscriptionSpec:
    settings = state.settings
    model = resolve_model(form.get("model"), settings)
    if form.file is None:
        raise InvalidRequest("a file is required (multipart field `file`)", param="file")
    if form.file.size == 0:
        raise InvalidRequest("the uploaded file is empty", param="file")
    language = validate_language(form.get("language"), english_only=model.english_only)
    response_format = form.get("response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise InvalidRequest(
            f"response_format must be one of {', '.join(RESPONSE_FORMATS)}",
            param="response_format",
        )
    granularities = _granularities(form)
    options: dict[str, Any] = {"word_timestamps": "word" in granularities}
    prompt = form.get("prompt")
    if prompt:
        options["prompt"] = prompt
    temperature = _temperature(form.get("temperature"))
    if temperature is not None:
        options["temperature"] = temperature
    if raw is not None:
        options["raw"] = {"encoding": raw.encoding, "sample_rate": raw.sample_rate}
    return TranscriptionSpec(
        model=model.name,
        model_spec=model.spec,
        language=language,
        granularities=granularities,
        response_format=response_format,
        options=options,
    )


@dataclass(frozen=True)
class Submission:
    job_id: str
    spec: TranscriptionSpec
    duration: float


async def receive_upload(
    request: Request[Any, Any, Any], state: AppState, raw: RawFormat | None
) -> tuple[str, Form, TranscriptionSpec, float]:
    """Stream the body to storage, validate it, and probe the audio."""
    job_id = new_id()
    audio_key = f"{job_id[:2]}/{job_id}"
    form = await read_form(
        request.stream(),
        request.headers.get("content-type"),
        state.storage,
        audio_key,
        state.settings.max_upload_bytes,
    )
    try:
        spec = parse_spec(form, state, raw)
        duration = await anyio.to_thread.run_sync(
            probe_duration, state.storage.path(audio_key), raw
        )
        if duration > state.settings.max_audio_seconds:
            raise PayloadTooLarge(
                f"the audio lasts {duration:.0f} s; the limit is "
                f"{state.settings.max_audio_seconds:.0f} s",
                param="file",
            )
    except BaseException:
        state.storage.delete(audio_key)
        raise
    return job_id, form, spec, duration


async def submit(
    state: AppState,
    tenant: str,
    job_id: str,
    form: Form,
    spec: TranscriptionSpec,
    duration: float,
    queue: str,
    **extra: Any,
) -> Job:
    """Write the job row and send it to the queue; undo both if the broker is down."""
    assert form.file is not None
    now = utcnow()
    job = Job(
        id=job_id,
        tenant=tenant,
        status=JobStatus.queued.value,
        queue=queue,
        model=spec.model,
        model_spec=spec.model_spec,
        language=spec.language,
        options={
            **spec.options,
            "granularities": list(spec.granularities),
            "response_format": spec.response_format,
        },
        audio_key=form.file.key,
        audio_bytes=form.file.size,
        duration=round(duration, 3),
        progress=0.0,
        attempts=0,
        created_at=now,
        enqueued_at=now,
        **extra,
    )
    try:
        async with state.sessions() as session, session.begin():
            session.add(job)
    except BaseException:
        state.storage.delete(form.file.key)
        raise
    try:
        await anyio.to_thread.run_sync(enqueue, state.celery, job_id, queue)
    except (BrokerError, OSError) as exc:
        async with state.sessions() as session, session.begin():
            await session.execute(delete(Job).where(Job.id == job_id))
        state.storage.delete(form.file.key)
        raise ServiceUnavailable(
            "the job queue is unavailable; try again shortly", headers={"Retry-After": "5"}
        ) from exc
    return job


async def wait_for_transcript(state: AppState, job_id: str) -> Transcript:
    """Wait for a synchronous job and return its transcript, or raise its failure."""
    status = await state.waiter.wait(job_id, state.settings.sync_timeout_s)
    async with state.sessions() as session:
        job = (await session.execute(select(Job).where(Job.id == job_id))).scalar_one_or_none()
    if job is None:
        raise TranscriptionFailed("the job disappeared while it ran")
    if status == JobStatus.succeeded.value and job.result is not None:
        return Transcript.from_dict(job.result)
    if status == JobStatus.failed.value:
        raise _failure(job.error_code, job.error_message)
    if status == JobStatus.cancelled.value:
        raise TranscriptionFailed("the job was cancelled")
    raise ServiceUnavailable(
        f"the transcription did not finish within {state.settings.sync_timeout_s:.0f} s; "
        f"it goes on as job {job_id}",
        headers={"Retry-After": "30"},
    )


def _failure(code: str | None, message: str | None) -> SttError:
    if code == UnsupportedMedia.code:
        return UnsupportedMedia(message or "the audio could not be decoded")
    return TranscriptionFailed(message or "the transcription failed")


def query_raw_format(request: Request[Any, Any, Any]) -> RawFormat | None:
    return raw_format(request.query_params.get("encoding"), request.query_params.get("sample_rate"))
