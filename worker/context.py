"""What a worker process needs, built from settings once per process (after fork).

The context is also where tests swap parts: `load_model`, `transcribe`, `find_speech` (the
chunk planner's speech finder), `make_diarizer` and `enqueue_job`/`enqueue_chunk` are plain
attributes."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from redis import Redis
from sqlalchemy.orm import Session, sessionmaker

from core.audio import Audio
from core.db import make_engine, session_factory
from core.queues import enqueue, enqueue_chunk
from core.settings import Settings
from core.storage import Storage, make_storage
from core.transcript import Transcript
from worker import engine
from worker.batching import batch_size_for, choices_path
from worker.chunk_plan import SpeechFinder, silero_speech
from worker.diarize.select import DiarizationConfig, make_diarizer
from worker.diarize.types import Diarizer
from worker.engine import EngineConfig, GuardConfig, TranscribeOptions, resolve_device
from worker.receiver_slots import ReceiverSlots

if TYPE_CHECKING:
    from celery import Celery


class ModelLoader(Protocol):
    def __call__(self, spec: str, config: EngineConfig, cache_dir: Path) -> Any: ...


class Transcriber(Protocol):
    def __call__(
        self,
        model: Any,
        audio: Audio,
        options: TranscribeOptions,
        config: EngineConfig,
        on_progress: Callable[[float, str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Transcript: ...


class WorkerContext:
    """Settings plus lazily made connections; a forked child makes its own."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        self.settings = settings
        self.app = app
        """The Celery app, to send follow-up work (webhooks, requeues)."""
        self._pid = os.getpid()
        self.load_model: ModelLoader = engine.load_model
        self.transcribe: Transcriber = engine.transcribe
        self.find_speech: SpeechFinder = silero_speech
        self.make_diarizer: Callable[[DiarizationConfig], Diarizer] = make_diarizer
        self._diarizer: Diarizer | None = None
        self.enqueue_job: Callable[[str, str], None] = lambda job_id, queue: enqueue(
            self.app, job_id, queue
        )
        """Send a job (id, queue) to the workers."""
        self.enqueue_chunk: Callable[[str, int, str], None] = lambda job_id, index, queue: (
            enqueue_chunk(self.app, job_id, index, queue)
        )
        """Send one chunk (job id, index, queue) to the workers."""
        self.receiver_slots = ReceiverSlots(settings.webhooks.per_receiver)
        """Webhook deliveries under way per receiver host (shared by a webhook worker's threads)."""

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
        measured = choices_path(self.settings.storage.data_dir)
        batch = batch_size_for(self.settings.engine.batch_size, model_spec, device, measured)
        return replace(config, batch_size=batch)

    def model_for(self, model_spec: str) -> tuple[Any, EngineConfig]:
        """The loaded model (once per process) and the engine settings for it."""
        config = self.engine_config_for(model_spec)
        return self.load_model(model_spec, config, self.settings.storage.model_cache_dir), config

    def diarizer(self) -> Diarizer:
        """The configured diarization backend, loaded once per process."""
        if self._diarizer is None:
            self._diarizer = self.make_diarizer(self.settings.diarization)
        return self._diarizer

    @property
    def worker_name(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}"
