"""API keys: `Authorization: Bearer KEY` (both SDKs) or `X-API-Key: KEY` (Cartesia's curl)."""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

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


async def authenticate(
    request: ASGIConnection[Any, Any, Any, Any],
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    limiter: RateLimiter | None = None,
) -> str:
    """The caller's tenant; 401 for a missing, unknown or revoked key. A known key then
    counts against its rate limit (429 when over it)."""
    if settings.api.auth_disabled:
        return ENV_TENANT
    key = presented_key(request)
    if key is None:
        raise Unauthorized("no API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`")
    return await tenant_of(key, settings, sessions, limiter)


async def tenant_of(
    key: str,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    limiter: RateLimiter | None = None,
) -> str:
    """The tenant of a presented key (401 unless known and not revoked; 429 over its rate)."""
    if settings.api.auth_disabled:
        return ENV_TENANT
    digest = hash_key(key)
    if settings.api.key and hmac.compare_digest(key.encode(), settings.api.key.encode()):
        if limiter is not None:
            await limiter.check(digest[:32])
        return ENV_TENANT
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
    if limiter is not None:
        await limiter.check(digest[:32])
    return str(row.tenant)
