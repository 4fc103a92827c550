"""Database rows: jobs and API keys (SQLAlchemy 2 typed mappings)."""

from __future__ import annotations

import enum
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from core.db import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


_ID = re.compile(r"[0-9a-f]{32}")


def is_id(value: str) -> bool:
    """Whether `value` has the shape :func:`new_id` gives (checked before any query, so a
    malformed id, a NUL byte say, is a 404 and never reaches the database)."""
    return _ID.fullmatch(value) is not None


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class JobStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def ended(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


class Job(Base):
    """One transcription: who asked, what, where the audio is, and how it ended."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.queued.value)
    queue: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    """The public model name the caller asked for."""
    model_spec: Mapped[str] = mapped_column(String(500))
    """What the worker loads: a bundled name, a faster-whisper model id or a directory."""
    language: Mapped[str | None] = mapped_column(String(16), nullable=True)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    audio_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    audio_bytes: Mapped[int] = mapped_column(Integer, default=0)
    duration: Mapped[float | None] = mapped_column(Float, nullable=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    text_so_far: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    """The process that runs the job; None while queued, or once cut into chunks."""
    chunked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Cut into chunks: the job's chunks carry it on, no single worker owns it."""
    sync_callers: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    """Synchronous callers waiting on the job in every API process (a hang-up cancels only
    when none is left: a retry may reach another process)."""
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    webhook_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """pending, delivered or failed; None without a webhook."""

    __table_args__ = (
        Index("ix_jobs_tenant_created", "tenant", "created_at"),
        Index("ix_jobs_status", "status"),
        Index("uq_jobs_tenant_idempotency", "tenant", "idempotency_key", unique=True),
    )


class ApiKey(Base):
    """A caller's key. Only its SHA-256 is stored; the key itself is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class WebhookDelivery(Base):
    """One attempt to deliver a job's end to its webhook."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    delivered: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WorkerSeen(Base):
    """The last time each worker process said it was alive (for readiness)."""

    __tablename__ = "workers_seen"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChunkStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"


class JobChunk(Base):
    """One window of a long job's audio, transcribed as its own task by any worker.

    The job is done when every chunk has succeeded; the chunk that finishes last merges
    their segments (already on the job's absolute timeline) into the job's transcript."""

    __tablename__ = "job_chunks"

    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default=ChunkStatus.queued.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    done_s: Mapped[float] = mapped_column(Float, default=0.0)
    """Seconds of this chunk transcribed so far (for the job's progress)."""
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """The chunk's transcript, times absolute; cleared once merged into the job."""
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (Index("ix_job_chunks_status", "status"),)
