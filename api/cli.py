"""`stt`: serve (API + embedded worker), worker, migrate, keys, transcribe (a client)."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
from sqlalchemy import func, select

from api import transcribe_cli
from api.http_guard import GuardedHttpProtocol
from api.metrics_port import listening_sockets
from core.db import make_engine, session_factory, transaction
from core.keys import generate_key, hash_key
from core.logs import configure_logging
from core.models import ApiKey, utcnow
from core.settings import Settings, load_settings
from core.startup import check_storage, fatal_start_errors, migrate, shown_url

log = logging.getLogger("stt")


def create_key(settings: Settings, name: str, tenant: str) -> tuple[str, ApiKey]:
    key = generate_key()
    engine = make_engine(settings.database.url)
    try:
        with transaction(session_factory(engine)) as session:
            row = ApiKey(tenant=tenant, name=name, key_hash=hash_key(key), prefix=key[:11])
            session.add(row)
        return key, row
    finally:
        engine.dispose()


def _count_keys(settings: Settings) -> int:
    engine = make_engine(settings.database.url)
    try:
        with session_factory(engine)() as session:
            return int(session.execute(select(func.count()).select_from(ApiKey)).scalar_one())
    finally:
        engine.dispose()


FIRST_KEY_FILE = "first-api-key.txt"


def write_secret(path: Path, text: str) -> None:
    """`text` in a new file only the owner can read (0600 from the start)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def ensure_first_key(settings: Settings) -> None:
    """With no key configured anywhere, make one and write it to a 0600 file in the data
    directory; print it too, but only to a terminal (not into a container's logs)."""
    if settings.api.auth_disabled or settings.api.key or _count_keys(settings) > 0:
        return
    key, _ = create_key(settings, name="first key", tenant="default")
    path = settings.storage.data_dir / FIRST_KEY_FILE
    write_secret(path, key + "\n")
    if sys.stdout.isatty():
        print(
            "\nNo API key was configured, so one was created:\n\n"
            f"    {key}\n\nSend it as `Authorization: Bearer <key>` or `X-API-Key: <key>`. "
            f"It is also in {path} (readable by you only).\n",
            flush=True,
        )
    else:
        print(f"No API key was configured, so one was created: see {path}", flush=True)


def start_workers(count: int) -> list[subprocess.Popen[bytes]]:
    """Workers in this process group, so that a signal to the group reaches them too: `count`
    transcription workers and, with any, one webhook worker to deliver their jobs' ends."""
    argvs = [[sys.executable, "-m", "worker"]] * count
    if count:
        argvs.append([sys.executable, "-m", "worker", "--webhooks"])
    return [subprocess.Popen(argv) for argv in argvs]


def streaming_worker_count(settings: Settings) -> int:
    """`STT_RT_EMBEDDED_WORKERS` on the Redis pool; without Redis at most one, the local
    streaming worker every API process reaches on its Unix socket."""
    count = settings.realtime.embedded_workers
    return count if settings.broker.redis_url else min(count, 1)


class StreamingWorkers:
    """Streaming workers for `/stt/websocket` beside the API, each started again when it
    dies (at once, or later and later while it keeps dying young); one that exits cleanly
    was told to stop (a signal to the group) and is left stopped."""

    FIRST_BACKOFF_S = 1.0
    MAX_BACKOFF_S = 60.0
    LIVED_S = 30.0
    """A worker that ran this long before it died is restarted without waiting."""

    def __init__(self, count: int) -> None:
        self.procs = [self._spawn() for _ in range(count)]
        self._started = [time.monotonic()] * count
        self._backoff = [self.FIRST_BACKOFF_S] * count
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="rt-workers", daemon=True)
        if count:
            self._watcher.start()

    @staticmethod
    def _spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "worker", "--realtime"])

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            for i, proc in enumerate(self.procs):
                if proc.poll() is None or proc.returncode == 0:
                    continue  # running, or it stopped when told (a signal to the group)
                lived = time.monotonic() - self._started[i]
                if lived >= self.LIVED_S:
                    self._backoff[i] = self.FIRST_BACKOFF_S
                elif lived < self._backoff[i]:
                    continue  # it died young: wait out the backoff before the next start
                else:
                    self._backoff[i] = min(2 * self._backoff[i], self.MAX_BACKOFF_S)
                if self._stopping.is_set():
                    return
                log.warning(
                    "streaming worker pid %d exited (%s); starting another",
                    proc.pid,
                    proc.returncode,
                )
                self.procs[i] = self._spawn()
                self._started[i] = time.monotonic()

    def stop(self) -> None:
        self._stopping.set()
        if self._watcher.is_alive():
            self._watcher.join()
        stop_workers(self.procs)


def stop_workers(workers: Sequence[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # warm shutdown: finish the job or hand it back
    for proc in workers:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_metrics_dir(settings: Settings) -> Path:
    """An empty folder for prometheus_client's multiprocess mode, named in the environment
    before any API process imports it, so `/metrics` sums every API process's counts."""
    folder = settings.storage.data_dir / "metrics"
    shutil.rmtree(folder, ignore_errors=True)  # counts from an earlier run would add up
    folder.mkdir(parents=True)
    os.environ[METRICS_DIR_ENV] = str(folder)
    return folder


def _probe_host(host: str) -> str:
    """Where to connect to reach a server listening on `host` (a wildcard: loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def announce_when_accepting(host: str, port: int, line: str, limit_s: float = 600.0) -> None:
    """Print `line` once the app answers on the port, from a daemon thread that gives up
    after `limit_s`."""

    def wait_then_print() -> None:
        # The sockets are bound before uvicorn starts the app, so a TCP connect succeeds
        # early: wait for the app itself to answer its liveness probe.
        url = f"http://{_url_host(_probe_host(host))}:{port}/health/live"
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                    print(line, flush=True)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)

    threading.Thread(target=wait_then_print, name="announce", daemon=True).start()


def _end_serving(_sig: int, _frame: object) -> None:
    raise SystemExit(0)


def serve(settings: Settings, workers: int) -> None:
    import uvicorn

    from api.supervisor import Supervisor

    with fatal_start_errors("stt serve"):
        check_storage(settings)
        migrate(settings.database.url)  # once, here, before any API process starts
    ensure_first_key(settings)
    prepare_metrics_dir(settings)  # before anything imports prometheus_client
    procs = start_workers(workers)
    streaming = StreamingWorkers(streaming_worker_count(settings))
    count = settings.api.workers
    line = (
        f"Serving on http://{settings.api.host}:{settings.api.port} "
        f"({count} API process(es), {workers} worker process(es) beside them"
        f"{', and a webhook worker' if workers else ''}"
        f"{f', {len(streaming.procs)} streaming worker(s)' if streaming.procs else ''})"
    )
    config = uvicorn.Config(
        "api.app:serve_app",
        log_config=None,
        factory=True,
        host=settings.api.host,
        port=settings.api.port,
        log_level=settings.logs.level.lower(),
        timeout_graceful_shutdown=settings.api.shutdown_grace_s,
        http=GuardedHttpProtocol,  # header deadline, JSON for malformed HTTP
        limit_concurrency=settings.api.max_connections,
    )
    status = 0
    try:
        sockets = listening_sockets(settings)  # the API's port, and STT_METRICS_PORT's
        if count > 1:
            import api.app  # noqa: F401  (imported once, before the fork, for every process)

            status = Supervisor(config, sockets, count).run(
                started=lambda: announce_when_accepting(settings.api.host, settings.api.port, line)
            )
        else:
            announce_when_accepting(settings.api.host, settings.api.port, line)
            for sig in (signal.SIGTERM, signal.SIGINT):
                # uvicorn raises the signal again once it has drained: here it ends the
                # run (and not the process, with the workers left behind).
                signal.signal(sig, _end_serving)
            uvicorn.Server(config).run(sockets=sockets)
    finally:
        streaming.stop()
        stop_workers(procs)  # after the API has drained: its requests may wait on them
    if status:
        sys.exit(status)


def _keys(settings: Settings, args: argparse.Namespace) -> None:
    print(f"database: {shown_url(settings.database.url)}", file=sys.stderr)
    if args.keys_cmd == "create":
        key, row = create_key(settings, args.name, args.tenant or args.name)
        print(f"id: {row.id}\ntenant: {row.tenant}\nkey (shown once): {key}")
        return
    engine = make_engine(settings.database.url)
    try:
        with transaction(session_factory(engine)) as session:
            if args.keys_cmd == "list":
                for row in session.execute(select(ApiKey).order_by(ApiKey.created_at)).scalars():
                    state = "revoked" if row.revoked_at else "active"
                    print(f"{row.id}  {row.tenant:<20} {row.name:<20} {row.prefix}…  {state}")
            elif args.keys_cmd == "revoke":
                found = session.get(ApiKey, args.id)
                if found is None:
                    sys.exit(f"no key with id {args.id}")
                found.revoked_at = found.revoked_at or utcnow()
                print(f"revoked {found.id}")
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="stt", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve_p = sub.add_parser("serve", help="migrate, then run the API (and embedded workers)")
    serve_p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes to start beside the API (default STT_EMBEDDED_WORKERS, 1)",
    )
    worker_p = sub.add_parser("worker", help="run a transcription worker (both job queues)")
    worker_p.add_argument(
        "--webhooks", action="store_true", help="run a webhook worker (deliveries only) instead"
    )
    sub.add_parser("migrate", help="upgrade the database to the latest schema")
    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_cmd", required=True)
    create = keys_sub.add_parser("create")
    create.add_argument("--name", required=True)
    create.add_argument("--tenant", default=None, help="defaults to the name")
    keys_sub.add_parser("list")
    revoke = keys_sub.add_parser("revoke")
    revoke.add_argument("id")
    transcribe_cli.add_parser(sub)
    args = parser.parse_args(argv)
    if args.cmd == "transcribe":  # a client: it needs none of the server's settings
        sys.exit(args.run(args))

    with fatal_start_errors(f"stt {args.cmd}"):
        settings = load_settings()
    configure_logging(settings.logs.level, settings.logs.format)
    if args.cmd == "serve":
        serve(settings, settings.workers.embedded if args.workers is None else args.workers)
    elif args.cmd == "worker":
        extra = ["--webhooks"] if args.webhooks else []
        os.execv(sys.executable, [sys.executable, "-m", "worker", *extra])  # noqa: S606 (fixed argv)
    elif args.cmd == "migrate":
        with fatal_start_errors("stt migrate"):
            migrate(settings.database.url)
    elif args.cmd == "keys":
        with fatal_start_errors("stt keys"):
            migrate(settings.database.url)
        _keys(settings, args)


if __name__ == "__main__":
    main()
