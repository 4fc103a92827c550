"""`python -m worker`: a Celery worker consuming both queues, interactive first."""

from __future__ import annotations

import sys

from celery.signals import worker_ready

from core.logs import configure_logging
from core.queues import ALL_QUEUES
from core.settings import load_settings
from worker.celery_app import create_worker_app
from worker.reconciler import start_reconciler


def main(argv: list[str] | None = None) -> None:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_worker_app(settings)
    ctx = app.stt_context  # type: ignore[attr-defined]
    interval = max(settings.stale_after_s / 3, 2.0)

    @worker_ready.connect(weak=False)
    def _start_sweeps(**_: object) -> None:
        start_reconciler(ctx, app, interval)

    args = argv if argv is not None else sys.argv[1:]
    app.worker_main(
        [
            "worker",
            "--loglevel",
            settings.log_level,
            "--queues",
            ",".join(ALL_QUEUES),
            "--concurrency",
            str(settings.worker_concurrency),
            *args,
        ]
    )


if __name__ == "__main__":
    main()
