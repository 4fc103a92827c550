"""`python -m worker --realtime` with `REDIS_URL`: a streaming worker taking sessions placed
through Redis (without it, the local streaming worker of `worker/realtime/local.py`).

Placements arrive on the `stt:rt:sessions` stream, read through the `workers` consumer
group, so each goes to one worker; a worker reads only while it has room. It holds each
session by a lease (a key with a TTL) that its main thread renews while a thread per
session decodes; a worker that dies lets its leases lapse and the API places the session
again, on whichever worker reads it first.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from redis.exceptions import RedisError, ResponseError

from core.errors import ConfigError
from core.model_registry import resolve_model
from core.queues import make_celery
from core.realtime import (
    PLACEMENTS,
    WORKER_GROUP,
    Checkpoint,
    SessionError,
    SessionKeys,
    SessionSpec,
    error_event,
)
from core.settings import Settings
from worker.context import WorkerContext
from worker.realtime.agreement import StreamState
from worker.realtime.decoding import find_speech, whisper_decoder
from worker.realtime.session import Session

log = logging.getLogger("stt.realtime")

RENEW = """
local owner = redis.call('GET', KEYS[1])
if owner == false or owner == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
"""Renew (or take) a lease only if no other worker holds it."""


def ensure_group(redis: Redis) -> None:
    try:
        redis.xgroup_create(PLACEMENTS, WORKER_GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


@dataclass
class Running:
    thread: threading.Thread
    lost: threading.Event = field(default_factory=threading.Event)


class SessionHost:
    """What every streaming worker has (this pool's and the local one): the model cache and
    the decoding state a session starts with."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ctx = WorkerContext(settings, make_celery(settings, name="stt-realtime"))

    def make_state(self, spec: SessionSpec, cp: Checkpoint) -> StreamState:
        spec_name = self.settings.realtime.model or spec.model_spec
        model, config = self.ctx.model_for(spec_name)
        return StreamState(
            # finals with the worker's own engine settings (beam, guard), as batch jobs
            decode=whisper_decoder(model, spec.language, beam_size=1, config=config),
            find_speech=find_speech,
            max_silence_s=spec.max_silence_s,
            min_volume=spec.min_volume,
            start_s=cp.entry_start_s,
            prompt=cp.prompt,
            finals=cp.finals,
        )

    def preload(self) -> None:
        """Load the model sessions will most likely ask for, before taking any."""
        spec = self.settings.realtime.model or resolve_model("ink-whisper", self.settings).spec
        self.ctx.model_for(spec)


def run_session(session: Session) -> None:
    """A session's thread: a failure is an error event for the client, never silence."""
    try:
        session.run()
    except Exception:
        log.exception("realtime session %s failed", session.spec.sid)
        failed = SessionError(
            500, "transcription_failed", "Transcription failed", "the session failed"
        )
        session.redis.xadd(
            SessionKeys(session.spec.sid).outbound,
            {"e": json.dumps(error_event(session.spec.sid, failed))},
        )
    finally:
        session.redis.close()


class StreamingWorker(SessionHost):
    """Claims sessions while it has room, renews their leases, runs each in a thread."""

    def __init__(self, settings: Settings) -> None:
        if not settings.broker.redis_url:
            raise ConfigError("a streaming worker needs REDIS_URL")
        super().__init__(settings)
        self.redis = Redis.from_url(settings.broker.redis_url, socket_timeout=10)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.running: dict[str, Running] = {}
        self.stopping = threading.Event()
        self._renew = self.redis.register_script(RENEW)

    @property
    def lease_ms(self) -> int:
        return int(self.settings.realtime.lease_s * 1000)

    def claim(self, spec: SessionSpec) -> bool:
        keys = SessionKeys(spec.sid)
        if self.redis.exists(keys.closed):
            return False
        taken = self.redis.set(keys.owner, self.name, nx=True, px=self.lease_ms)
        return bool(taken)

    def start(self, spec: SessionSpec) -> None:
        running = Running(threading.Thread(target=lambda: None))
        session = Session(
            spec,
            Redis.from_url(self.settings.broker.redis_url or ""),
            self.make_state,
            running.lost,
        )
        running.thread = threading.Thread(
            target=run_session, args=(session,), name=f"rt-{spec.sid[:8]}", daemon=True
        )
        self.running[spec.sid] = running
        running.thread.start()
        log.info("realtime session %s on %s", spec.sid, self.name)

    def renew(self) -> None:
        for sid, running in list(self.running.items()):
            if not running.thread.is_alive():
                self.redis.delete(SessionKeys(sid).owner)
                del self.running[sid]
                continue
            held = self._renew(keys=[SessionKeys(sid).owner], args=[self.name, self.lease_ms])
            if not held:
                running.lost.set()

    def poll(self) -> None:
        """Renew leases, then take one placement if there is room (waits up to a lease/3)."""
        self.renew()
        block_ms = max(int(self.lease_ms / 3), 100)
        if len(self.running) >= self.settings.realtime.worker_sessions:
            self.stopping.wait(block_ms / 1000)
            return
        reply: Any = self.redis.xreadgroup(
            WORKER_GROUP, self.name, {PLACEMENTS: ">"}, count=1, block=block_ms
        )
        for _, messages in reply or []:
            for message_id, fields in messages:
                self.redis.xack(PLACEMENTS, WORKER_GROUP, message_id)
                spec = SessionSpec.from_json(fields[b"spec"])
                if self.claim(spec):
                    self.start(spec)

    def serve(self) -> None:
        ensure_group(self.redis)
        self.preload()
        log.info("streaming worker %s is taking sessions", self.name)
        while not self.stopping.is_set():
            try:
                self.poll()
            except RedisError:
                log.warning("Redis unreachable; retrying", exc_info=True)
                time.sleep(1)
        for running in self.running.values():
            running.lost.set()


def main(settings: Settings) -> None:
    worker = StreamingWorker(settings)
    signal.signal(signal.SIGTERM, lambda *_: worker.stopping.set())
    worker.serve()
