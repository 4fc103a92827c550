"""Task and queue names, in one place, and the one way to send a job to the workers."""

from __future__ import annotations

from typing import Any

from celery import Celery

from core.settings import Settings

TRANSCRIBE_TASK = "stt.transcribe"
CHUNK_TASK = "stt.transcribe_chunk"
"""One chunk of a long job; its message carries `chunk_ref(job_id, index)`."""
RECONCILE_TASK = "stt.reconcile"
WEBHOOK_TASK = "stt.webhook"

INTERACTIVE_QUEUE = "stt-interactive"
"""Synchronous callers wait on this one; workers take it first."""
BATCH_QUEUE = "stt-batch"
"""Submitted jobs; a backlog here never delays interactive work."""

WEBHOOK_QUEUE = "stt-webhooks"
"""Webhook deliveries, consumed only by webhook workers (`python -m worker --webhooks`), so a
slow receiver never holds a transcription worker."""

TRANSCRIPTION_QUEUES = (INTERACTIVE_QUEUE, BATCH_QUEUE)
"""What a transcription worker (`python -m worker`) consumes, in the order it takes them."""
WEBHOOK_QUEUES = (WEBHOOK_QUEUE,)
"""What a webhook worker consumes."""
ALL_QUEUES = (*TRANSCRIPTION_QUEUES, *WEBHOOK_QUEUES)
"""Every queue (the reconciler and the queue-depth metrics look at all of them)."""


def broker_options(settings: Settings) -> dict[str, Any]:
    """Transport options for the configured broker."""
    if settings.broker.embedded:
        folder = str(settings.storage.broker_dir)
        return {
            "data_folder_in": folder,
            "data_folder_out": folder,
            "processed_folder": str(settings.storage.broker_dir / "processed"),
            "control_folder": str(settings.storage.broker_dir / "control"),
            "store_processed": False,
            # kombu's filesystem transport sleeps this long whenever every queue is empty (its
            # default, 1 s, was the median short call's 0.36 s queue wait); an idle check is a
            # directory listing, a fraction of a millisecond (STT_BROKER_POLL_S).
            "polling_interval": settings.broker.poll_s,
        }
    # Longer than any job may run, so Redis never redelivers a message still being worked on;
    # work lost with a dead worker is found sooner by the reconciler's heartbeat check.
    # "priority": queues are read in the order the worker lists them, interactive first.
    return {"visibility_timeout": 12 * 3600, "queue_order_strategy": "priority"}


def make_celery(settings: Settings, name: str = "stt") -> Celery:
    """A Celery app configured for sending and for working; tasks are registered by the worker."""
    if settings.broker.embedded:
        settings.storage.broker_dir.mkdir(parents=True, exist_ok=True)
        (settings.storage.broker_dir / "processed").mkdir(parents=True, exist_ok=True)
    app = Celery(name, broker=settings.broker.url, set_as_current=False)
    app.conf.update(
        broker_transport_options=broker_options(settings),
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=BATCH_QUEUE,
        task_create_missing_queues=True,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_connection_timeout=3,
    )
    return app


def enqueue(app: Celery, job_id: str, queue: str) -> None:
    """Send a job id to the workers by task name (the message carries only the id)."""
    app.send_task(
        TRANSCRIBE_TASK,
        args=[job_id],
        queue=queue,
        retry=True,
        retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
    )


def chunk_ref(job_id: str, index: int) -> str:
    """A chunk's id in messages: `<job id>:<index>`."""
    return f"{job_id}:{index}"


def parse_chunk_ref(ref: str) -> tuple[str, int]:
    job_id, _, index = ref.rpartition(":")
    if not job_id or not index.isdigit():
        raise ValueError(f"not a chunk reference: {ref!r}")
    return job_id, int(index)


def enqueue_chunk(app: Celery, job_id: str, index: int, queue: str) -> None:
    """Send one chunk of a long job to the workers, on the job's own queue."""
    app.send_task(
        CHUNK_TASK,
        args=[chunk_ref(job_id, index)],
        queue=queue,
        retry=True,
        retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
    )


def enqueue_webhook(app: Celery, job_id: str, attempt: int = 1, countdown: float = 0) -> None:
    app.send_task(
        WEBHOOK_TASK, args=[job_id, attempt], queue=WEBHOOK_QUEUE, countdown=countdown or None
    )


def queue_depths(app: Celery) -> dict[str, int]:
    """Messages waiting in each queue (-1 where the broker cannot tell)."""
    depths: dict[str, int] = {}
    try:
        with app.connection_for_read() as conn:
            channel = conn.default_channel
            for queue in ALL_QUEUES:
                try:
                    declared = channel.queue_declare(queue=queue, passive=True)  # type: ignore[attr-defined]
                    depths[queue] = int(declared.message_count)
                except Exception:
                    depths[queue] = 0
    except Exception:
        return {queue: -1 for queue in ALL_QUEUES}
    return depths
