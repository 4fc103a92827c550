"""The local backend of a realtime session: the embedded default, no Redis.

`stt serve` without `REDIS_URL` runs one streaming worker beside the API processes, listening
on a Unix socket in the data directory (`core.realtime.local_socket_path`). Each session is
one WebSocket connection to it (the `websockets` library does the framing):

    API → worker   text: the opening message `{"spec": …, "tenant": …}`, then the commands
                   (`f` finalize, `d` done); binary: audio frames, in order
    worker → API   text: `{"ready": true}` or `{"refused": SessionError}` to the opening,
                   then the session's events, verbatim for the client;
                   binary: 8 bytes, a big-endian double, how far decoding has got (seconds)

The worker holds the limits (sessions per key, in all, its own capacity): every API process
asks the same worker, so they hold across processes. There is no failover on one machine: a
worker that dies closes the connection, and the client gets an error event and a close.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from websockets.asyncio.client import ClientConnection, unix_connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from api.realtime import Ended
from core.realtime import (
    KIND_AUDIO,
    LOCAL_PROGRESS,
    SessionSpec,
    local_opening,
    lost_worker,
    no_worker,
    parse_local_answer,
)

OPEN_TIMEOUT_S = 15.0
MAX_MESSAGE = 64 * 1024 * 1024


class LocalLink:
    """One session on the local streaming worker."""

    def __init__(self, path: Path, spec: SessionSpec, tenant: str) -> None:
        self.path = path
        self.spec = spec
        self.tenant = tenant
        self.decoded_s = 0.0
        self.progressed = asyncio.Event()
        self._ws: ClientConnection | None = None

    async def open(self) -> None:
        try:
            self._ws = await asyncio.wait_for(
                unix_connect(
                    str(self.path),
                    uri="ws://localhost/session",
                    max_size=MAX_MESSAGE,
                    compression=None,
                ),
                OPEN_TIMEOUT_S,
            )
            await self._ws.send(local_opening(self.spec, self.tenant))
            refused = parse_local_answer(await asyncio.wait_for(self._ws.recv(), OPEN_TIMEOUT_S))
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise Ended(
                no_worker(
                    "the local streaming worker is not running (yet): try again shortly "
                    f"({type(exc).__name__})"
                )
            ) from None
        if refused is not None:
            raise Ended(refused)

    @property
    def ws(self) -> ClientConnection:
        assert self._ws is not None, "open() first"
        return self._ws

    async def send(self, kind: str, data: bytes = b"") -> None:
        try:
            await self.ws.send(data if kind == KIND_AUDIO else kind)
        except ConnectionClosed:
            raise Ended(lost_worker("the streaming worker serving this session stopped")) from None

    async def events(self) -> AsyncIterator[str]:
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    (self.decoded_s,) = LOCAL_PROGRESS.unpack(message)
                    self.progressed.set()
                else:
                    yield message
        except ConnectionClosed:
            pass
        raise Ended(lost_worker("the streaming worker serving this session stopped"))

    async def watch(self) -> None:
        await asyncio.Event().wait()  # nothing to renew: one machine, no leases

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
