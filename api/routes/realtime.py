"""Cartesia's realtime STT: `GET /stt/websocket` (audio frames in, transcript events out)."""

from __future__ import annotations

from typing import Any

from litestar import WebSocket, websocket
from redis.asyncio import Redis

from api.auth import presented_key, tenant_of
from api.realtime import Link, Relay, session_spec
from api.realtime_local import LocalLink
from api.realtime_redis import RedisLink
from api.state import AppState
from core.errors import SttError, Unauthorized
from core.realtime import SessionError, SessionSpec, local_socket_path
from core.settings import Settings


def _query_key(socket: WebSocket[Any, Any, Any]) -> str | None:
    """Browsers cannot set headers: `api_key` or `access_token` in the query."""
    for name in ("api_key", "access_token"):
        value = socket.query_params.get(name)
        if value:
            return str(value).strip()
    return None


def link_for(settings: Settings, spec: SessionSpec, tenant: str) -> Link:
    """The Redis pool when `REDIS_URL` is set, else the local streaming worker."""
    if settings.broker.redis_url:
        # Every call bounded (the longest, a 1 s blocking XREAD): a Redis that stops
        # answering ends the session with an error, never holds the relay forever.
        redis = Redis.from_url(
            settings.broker.redis_url, socket_timeout=10, socket_connect_timeout=5
        )
        return RedisLink(redis, settings.realtime, spec, tenant)
    return LocalLink(local_socket_path(settings), spec, tenant)


@websocket("/stt/websocket")
async def stt_websocket(socket: WebSocket[Any, Any, Any], stt: AppState) -> None:
    """Query `model`, `encoding`, `sample_rate`, optional `language`, `min_volume`,
    `max_silence_duration_secs`, `cartesia_version`; key by header or `api_key` query.
    Binary frames are audio; the text `finalize` and `done` (or `close`) are commands."""
    await socket.accept()
    settings = stt.settings
    try:
        key = presented_key(socket) or _query_key(socket)
        if key is None and not settings.api.auth_disabled:
            raise Unauthorized(
                "no API key: send `Authorization: Bearer KEY`, `X-API-Key` "
                "or the `api_key` query parameter"
            )
        tenant = await tenant_of(key or "", settings, stt.sessions, stt.limiter)
        query = {k: str(v) for k, v in socket.query_params.items()}
        spec = session_spec(query, settings)
    except SttError as exc:
        await Relay.refuse(socket, SessionError.of(exc))
        return
    await Relay(socket, link_for(settings, spec, tenant), settings.realtime, spec).run()
