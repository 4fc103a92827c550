"""`python -m bench.queue_wait [--tree DIR ...] [--calls N]`: how long a short synchronous
call waits between being queued and a worker starting it, on the embedded default (SQLite
and the filesystem broker), and the call's whole wall time.

Each tree gets its own `stt serve --workers 1` (one API process); calls alternate between
the trees, and after them each job row's `started_at - enqueued_at` is read. Loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from statistics import median
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from bench.polls import KEY, corpus_dir, free_port

ROOT = Path(__file__).resolve().parent.parent
CLIP = "en_librispeech_2830-3980-0043.wav"
"""2 s of speech: the queue wait is most of what differs."""


@contextmanager
def serve(tree: Path, data: Path) -> Any:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("STT_", "DATABASE_URL"))},
        "PYTHONPATH": str(tree),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "STT_DATA_DIR": str(data),
        "STT_API_KEY": KEY,
        "STT_API_WORKERS": "1",
        "STT_CPU_THREADS": "2",
        "STT_RT_EMBEDDED_WORKERS": "0",  # no streaming worker's CPU in the API's tree
        "STT_RATE_LIMIT_PER_MINUTE": "0",
        "STT_LOG_LEVEL": "INFO",
    }
    env.pop("REDIS_URL", None)
    data.mkdir(parents=True, exist_ok=True)
    log_path = data / "serve.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--workers", "1"],
        cwd=tree,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while " ready." not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{tree}: no ready worker; see {log_path}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", f"sqlite:///{data / 'stt.db'}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def call(url: str, audio: bytes) -> float:
    started = time.perf_counter()
    r = httpx.post(
        f"{url}/stt",
        headers={"Authorization": f"Bearer {KEY}"},
        files={"file": ("a.wav", audio, "audio/wav")},
        data={"model": "ink-whisper", "language": "en"},
        timeout=120,
    )
    r.raise_for_status()
    return time.perf_counter() - started


def waits(database_url: str) -> list[float]:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT enqueued_at, started_at FROM jobs WHERE started_at IS NOT NULL")
        ).all()
    engine.dispose()
    out = []
    for enqueued, started in rows:
        a, b = (v if not isinstance(v, str) else _parse(v) for v in (enqueued, started))
        out.append((b - a).total_seconds())
    return out


def _parse(value: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.queue_wait", description=__doc__)
    parser.add_argument("--tree", type=Path, action="append", default=None)
    parser.add_argument("--calls", type=int, default=6)
    args = parser.parse_args(argv)
    trees = [t.resolve() for t in (args.tree or [ROOT])]
    audio = (corpus_dir() / CLIP).read_bytes()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="stt-qwait-") as tmp, ExitStack() as stack:
        servers = [stack.enter_context(serve(t, Path(tmp, f"t{i}"))) for i, t in enumerate(trees)]
        for url, _ in servers:
            call(url, audio)  # warm: the model loads on the first call
        walls: dict[int, list[float]] = {i: [] for i in range(len(servers))}
        for n in range(args.calls):
            order = list(range(len(servers)))
            for i in order if n % 2 == 0 else order[::-1]:
                walls[i].append(call(servers[i][0], audio))
        results: dict[str, Any] = {}
        for i, (tree, (_, db)) in enumerate(zip(trees, servers, strict=True)):
            queued = waits(db)
            results[str(tree)] = {
                "queue_wait_s": {
                    "median": round(median(queued), 3),
                    "min": round(min(queued), 3),
                    "max": round(max(queued), 3),
                },
                "call_wall_s": {
                    "median": round(median(walls[i]), 3),
                    "min": round(min(walls[i]), 3),
                    "max": round(max(walls[i]), 3),
                },
            }
    results["calls"] = args.calls
    results["load_average_before"] = [round(x, 2) for x in load_before]
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
