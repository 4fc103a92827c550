"""Webhooks on their own: deliveries run in webhook workers (`python -m worker --webhooks`), so
a receiver that accepts and never answers holds none of the transcription workers; deliveries
still retry with backoff, give up after the configured attempts, and survive a restart of the
webhook worker."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from core.db import make_engine, session_factory, transaction
from core.keys import hash_key
from core.models import ApiKey, Job, WebhookDelivery
from tests.conftest import SERVICE_ENV
from tests.e2e.jobs_client import submit, wait_ended
from tests.e2e.test_jobs import Receiver
from tests.support import (
    clip,
    kill_group,
    start_service,
    start_worker,
    stop_service_proc,
    wait_for_worker,
    wait_until,
)

pytestmark = pytest.mark.e2e

SHORT = "en_librispeech_2830-3980-0043.wav"
STALLED_JOBS = 3
ATTEMPTS = 2
STALL_SETTINGS = {
    "STT_WEBHOOK_TIMEOUT_S": "20",
    "STT_WEBHOOK_CONNECT_TIMEOUT_S": "2",
    "STT_WEBHOOK_MAX_ATTEMPTS": str(ATTEMPTS),
    "STT_WEBHOOK_BACKOFF_S": "0.5",
    "STT_WEBHOOK_PER_RECEIVER": str(STALLED_JOBS),
}


class SilentReceiver:
    """A loopback server that accepts every connection and never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)  # held open, never read from or written to

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self.listener.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentReceiver]:
    receiver = SilentReceiver()
    yield receiver
    receiver.close()


def _add_key(pg_url: str, tenant: str) -> str:
    key = f"sk-stt-{tenant}-key-0123456789"
    with transaction(session_factory(make_engine(pg_url))) as session:
        session.add(ApiKey(tenant=tenant, name=tenant, key_hash=hash_key(key), prefix=key[:11]))
    return key


def _webhook_states(pg_url: str, job_ids: list[str]) -> dict[str, str | None]:
    with session_factory(make_engine(pg_url))() as session:
        rows = session.execute(select(Job.id, Job.webhook_status).where(Job.id.in_(job_ids)))
        return {job_id: status for job_id, status in rows}


def _deliveries(pg_url: str, job_id: str) -> list[WebhookDelivery]:
    with session_factory(make_engine(pg_url))() as session:
        query = select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
        return list(session.execute(query.order_by(WebhookDelivery.attempt)).scalars())


def test_a_silent_receiver_leaves_another_tenants_sync_call_alone(
    tmp_path: Path, pg_url: str, redis_url: str, silent: SilentReceiver
) -> None:
    env = {"DATABASE_URL": pg_url, "REDIS_URL": redis_url, **SERVICE_ENV, **STALL_SETTINGS}
    service = start_service(tmp_path / "svc", env, workers=1)
    try:
        wait_for_worker(service)
        stalled = [
            submit(service, clip(SHORT).path, data={"webhook_url": silent.url}).json()["id"]
            for _ in range(STALLED_JOBS)
        ]
        for job_id in stalled:
            assert wait_ended(service, job_id)["status"] == "succeeded"
        # Every stalled job's delivery is now hanging on the silent receiver.
        wait_until(lambda: len(silent.accepted) >= STALLED_JOBS, 60, "deliveries to hang")

        other = _add_key(pg_url, "unrelated")
        r = submit(service, clip(SHORT).path, key=other, url="/stt")
        assert r.status_code == 200, r.text
        assert r.json()["text"]
        # The order is the assertion: the sync call finished while no stalled delivery had
        # been given up (with deliveries in the transcription worker, it would wait behind
        # each of them, 20 s an attempt, two attempts each).
        assert set(_webhook_states(pg_url, stalled).values()) == {"pending"}

        wait_until(
            lambda: set(_webhook_states(pg_url, stalled).values()) == {"failed"},
            180,
            "the stalled deliveries to be given up",
        )
    finally:
        stop_service_proc(service.proc)
    for job_id in stalled:
        tried = _deliveries(pg_url, job_id)
        assert [(d.attempt, d.delivered) for d in tried] == [(1, False), (2, False)]
        assert all("Timeout" in (d.error or "") for d in tried), [d.error for d in tried]
    assert len(silent.accepted) >= STALLED_JOBS * ATTEMPTS  # each attempt was a real request


def test_deliveries_survive_a_webhook_worker_restart(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    env = {
        "DATABASE_URL": pg_url,
        "REDIS_URL": redis_url,
        **SERVICE_ENV,
        "STT_WEBHOOK_BACKOFF_S": "3",
    }
    service = start_service(tmp_path / "svc", env, workers=0)
    worker_env = {**env, "STT_DATA_DIR": str(service.data_dir)}
    receiver = Receiver(failures=1)
    transcriber = start_worker(worker_env, tmp_path / "worker.log")
    webhooks = None
    try:
        # With no webhook worker running, the job ends and its delivery waits in its queue.
        job_id = submit(service, clip(SHORT).path, data={"webhook_url": receiver.url}).json()["id"]
        assert wait_ended(service, job_id)["status"] == "succeeded"
        assert receiver.calls == []
        assert _webhook_states(pg_url, [job_id]) == {job_id: "pending"}

        webhooks = start_worker(worker_env, tmp_path / "webhooks1.log", ["--webhooks"])
        wait_until(lambda: len(receiver.calls) == 1, 60, "the first delivery (answered 500)")
        # Restarted while its retry waits out the backoff: the retry is handed back, not lost.
        kill_group(webhooks, 15)
        webhooks = start_worker(worker_env, tmp_path / "webhooks2.log", ["--webhooks"])
        assert receiver.done.wait(60), receiver.calls
        wait_until(
            lambda: _webhook_states(pg_url, [job_id]) == {job_id: "delivered"}, 30, "delivered"
        )
    finally:
        if webhooks is not None:
            kill_group(webhooks, 15)
        kill_group(transcriber, 15)
        stop_service_proc(service.proc)
        receiver.server.shutdown()
    assert [status for status, _, _ in receiver.calls] == [500, 200]
    tried = _deliveries(pg_url, job_id)
    assert [(d.attempt, d.status_code) for d in tried] == [(1, 500), (2, 200)]


def test_the_embedded_default_delivers_webhooks(tmp_path: Path) -> None:
    """`stt serve` on SQLite and the filesystem broker starts a webhook worker beside its
    worker: the delivery is made, and retried after a failure."""
    env = {k: v for k, v in SERVICE_ENV.items() if not k.startswith(("DATABASE_URL", "REDIS_URL"))}
    service = start_service(tmp_path / "svc", env, workers=1)
    receiver = Receiver(failures=1)
    try:
        wait_for_worker(service)
        job_id = submit(service, clip(SHORT).path, data={"webhook_url": receiver.url}).json()["id"]
        assert wait_ended(service, job_id)["status"] == "succeeded"
        assert receiver.done.wait(90), receiver.calls
    finally:
        stop_service_proc(service.proc)
        receiver.server.shutdown()
    # Only a webhook worker consumes the webhook queue, so these calls prove it runs.
    assert [status for status, _, _ in receiver.calls] == [500, 200]
    assert "and a webhook worker" in service.log()
