"""The storage interface, the same tests on both backends: a local directory, and S3 over
HTTP on moto's standalone server (a real S3-compatible server on loopback)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from litestar.testing import TestClient

from api.app import create_app
from core.db import make_engine, session_factory, transaction
from core.migrate import upgrade
from core.models import Job, new_id, utcnow
from core.queues import BATCH_QUEUE, make_celery
from core.settings import load_settings
from core.storage import (
    PART_SIZE,
    LocalStorage,
    S3Storage,
    Storage,
    StorageUnavailable,
    TeeSink,
    audio_key,
    make_storage,
)
from tests.support import MotoServer, clip, free_port
from worker.context import WorkerContext
from worker.reconciler import sweep_storage

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@dataclass
class Backend:
    name: str
    env: dict[str, str]
    """The settings environment that selects this backend."""
    storage: Storage
    leftovers: Callable[[], list[str]]
    """Everything stored, committed or not (objects, partial uploads, temporary files)."""


def local_backend(tmp_path: Path) -> Backend:
    env = {"STT_DATA_DIR": str(tmp_path / "data")}
    storage = make_storage(load_settings(env))
    assert isinstance(storage, LocalStorage)
    root = storage.root

    def leftovers() -> list[str]:
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    return Backend("local", env, storage, leftovers)


@pytest.fixture
def s3_backend(s3_server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    for name, value in s3_server.env.items():  # boto3 takes credentials from the environment
        monkeypatch.setenv(name, value)
    bucket = s3_server.create_bucket()
    env = {
        "STT_DATA_DIR": str(tmp_path / "data"),
        **s3_server.env,
        "STT_STORAGE_URL": f"s3://{bucket}/audio",
    }
    storage = make_storage(load_settings(env))
    assert isinstance(storage, S3Storage)

    def leftovers() -> list[str]:
        found = s3_server.objects(bucket) + [f"(upload) {k}" for k in s3_server.uploads(bucket)]
        return sorted(found)

    return Backend("s3", env, storage, leftovers)


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return local_backend(tmp_path)
    s3: Backend = request.getfixturevalue("s3_backend")
    return s3


def scratch_files(backend: Backend) -> list[Path]:
    scratch = load_settings(backend.env).storage.scratch_dir
    return [p for p in scratch.rglob("*") if p.is_file()] if scratch.exists() else []


def write(storage: Storage, key: str, data: bytes, chunk: int = 700_001) -> None:
    with storage.open_write(key) as sink:
        for start in range(0, len(data), chunk):
            sink.write(data[start : start + chunk])


def read(storage: Storage, key: str) -> bytes:
    with storage.local_copy(key) as path:
        return path.read_bytes()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("size", [0, 1000, 12 * MiB])
def test_round_trip(backend: Backend, size: int) -> None:
    data = os.urandom(size)
    key = audio_key(new_id())
    assert not backend.storage.exists(key)
    write(backend.storage, key, data)
    assert backend.storage.exists(key)
    assert digest(read(backend.storage, key)) == digest(data)
    expected = key if backend.name == "local" else f"audio/{key}"
    assert backend.leftovers() == [expected]


def test_a_large_object_goes_up_in_parts_with_one_part_buffered(
    s3_backend: Backend, s3_server: MotoServer
) -> None:
    backend = s3_backend
    assert isinstance(backend.storage, S3Storage)
    data = os.urandom(2 * PART_SIZE + 123)
    key = audio_key(new_id())
    sink = backend.storage.open_write(key)
    for start in range(0, len(data), 3 * MiB):
        sink.write(data[start : start + 3 * MiB])
        assert len(sink._buffer) < PART_SIZE  # type: ignore[attr-defined]
    sink.close()
    bucket = backend.storage.bucket
    head = s3_server.client().head_object(Bucket=bucket, Key=f"audio/{key}")
    assert head["ETag"].strip('"').endswith("-3"), "three parts: two full, one short"
    assert head["ContentLength"] == len(data)


def test_replacing_an_object(backend: Backend) -> None:
    key = audio_key(new_id())
    write(backend.storage, key, b"first")
    write(backend.storage, key, b"second")
    assert read(backend.storage, key) == b"second"
    assert len(backend.leftovers()) == 1


@pytest.mark.parametrize("size", [1000, PART_SIZE + MiB])
def test_abort_leaves_nothing(backend: Backend, size: int) -> None:
    key = audio_key(new_id())
    sink = backend.storage.open_write(key)
    sink.write(os.urandom(size))  # past one part: the S3 upload has begun
    sink.abort()
    sink.abort()  # twice is harmless
    assert not backend.storage.exists(key)
    assert backend.leftovers() == []
    with pytest.raises(ValueError):
        sink.write(b"more")


def test_an_error_inside_the_with_block_aborts(backend: Backend) -> None:
    key = audio_key(new_id())
    with pytest.raises(RuntimeError), backend.storage.open_write(key) as sink:
        sink.write(os.urandom(PART_SIZE + 1))
        raise RuntimeError("the upload broke off")
    assert backend.leftovers() == []


def test_abort_after_close_keeps_the_object(backend: Backend) -> None:
    key = audio_key(new_id())
    sink = backend.storage.open_write(key)
    sink.write(b"kept")
    sink.close()
    sink.abort()
    assert read(backend.storage, key) == b"kept"


def test_delete_and_exists(backend: Backend) -> None:
    key, other = audio_key(new_id()), audio_key(new_id())
    write(backend.storage, key, b"a")
    write(backend.storage, other, b"b")
    backend.storage.delete(key)
    backend.storage.delete(key)  # deleting what is gone is not an error
    assert not backend.storage.exists(key)
    assert backend.storage.exists(other)
    with pytest.raises(FileNotFoundError):
        read(backend.storage, key)


def test_local_copy_removes_its_scratch_file(backend: Backend) -> None:
    key = audio_key(new_id())
    data = os.urandom(3 * MiB)
    write(backend.storage, key, data)
    with backend.storage.local_copy(key) as path:
        assert path.read_bytes() == data
        inside = scratch_files(backend)
    with pytest.raises(RuntimeError), backend.storage.local_copy(key):
        raise RuntimeError("decoding failed")
    assert scratch_files(backend) == []
    assert backend.storage.exists(key), "a local copy leaves the stored object alone"
    if backend.name == "s3":
        assert inside == [path], "the object was streamed to one scratch file"
    else:
        assert inside == [] and backend.storage.local_path(key) == path  # the file itself


def test_local_copy_of_a_missing_key(backend: Backend) -> None:
    with pytest.raises(FileNotFoundError), backend.storage.local_copy(audio_key(new_id())):
        pass
    assert scratch_files(backend) == []


BAD_KEYS = ["", "../x", "a/../b", "/abs", "a//b", ".hidden", "a/.b", "a b", "a/", "a\\b", "é"]


def test_invalid_keys_are_refused(backend: Backend) -> None:
    storage = backend.storage
    for key in [*BAD_KEYS, "x" * 201]:
        for call in (storage.open_write, storage.exists, storage.delete, storage.local_path):
            with pytest.raises(ValueError):
                call(key)
        with pytest.raises(ValueError), storage.local_copy(key):
            pass
    assert backend.leftovers() == []


def test_tee_keeps_a_local_copy_and_abort_removes_both(backend: Backend, tmp_path: Path) -> None:
    key = audio_key(new_id())
    data = os.urandom(PART_SIZE + 5)
    with TeeSink(backend.storage.open_write(key), tmp_path / "spool") as sink:
        sink.write(data)
    assert (tmp_path / "spool").read_bytes() == data
    assert read(backend.storage, key) == data
    other = audio_key(new_id())
    tee = TeeSink(backend.storage.open_write(other), tmp_path / "spool2")
    tee.write(data)
    tee.abort()
    assert not (tmp_path / "spool2").exists()
    assert not backend.storage.exists(other)


def test_listing_by_age_and_sweeping_abandoned_writes(backend: Backend) -> None:
    key = audio_key(new_id())
    write(backend.storage, key, b"done")
    abandoned = backend.storage.open_write(audio_key(new_id()))
    abandoned.write(os.urandom(PART_SIZE))  # begun by a process that then died
    now = time.time()
    assert list(backend.storage.keys_older_than(now + 60)) == [key]
    assert list(backend.storage.keys_older_than(now - 3600)) == []
    if backend.name == "local":  # moto reports every multipart upload as begun in 2010
        assert backend.storage.sweep_incomplete(now - 3600) == 0
    assert backend.storage.sweep_incomplete(now + 60) == 1
    expected = key if backend.name == "local" else f"audio/{key}"
    assert backend.leftovers() == [expected]


def test_ready(backend: Backend) -> None:
    assert backend.storage.ready()


def test_a_missing_bucket_is_not_ready(s3_server: MotoServer, tmp_path: Path) -> None:
    storage = S3Storage("no-such-bucket-here", "audio", tmp_path, endpoint_url=s3_server.url)
    assert not storage.ready()


def test_an_unreachable_store_is_a_connection_error(
    s3_server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """StorageUnavailable is a ConnectionError: a worker hands the job back and retries."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    dead = f"http://127.0.0.1:{free_port()}"
    storage = S3Storage("bucket", "audio", tmp_path / "scratch", endpoint_url=dead)
    key = audio_key(new_id())
    with pytest.raises(StorageUnavailable) as caught, storage.local_copy(key):
        pass
    assert isinstance(caught.value, ConnectionError)
    assert s3_server.SECRET_KEY not in str(caught.value)
    with pytest.raises(StorageUnavailable), storage.open_write(key) as sink:
        sink.write(b"x")
    assert not storage.ready()
    assert list((tmp_path / "scratch").iterdir()) == []


@pytest.fixture
def worker_context(backend: Backend, pg_url: str) -> Iterator[WorkerContext]:
    settings = load_settings({**backend.env, "DATABASE_URL": pg_url})
    upgrade(settings.database.url)
    yield WorkerContext(settings, make_celery(settings))


def test_orphan_sweep_keeps_only_audio_that_pending_jobs_need(
    backend: Backend, worker_context: WorkerContext
) -> None:
    statuses = ["queued", "running", "succeeded", "failed", "cancelled"]
    keys = {status: audio_key(new_id()) for status in statuses}
    with transaction(session_factory(make_engine(worker_context.settings.database.url))) as s:
        for status, key in keys.items():
            s.add(
                Job(
                    id=key.split("/")[1],
                    tenant="t1",
                    status=status,
                    queue=BATCH_QUEUE,
                    model="whisper-1",
                    model_spec="bundled:base",
                    options={},
                    audio_key=key,
                    enqueued_at=utcnow(),
                )
            )
    orphan = audio_key(new_id())  # an upload whose job row was never written
    foreign = "notes/readme.txt"  # not shaped like the service's keys: never touched
    for key in [*keys.values(), orphan, foreign]:
        write(worker_context.storage, key, b"audio")
    # Younger than the grace period: all kept.
    assert sweep_storage(worker_context) == 0
    assert sweep_storage(worker_context, grace_s=-60) == 4
    left = {k for k in [*keys.values(), orphan, foreign] if worker_context.storage.exists(k)}
    assert left == {keys["queued"], keys["running"], foreign}


def test_the_api_answers_503_while_the_object_store_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_server: MotoServer
) -> None:
    """Uploads get 503 with Retry-After (not a 500), and /health/ready says storage is down."""
    monkeypatch.chdir(tmp_path)  # kombu's filesystem transport writes ./control
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(
        {
            "STT_DATA_DIR": str(tmp_path / "data"),
            "STT_API_KEY": "k1",
            "STT_STORAGE_URL": "s3://stt/audio",
            "STT_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        }
    )
    settings.storage.data_dir.mkdir()
    upgrade(settings.database.url)
    with TestClient(create_app(settings)) as client:
        r = client.post(
            "/stt/jobs",
            headers={"Authorization": "Bearer k1"},
            files={"file": ("a.flac", clip("en_librispeech_61-70968-0000.flac").path.read_bytes())},
            data={"model": "ink-whisper"},
        )
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] and r.json()["error_code"] == "service_unavailable"
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["storage"] is False
    assert [p for p in settings.storage.scratch_dir.rglob("*") if p.is_file()] == []
