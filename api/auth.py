"""API keys: `Authorization: Bearer KEY` (both SDKs) or `X-API-Key: KEY` (Cartesia's curl)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.keycache import KeyCache
from api.ratelimit import RateLimiter
from core.errors import Unauthorized
from core.keys import hash_key
from core.models import ApiKey
from core.settings import Settings

ENV_TENANT = "default"
"""The tenant of the key given in STT_API_KEY."""


def presented_key(request: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


@dataclass(frozen=True)
class Caller:
    tenant: str
    identity: str
    """What the rate limiter counts under (a prefix of the key's hash)."""


async def authenticate(
    request: ASGIConnection[Any, Any, Any, Any],
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    limiter: RateLimiter | None = None,
) -> str:
    """The caller's tenant; 401 for a missing, unknown or revoked key. A known key then
    counts against its rate limit (429 when over it)."""
    caller = await authenticate_caller(request, settings, sessions)
    if limiter is not None and caller.identity:
        await limiter.check(caller.identity)
    return caller.tenant


async def authenticate_caller(
    request: ASGIConnection[Any, Any, Any, Any],
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> Caller:
    """The caller, not yet counted by the rate limiter; 401 for a missing, unknown or revoked
    key. A valid key's tenant is remembered for STT_KEY_CACHE_S (see api.keycache)."""
    if settings.api.auth_disabled:
        return Caller(ENV_TENANT, "")
    key = presented_key(request)
    if key is None:
        raise Unauthorized("no API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`")
    app_state = getattr(request.app.state, "stt", None)
    return await caller_of(key, settings, sessions, getattr(app_state, "keys", None))


async def tenant_of(
    key: str,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    limiter: RateLimiter | None = None,
    cache: KeyCache | None = None,
) -> str:
    """The tenant of a presented key (401 unless known and not revoked; 429 over its rate)."""
    if settings.api.auth_disabled:
        return ENV_TENANT
    caller = await caller_of(key, settings, sessions, cache)
    if limiter is not None:
        await limiter.check(caller.identity)
    return caller.tenant


async def caller_of(
    key: str,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    cache: KeyCache | None = None,
) -> Caller:
    """Who a presented key is (401 unless known and not revoked), not counted."""
    digest = hash_key(key)
    identity = digest[:32]
    if settings.api.key and hmac.compare_digest(key.encode(), settings.api.key.encode()):
        return Caller(ENV_TENANT, identity)
    tenant = cache.get(digest) if cache is not None else None
    if tenant is not None:
        return Caller(tenant, identity)
    async with sessions() as session:
        row = (
            await session.execute(
                select(ApiKey.tenant, ApiKey.key_hash).where(
                    ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)
                )
            )
        ).first()
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        raise Unauthorized("the API key is not valid")
    if cache is not None:
        cache.put(digest, str(row.tenant))
    return Caller(str(row.tenant), identity)
