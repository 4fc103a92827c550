"""Cartesia's realtime STT: `GET /stt/websocket` (audio frames in, transcript events out)."""

from __future__ import annotations

from typing import Any

from litestar import WebSocket, websocket
from redis.asyncio import Redis

from api.auth import presented_key, tenant_of
from api.realtime import Relay, session_spec
from api.state import AppState
from core.errors import ServiceUnavailable, SttError, Unauthorized
from core.realtime import CLOSE_INTERNAL, SessionError


def _query_key(socket: WebSocket[Any, Any, Any]) -> str | None:
    """Browsers cannot set headers: `api_key` or `access_token` in the query."""
    for name in ("api_key", "access_token"):
        value = socket.query_params.get(name)
        if value:
            return str(value).strip()
    return None


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
        if not settings.broker.redis_url:
            raise ServiceUnavailable(
                "realtime transcription runs on streaming workers placed through Redis: "
                "set REDIS_URL (and run `python -m worker --realtime`)"
            )
    except SttError as exc:
        close = CLOSE_INTERNAL if isinstance(exc, ServiceUnavailable) else None
        await Relay.refuse(socket, SessionError.of(exc, close) if close else SessionError.of(exc))
        return
    relay = Relay(
        socket, Redis.from_url(settings.broker.redis_url), settings.realtime, spec, tenant
    )
    await relay.run()
