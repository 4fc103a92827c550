"""A long job through planning, chunks and merge, on SQLite, with a stand-in recogniser
that hears each 'word' of synthetic burst audio exactly (so the merge can be checked)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from core.audio import Audio
from core.db import transaction
from core.migrate import upgrade
from core.models import ChunkStatus, Job, JobChunk, JobStatus, new_id, utcnow
from core.queues import BATCH_QUEUE, chunk_ref, make_celery
from core.settings import load_settings
from core.transcript import Transcript
from tests.longaudio import Burst, burst_words, bursts, energy_speech, write_bursts_wav
from tests.support import wait_until
from worker import chunked, jobs, reconciler
from worker.context import WorkerContext
from worker.engine import Cancelled, EngineConfig, TranscribeOptions

DURATION = 200.0


class Recogniser:
    """Stands in for faster-whisper: `burst_words` of the audio, segment by segment."""

    def __init__(self) -> None:
        self.calls = 0
        self.during: Callable[[], None] | None = None
        self.should_stop: Callable[[], bool] | None = None  # what the last call was given

    def __call__(
        self,
        model: object,
        audio: Audio,
        options: TranscribeOptions,
        config: EngineConfig,
        on_progress: Callable[[float, str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Transcript:
        self.calls += 1
        self.should_stop = should_stop
        if self.during is not None:
            self.during()
        heard = burst_words(audio, options.language or "en")
        for seg in heard.segments:
            if should_stop is not None and should_stop():
                raise Cancelled
            if on_progress is not None:
                on_progress(seg.end, seg.text)
        return heard


@pytest.fixture
def recogniser(ctx: WorkerContext) -> Recogniser:
    fake = Recogniser()
    ctx.transcribe = fake
    ctx.load_model = lambda *a, **k: object()
    ctx.find_speech = energy_speech
    return fake


@pytest.fixture
def sent(ctx: WorkerContext) -> dict[str, list[Any]]:
    """What would have gone to the broker."""
    out: dict[str, list[Any]] = {"chunks": [], "jobs": []}
    ctx.enqueue_chunk = lambda job_id, index, queue: out["chunks"].append((job_id, index, queue))
    ctx.enqueue_job = lambda job_id, queue: out["jobs"].append(job_id)
    return out


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkerContext]:
    monkeypatch.chdir(tmp_path)  # kombu's filesystem transport writes ./control
    settings = load_settings(
        {
            "STT_DATA_DIR": str(tmp_path / "data"),
            "STT_CHUNK_THRESHOLD_S": "60",
            "STT_CHUNK_TARGET_S": "30",
            "STT_WORKER_HEARTBEAT_S": "0.05",
            "STT_STALE_AFTER_S": "5",
            "STT_MAX_ATTEMPTS": "2",
        }
    )
    settings.storage.data_dir.mkdir(parents=True)
    upgrade(settings.database.url)
    app = make_celery(settings)
    yield WorkerContext(settings, app)
    app.close()


@pytest.fixture
def words() -> list[Burst]:
    return bursts(DURATION)


def put_job(ctx: WorkerContext, words: list[Burst], duration: float = DURATION) -> str:
    job_id = new_id()
    key = f"{job_id[:2]}/{job_id}"
    path = ctx.storage.path(key)  # type: ignore[attr-defined]  # unit tests use LocalStorage
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bursts_wav(path, duration, [w for w in words if w.end < duration])
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
                options={"word_timestamps": True},
                audio_key=key,
                audio_bytes=path.stat().st_size,
                duration=duration,
                enqueued_at=utcnow(),
            )
        )
    return job_id


def job_row(ctx: WorkerContext, job_id: str) -> Job:
    with ctx.db()() as session:
        return session.execute(select(Job).where(Job.id == job_id)).scalar_one()


def chunk_rows(ctx: WorkerContext, job_id: str) -> list[JobChunk]:
    with ctx.db()() as session:
        return list(
            session.execute(
                select(JobChunk).where(JobChunk.job_id == job_id).order_by(JobChunk.index)
            ).scalars()
        )


@pytest.fixture
def planned(
    ctx: WorkerContext, words: list[Burst], recogniser: Recogniser, sent: dict[str, list[Any]]
) -> str:
    job_id = put_job(ctx, words)
    jobs.run_job(ctx, job_id)
    return job_id


def test_a_long_job_is_cut_into_chunks_and_handed_to_them(
    ctx: WorkerContext, planned: str, sent: dict[str, list[Any]], recogniser: Recogniser
) -> None:
    job = job_row(ctx, planned)
    assert job.status == "running" and job.chunked and job.worker is None and job.attempts == 1
    assert job.options["chunked"] == {"language": "en", "language_probability": 1.0, "chunks": 7}
    rows = chunk_rows(ctx, planned)
    assert [r.index for r in rows] == list(range(7))
    assert all(r.status == "queued" and r.attempts == 0 for r in rows)
    assert rows[0].start_s == 0 and rows[-1].end_s == DURATION
    assert sent["chunks"] == [(planned, i, BATCH_QUEUE) for i in range(7)]
    assert recogniser.calls == 0, "planning transcribes nothing"
    # The job's own message again (a duplicate, or a requeue): nothing happens.
    jobs.run_job(ctx, planned)
    assert job_row(ctx, planned).attempts == 1 and len(chunk_rows(ctx, planned)) == 7


def test_chunks_in_any_order_make_the_whole_transcript_once(
    ctx: WorkerContext, planned: str, words: list[Burst]
) -> None:
    order = list(range(7))
    random.Random(4).shuffle(order)
    progress = []
    for n, index in enumerate(order):
        chunked.run_chunk(ctx, chunk_ref(planned, index))
        job = job_row(ctx, planned)
        if n < len(order) - 1:
            assert job.status == "running"
            progress.append(job.progress)
    assert progress == sorted(progress) and progress[0] > 0 and progress[-1] < 1
    job = job_row(ctx, planned)
    assert job.status == "succeeded" and job.progress == 1.0 and job.text_so_far is None
    result = Transcript.from_dict(job.result or {})
    assert [w.word for w in result.words] == [f"w{w.number}" for w in words]
    for heard, truth in zip(result.words, words, strict=True):
        assert abs(heard.start - truth.start) < 0.002 and abs(heard.end - truth.end) < 0.002
    assert result.text == " ".join(f"w{w.number}" for w in words)
    assert [s.id for s in result.segments] == list(range(len(words)))
    assert result.duration == DURATION and result.language == "en"
    assert not ctx.storage.exists(str(job.audio_key)), "audio kept after the job"
    assert all(r.result is None and r.attempts == 1 for r in chunk_rows(ctx, planned))


def test_text_so_far_grows_with_the_leading_chunks(ctx: WorkerContext, planned: str) -> None:
    chunked.run_chunk(ctx, chunk_ref(planned, 1))
    assert job_row(ctx, planned).text_so_far is None  # chunk 0 is not done yet
    chunked.run_chunk(ctx, chunk_ref(planned, 0))
    two = job_row(ctx, planned).text_so_far or ""
    chunked.run_chunk(ctx, chunk_ref(planned, 2))
    three = job_row(ctx, planned).text_so_far or ""
    assert two and three.startswith(two) and len(three) > len(two)


def test_a_chunk_delivered_twice_is_stored_once(
    ctx: WorkerContext, planned: str, recogniser: Recogniser
) -> None:
    ref = chunk_ref(planned, 3)
    chunked.run_chunk(ctx, ref)
    chunked.run_chunk(ctx, ref)
    [row] = [r for r in chunk_rows(ctx, planned) if r.index == 3]
    assert row.status == "succeeded" and row.attempts == 1
    assert recogniser.calls == 1


def test_a_chunk_running_elsewhere_is_left_alone(
    ctx: WorkerContext, planned: str, recogniser: Recogniser
) -> None:
    with transaction(ctx.db()) as session:
        session.execute(
            update(JobChunk)
            .where(JobChunk.job_id == planned, JobChunk.index == 2)
            .values(status="running", worker="elsewhere:1", heartbeat_at=utcnow(), attempts=1)
        )
    chunked.run_chunk(ctx, chunk_ref(planned, 2))
    assert recogniser.calls == 0


def test_a_cancelled_job_drops_its_queued_chunks_and_stops_a_running_one(
    ctx: WorkerContext, planned: str, recogniser: Recogniser
) -> None:
    def cancel() -> None:
        with transaction(ctx.db()) as session:
            session.execute(
                update(Job).where(Job.id == planned).values(status=JobStatus.cancelled.value)
            )
        stop = recogniser.should_stop
        assert stop is not None
        wait_until(stop, 10, "the chunk's heartbeat to notice the cancel")

    recogniser.during = cancel
    chunked.run_chunk(ctx, chunk_ref(planned, 0))
    [first, *_] = chunk_rows(ctx, planned)
    assert first.status == "running" and first.result is None, "a stopped chunk stores nothing"
    recogniser.during = None
    chunked.run_chunk(ctx, chunk_ref(planned, 1))
    assert recogniser.calls == 1
    assert job_row(ctx, planned).status == "cancelled"


def test_a_lost_chunk_is_requeued_and_then_succeeds(
    ctx: WorkerContext, planned: str, sent: dict[str, list[Any]]
) -> None:
    for index in range(7):
        if index != 5:
            chunked.run_chunk(ctx, chunk_ref(planned, index))
    long_ago = utcnow() - timedelta(seconds=60)
    with transaction(ctx.db()) as session:  # chunk 5's worker died mid-way (kill -9)
        session.execute(
            update(JobChunk)
            .where(JobChunk.job_id == planned, JobChunk.index == 5)
            .values(status="running", worker="dead:1", heartbeat_at=long_ago, attempts=1)
        )
        session.execute(update(Job).where(Job.id == planned).values(heartbeat_at=long_ago))
    sent["chunks"].clear()
    assert reconciler.reconcile(ctx, ctx.app) == 1
    assert sent["chunks"] == [(planned, 5, BATCH_QUEUE)]
    assert sent["jobs"] == [], "a job cut into chunks is not requeued as a whole"
    row = chunk_rows(ctx, planned)[5]
    assert row.status == "queued" and row.worker is None
    chunked.run_chunk(ctx, chunk_ref(planned, 5))
    assert chunk_rows(ctx, planned)[5].attempts == 2
    assert job_row(ctx, planned).status == "succeeded"


def test_a_queued_chunk_whose_message_was_lost_is_sent_again(
    ctx: WorkerContext, planned: str, sent: dict[str, list[Any]]
) -> None:
    long_ago = utcnow() - timedelta(seconds=60)
    with transaction(ctx.db()) as session:
        session.execute(
            update(JobChunk).where(JobChunk.job_id == planned).values(enqueued_at=long_ago)
        )
    # The broker still holds chunks 0-5; chunk 6's message is gone.
    for index in range(6):
        (ctx.settings.storage.broker_dir / f"{index}.{BATCH_QUEUE}.msg").write_text(
            f'{{"headers": {{"argsrepr": "[\'{chunk_ref(planned, index)}\']"}}}}'
        )
    sent["chunks"].clear()
    assert reconciler.reconcile(ctx, ctx.app) == 1
    assert sent["chunks"] == [(planned, 6, BATCH_QUEUE)]


def test_a_chunk_that_keeps_failing_fails_the_job(ctx: WorkerContext, planned: str) -> None:
    with transaction(ctx.db()) as session:
        session.execute(
            update(JobChunk)
            .where(JobChunk.job_id == planned, JobChunk.index == 4)
            .values(attempts=ctx.settings.workers.max_attempts)
        )
    chunked.run_chunk(ctx, chunk_ref(planned, 4))
    job = job_row(ctx, planned)
    assert job.status == "failed" and job.error_code == "too_many_attempts"
    assert "chunk 4" in (job.error_message or "")
    assert not ctx.storage.exists(str(job.audio_key))
    chunked.run_chunk(ctx, chunk_ref(planned, 0))  # the others are dropped
    assert chunk_rows(ctx, planned)[0].status == "queued"


def test_undecodable_audio_fails_the_job_with_its_reason(ctx: WorkerContext, planned: str) -> None:
    job = job_row(ctx, planned)
    ctx.storage.path(str(job.audio_key)).write_bytes(b"\x00garbage" * 1000)  # type: ignore[attr-defined]
    chunked.run_chunk(ctx, chunk_ref(planned, 2))
    job = job_row(ctx, planned)
    assert job.status == "failed" and job.error_code == "unsupported_audio"


def test_a_job_cancelled_while_planning_is_not_fanned_out(
    ctx: WorkerContext,
    words: list[Burst],
    recogniser: Recogniser,
    sent: dict[str, list[Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_id = put_job(ctx, words)
    language = chunked._language

    def cancel_then_detect(*args: Any) -> tuple[str, float]:
        with transaction(ctx.db()) as session:
            session.execute(update(Job).where(Job.id == job_id).values(status="cancelled"))
        return language(*args)

    monkeypatch.setattr(chunked, "_language", cancel_then_detect)
    jobs.run_job(ctx, job_id)
    assert chunk_rows(ctx, job_id) == [] and sent["chunks"] == []
    assert job_row(ctx, job_id).status == "cancelled"


def test_audio_under_the_threshold_runs_whole(
    ctx: WorkerContext, words: list[Burst], recogniser: Recogniser, sent: dict[str, list[Any]]
) -> None:
    job_id = put_job(ctx, words, duration=50.0)
    jobs.run_job(ctx, job_id)
    job = job_row(ctx, job_id)
    assert job.status == "succeeded" and chunk_rows(ctx, job_id) == []
    assert recogniser.calls == 1 and sent["chunks"] == []
    heard = Transcript.from_dict(job.result or {})
    assert [w.word for w in heard.words] == [f"w{w.number}" for w in words if w.end < 50.0]


def test_chunk_status_values() -> None:
    assert {s.value for s in ChunkStatus} == {"queued", "running", "succeeded"}
