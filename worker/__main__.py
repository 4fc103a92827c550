"""`python -m worker`: a transcription worker consuming the interactive queue, then batch.

`python -m worker --webhooks`: a webhook worker, consuming only the webhook queue on a pool
of threads (deliveries wait on the network, not the CPU), so that no transcription worker
ever waits on a receiver. It loads no model and runs no reconciler."""

from __future__ import annotations

import os
import signal
import sys

from celery.signals import worker_process_init, worker_ready

from core.logs import configure_logging
from core.queues import TRANSCRIPTION_QUEUES, WEBHOOK_QUEUES
from core.settings import Settings, load_settings
from core.startup import check_database, check_storage, fatal_start_errors
from worker.celery_app import create_worker_app
from worker.realtime.local import main as local_realtime_main
from worker.realtime.pool import main as realtime_main
from worker.reconciler import start_reconciler, sweep_interval

WEBHOOKS_FLAG = "--webhooks"
REALTIME_FLAG = "--realtime"


def celery_argv(settings: Settings, *, webhooks: bool) -> list[str]:
    """The Celery worker's arguments for either kind of worker."""
    queues: tuple[str, ...]
    if webhooks:
        queues, pool = WEBHOOK_QUEUES, ["--pool", "threads"]
        concurrency, name = settings.webhooks.concurrency, "stt-webhooks"
    else:
        queues, pool = TRANSCRIPTION_QUEUES, []
        concurrency, name = settings.workers.concurrency, "stt"
    return [
        "worker",
        "--loglevel",
        settings.logs.level,
        "--queues",
        ",".join(queues),
        *pool,
        "--concurrency",
        str(concurrency),
        "--hostname",
        f"{name}-{os.getpid()}@%h",
    ]


def main(argv: list[str] | None = None) -> None:
    args = list(argv if argv is not None else sys.argv[1:])
    webhooks = WEBHOOKS_FLAG in args
    if webhooks:
        args.remove(WEBHOOKS_FLAG)
    with fatal_start_errors("python -m worker"):
        settings = load_settings()
        check_storage(settings)
        check_database(settings.database.url)
    configure_logging(settings.logs.level, settings.logs.format)
    if REALTIME_FLAG in args:  # a streaming worker (realtime sessions), not a Celery one
        # on the Redis pool, or (no Redis: the embedded default) the local one beside the API
        (realtime_main if settings.broker.redis_url else local_realtime_main)(settings)
        return
    app = create_worker_app(settings)
    ctx = app.stt_context  # type: ignore[attr-defined]

    if not webhooks:

        @worker_ready.connect(weak=False)
        def _start_sweeps(**_: object) -> None:
            start_reconciler(ctx, app, sweep_interval(settings))

    @worker_process_init.connect(weak=False)
    def _leave_sigterm_to_the_parent(**_: object) -> None:
        # A SIGTERM sent to the whole process group (docker stop, systemd, Ctrl-C in a
        # terminal) must not kill the job in hand: the main process does a warm shutdown,
        # letting it finish, then closes the pool.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    app.worker_main([*celery_argv(settings, webhooks=webhooks), *args])


if __name__ == "__main__":
    main()
