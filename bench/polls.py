"""`python -m bench.polls [--tree DIR ...] [--pairs N] [--postgres URL --redis URL]`: the API
CPU one status poll costs, for a running job, a finished long job, and a finished job polled
with `If-None-Match` (a 304), measured in interleaved, paired rounds.

Each tree (default: this checkout; name two, e.g. an older commit unpacked with `git
archive`, to compare them) gets its own `stt serve` with one API process and no worker, on
the embedded default unless a Postgres database and Redis are named. The jobs are submitted
through the API and then moved to running / succeeded by writing their rows, as a worker
would. Rounds alternate the order of the trees; a poll's cost is the server's CPU time over
`polls` requests on one keep-alive connection. Loopback only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from bench.idle import tree_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-stt-bench-polls-0123456789"
CLIP = "en_jfk_inaugural.flac"
SEGMENTS = 400
"""The finished job's transcript: about a 10-minute file's segments, words included."""


def corpus_dir() -> Path:
    return Path(os.environ.get("STT_CORPUS_DIR") or ROOT.parent / "shared" / "corpus")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    tree: Path
    url: str
    proc: subprocess.Popen[bytes]
    database_url: str
    jobs: dict[str, str]
    """kind (running, finished) → job id."""


def _transcript() -> dict[str, Any]:
    segments: list[dict[str, Any]] = []
    for i in range(SEGMENTS):
        words = [
            {"word": f" word{j}", "start": i * 1.5 + j * 0.1, "end": i * 1.5 + j * 0.1 + 0.08}
            for j in range(12)
        ]
        segments.append(
            {
                "id": i,
                "start": i * 1.5,
                "end": i * 1.5 + 1.4,
                "text": " ".join(str(w["word"]) for w in words),
                "tokens": list(range(20)),
                "words": [{**w, "probability": 0.9} for w in words],
            }
        )
    return {
        "text": " ".join(str(s["text"]) for s in segments),
        "language": "en",
        "duration": SEGMENTS * 1.5,
        "segments": segments,
    }


_FINISH = text(
    "UPDATE jobs SET status='succeeded', progress=1.0, result=:r, options=:o, "
    "started_at=created_at, completed_at=created_at WHERE id=:id"
)
_FINISH_PG = text(
    "UPDATE jobs SET status='succeeded', progress=1.0, result=CAST(:r AS JSON), "
    "options=CAST(:o AS JSON), started_at=created_at, completed_at=created_at WHERE id=:id"
)


def _set_rows(database_url: str, running: str, finished: str) -> None:
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    result = json.dumps(_transcript())
    finish = _FINISH_PG if engine.dialect.name == "postgresql" else _FINISH
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE jobs SET status='running', progress=0.4, text_so_far='And so, my' "
                "WHERE id=:id"
            ),
            {"id": running},
        )
        conn.execute(
            finish,
            {"id": finished, "r": result, "o": json.dumps({"granularities": ["word"]})},
        )
    engine.dispose()


@contextmanager
def serve(tree: Path, data: Path, database_url: str | None, redis_url: str | None) -> Any:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("STT_", "DATABASE_URL"))},
        "PYTHONPATH": str(tree),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "STT_DATA_DIR": str(data),
        "STT_API_KEY": KEY,
        "STT_API_WORKERS": "1",
        "STT_RT_EMBEDDED_WORKERS": "0",  # no streaming worker's CPU in the API's tree
        "STT_RATE_LIMIT_PER_MINUTE": "0",  # measure the poll, not the limits
        "STT_POLL_LIMIT_PER_MINUTE": "0",
        "STT_LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_URL", None)
    if database_url:
        env["DATABASE_URL"] = database_url
    if redis_url:
        env["REDIS_URL"] = redis_url
    data.mkdir(parents=True, exist_ok=True)
    log = (data / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--workers", "0"],
        cwd=tree,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{tree}: the service did not start; see {data}/serve.log")
            try:
                if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        auth = {"Authorization": f"Bearer {KEY}"}
        audio = (corpus_dir() / CLIP).read_bytes()
        ids = []
        for _ in range(2):
            r = httpx.post(
                f"{url}/stt/jobs",
                headers=auth,
                files={"file": ("a.flac", audio, "audio/flac")},
                data={"model": "ink-whisper", "language": "en"},
                timeout=60,
            )
            r.raise_for_status()
            ids.append(r.json()["id"])
        db = database_url or f"sqlite:///{data / 'stt.db'}"
        _set_rows(db, ids[0], ids[1])
        yield Server(tree, url, proc, db, {"running": ids[0], "finished": ids[1]})
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def poll_cost_ms(server: Server, kind: str, polls: int) -> float:
    """Server CPU per poll (ms) over `polls` polls on one keep-alive connection."""
    job = server.jobs["finished" if kind == "finished_304" else kind]
    port = int(server.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {KEY}"}
    conn.request("GET", f"/stt/jobs/{job}", headers=headers)
    first = conn.getresponse()
    first.read()
    if first.status != 200:
        raise RuntimeError(f"{server.tree}: poll answered {first.status}")
    if kind == "finished_304":
        headers["If-None-Match"] = first.getheader("etag") or '"none"'
    before = tree_cpu_seconds(server.proc.pid)
    for _ in range(polls):
        conn.request("GET", f"/stt/jobs/{job}", headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status not in (200, 304):
            raise RuntimeError(f"{server.tree}: poll answered {response.status}")
    cost = (tree_cpu_seconds(server.proc.pid) - before) / polls * 1000
    conn.close()
    return cost


KINDS = ("running", "finished", "finished_304")


def measure(servers: list[Server], pairs: int, polls: int) -> dict[str, Any]:
    costs: dict[str, dict[str, list[float]]] = {
        str(s.tree): {k: [] for k in KINDS} for s in servers
    }
    for round_no in range(pairs):
        order = servers if round_no % 2 == 0 else servers[::-1]
        for kind in KINDS:
            for server in order:
                costs[str(server.tree)][kind].append(poll_cost_ms(server, kind, polls))
    out: dict[str, Any] = {}
    for tree, by_kind in costs.items():
        out[tree] = {
            kind: {
                "median_ms": round(median(v), 3),
                "min_ms": round(min(v), 3),
                "max_ms": round(max(v), 3),
            }
            for kind, v in by_kind.items()
        }
    if len(servers) == 2:
        a, b = (str(s.tree) for s in servers)
        ratios = {
            kind: [y / x for x, y in zip(costs[a][kind], costs[b][kind], strict=True)]
            for kind in KINDS
        }
        out["ratio_second_over_first"] = {
            kind: {"median": round(median(r), 3), "min": round(min(r), 3), "max": round(max(r), 3)}
            for kind, r in ratios.items()
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.polls", description=__doc__)
    parser.add_argument("--tree", type=Path, action="append", default=None)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--polls", type=int, default=300)
    parser.add_argument(
        "--pg", action="store_true", help="Postgres + Redis (a database of each per tree)"
    )
    args = parser.parse_args(argv)
    trees = [t.resolve() for t in (args.tree or [ROOT])]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="stt-polls-") as tmp, ExitStack() as stack:
        databases: list[str | None] = [None] * len(trees)
        redises: list[str | None] = [None] * len(trees)
        if args.pg:
            from bench.harness import postgres_database, redis_database

            databases = [stack.enter_context(postgres_database()) for _ in trees]
            redises = [stack.enter_context(redis_database()) for _ in trees]
        servers = [
            stack.enter_context(serve(tree, Path(tmp, f"t{i}"), databases[i], redises[i]))
            for i, tree in enumerate(trees)
        ]
        results = measure(servers, args.pairs, args.polls)
    results["load_average_before"] = [round(x, 2) for x in load_before]
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    results["backend"] = "postgres+redis" if args.pg else "embedded (sqlite)"
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
