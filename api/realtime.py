"""The API's half of a realtime session: admit it, place it, relay both ways through Redis.

The API never decodes: audio frames and commands go to the session's input stream, events
come back from its output stream. While the socket is open the relay watches the serving
worker's lease; when it lapses (the worker died) the session is placed again and another
worker resumes from the checkpoint at the last final.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from litestar import WebSocket
from litestar.exceptions import WebSocketDisconnect
from redis.asyncio import Redis

from core.audio import RawFormat, raw_format
from core.errors import InvalidRequest
from core.model_registry import resolve_model
from core.realtime import (
    ACTIVE,
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_TRY_LATER,
    KIND_AUDIO,
    KIND_DONE,
    KIND_FINALIZE,
    PLACEMENTS,
    WORKER_GROUP,
    SessionError,
    SessionKeys,
    SessionSpec,
    active_for,
    error_event,
)
from core.settings import RealtimeSettings, Settings

IN_MAXLEN = 20000
"""A hard bound on a session's input stream (the worker trims it at every final)."""

ADMIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[5]) then return 2 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 0
"""
"""Admit a session under both limits at once (stale entries of dead APIs expire)."""

COMMANDS = {"finalize": KIND_FINALIZE, "done": KIND_DONE, "close": KIND_DONE}
"""Text commands: the SDKs' `close` is the protocol's `done`."""


class Ended(Exception):
    """The session ends; with an error event first unless `error` is None."""

    def __init__(self, error: SessionError | None = None, close: int = CLOSE_NORMAL) -> None:
        super().__init__(error.message if error else "ended")
        self.error = error
        self.close = error.close if error else close


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


@dataclass
class Relay:
    """One open socket's session, from placement to close."""

    socket: WebSocket[Any, Any, Any]
    redis: Redis
    limits: RealtimeSettings
    spec: SessionSpec
    tenant: str

    def __post_init__(self) -> None:
        self.keys = SessionKeys(self.spec.sid)
        self.sent_s = 0.0
        self.started = time.monotonic()
        self.bytes_per_s = (
            self.spec.sample_rate
            * RawFormat(self.spec.encoding, self.spec.sample_rate).sample_width
        )
        self._send_lock = asyncio.Lock()

    async def admit(self) -> None:
        now = time.time()
        verdict = await self.redis.eval(  # type: ignore[misc]
            ADMIT,
            2,
            ACTIVE,
            active_for(self.tenant),
            now,
            now + self._active_ttl(),
            self.spec.sid,
            self.limits.sessions_per_key,
            self.limits.sessions_total,
        )
        if int(verdict) == 1:
            raise Ended(_limit(f"at most {self.limits.sessions_per_key} sessions per key"))
        if int(verdict) == 2:
            raise Ended(_limit(f"at most {self.limits.sessions_total} sessions in all"))

    def _active_ttl(self) -> float:
        return max(10.0, 4 * self.limits.lease_s)

    async def place(self) -> None:
        await self.redis.xadd(PLACEMENTS, {"spec": self.spec.to_json()}, maxlen=10000)

    async def run(self) -> None:
        """Relay until done, error or disconnect; always leaves Redis clean."""
        try:
            await self.admit()
            await _ensure_group(self.redis)
            await self.place()
            tasks = [
                asyncio.create_task(self._client_to_worker()),
                asyncio.create_task(self._worker_to_client()),
                asyncio.create_task(self._watch()),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                task.result()  # raises Ended (or a bug) out of the relay
        except Ended as end:
            await self.end(end)
        except WebSocketDisconnect:
            pass
        finally:
            await self._cleanup()

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

    async def _client_to_worker(self) -> None:
        while True:
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
                await self.redis.xadd(
                    self.keys.inbound,
                    {"k": KIND_AUDIO, "d": data},
                    maxlen=IN_MAXLEN,
                    approximate=True,
                )
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
            await self.redis.xadd(self.keys.inbound, {"k": kind}, maxlen=IN_MAXLEN)
            if kind == KIND_DONE:
                await asyncio.Event().wait()  # the worker's `done` ends the session

    async def _worker_to_client(self) -> None:
        cursor = "0"
        while True:
            reply: Any = await self.redis.xread({self.keys.outbound: cursor}, count=50, block=1000)
            for _, rows in reply or []:
                for entry_id, fields in rows:
                    cursor = entry_id
                    text = fields[b"e"].decode()
                    event = json.loads(text)
                    await self._send_text(text)
                    if event.get("type") == "done":
                        raise Ended(close=CLOSE_NORMAL)
                    if event.get("type") == "error":
                        raise Ended(close=CLOSE_INTERNAL)

    async def _watch(self) -> None:
        """Placement, the worker's lease, the session's limits, its entry in the counts."""
        placed_at = time.monotonic()
        claimed = False
        placement_timeout = max(15.0, 5 * self.limits.lease_s)
        while True:
            await asyncio.sleep(min(0.5, self.limits.lease_s / 4))
            now = time.monotonic()
            expiry = time.time() + self._active_ttl()
            await self.redis.zadd(ACTIVE, {self.spec.sid: expiry})
            await self.redis.zadd(active_for(self.tenant), {self.spec.sid: expiry})
            if now - self.started > self.limits.max_session_s:
                raise Ended(
                    SessionError(
                        408,
                        "session_too_long",
                        "Session too long",
                        f"a session may last at most {self.limits.max_session_s:g} s",
                    )
                )
            if await self.redis.exists(self.keys.owner):
                claimed = True
            elif claimed:  # the lease lapsed: the worker is gone; place the session again
                claimed = False
                placed_at = now
                await self.place()
            elif now - placed_at > placement_timeout:
                raise Ended(
                    SessionError(
                        503,
                        "no_streaming_worker",
                        "Service unavailable",
                        "no streaming worker took the session; try again later",
                        CLOSE_TRY_LATER,
                    )
                )
            decoded = await self.redis.hget(self.keys.state, "decoded_s")
            lag = self.sent_s - float(decoded or 0.0)
            if decoded is not None and lag > self.limits.max_buffer_s:
                raise Ended(
                    SessionError(
                        429,
                        "audio_too_fast",
                        "Too much audio buffered",
                        f"audio is arriving faster than real time: {lag:.0f} s ahead of "
                        f"decoding (at most {self.limits.max_buffer_s:g} s)",
                    )
                )

    async def _cleanup(self) -> None:
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(self.keys.closed, "1", ex=300)
            pipe.zrem(ACTIVE, self.spec.sid)
            pipe.zrem(active_for(self.tenant), self.spec.sid)
            for key in (self.keys.inbound, self.keys.outbound, self.keys.state):
                pipe.expire(key, 60)
            await pipe.execute()
        finally:
            await self.redis.aclose()


def _limit(message: str) -> SessionError:
    return SessionError(429, "rate_limited", "Too many sessions", message, CLOSE_TRY_LATER)


async def _ensure_group(redis: Redis) -> None:
    from redis.exceptions import ResponseError

    try:
        await redis.xgroup_create(PLACEMENTS, WORKER_GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
