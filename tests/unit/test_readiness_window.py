"""`/health/ready` stops counting a worker soon after its last `workers_seen` mark."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import delete

from api.app import create_app
from core.db import make_engine, session_factory, transaction
from core.liveness import seen_window_s, sweep_interval_s
from core.migrate import upgrade
from core.models import WorkerSeen, utcnow
from core.settings import Settings, load_settings

STALE_S = 15.0


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient[Litestar], Settings]]:
    settings = load_settings(
        {"STT_DATA_DIR": str(tmp_path), "STT_API_KEY": "k", "STT_STALE_AFTER_S": str(STALE_S)}
    )
    upgrade(settings.database.url)
    with TestClient(create_app(settings)) as client:
        yield client, settings


def seen(settings: Settings, ago_s: float) -> None:
    engine = make_engine(settings.database.url)
    try:
        with transaction(session_factory(engine)) as session:
            session.execute(delete(WorkerSeen))
            session.add(WorkerSeen(name="w1", seen_at=utcnow() - timedelta(seconds=ago_s)))
    finally:
        engine.dispose()


def test_the_window_is_two_sweeps() -> None:
    assert sweep_interval_s(STALE_S) == 5.0
    assert seen_window_s(STALE_S) == 12.0
    assert seen_window_s(60.0) < 60.0  # it used to be a minute or more


def test_a_worker_gone_for_longer_than_the_window_is_not_ready(
    app: tuple[TestClient[Litestar], Settings],
) -> None:
    client, settings = app
    seen(settings, 1.0)
    assert client.get("/health/ready").json()["checks"]["worker"] is True
    seen(settings, seen_window_s(STALE_S) + 1.0)
    assert client.get("/health/ready").json()["checks"]["worker"] is False


def test_audio_seconds_is_a_gauge_not_a_counter_that_falls(
    app: tuple[TestClient[Litestar], Settings],
) -> None:
    """Summed from the jobs the database holds, the figure falls when a job is deleted, so
    it is exposed as a gauge (a counter must never decrease)."""
    client, _ = app
    text = client.get("/metrics").text
    assert "# TYPE stt_audio_seconds_succeeded gauge" in text
    assert "stt_audio_seconds_processed_total" not in text
