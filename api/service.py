"""Transcription requests: validate the form, store the audio, write the job, queue it, wait."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import anyio
from kombu.exceptions import OperationalError as BrokerError
from litestar import Request
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.attach import lock_twins, pending_twin, twin_guard
from api.diarization_form import DiarizationRequest, check_references, diarization_request
from api.forms import Form, Upload, read_form
from api.render import GRANULARITIES, RESPONSE_FORMATS, SUBTITLE_FORMATS
from api.state import AppState
from core.audio import RawFormat, probe_duration
from core.echo import quoted
from core.errors import (
    Conflict,
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    TranscriptionFailed,
)
from core.jobspec import JobOptions
from core.jobview import failure_of
from core.languages import validate_language
from core.model_registry import resolve_model
from core.models import Job, JobStatus, new_id, utcnow
from core.queues import BATCH_QUEUE, enqueue
from core.storage import StorageUnavailable, discard
from core.storage import audio_key as key_for_job
from core.transcript import Transcript

log = logging.getLogger("stt.api")


@dataclass(frozen=True)
class TranscriptionSpec:
    """A validated request: what to run and how to answer."""

    model: str
    model_spec: str
    language: str | None
    granularities: tuple[str, ...]
    response_format: str
    options: dict[str, Any] = field(default_factory=dict)
    task: str = "transcribe"
    """`transcribe`, or `translate` (to English) on the translation paths."""
    stream: bool = False
    """Answer with server-sent events as the text is recognised."""
    diarization: DiarizationRequest = field(default_factory=DiarizationRequest)

    @property
    def diarize(self) -> bool:
        return self.diarization.diarize

    @property
    def words(self) -> bool:
        return "word" in self.granularities


def _granularities(form: Form) -> tuple[str, ...]:
    values = form.getlist("timestamp_granularities[]", "timestamp_granularities")
    for value in values:
        if value not in GRANULARITIES:
            raise InvalidRequest(
                f"timestamp_granularities must be among {', '.join(GRANULARITIES)}; "
                f"got {quoted(value)}",
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


_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def _stream(raw: str | None) -> bool:
    if raw is None or raw == "":
        return False
    value = _BOOLEANS.get(raw.strip().lower())
    if value is None:
        raise InvalidRequest("stream must be true or false", param="stream")
    return value


def parse_spec(
    form: Form, state: AppState, raw: RawFormat | None, task: str = "transcribe"
) -> TranscriptionSpec:
    settings = state.settings
    model = resolve_model(form.get("model"), settings)
    if form.file is None:
        raise InvalidRequest("a file is required (multipart field `file`)", param="file")
    if form.file.size == 0:
        raise InvalidRequest("the uploaded file is empty", param="file")
    if task == "translate" and model.english_only:
        raise InvalidRequest(
            f"model {quoted(model.name)} is English-only and cannot translate; "
            "translation needs a multilingual model",
            param="model",
        )
    language = validate_language(form.get("language"), english_only=model.english_only)
    response_format = form.get("response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise InvalidRequest(
            f"response_format must be one of {', '.join(RESPONSE_FORMATS)}",
            param="response_format",
        )
    granularities = _granularities(form)
    stream = _stream(form.get("stream"))
    diarization = diarization_request(form, settings, model.name, response_format)
    # Subtitles are cut into readable cues at word boundaries, so they need word timestamps;
    # speakers are put on words, so diarization needs them too.
    word_timestamps = (
        "word" in granularities or response_format in SUBTITLE_FORMATS or diarization.diarize
    )
    temperature = _temperature(form.get("temperature"))
    options = JobOptions(
        word_timestamps=word_timestamps,
        task=task,
        stream=stream,
        prompt=form.get("prompt") or None,
        temperature=temperature,
        raw=raw,
        diarize=diarization.diarize,
        min_speakers=diarization.min_speakers,
        max_speakers=diarization.max_speakers,
        known_speakers=diarization.known,
    ).to_dict()
    return TranscriptionSpec(
        model=model.name,
        model_spec=model.spec,
        language=language,
        granularities=granularities,
        response_format=response_format,
        options=options,
        task=task,
        stream=stream,
        diarization=diarization,
    )


async def drop_audio(state: AppState, key: str) -> None:
    """Delete stored audio off the event loop, even while the request is being cancelled;
    a failure is logged and left to the reconciler's orphan sweep."""
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(discard, state.storage, key)


def _storage_down(exc: StorageUnavailable) -> ServiceUnavailable:
    log.warning("audio storage unavailable: %s", exc)
    return ServiceUnavailable(
        "audio storage is unavailable; try again shortly", headers={"Retry-After": "5"}
    )


@dataclass(frozen=True)
class Received:
    """A request whose audio is stored and probed: its form, what it asks for, the upload."""

    form: Form
    spec: TranscriptionSpec
    upload: Upload


async def receive_upload(
    request: Request[Any, Any, Any],
    state: AppState,
    raw: RawFormat | None,
    task: str = "transcribe",
) -> Received:
    """Stream the body to storage, validate it, and probe the audio.

    The probe needs a local file. A local backend has one; with an object store the upload
    is also written to a scratch file (the spool) as it streams, probed there, and removed.
    A refused upload leaves nothing in storage."""
    job_id = new_id()
    key = key_for_job(job_id)
    storage = state.storage
    local = storage.local_path(key)
    spool = (
        None if local is not None else state.settings.storage.scratch_dir / f"upload-{job_id}.part"
    )
    try:
        try:
            form = await read_form(
                request.stream(),
                request.headers.get("content-type"),
                storage,
                key,
                state.settings.limits.max_upload_bytes,
                spool,
            )
        except StorageUnavailable as exc:
            raise _storage_down(exc) from exc
        try:
            spec = parse_spec(form, state, raw, task)
            await anyio.to_thread.run_sync(check_references, spec.diarization)
            assert form.file is not None
            probe_path = spool or local
            assert probe_path is not None
            duration = await anyio.to_thread.run_sync(probe_duration, probe_path, raw)
            if duration > state.settings.limits.max_audio_seconds:
                raise PayloadTooLarge(
                    f"the audio lasts {duration:.0f} s; the limit is "
                    f"{state.settings.limits.max_audio_seconds:.0f} s",
                    param="file",
                )
        except BaseException:
            await drop_audio(state, key)
            raise
    finally:
        if spool is not None:
            spool.unlink(missing_ok=True)
    return Received(form, spec, Upload.of(job_id, form.file, duration, raw))


@dataclass(frozen=True)
class SubmitOptions:
    queue: str
    idempotency_key: str | None = None
    webhook_url: str | None = None
    attach: bool = False
    """A synchronous request: wait on an identical job still queued or running, if any."""


def request_hash(form: Form, upload: Upload, task: str = "transcribe") -> str:
    """What makes two submissions 'the same request' for Idempotency-Key (a translation is
    never the same request as a transcription of the same form)."""
    raw = upload.raw
    material: dict[str, Any] = {
        "fields": {k: sorted(v) for k, v in sorted(form.fields.items())},
        "file": upload.sha256,
        "raw": [raw.encoding, raw.sample_rate] if raw else None,
    }
    if task != "transcribe":  # transcriptions hash as before, so stored keys stay valid
        material["task"] = task
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


async def _existing(state: AppState, tenant: str, key: str) -> Job | None:
    async with state.sessions() as session, session.begin():
        job = (
            await session.execute(
                select(Job).where(Job.tenant == tenant, Job.idempotency_key == key)
            )
        ).scalar_one_or_none()
        if job is None:
            return None
        if utcnow() - job.created_at > timedelta(seconds=state.settings.api.idempotency_ttl_s):
            job.idempotency_key = None  # expired: the key may name a new job
            return None
        return job


def _same_or_conflict(job: Job, digest: str) -> Job:
    if job.request_hash != digest:
        raise Conflict(
            "this Idempotency-Key was already used with a different request",
            param="Idempotency-Key",
        )
    return job


async def _admit(session: AsyncSession, state: AppState, tenant: str, seconds: float) -> None:
    """429 when the tenant's or the service's backlog is full: in jobs, or in seconds of
    audio (`seconds` more would pass the limit; a limit of 0 is none)."""
    limits = state.settings.limits
    pending = Job.status.in_((JobStatus.queued.value, JobStatus.running.value))
    audio = func.coalesce(func.sum(Job.duration), 0.0)
    mine, mine_s = (
        await session.execute(
            select(func.count(), audio).select_from(Job).where(Job.tenant == tenant, pending)
        )
    ).one()
    total, total_s = (
        await session.execute(select(func.count(), audio).select_from(Job).where(pending))
    ).one()
    if mine >= limits.max_queued_per_tenant or total >= limits.max_queued_total:
        raise RateLimited(
            "too many jobs are waiting; try again later", headers={"Retry-After": "30"}
        )
    for limit, queued, whose in (
        (limits.max_queued_audio_s_per_tenant, float(mine_s), "your"),
        (limits.max_queued_audio_s_total, float(total_s), "all"),
    ):
        if limit > 0 and queued + seconds > limit:
            raise RateLimited(
                f"{whose} queued and running jobs hold {queued:.0f} s of audio; with this "
                f"file's {seconds:.0f} s that passes the limit of {limit:.0f} s; "
                "try again later",
                headers={"Retry-After": "60"},
            )


async def submit(
    state: AppState, tenant: str, received: Received, opts: SubmitOptions
) -> tuple[Job, bool]:
    """Write the job row and queue it; returns (job, created). An Idempotency-Key that
    names an earlier identical request returns that job instead; the new upload is dropped.
    If the broker is down nothing is kept and the caller gets 503."""
    form, spec, upload = received.form, received.spec, received.upload
    job_id, audio_key = upload.job_id, upload.key
    keyed = opts.idempotency_key or opts.attach
    digest = request_hash(form, upload, spec.task) if keyed else None
    try:
        if opts.idempotency_key and digest:
            earlier = await _existing(state, tenant, opts.idempotency_key)
            if earlier is not None:
                await drop_audio(state, audio_key)
                return _same_or_conflict(earlier, digest), False
        now = utcnow()
        job = Job(
            id=job_id,
            tenant=tenant,
            status=JobStatus.queued.value,
            queue=opts.queue,
            model=spec.model,
            model_spec=spec.model_spec,
            language=spec.language,
            options=replace(
                JobOptions.from_dict(spec.options),
                granularities=tuple(spec.granularities),
                response_format=spec.response_format,
                # a job keeps word times whatever it asked for, so subtitles can always be cut
                word_timestamps=opts.queue == BATCH_QUEUE
                or JobOptions.from_dict(spec.options).word_timestamps,
                filename=upload.filename,  # names the transcript's downloads
            ).to_dict(),
            audio_key=audio_key,
            audio_bytes=upload.size,
            duration=round(upload.duration, 3),
            progress=0.0,
            attempts=0,
            created_at=now,
            enqueued_at=now,
            idempotency_key=opts.idempotency_key,
            request_hash=digest,
            webhook_url=opts.webhook_url,
            webhook_status="pending" if opts.webhook_url else None,
        )
        twin_of = digest if opts.attach and not opts.idempotency_key else None
        try:
            async with (
                twin_guard(tenant, twin_of),
                state.sessions() as session,
                session.begin(),
            ):
                twin = None
                if twin_of is not None:
                    await lock_twins(session, tenant, twin_of)
                    twin = await pending_twin(session, tenant, twin_of)
                if twin is None:
                    await _admit(session, state, tenant, upload.duration)
                    session.add(job)
            if twin is not None:
                await drop_audio(state, audio_key)
                return twin, False
        except IntegrityError:
            # Another request with the same Idempotency-Key won the race.
            earlier = await _existing(state, tenant, opts.idempotency_key or "")
            if earlier is None or digest is None:
                raise
            await drop_audio(state, audio_key)
            return _same_or_conflict(earlier, digest), False
    except BaseException:
        await drop_audio(state, audio_key)
        raise
    try:
        await anyio.to_thread.run_sync(enqueue, state.celery, job_id, opts.queue)
    except (BrokerError, OSError) as exc:
        async with state.sessions() as session, session.begin():
            await session.execute(delete(Job).where(Job.id == job_id))
        await drop_audio(state, audio_key)
        raise ServiceUnavailable(
            "the job queue is unavailable; try again shortly", headers={"Retry-After": "5"}
        ) from exc
    return job, True


async def wait_for_transcript(state: AppState, job_id: str) -> Transcript:
    """Wait for a synchronous job and return its transcript, or raise its failure."""
    status = await state.waiter.wait(job_id, state.settings.limits.sync_timeout_s)
    async with state.sessions() as session:
        job = (await session.execute(select(Job).where(Job.id == job_id))).scalar_one_or_none()
    if job is None:
        raise TranscriptionFailed("the job disappeared while it ran")
    if status == JobStatus.succeeded.value and job.result is not None:
        return Transcript.from_dict(job.result)
    failure = failure_of(job) if status == job.status else None
    if failure is not None:
        raise failure.error()
    raise ServiceUnavailable(
        f"the transcription did not finish within {state.settings.limits.sync_timeout_s:.0f} s; "
        f"it goes on as job {job_id}",
        headers={"Retry-After": "30"},
    )
