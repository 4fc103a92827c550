"""Per-key request rate limits: a fixed one-minute window, in Redis when there is one
(shared by every API process), else in this process (each API process counts its own).

Polls of a job its caller owns are counted apart, per key and job (STT_POLL_LIMIT_PER_MINUTE,
default 120: a poll a second per job, with room to spare), so a client polling each of its
jobs every second never meets the key's general limit; a long-poll (`?wait=`) is one request
however long it waits, and is the better way to learn that a job ended."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

import redis.asyncio as aioredis

from core.errors import RateLimited

log = logging.getLogger("stt.ratelimit")
WINDOW_S = 60
_MAX_LOCAL_KEYS = 100_000


class RateLimiter:
    def __init__(self, per_minute: int, redis_url: str | None, *, poll_per_minute: int = 0) -> None:
        self.per_minute = per_minute
        self.poll_per_minute = poll_per_minute
        self._redis = aioredis.Redis.from_url(redis_url, socket_timeout=2) if redis_url else None
        self._local: OrderedDict[tuple[str, int], int] = OrderedDict()

    async def _count(self, identity: str, window: int) -> int:
        if self._redis is not None:
            key = f"stt:rate:{identity}:{window}"
            try:
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.incr(key)
                    pipe.expire(key, WINDOW_S * 2)
                    count, _ = await pipe.execute()
                return int(count)
            except Exception:  # Redis down: count here rather than refuse every request
                log.warning("rate limiter: Redis unavailable, counting in this process")
        slot = (identity, window)
        self._local[slot] = self._local.get(slot, 0) + 1
        self._local.move_to_end(slot)
        while len(self._local) > _MAX_LOCAL_KEYS:
            self._local.popitem(last=False)
        return self._local[slot]

    async def check(self, identity: str) -> None:
        """Count one request for `identity` (a key hash); 429 with Retry-After past the limit."""
        await self._check(identity, self.per_minute, "requests per minute")

    async def check_poll(self, identity: str, job_id: str | None) -> None:
        """Count a poll of `job_id`, the caller's own job, apart from its other requests;
        a poll of no job of theirs (None) counts as any other request."""
        if not identity:
            return
        if job_id is None:
            await self.check(identity)
            return
        await self._check(f"{identity}:{job_id}", self.poll_per_minute, "polls per minute of a job")

    async def _check(self, identity: str, limit: int, what: str) -> None:
        if limit <= 0:
            return
        now = time.time()
        window = int(now // WINDOW_S)
        if await self._count(identity, window) > limit:
            retry = max(1, int((window + 1) * WINDOW_S - now) + 1)
            raise RateLimited(
                f"rate limit of {limit} {what} reached for this key",
                headers={"Retry-After": str(retry)},
            )

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
