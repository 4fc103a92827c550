"""What the benchmarks stand on: the machine's description, a Postgres database and a Redis
database of their own, live services on loopback, the long test audio, and timing helpers."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from bench.support import ROOT, LiveService, clips, long_audio, start_service, stop_service_proc
from core.settings import usable_cores
from worker.batching import cpu_model

PG_ADMIN = os.environ.get("STT_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("STT_BENCH_REDIS", "redis://127.0.0.1:6379")
KEY = "sk-stt-bench-0123456789abcdef"


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return ""
    return done.stdout.strip()


def _ram_gib() -> float:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    return 0.0


def machine() -> dict[str, Any]:
    """Where and with what the figures were measured."""
    import ctranslate2
    import faster_whisper

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "ram_gib": _ram_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "faster_whisper": faster_whisper.__version__,
        "ctranslate2": ctranslate2.__version__,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the local Postgres, dropped afterwards."""
    import psycopg

    name = f"stt_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def redis_database() -> Iterator[str]:
    """An empty Redis database number no test run or other bench holds (the lock files are
    the ones the test suite takes), flushed before and after."""
    import redis

    handle: IO[bytes] | None = None
    for db in range(1, 16):
        # The lock files the test suite takes: a bench and a test run never share a db.
        handle = open(f"/tmp/stt-test-redis-{db}.lock", "wb")  # noqa: SIM115, S108
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            handle = None
            continue
        url = f"{REDIS_BASE}/{db}"
        redis.Redis.from_url(url).flushdb()
        try:
            yield url
        finally:
            redis.Redis.from_url(url).flushdb()
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        return
    raise RuntimeError("every Redis database number (1-15) is in use")


@dataclass
class Services:
    """Starts services on loopback over one data directory and either a Postgres database
    and Redis or, with neither named, the embedded default (SQLite in the data directory,
    the filesystem broker): what `stt serve` runs with nothing configured."""

    data_dir: Path
    database: str | None = None
    redis_url: str | None = None
    batching: Path | None = None
    """A stored batching measurement (`python -m bench --only engine`) the workers get."""
    started: int = 0

    @property
    def backend(self) -> str:
        return "postgres+redis" if self.database else "embedded (sqlite + filesystem broker)"

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{self.data_dir / 'stt.db'}"

    def env(self, **extra: str) -> dict[str, str]:
        backend = {"DATABASE_URL": self.database} if self.database else {}
        if self.redis_url:
            backend["REDIS_URL"] = self.redis_url
        return {
            **backend,
            "STT_API_KEY": KEY,
            "STT_MAX_QUEUED_PER_TENANT": "1000000",
            "STT_MAX_QUEUED_TOTAL": "1000000",
            "STT_RATE_LIMIT_PER_MINUTE": "0",  # measure capacity, not the per-key limit
            "STT_POLL_LIMIT_PER_MINUTE": "0",
            "STT_RT_EMBEDDED_WORKERS": "0",  # bench/realtime.py starts its own
            **extra,
        }

    @contextlib.contextmanager
    def run(self, workers: int, **extra: str) -> Iterator[LiveService]:
        """`stt serve` with `workers` worker processes beside it, each ready and warm."""
        self.started += 1
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.batching and self.batching.is_file():
            shutil.copyfile(self.batching, self.data_dir / self.batching.name)
        svc = start_service(
            self.data_dir, self.env(**extra), workers=workers, log_name=f"service{self.started}.log"
        )
        try:
            wait_ready(svc, workers)
            yield svc
        finally:
            stop_service_proc(svc.proc)


def wait_ready(svc: LiveService, workers: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if svc.log().count(" ready.") >= workers:
            return
        if svc.proc.poll() is not None:
            raise RuntimeError(f"the service stopped:\n{svc.log()[-3000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"{workers} worker(s) did not become ready:\n{svc.log()[-3000:]}")


def headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def transcribe_sync(svc: LiveService, path: Path, **fields: str) -> tuple[float, dict[str, Any]]:
    """POST /stt and wait for the transcript: (seconds from upload to answer, body)."""
    with path.open("rb") as handle:
        started = time.perf_counter()
        r = httpx.post(
            f"{svc.url}/stt",
            headers=headers(),
            files={"file": (path.name, handle)},
            data={"model": "ink-whisper", **fields},
            timeout=3600,
        )
        elapsed = time.perf_counter() - started
    r.raise_for_status()
    return elapsed, r.json()


def run_job(svc: LiveService, path: Path, **fields: str) -> tuple[float, dict[str, Any]]:
    """POST /stt/jobs and long-poll it to its end: (seconds from upload to end, job)."""
    with path.open("rb") as handle:
        started = time.perf_counter()
        r = httpx.post(
            f"{svc.url}/stt/jobs",
            headers=headers(),
            files={"file": (path.name, handle)},
            data={"model": "ink-whisper", **fields},
            timeout=3600,
        )
    r.raise_for_status()
    job: dict[str, Any] = r.json()
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        job = httpx.get(
            f"{svc.url}/stt/jobs/{job['id']}",
            headers=headers(),
            params={"wait": "30"},
            timeout=60,
        ).json()
    elapsed = time.perf_counter() - started
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job['id']} ended {job['status']}: {job['error']}")
    return elapsed, job


def english_speech(seconds: float) -> list[str]:
    """English corpus clips, in manifest order (again from the top if need be), adding up to
    just under `seconds` with the half-second gaps `long_audio` puts between them."""
    english = [c for c in clips().values() if c.language == "en"]
    names: list[str] = []
    total = 0.0
    while True:
        for c in english:
            if total + c.duration + 0.5 > seconds:
                return names
            names.append(c.file)
            total += c.duration + 0.5


def build_audio(folder: Path, seconds: float, name: str) -> tuple[Path, str, float]:
    """Joined corpus speech as a 16 kHz WAV: (path, joined reference, seconds)."""
    path, reference = long_audio(folder / name, english_speech(seconds))
    frames = (path.stat().st_size - 44) / 2
    return path, reference, frames / 16000


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def command() -> str:
    return " ".join([Path(sys.executable).name, "-m", "bench", *sys.argv[1:]])
