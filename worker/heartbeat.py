"""One heartbeat for jobs and chunks: beats on a thread, saves the latest progress, and
notices when the work is no longer ours (cancelled, or taken over after we seemed dead)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from worker import lifecycle
from worker.context import WorkerContext

log = logging.getLogger("stt.worker")

Progress = tuple[float, str]
"""Seconds of audio done, and the text so far."""
Beat = Callable[[Progress | None], bool]
"""Store one beat (with the progress since the last, if any); False once not ours."""


class Heartbeat:
    """`with Heartbeat(name, interval, beat) as hb:` beats every `interval` seconds (at
    most 1 s apart) until the block ends; `hb.stop_requested` is set once a beat says the
    work is not ours any more."""

    def __init__(self, name: str, interval: float, beat: Beat) -> None:
        self.name, self.interval, self._beat = name, interval, beat
        self.stop_requested = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._pending: Progress | None = None
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{name}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def progress(self, seconds_done: float, text: str) -> None:
        """Note progress; the next beat saves the latest."""
        with self._lock:
            self._pending = (seconds_done, text)

    def _run(self) -> None:
        while not self._done.wait(min(self.interval, 1.0)):
            with self._lock:
                pending, self._pending = self._pending, None
            try:
                if not self._beat(pending):
                    self.stop_requested.set()
            except Exception:
                log.warning("heartbeat for %s failed", self.name, exc_info=True)


def job_heartbeat(ctx: WorkerContext, job_id: str, duration: float) -> Heartbeat:
    """The heartbeat of a job this process owns; its progress is the share of `duration`."""
    whole = max(duration, 1e-6)

    def beat(progress: Progress | None) -> bool:
        share = None if progress is None else (min(progress[0] / whole, 0.99), progress[1])
        return lifecycle.beat_job(ctx, job_id, share)

    return Heartbeat(job_id, ctx.settings.workers.heartbeat_s, beat)


def chunk_heartbeat(ctx: WorkerContext, job_id: str, index: int) -> Heartbeat:
    """The heartbeat of a chunk this process runs (and of its job, which no one owns)."""

    def beat(progress: Progress | None) -> bool:
        return lifecycle.beat_chunk(ctx, job_id, index, None if progress is None else progress[0])

    return Heartbeat(f"{job_id}:{index}", ctx.settings.workers.heartbeat_s, beat)
