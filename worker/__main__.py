"""`python -m worker`: a Celery worker consuming both queues, interactive first."""

from __future__ import annotations

import os
import signal
import sys

from celery.signals import worker_process_init, worker_ready

from core.logs import configure_logging
from core.queues import ALL_QUEUES
from core.settings import load_settings
from worker.celery_app import create_worker_app
from worker.reconciler import start_reconciler


def main(argv: list[str] | None = None) -> None:
    settings = load_settings()
    configure_logging(settings.logs.level, settings.logs.format)
    args = argv if argv is not None else sys.argv[1:]
    if "--realtime" in args:  # a streaming worker (realtime sessions), not a Celery one
        from worker.realtime.pool import main as realtime_main

        realtime_main(settings)
        return
    app = create_worker_app(settings)
    ctx = app.stt_context  # type: ignore[attr-defined]
    interval = max(settings.workers.stale_after_s / 3, 2.0)

    @worker_ready.connect(weak=False)
    def _start_sweeps(**_: object) -> None:
        start_reconciler(ctx, app, interval)

    @worker_process_init.connect(weak=False)
    def _leave_sigterm_to_the_parent(**_: object) -> None:
        # A SIGTERM sent to the whole process group (docker stop, systemd, Ctrl-C in a
        # terminal) must not kill the job in hand: the main process does a warm shutdown,
        # letting it finish, then closes the pool.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    app.worker_main(
        [
            "worker",
            "--loglevel",
            settings.logs.level,
            "--queues",
            ",".join(ALL_QUEUES),
            "--concurrency",
            str(settings.workers.concurrency),
            "--hostname",
            f"stt-{os.getpid()}@%h",
            *args,
        ]
    )


if __name__ == "__main__":
    main()
