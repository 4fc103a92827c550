"""Alembic migrations run up and down on Postgres and SQLite, and match the models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

import core.models  # noqa: F401  (registers the tables on Base.metadata)
from core.db import Base, make_engine
from core.migrate import downgrade, upgrade

pytestmark = pytest.mark.integration

TABLES = {"jobs", "api_keys", "webhook_deliveries", "workers_seen", "job_chunks"}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))
    finally:
        engine.dispose()


@pytest.fixture(params=["postgres", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'stt.db'}"


def test_up_down_up(db_url: str) -> None:
    upgrade(db_url)
    assert _tables(db_url) == TABLES
    downgrade(db_url)
    assert _tables(db_url) == set()
    upgrade(db_url)
    assert _tables(db_url) == TABLES


def test_migrations_match_models(db_url: str) -> None:
    upgrade(db_url)
    assert _diff(db_url) == []


def _insert_job(url: str, job_id: str, worker: str | None, options: dict[str, object]) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO jobs (id, tenant, status, queue, model, model_spec, options,"
                    " audio_bytes, progress, attempts, worker, created_at)"
                    " VALUES (:id, 't', 'running', 'q', 'm', 'm', :options, 0, 0, 1, :worker,"
                    " CURRENT_TIMESTAMP)"
                ),
                {"id": job_id, "options": json.dumps(options), "worker": worker},
            )
    finally:
        engine.dispose()


def _chunked_and_worker(url: str) -> dict[str, tuple[bool, str | None]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, chunked, worker FROM jobs")).all()
        return {row.id: (bool(row.chunked), row.worker) for row in rows}
    finally:
        engine.dispose()


def test_chunked_is_back_filled_from_the_old_sentinel_and_option(db_url: str) -> None:
    upgrade(db_url, "0004")
    _insert_job(db_url, "sentinel", "(chunks)", {"word_timestamps": False})
    _insert_job(db_url, "option", None, {"chunked": {"language": "en", "chunks": 3}})
    _insert_job(db_url, "whole", "host:1", {"word_timestamps": True})
    upgrade(db_url)
    assert _chunked_and_worker(db_url) == {
        "sentinel": (True, None),
        "option": (True, None),
        "whole": (False, "host:1"),
    }
    downgrade(db_url, "0004")
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, worker FROM jobs")).all()
            workers = {str(r[0]): r[1] for r in rows}
    finally:
        engine.dispose()
    assert workers == {"sentinel": "(chunks)", "option": "(chunks)", "whole": "host:1"}
