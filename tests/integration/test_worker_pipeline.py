"""A job written to Postgres, queued through Redis, run by a real worker process, read back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from core.db import make_engine, session_factory, transaction
from core.migrate import upgrade
from core.models import Job, JobStatus, new_id, utcnow
from core.queues import BATCH_QUEUE, enqueue, make_celery
from core.settings import Settings, load_settings
from tests.support import ROOT, celery_broker_idle, clip, error_rate, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(tmp_path: Path, pg_url: str, redis_url: str) -> Settings:
    s = load_settings(
        {
            "STT_DATA_DIR": str(tmp_path),
            "DATABASE_URL": pg_url,
            "REDIS_URL": redis_url,
            "STT_CPU_THREADS": "2",
        }
    )
    upgrade(s.database.url)
    return s


@pytest.fixture
def worker(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "STT_DATA_DIR": str(settings.storage.data_dir),
        "DATABASE_URL": settings.database.url,
        "REDIS_URL": str(settings.broker.redis_url),
        "STT_CPU_THREADS": "2",
    }
    log = (settings.storage.data_dir / "worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    yield proc
    proc.terminate()
    proc.wait(timeout=30)


def put_job(settings: Settings, clip_name: str, **options: object) -> str:
    job_id = new_id()
    key = f"{job_id[:2]}/{job_id}"
    target = settings.storage.audio_dir / key
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(clip(clip_name).path, target)
    with transaction(session_factory(make_engine(settings.database.url))) as session:
        session.add(
            Job(
                id=job_id,
                tenant="t1",
                status="queued",
                queue=BATCH_QUEUE,
                model="whisper-1",
                model_spec="bundled:base",
                language=None,
                options={"word_timestamps": True, **options},
                audio_key=key,
                audio_bytes=target.stat().st_size,
                enqueued_at=utcnow(),
            )
        )
    return job_id


def wait_ended(settings: Settings, job_id: str, timeout: float = 120) -> Job:
    sessions = session_factory(make_engine(settings.database.url))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sessions() as session:
            job = session.execute(select(Job).where(Job.id == job_id)).scalar_one()
            if JobStatus(job.status).ended:
                return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not end")


def test_job_through_redis_and_a_real_worker(
    settings: Settings, worker: subprocess.Popen[bytes]
) -> None:
    job_id = put_job(settings, "en_jfk_inaugural.flac")
    enqueue(make_celery(settings), job_id, BATCH_QUEUE)
    job = wait_ended(settings, job_id)
    assert job.status == "succeeded", (job.error_code, job.error_message)
    assert job.result is not None
    c = clip("en_jfk_inaugural.flac")
    assert error_rate(c.reference, job.result["text"], "en") <= 0.1
    assert job.result["language"] == "en"
    assert job.attempts == 1 and job.progress == 1.0
    assert job.started_at is not None and job.completed_at is not None
    assert job.result["segments"][0]["words"], "word timestamps were asked for"
    assert not (settings.storage.audio_dir / str(job.audio_key)).exists(), (
        "audio kept after the job"
    )


def test_undecodable_audio_fails_with_a_reason_and_is_not_retried(
    settings: Settings, worker: subprocess.Popen[bytes]
) -> None:
    job_id = put_job(settings, "en_jfk_inaugural.flac")
    with transaction(session_factory(make_engine(settings.database.url))) as session:
        job = session.get(Job, job_id)
        assert job is not None
        (settings.storage.audio_dir / str(job.audio_key)).write_bytes(os.urandom(4096))
    enqueue(make_celery(settings), job_id, BATCH_QUEUE)
    job = wait_ended(settings, job_id)
    assert job.status == "failed"
    assert job.error_code == "unsupported_audio" and job.error_message
    assert job.attempts == 1


def test_a_job_delivered_twice_runs_once(
    settings: Settings, worker: subprocess.Popen[bytes]
) -> None:
    job_id = put_job(settings, "en_librispeech_2830-3980-0043.wav")
    app = make_celery(settings)
    enqueue(app, job_id, BATCH_QUEUE)
    enqueue(app, job_id, BATCH_QUEUE)
    job = wait_ended(settings, job_id)
    assert job.status == "succeeded"
    wait_until(
        lambda: celery_broker_idle(str(settings.broker.redis_url), BATCH_QUEUE),
        60,
        "the duplicate message to be consumed",
    )
    with session_factory(make_engine(settings.database.url))() as session:
        again = session.execute(select(Job).where(Job.id == job_id)).scalar_one()
    assert again.attempts == 1
    assert again.completed_at == job.completed_at
