"""Shared fixtures: real Postgres and Redis on this machine, and live services on loopback."""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import psycopg
import pytest
import redis

from tests.support import (
    LiveService,
    MotoServer,
    corpus_dir,
    start_service,
    stop_service_proc,
    wait_for_worker,
)

PG_ADMIN = os.environ.get("STT_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("STT_TEST_REDIS", "redis://127.0.0.1:6379")
TEST_KEY = "sk-stt-test-key-0123456789"
WEBHOOK_SECRET = "whsec-test-secret"
SERVICE_ENV = {
    "STT_API_KEY": TEST_KEY,
    "STT_WEBHOOK_SECRET": WEBHOOK_SECRET,
    "STT_WEBHOOK_ALLOW": "127.0.0.0/8,::1",
    "STT_WEBHOOK_BACKOFF_S": "0.2",
    "STT_WORKER_HEARTBEAT_S": "0.5",
    "STT_RATE_LIMIT_PER_MINUTE": "0",  # tests make hundreds of calls a minute on one key
    "STT_POLL_LIMIT_PER_MINUTE": "0",  # and poll one job many times a second while waiting
    "STT_RT_EMBEDDED_WORKERS": "0",  # realtime tests start their own streaming workers
}
"""Settings every live test service starts with (loopback webhooks are admitted here)."""


@pytest.fixture(scope="session")
def corpus() -> Path:
    path = corpus_dir()
    if not (path / "manifest.jsonl").exists():
        pytest.fail(f"speech corpus not found at {path}; set STT_CORPUS_DIR")
    return path


def _create_database() -> str:
    name = f"stt_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def _drop_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty Postgres database for one test."""
    name = _create_database()
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    _drop_database(name)


@pytest.fixture(scope="module")
def module_pg_url() -> Iterator[str]:
    """A fresh Postgres database shared by one module's tests."""
    name = _create_database()
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    _drop_database(name)


@pytest.fixture(scope="session")
def session_pg_url() -> Iterator[str]:
    name = _create_database()
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    _drop_database(name)


def _claim_redis_db() -> tuple[str, IO[bytes]]:
    """An empty Redis database number no other test (or concurrent pytest run) holds.

    Each of the 16 databases is guarded by an exclusive lock file, held until released."""
    for db in range(1, 16):
        handle = open(f"/tmp/stt-test-redis-{db}.lock", "wb")  # noqa: SIM115 (held open)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        url = f"{REDIS_BASE}/{db}"
        redis.Redis.from_url(url).flushdb()
        return url, handle
    raise RuntimeError("all Redis test databases are in use")


def _release_redis_db(url: str, handle: IO[bytes]) -> None:
    redis.Redis.from_url(url).flushdb()
    fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """An empty Redis database (its own db number) for one test."""
    url, handle = _claim_redis_db()
    yield url
    _release_redis_db(url, handle)


@pytest.fixture(scope="module")
def module_redis_url() -> Iterator[str]:
    url, handle = _claim_redis_db()
    yield url
    _release_redis_db(url, handle)


@pytest.fixture(scope="session")
def session_redis_url() -> Iterator[str]:
    url, handle = _claim_redis_db()
    yield url
    _release_redis_db(url, handle)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """An S3-compatible server on loopback, shared by the tests (each makes its own bucket)."""
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def service(
    tmp_path_factory: pytest.TempPathFactory, session_pg_url: str, session_redis_url: str
) -> Iterator[LiveService]:
    """One live API + worker on Postgres and Redis, shared by the end-to-end tests."""
    svc = start_service(
        tmp_path_factory.mktemp("service"),
        {"DATABASE_URL": session_pg_url, "REDIS_URL": session_redis_url, **SERVICE_ENV},
    )
    wait_for_worker(svc)
    yield svc
    stop_service_proc(svc.proc)
