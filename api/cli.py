"""`stt`: serve (API + embedded worker), worker, migrate, keys, transcribe (a client)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

from sqlalchemy import func, select

from api import transcribe_cli
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
    """Workers in this process group, so that a signal to the group reaches them too."""
    return [subprocess.Popen([sys.executable, "-m", "worker"]) for _ in range(count)]


def start_streaming_workers(settings: Settings) -> list[subprocess.Popen[bytes]]:
    """Streaming workers for `/stt/websocket`; they need Redis, so none on the embedded
    default (where realtime answers an error event naming REDIS_URL)."""
    if not settings.broker.redis_url:
        return []
    count = settings.realtime.embedded_workers
    return [subprocess.Popen([sys.executable, "-m", "worker", "--realtime"]) for _ in range(count)]


def stop_workers(workers: Sequence[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # warm shutdown: finish the job or hand it back
    for proc in workers:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def serve(settings: Settings, workers: int) -> None:
    import uvicorn

    settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database.url)
    ensure_first_key(settings)
    procs = start_workers(workers) + start_streaming_workers(settings)
    print(
        f"Serving on http://{settings.api.host}:{settings.api.port} "
        f"({workers} worker process(es) beside the API)",
        flush=True,
    )
    try:
        uvicorn.run(
            "api.app:create_app",
            log_config=None,
            factory=True,
            host=settings.api.host,
            port=settings.api.port,
            log_level=settings.logs.level.lower(),
            timeout_graceful_shutdown=30,
        )
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
    sub.add_parser("worker", help="run a worker consuming both queues")
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
        os.execv(sys.executable, [sys.executable, "-m", "worker"])  # noqa: S606 (fixed argv)
    elif args.cmd == "migrate":
        upgrade(settings.database.url)
    elif args.cmd == "keys":
        upgrade(settings.database.url)
        _keys(settings, args)


if __name__ == "__main__":
    main()
