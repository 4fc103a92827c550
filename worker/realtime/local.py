"""`python -m worker --realtime` without `REDIS_URL`: the local streaming worker.

The embedded default has no Redis, so `stt serve` starts this one worker beside the API
processes. It listens on a Unix socket in the data directory (only its owner may connect),
one WebSocket connection per session (the wire is described in `api/realtime_local.py`),
and serves each session with the same `Session` and decoding as the Redis pool, on a
`LocalStore` instead of Redis. It holds the session limits for every API process: per key,
in all, and its own capacity (`STT_RT_WORKER_SESSIONS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from websockets.asyncio.server import ServerConnection, unix_serve
from websockets.exceptions import ConnectionClosed

from core.realtime import (
    LOCAL_PROGRESS,
    SessionError,
    SessionSpec,
    local_ready,
    local_refusal,
    local_socket_path,
    no_worker,
    over_limit,
    parse_local_opening,
)
from core.settings import Settings
from worker.realtime.local_store import LocalStore
from worker.realtime.pool import SessionHost, run_session
from worker.realtime.session import Session

log = logging.getLogger("stt.realtime")

MAX_MESSAGE = 64 * 1024 * 1024
OPENING_TIMEOUT_S = 10.0


class LocalStreamingWorker(SessionHost):
    """Sessions from any API process of this machine, over one Unix socket."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.path = local_socket_path(settings)
        self.open: dict[str, str] = {}
        """Open sessions: id → tenant (the event loop's thread alone touches it)."""

    def admit(self, spec: SessionSpec, tenant: str) -> SessionError | None:
        limits = self.settings.realtime
        if sum(t == tenant for t in self.open.values()) >= limits.sessions_per_key:
            return over_limit(f"at most {limits.sessions_per_key} sessions per key")
        if len(self.open) >= limits.sessions_total:
            return over_limit(f"at most {limits.sessions_total} sessions in all")
        if len(self.open) >= limits.worker_sessions:
            return no_worker(
                f"the streaming worker is serving its {limits.worker_sessions} sessions "
                "(STT_RT_WORKER_SESSIONS); try again later"
            )
        self.open[spec.sid] = tenant
        return None

    async def handle(self, ws: ServerConnection) -> None:
        try:
            spec, tenant = parse_local_opening(await asyncio.wait_for(ws.recv(), OPENING_TIMEOUT_S))
        except (ConnectionClosed, TimeoutError, ValueError, KeyError):
            return
        refused = self.admit(spec, tenant)
        if refused is not None:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(local_refusal(refused))
            return
        try:
            await self.serve_session(ws, spec, release=lambda: self.release(spec.sid))
        finally:
            self.release(spec.sid)

    def release(self, sid: str) -> None:
        if self.open.pop(sid, None) is not None:
            log.info("realtime session %s released", sid)

    async def serve_session(
        self, ws: ServerConnection, spec: SessionSpec, release: Callable[[], None]
    ) -> None:
        """Run the session in a thread; its input from the connection, its events and
        progress back, until it ends (done, failure) or the connection goes. The session
        stops counting in the limits once its connection is gone (`release`), as on the
        Redis pool, even while its thread finishes a decode."""
        loop = asyncio.get_running_loop()
        out: asyncio.Queue[str | bytes | None] = asyncio.Queue()

        def put(item: str | bytes) -> None:
            loop.call_soon_threadsafe(out.put_nowait, item)

        store = LocalStore(on_event=put, on_progress=lambda s: put(LOCAL_PROGRESS.pack(s)))
        session = Session(spec, store, self.make_state, threading.Event())
        finished = asyncio.Event()

        def run() -> None:
            try:
                run_session(session)
            finally:
                loop.call_soon_threadsafe(finished.set)

        thread = threading.Thread(target=run, name=f"rt-{spec.sid[:8]}", daemon=True)
        try:
            await ws.send(local_ready())
        except ConnectionClosed:
            return  # the API side left before the session began
        thread.start()
        log.info("realtime session %s on the local streaming worker", spec.sid)
        receiver = asyncio.create_task(_receive(ws, store))
        receiver.add_done_callback(lambda _: release())
        sender = asyncio.create_task(_send(ws, out))
        try:
            await finished.wait()
        finally:
            store.close_input()
            out.put_nowait(None)
            with contextlib.suppress(ConnectionClosed):
                await sender
            receiver.cancel()

    async def serve(self, stopping: asyncio.Event) -> None:
        if _answers(self.path):
            log.warning(
                "a local streaming worker already serves %s (another `stt serve` on this "
                "data dir): leaving the sessions to it",
                self.path,
            )
            return
        self.preload()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)  # a socket left by a worker that died
        async with unix_serve(self.handle, str(self.path), max_size=MAX_MESSAGE, compression=None):
            os.chmod(self.path, 0o600)
            log.info(
                "local streaming worker pid %d is taking sessions on %s", os.getpid(), self.path
            )
            await stopping.wait()
        self.path.unlink(missing_ok=True)


def _answers(path: Path) -> bool:
    """Whether a live worker listens on `path` (a dead one's socket refuses)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


async def _receive(ws: ServerConnection, store: LocalStore) -> None:
    """Frames and commands into the session's input, in order; closes it when the API
    side goes."""
    try:
        async for message in ws:
            if isinstance(message, bytes):
                store.push_audio(message)
            else:
                store.push_command(message)
    except ConnectionClosed:
        pass
    finally:
        store.close_input()


async def _send(ws: ServerConnection, out: asyncio.Queue[str | bytes | None]) -> None:
    while (item := await out.get()) is not None:
        await ws.send(item)


def main(settings: Settings) -> None:
    async def run() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
        loop.add_signal_handler(signal.SIGINT, stopping.set)
        await LocalStreamingWorker(settings).serve(stopping)

    asyncio.run(run())
