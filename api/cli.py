"""`stt`: serve (API + embedded worker), worker, migrate, keys, transcribe (a client)."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import func, select

from api import transcribe_cli
from api.metrics_port import listening_sockets
from core.db import make_engine, session_factory, transaction
from core.keys import generate_key, hash_key
from core.logs import configure_logging
from core.migrate import upgrade
from core.models import ApiKey, utcnow
from core.settings import Settings, load_settings

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


def ensure_first_key(settings: Settings) -> None:
    """With no key configured anywhere, make one and print it once."""
    if settings.api.auth_disabled or settings.api.key or _count_keys(settings) > 0:
        return
    key, _ = create_key(settings, name="first key", tenant="default")
    print(
        "\nNo API key was configured, so one was created. It is shown only this once:\n\n"
        f"    {key}\n\nSend it as `Authorization: Bearer <key>` or `X-API-Key: <key>`.\n",
        flush=True,
    )


def start_workers(count: int) -> list[subprocess.Popen[bytes]]:
    """Workers in this process group, so that a signal to the group reaches them too: `count`
    transcription workers and, with any, one webhook worker to deliver their jobs' ends."""
    argvs = [[sys.executable, "-m", "worker"]] * count
    if count:
        argvs.append([sys.executable, "-m", "worker", "--webhooks"])
    return [subprocess.Popen(argv) for argv in argvs]


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


def serve(settings: Settings, workers: int) -> None:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database.url)  # once, here, before any API process starts
    ensure_first_key(settings)
    prepare_metrics_dir(settings)
    procs = start_workers(workers)
    print(
        f"Serving on http://{settings.api.host}:{settings.api.port} "
        f"({settings.api.workers} API process(es), {workers} worker process(es) beside them"
        f"{', and a webhook worker' if workers else ''})",
        flush=True,
    )
    config = uvicorn.Config(
        "api.app:serve_app",
        log_config=None,
        factory=True,
        host=settings.api.host,
        port=settings.api.port,
        workers=settings.api.workers,
        # A spawned API process imports the whole app before it answers the supervisor's
        # ping; on a busy machine that outlasts uvicorn's 5 s and it is killed in a loop.
        timeout_worker_healthcheck=60,
        log_level=settings.logs.level.lower(),
        timeout_graceful_shutdown=30,
    )
    try:
        sockets = listening_sockets(settings)  # the API's port, and STT_METRICS_PORT's
        server = uvicorn.Server(config)
        if config.workers > 1:  # as uvicorn.run does, with our sockets
            Multiprocess(config, sockets=sockets).run()
        else:
            server.run(sockets=sockets)
    finally:
        stop_workers(procs)


def _keys(settings: Settings, args: argparse.Namespace) -> None:
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

    settings = load_settings()
    configure_logging(settings.logs.level, settings.logs.format)
    if args.cmd == "serve":
        serve(settings, settings.workers.embedded if args.workers is None else args.workers)
    elif args.cmd == "worker":
        extra = ["--webhooks"] if args.webhooks else []
        os.execv(sys.executable, [sys.executable, "-m", "worker", *extra])  # noqa: S606 (fixed argv)
    elif args.cmd == "migrate":
        upgrade(settings.database.url)
    elif args.cmd == "keys":
        upgrade(settings.database.url)
        _keys(settings, args)


if __name__ == "__main__":
    main()
