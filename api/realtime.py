"""The API's half of a realtime session: validate it, open it on a backend, relay both ways.

The API never decodes. A `Link` carries one session to a streaming worker and back:
`api/realtime_redis.py` through Redis (a pool across machines, with failover), or
`api/realtime_local.py` to the local streaming worker over a Unix socket (the embedded
default, no Redis). The relay here is the same for both: commands, the idle timeout and the
session's length limit, and backpressure. While more audio has arrived than the worker has
decoded (`STT_RT_MAX_BUFFER_S`), the relay stops reading the socket, so TCP slows a client
that sends faster than real time instead of failing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from litestar import WebSocket
from litestar.exceptions import WebSocketDisconnect

from core.audio import RawFormat, raw_format
from core.errors import InvalidRequest
from core.model_registry import resolve_model
from core.realtime import (
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    KIND_AUDIO,
    KIND_DONE,
    KIND_FINALIZE,
    SessionError,
    SessionSpec,
    error_event,
)
from core.settings import RealtimeSettings, Settings

COMMANDS = {"finalize": KIND_FINALIZE, "done": KIND_DONE, "close": KIND_DONE}
"""Text commands: the SDKs' `close` is the protocol's `done`."""


class Ended(Exception):
    """The session ends; with an error event first unless `error` is None."""

    def __init__(self, error: SessionError | None = None, close: int = CLOSE_NORMAL) -> None:
        super().__init__(error.message if error else "ended")
        self.error = error
        self.close = error.close if error else close


class Link(Protocol):
    """One session's way to a streaming worker: what the relay needs of a backend."""

    decoded_s: float
    """Seconds of the session's audio the worker has decoded (for backpressure)."""
    progressed: asyncio.Event
    """Set whenever `decoded_s` moves (the relay clears it before waiting)."""

    async def open(self) -> None:
        """Admit the session under the limits and place it; `Ended` if refused."""

    async def send(self, kind: str, data: bytes = b"") -> None:
        """An audio frame (`KIND_AUDIO`) or a command, in order."""

    def events(self) -> AsyncIterator[str]:
        """The worker's events as JSON texts, for the client; `Ended` if the worker is lost."""
        ...

    async def watch(self) -> None:
        """Keep the session placed while it is open (leases, failover); `Ended` if it can't."""

    async def close(self) -> None:
        """Release the session (its place in the limits, its worker); safe to call twice."""


def _float(query: Mapping[str, str], name: str, default: float) -> float:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise InvalidRequest(f"{name} must be a number", param=name) from exc
    if not value >= 0:
        raise InvalidRequest(f"{name} must not be negative", param=name)
    return value


def session_spec(query: Mapping[str, str], settings: Settings) -> SessionSpec:
    """Validate the query (model, language, encoding, sample_rate, min_volume,
    max_silence_duration_secs) into what the worker is sent; InvalidRequest if bad."""
    model = resolve_model(query.get("model"), settings)
    if not query.get("encoding"):
        raise InvalidRequest("encoding is required (e.g. pcm_s16le)", param="encoding")
    fmt = raw_format(query.get("encoding"), query.get("sample_rate"))
    assert fmt is not None  # encoding is set, so raw_format gives a format or raises
    language = query.get("language") or None
    if language is not None and model.english_only and language != "en":
        raise InvalidRequest(f"model {model.name!r} only transcribes English", param="language")
    return SessionSpec(
        sid=uuid.uuid4().hex,
        model_spec=model.spec,
        language=language,
        encoding=fmt.encoding,
        sample_rate=fmt.sample_rate,
        min_volume=_float(query, "min_volume", 0.0),
        max_silence_s=_float(query, "max_silence_duration_secs", 1.0),
    )


log = logging.getLogger("stt.realtime")

STOP_WAIT_S = 2.0
"""How long the relay waits for its tasks to take their cancel before it ends the session
anyway (one caught at the wrong moment in a Redis read may swallow it)."""


async def _stop(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel the relay's tasks and wait for them, but never past `STOP_WAIT_S`: the
    session's end (its event, close code and release) must not hang on one of them."""
    for task in tasks:
        task.cancel()
    ended, stuck = await asyncio.wait(tasks, timeout=STOP_WAIT_S)
    for task in ended:
        if not task.cancelled():
            task.exception()  # retrieved: the one that ended the relay is raised by the caller
    for task in stuck:
        log.warning("a realtime relay task ignored its cancel: %s", task.get_name())
        task.cancel()


@dataclass
class Relay:
    """One open socket's session, from placement to close."""

    socket: WebSocket[Any, Any, Any]
    link: Link
    limits: RealtimeSettings
    spec: SessionSpec

    def __post_init__(self) -> None:
        self.sent_s = 0.0
        self.started = time.monotonic()
        self.bytes_per_s = (
            self.spec.sample_rate
            * RawFormat(self.spec.encoding, self.spec.sample_rate).sample_width
        )
        self._send_lock = asyncio.Lock()

    async def run(self) -> None:
        """Relay until done, error or disconnect; always releases the session."""
        try:
            await self.link.open()
            tasks = [
                asyncio.create_task(self._client_to_worker()),
                asyncio.create_task(self._worker_to_client()),
                asyncio.create_task(self.link.watch()),
                asyncio.create_task(self._length_limit()),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                await _stop(tasks)
            for task in done:
                task.result()  # raises Ended (or a bug) out of the relay
        except Ended as end:
            await self.end(end)
        except WebSocketDisconnect:
            pass
        finally:
            await self.link.close()

    @staticmethod
    async def refuse(socket: WebSocket[Any, Any, Any], error: SessionError) -> None:
        """Refuse before any audio is read: the error event, then the close code."""
        try:
            await socket.send_json(error_event(None, error))
            await socket.close(code=error.close)
        except (WebSocketDisconnect, RuntimeError):
            pass

    async def end(self, end: Ended) -> None:
        async with self._send_lock:
            try:
                if end.error is not None:
                    await self.socket.send_json(error_event(self.spec.sid, end.error))
                await self.socket.close(code=end.close)
            except (WebSocketDisconnect, RuntimeError):
                pass

    async def _send_text(self, text: str) -> None:
        async with self._send_lock:
            await self.socket.send_text(text)

    async def _throttle(self) -> None:
        """Read no more while the worker is over `max_buffer_s` behind (TCP then slows the
        client); an error only when it stays so, with no decoding progress to let it under,
        past the idle timeout."""
        stuck_since = time.monotonic()
        decoded = self.link.decoded_s
        while self.sent_s - self.link.decoded_s > self.limits.max_buffer_s:
            if self.link.decoded_s != decoded:
                decoded, stuck_since = self.link.decoded_s, time.monotonic()
            waited = time.monotonic() - stuck_since
            if waited > self.limits.idle_timeout_s:
                lag = self.sent_s - self.link.decoded_s
                raise Ended(
                    SessionError(
                        429,
                        "audio_too_fast",
                        "Too much audio buffered",
                        f"audio is {lag:.0f} s ahead of decoding and decoding made no "
                        f"progress for {waited:.0f} s",
                    )
                )
            self.link.progressed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.link.progressed.wait(), timeout=0.5)

    async def _client_to_worker(self) -> None:
        while True:
            await self._throttle()
            try:
                received = await asyncio.wait_for(
                    self.socket.receive(), timeout=self.limits.idle_timeout_s
                )
            except TimeoutError:
                raise Ended(
                    SessionError(
                        408,
                        "idle_timeout",
                        "Idle timeout",
                        f"no audio or command for {self.limits.idle_timeout_s:g} s",
                    )
                ) from None
            message = cast(dict[str, Any], received)
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(detail="client left", code=1000)
            data = message.get("bytes")
            if data:
                self.sent_s += len(data) / self.bytes_per_s
                await self.link.send(KIND_AUDIO, data)
                continue
            text = (message.get("text") or "").strip()
            kind = COMMANDS.get(text)
            if kind is None:
                raise Ended(
                    SessionError.of(
                        InvalidRequest(
                            f"unknown command {text[:40]!r}: send audio as binary frames, "
                            "or the text `finalize` or `done`"
                        )
                    )
                )
            await self.link.send(kind)
            if kind == KIND_DONE:
                await asyncio.Event().wait()  # the worker's `done` ends the session

    async def _worker_to_client(self) -> None:
        async for text in self.link.events():
            event = json.loads(text)
            await self._send_text(text)
            if event.get("type") == "done":
                raise Ended(close=CLOSE_NORMAL)
            if event.get("type") == "error":
                raise Ended(close=CLOSE_INTERNAL)

    async def _length_limit(self) -> None:
        limit = self.limits.max_session_s
        await asyncio.sleep(max(0.0, limit - (time.monotonic() - self.started)))
        raise Ended(
            SessionError(
                408,
                "session_too_long",
                "Session too long",
                f"a session may last at most {limit:g} s",
            )
        )
