"""Several API processes (STT_API_WORKERS, one per core by default) on the embedded
default: one migration run, a shared SQLite database, `/metrics` counting every process's
requests, a process that dies replaced, and a transcription answered."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import LiveService, clip, start_service, stop_service_proc, wait_until

pytestmark = pytest.mark.e2e
KEY = "sk-stt-api-workers-0123456789"
ENV = {
    "STT_API_KEY": KEY,
    "STT_API_WORKERS": "2",
    "STT_RATE_LIMIT_PER_MINUTE": "0",
    "STT_RT_EMBEDDED_WORKERS": "0",  # the supervisor's children: API processes and workers only
}


@pytest.fixture(scope="module")
def two_apis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    svc = start_service(tmp_path_factory.mktemp("apis") / "svc", ENV, workers=0)
    yield svc
    stop_service_proc(svc.proc)


def _api_processes(svc: LiveService) -> set[int]:
    """The supervisor's children (with no worker beside them: the API processes)."""
    pid = svc.proc.pid
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(p) for p in text.split()}


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
            assert got.status_code == 200 and got.json()["status"] == "queued"  # no worker
    listed = httpx.get(f"{two_apis.url}/stt/jobs", headers=auth, timeout=10).json()
    assert sorted(j["id"] for j in listed["data"]) == sorted(ids)


def test_an_api_process_that_dies_is_replaced(two_apis: LiveService) -> None:
    first = _api_processes(two_apis)
    assert len(first) == 2
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(_api_processes(two_apis) - {victim}) == 2, 60, "a new API process")
    replaced = _api_processes(two_apis)
    assert victim not in replaced and len(replaced & first) == 1
    # The newcomer answers too: fresh connections until both pids have counted a request.
    metrics_dir = two_apis.data_dir / "metrics"
    newcomer = str((replaced - first).pop())
    deadline = time.monotonic() + 60
    while newcomer not in _served_by(metrics_dir):
        assert time.monotonic() < deadline, "the new API process never answered"
        assert httpx.get(f"{two_apis.url}/health/live", timeout=10).status_code == 200
    assert f"API process {victim} exited" in two_apis.log()


def test_the_embedded_default_transcribes_with_two_api_processes(tmp_path: Path) -> None:
    """SQLite, the filesystem broker, one worker beside two API processes: a synchronous
    call is answered, and the schema was migrated once (by the supervisor)."""
    svc = start_service(tmp_path / "svc", ENV, workers=1)
    try:
        with clip("en_jfk_inaugural.flac").path.open("rb") as f:
            r = httpx.post(
                f"{svc.url}/stt",
                headers=svc.headers(),
                files={"file": f},
                data={"model": "ink-whisper", "language": "en"},
                timeout=300,
            )
        assert r.status_code == 200, r.text
        assert "country" in r.json()["text"].lower()
        # the workers were started once, by the supervisor: a transcription and a webhook one
        assert len(_worker_pids(svc)) == 2
        assert len(_api_processes(svc) - _worker_pids(svc)) == 2
        log = svc.log()
        assert log.count("Running upgrade  -> 0001") == 1
        assert "2 API process(es)" in log
    finally:
        stop_service_proc(svc.proc)


def _worker_pids(svc: LiveService) -> set[int]:
    """The supervisor's children that are workers (`python -m worker ...`)."""
    found = set()
    for pid in _api_processes(svc):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"worker" in cmdline:
            found.add(pid)
    return found


def test_the_default_is_one_api_process_per_core(tmp_path: Path) -> None:
    """With STT_API_WORKERS unset, `stt serve` runs one per usable core (at most 4)."""
    env = {**ENV, "STT_API_WORKERS": ""}  # unset: the default (start_service pins 1)
    svc = start_service(tmp_path / "svc", env, workers=0)
    try:
        expected = min(len(os.sched_getaffinity(0)), 4)
        wait_until(lambda: "Serving on" in svc.log(), 60, "the line that says it serves")
        assert f"{expected} API process(es)" in svc.log()
        if expected > 1:
            assert len(_api_processes(svc)) == expected
    finally:
        stop_service_proc(svc.proc)
