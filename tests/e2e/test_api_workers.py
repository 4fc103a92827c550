"""Several API processes (STT_API_WORKERS) on the embedded default: one migration run, a
shared SQLite database, and `/metrics` counting every process's requests."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import LiveService, clip, start_service, stop_service_proc

KEY = "sk-stt-api-workers-0123456789"


@pytest.fixture
def two_apis(tmp_path: Path) -> Iterator[LiveService]:
    svc = start_service(
        tmp_path / "svc",
        {"STT_API_KEY": KEY, "STT_API_WORKERS": "2", "STT_RATE_LIMIT_PER_MINUTE": "0"},
        workers=0,
    )
    yield svc
    stop_service_proc(svc.proc)


def _served_by(metrics_dir: Path) -> set[str]:
    """The pids of the API processes that have counted a request."""
    return {p.stem.rpartition("_")[2] for p in metrics_dir.glob("counter_*.db")}


def _count(metrics: str, route: str) -> float:
    pattern = (
        r'^stt_http_requests_total\{method="GET",route="' + re.escape(route) + r'",status="200"\}'
        r" ([0-9.e+]+)$"
    )
    found = re.search(pattern, metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_metrics_sum_both_api_processes(two_apis: LiveService) -> None:
    metrics_dir = two_apis.data_dir / "metrics"
    before = _count(httpx.get(f"{two_apis.url}/metrics", timeout=10).text, "/health/live")
    assert before >= 1  # start_service's own readiness probe
    sent = 0
    deadline = time.monotonic() + 60
    # A fresh connection per request, until both processes have answered some.
    while len(_served_by(metrics_dir)) < 2:
        assert time.monotonic() < deadline and sent < 5000, "one process took every request"
        assert httpx.get(f"{two_apis.url}/health/live", timeout=10).status_code == 200
        sent += 1
    assert len(_served_by(metrics_dir)) == 2
    body = httpx.get(f"{two_apis.url}/metrics", timeout=10).text
    assert _count(body, "/health/live") == before + sent
    # The log names two API processes and one migration run (by the supervisor).
    log = two_apis.log()
    assert "2 API process(es)" in log
    assert log.count("Serving on") == 1


def test_jobs_are_shared_by_both_api_processes(two_apis: LiveService) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    audio = clip("en_jfk_inaugural.flac").path.read_bytes()
    ids = []
    for _ in range(6):
        with httpx.Client(timeout=30) as client:  # a connection each: either process
            r = client.post(
                f"{two_apis.url}/stt/jobs",
                headers=auth,
                files={"file": ("a.flac", audio, "audio/flac")},
                data={"model": "ink-whisper", "language": "en"},
            )
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    for job_id in ids:
        for _ in range(3):
            got = httpx.get(f"{two_apis.url}/stt/jobs/{job_id}", headers=auth, timeout=10)
            assert got.status_code == 200 and got.json()["status"] == "queued"
    listed = httpx.get(f"{two_apis.url}/stt/jobs", headers=auth, timeout=10).json()
    assert sorted(j["id"] for j in listed["data"]) == sorted(ids)
