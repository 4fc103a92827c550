"""What a worker process needs, built from settings once per process (after fork)."""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING

from redis import Redis
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine, session_factory
from core.settings import Settings
from core.storage import Storage, make_storage
from worker.batching import batch_size_for
from worker.engine import EngineConfig, GuardConfig, resolve_device

if TYPE_CHECKING:
    from celery import Celery


class WorkerContext:
    """Settings plus lazily made connections; a forked child makes its own."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        self.settings = settings
        self.app = app
        """The Celery app, to send follow-up work (webhooks, requeues)."""
        self._pid = os.getpid()

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:  # a prefork child must not share its parent's sockets
            self.__dict__.pop("sessions", None)
            self.__dict__.pop("redis", None)
            self._pid = os.getpid()

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return session_factory(make_engine(self.settings.database.url))

    @cached_property
    def redis(self) -> Redis | None:
        if not self.settings.broker.redis_url:
            return None
        return Redis.from_url(self.settings.broker.redis_url, socket_timeout=5)

    def db(self) -> sessionmaker[Session]:
        self._check_fork()
        return self.sessions

    def redis_client(self) -> Redis | None:
        self._check_fork()
        return self.redis

    @cached_property
    def storage(self) -> Storage:
        return make_storage(self.settings)

    @cached_property
    def engine_config(self) -> EngineConfig:
        s = self.settings
        return EngineConfig(
            device=s.engine.device,
            compute_type=s.engine.compute_type,
            cpu_threads=s.engine.cpu_threads,
            beam_size=s.engine.beam_size,
            vad_filter=s.engine.vad_filter,
            guard=GuardConfig(
                enabled=s.guard.enabled,
                no_speech_threshold=s.guard.no_speech_threshold,
                logprob_threshold=s.guard.logprob_threshold,
                compression_ratio_threshold=s.guard.compression_ratio_threshold,
            ),
        )

    def engine_config_for(self, model_spec: str) -> EngineConfig:
        """The engine settings with the batch size for this model on this device."""
        config = self.engine_config
        device, _ = resolve_device(config.device, config.compute_type)
        batch = batch_size_for(self.settings.engine.batch_size, model_spec, device)
        return replace(config, batch_size=batch)

    @property
    def worker_name(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}"
