"""`worker.lifecycle`, the one writer of a job's status, and the end it shares with the
API's cancel (`core.job_end`), on SQLite with the embedded broker."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from core.db import transaction
from core.errors import FailureCode, TranscriptionFailed, UnsupportedMedia
from core.job_end import MAX_ERROR_CHARS, after_end, cancel_statement, failure
from core.jobspec import ChunkPlan, JobOptions
from core.jobview import job_json
from core.migrate import upgrade
from core.models import Job, JobStatus, new_id, utcnow
from core.queues import BATCH_QUEUE, make_celery
from core.settings import load_settings
from core.storage import LocalStorage
from core.transcript import Transcript
from worker import lifecycle
from worker.chunk_plan import Span
from worker.context import WorkerContext
from worker.heartbeat import Heartbeat


def _context(tmp_path: Path, **env: str) -> WorkerContext:
    settings = load_settings(
        {"STT_DATA_DIR": str(tmp_path / "data"), "STT_MAX_ATTEMPTS": "2", **env}
    )
    settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database.url)
    return WorkerContext(settings, make_celery(settings))


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkerContext]:
    monkeypatch.chdir(tmp_path)  # kombu's filesystem transport writes ./control
    context = _context(tmp_path)
    yield context
    context.app.close()


def put_job(ctx: WorkerContext, *, audio: bool = True, webhook: str | None = None) -> str:
    job_id = new_id()
    key = f"{job_id[:2]}/{job_id}"
    if audio:
        assert isinstance(ctx.storage, LocalStorage)
        path = ctx.storage.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF")
    with transaction(ctx.db()) as session:
        session.add(
            Job(
                id=job_id,
                tenant="t",
                status=JobStatus.queued.value,
                queue=BATCH_QUEUE,
                model="whisper-1",
                model_spec="bundled:tiny.en",
                language="en",
                options=JobOptions(word_timestamps=True, prompt="p").to_dict(),
                audio_key=key if audio else None,
                audio_bytes=4,
                duration=1.0,
                enqueued_at=utcnow(),
                webhook_url=webhook,
            )
        )
    return job_id


def row(ctx: WorkerContext, job_id: str) -> Job:
    with ctx.db()() as session:
        return session.execute(select(Job).where(Job.id == job_id)).scalar_one()


TRANSCRIPT = Transcript(text="hello", language="en", duration=1.0, segments=[])


def test_claim_marks_the_job_running_for_this_process(ctx: WorkerContext) -> None:
    job_id = put_job(ctx)
    claim = lifecycle.claim_job(ctx, job_id)
    assert claim is not None and claim.options == JobOptions(word_timestamps=True, prompt="p")
    job = row(ctx, job_id)
    assert (job.status, job.worker, job.attempts) == ("running", ctx.worker_name, 1)
    assert job.started_at is not None and job.heartbeat_at is not None


def test_claim_drops_an_ended_job_and_one_running_elsewhere(ctx: WorkerContext) -> None:
    ended = put_job(ctx)
    elsewhere = put_job(ctx)
    with transaction(ctx.db()) as session:
        session.execute(update(Job).where(Job.id == ended).values(status="succeeded"))
        session.execute(
            update(Job)
            .where(Job.id == elsewhere)
            .values(status="running", worker="other:1", heartbeat_at=utcnow())
        )
    assert lifecycle.claim_job(ctx, ended) is None
    assert lifecycle.claim_job(ctx, elsewhere) is None
    assert lifecycle.claim_job(ctx, "no-such-job") is None
    assert row(ctx, elsewhere).worker == "other:1"


def test_claim_fails_a_job_without_audio(ctx: WorkerContext) -> None:
    job_id = put_job(ctx, audio=False)
    assert lifecycle.claim_job(ctx, job_id) is None
    job = row(ctx, job_id)
    assert (job.status, job.error_code) == ("failed", FailureCode.audio_missing)


def test_claim_gives_up_after_the_last_attempt(ctx: WorkerContext) -> None:
    job_id = put_job(ctx)
    with transaction(ctx.db()) as session:
        session.execute(update(Job).where(Job.id == job_id).values(attempts=2))
    assert lifecycle.claim_job(ctx, job_id) is None
    job = row(ctx, job_id)
    assert (job.status, job.error_code) == ("failed", "too_many_attempts")
    assert job.completed_at is not None
    assert not ctx.storage.exists(str(job.audio_key)), "the ended job's audio is dropped"


def test_finish_stores_the_transcript_and_drops_the_audio(ctx: WorkerContext) -> None:
    job_id = put_job(ctx)
    lifecycle.claim_job(ctx, job_id)
    assert lifecycle.finish(ctx, job_id, TRANSCRIPT)
    job = row(ctx, job_id)
    assert (job.status, job.progress, job.language) == ("succeeded", 1.0, "en")
    assert job.result == TRANSCRIPT.to_dict() and job.completed_at is not None
    assert not ctx.storage.exists(str(job.audio_key))


def test_kept_audio_survives_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ctx = _context(tmp_path, STT_AUDIO_RETENTION_S="3600")
    try:
        job_id = put_job(ctx)
        lifecycle.claim_job(ctx, job_id)
        assert lifecycle.finish(ctx, job_id, TRANSCRIPT)
        assert ctx.storage.exists(str(row(ctx, job_id).audio_key))
    finally:
        ctx.app.close()


def test_only_the_owner_finishes_or_fails(ctx: WorkerContext) -> None:
    job_id = put_job(ctx)
    lifecycle.claim_job(ctx, job_id)
    with transaction(ctx.db()) as session:
        session.execute(update(Job).where(Job.id == job_id).values(worker="other:1"))
    assert not lifecycle.finish(ctx, job_id, TRANSCRIPT)
    assert not lifecycle.fail(ctx, job_id, FailureCode.transcription_failed, "boom")
    assert row(ctx, job_id).status == "running"


def test_fail_stores_its_code_and_cuts_the_text_once(ctx: WorkerContext) -> None:
    job_id = put_job(ctx)
    lifecycle.claim_job(ctx, job_id)
    message = "x" * (MAX_ERROR_CHARS + 500)
    assert lifecycle.fail(ctx, job_id, FailureCode.transcription_failed, message)
    job = row(ctx, job_id)
    assert (job.status, job.error_code) == ("failed", TranscriptionFailed.code)
    assert job.error_message == message[:MAX_ERROR_CHARS]
    assert failure(FailureCode.audio_missing, "short")["error_message"] == "short"


def test_failure_codes_come_from_the_error_tree() -> None:
    assert FailureCode.transcription_failed == TranscriptionFailed.code
    assert FailureCode.unsupported_audio == UnsupportedMedia.code
    assert FailureCode(UnsupportedMedia("x").code) is FailureCode.unsupported_audio


def test_release_hands_the_job_back_keeping_its_attempts(ctx: WorkerContext) -> None:
    job_id = put_job(ctx)
    lifecycle.claim_job(ctx, job_id)
    lifecycle.release(ctx, job_id)
    job = row(ctx, job_id)
    assert (job.status, job.worker, job.attempts) == ("queued", None, 1)


def test_a_stale_job_is_requeued_by_the_reconciler_only(ctx: WorkerContext) -> None:
    job_id = put_job(ctx)
    lifecycle.claim_job(ctx, job_id)
    now = utcnow()
    with transaction(ctx.db()) as session:  # a fresh heartbeat: left alone
        lifecycle.requeue_stale_job(session, job_id, now - timedelta(seconds=60), now)
    assert row(ctx, job_id).status == "running"
    with transaction(ctx.db()) as session:
        lifecycle.requeue_stale_job(session, job_id, now + timedelta(seconds=1), now)
    assert (row(ctx, job_id).status, row(ctx, job_id).worker) == ("queued", None)


def test_a_requeued_job_starts_its_next_attempt_afresh_and_says_so(ctx: WorkerContext) -> None:
    """Lost mid-job: progress and `started_at` reset, the view shows the retry and attempts."""
    job_id = put_job(ctx)
    lifecycle.claim_job(ctx, job_id)
    assert lifecycle.beat_job(ctx, job_id, (0.4, "so far"))
    first = row(ctx, job_id)
    assert (job_json(first)["attempts"], job_json(first)["retrying"]) == (1, False)
    now = utcnow()
    with transaction(ctx.db()) as session:
        lifecycle.requeue_stale_job(session, job_id, now + timedelta(seconds=1), now)
    queued = job_json(row(ctx, job_id))
    assert (queued["status"], queued["attempts"], queued["retrying"]) == ("queued", 1, True)
    assert (queued["progress"], queued["started_at"], queued["text_so_far"]) == (0.0, None, None)
    lifecycle.claim_job(ctx, job_id)
    second = row(ctx, job_id)
    view = job_json(second)
    assert (view["status"], view["attempts"], view["retrying"]) == ("running", 2, True)
    assert first.started_at is not None and second.started_at is not None
    assert second.started_at >= first.started_at and second.progress == 0.0
    assert lifecycle.finish(ctx, job_id, TRANSCRIPT)
    assert job_json(row(ctx, job_id))["retrying"] is False


def test_beat_saves_progress_until_the_job_is_not_ours(ctx: WorkerContext) -> None:
    job_id = put_job(ctx)
    lifecycle.claim_job(ctx, job_id)
    assert lifecycle.beat_job(ctx, job_id, (0.5, "half"))
    job = row(ctx, job_id)
    assert (job.progress, job.text_so_far) == (0.5, "half")
    with ctx.db()() as session, session.begin():
        session.execute(cancel_statement(job_id))
    assert not lifecycle.beat_job(ctx, job_id, None)


def test_heartbeat_asks_to_stop_once_a_beat_says_not_ours() -> None:
    beats: list[object] = []

    def beat(progress: object) -> bool:
        beats.append(progress)
        return len(beats) < 2

    with Heartbeat("j", 0.01, beat) as heart:
        heart.progress(3.0, "so far")
        assert heart.stop_requested.wait(timeout=30)
    assert (3.0, "so far") in beats


def test_cancel_is_the_end_the_worker_respects(ctx: WorkerContext) -> None:
    """The API's cancel statement ends a running job; the worker then stores nothing."""
    job_id = put_job(ctx)
    lifecycle.claim_job(ctx, job_id)
    with ctx.db()() as session, session.begin():
        assert session.execute(cancel_statement(job_id)).rowcount == 1  # type: ignore[attr-defined]
    with ctx.db()() as session, session.begin():  # an ended job is not cancelled twice
        assert session.execute(cancel_statement(job_id)).rowcount == 0  # type: ignore[attr-defined]
    job = row(ctx, job_id)
    assert (job.status, job.error_code) == ("cancelled", FailureCode.cancelled)
    assert not lifecycle.finish(ctx, job_id, TRANSCRIPT)
    assert row(ctx, job_id).status == "cancelled"


def test_after_end_is_what_both_ends_do() -> None:
    assert after_end("a/b", None, keep_audio=False).drop_audio == "a/b"
    assert after_end("a/b", None, keep_audio=True).drop_audio is None
    assert after_end(None, "https://x.test/h", keep_audio=False).send_webhook
    assert not after_end("a/b", None, keep_audio=False).send_webhook


def test_an_ended_job_with_a_webhook_sends_it(ctx: WorkerContext) -> None:
    job_id = put_job(ctx, webhook="https://hooks.example.test/x")
    lifecycle.claim_job(ctx, job_id)
    lifecycle.fail(ctx, job_id, FailureCode.transcription_failed, "boom")
    messages = [p.read_text() for p in ctx.settings.storage.broker_dir.glob("*.msg")]
    assert any(job_id in m for m in messages), "the webhook task was sent"


def test_hand_to_chunks_sets_the_column_and_the_plan(ctx: WorkerContext) -> None:
    job_id = put_job(ctx)
    claim = lifecycle.claim_job(ctx, job_id)
    assert claim is not None
    plan = ChunkPlan("en", 0.9, 2)
    spans = [Span(0.0, 0.5), Span(0.5, 1.0)]
    assert lifecycle.hand_to_chunks(ctx, claim, spans, 1.0, plan) == (BATCH_QUEUE, 2)
    job = row(ctx, job_id)
    assert job.chunked and job.worker is None
    assert JobOptions.from_dict(job.options).chunked == plan
    assert lifecycle.is_chunked(ctx, job_id)
    assert lifecycle.hand_to_chunks(ctx, claim, spans, 1.0, plan) is None, "no longer ours"


def test_job_options_round_trip_in_the_stored_shape() -> None:
    stored = {
        "word_timestamps": True,
        "task": "translate",
        "stream": True,
        "prompt": "Glossary",
        "temperature": 0.4,
        "raw": {"encoding": "pcm_s16le", "sample_rate": 8000},
        "granularities": ["word"],
        "response_format": "verbose_json",
        "chunked": {"language": "de", "language_probability": 0.8, "chunks": 4},
    }
    options = JobOptions.from_dict(stored)
    assert options.raw is not None and options.raw.sample_rate == 8000 and options.words
    assert options.to_dict() == stored
    assert JobOptions.from_dict(None).to_dict() == {"word_timestamps": False}
