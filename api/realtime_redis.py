"""The Redis backend of a realtime session: a pool of streaming workers on any machine.

The session is admitted under the limits (one Lua script over two sorted sets, so
concurrent APIs cannot both take the last place), placed on the `stt:rt:sessions` stream,
and relayed: frames to its input stream, events from its output stream. While it is open the
serving worker's lease is watched; when it lapses (the worker died) the session is placed
again and another worker resumes from the checkpoint at the last final.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

from api.realtime import Ended
from core.realtime import (
    ACTIVE,
    PLACEMENTS,
    WORKER_GROUP,
    SessionKeys,
    SessionSpec,
    active_for,
    no_worker,
    over_limit,
)
from core.settings import RealtimeSettings

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


class RedisLink:
    """One session placed on the Redis pool."""

    def __init__(
        self, redis: Redis, limits: RealtimeSettings, spec: SessionSpec, tenant: str
    ) -> None:
        self.redis = redis
        self.limits = limits
        self.spec = spec
        self.tenant = tenant
        self.keys = SessionKeys(spec.sid)
        self.decoded_s = 0.0
        self.progressed = asyncio.Event()
        self._admitted = False
        self._closed = False

    def _active_ttl(self) -> float:
        return max(10.0, 4 * self.limits.lease_s)

    async def open(self) -> None:
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
            raise Ended(over_limit(f"at most {self.limits.sessions_per_key} sessions per key"))
        if int(verdict) == 2:
            raise Ended(over_limit(f"at most {self.limits.sessions_total} sessions in all"))
        self._admitted = True
        await _ensure_group(self.redis)
        await self._place()

    async def _place(self) -> None:
        await self.redis.xadd(PLACEMENTS, {"spec": self.spec.to_json()}, maxlen=10000)

    async def send(self, kind: str, data: bytes = b"") -> None:
        fields: dict[str, str | bytes] = {"k": kind, "d": data} if data else {"k": kind}
        await self.redis.xadd(
            self.keys.inbound,
            fields,  # type: ignore[arg-type]
            maxlen=IN_MAXLEN,
            approximate=True,
        )

    async def events(self) -> AsyncIterator[str]:
        cursor = "0"
        while True:
            reply: Any = await self.redis.xread({self.keys.outbound: cursor}, count=50, block=1000)
            for _, rows in reply or []:
                for entry_id, fields in rows:
                    cursor = entry_id
                    yield fields[b"e"].decode()

    async def watch(self) -> None:
        """The worker's lease (placed again when it lapses), the session's entry in the
        counts, and how far decoding has got."""
        placed_at = time.monotonic()
        claimed = False
        placement_timeout = max(15.0, 5 * self.limits.lease_s)
        while True:
            await asyncio.sleep(min(0.5, self.limits.lease_s / 4))
            now = time.monotonic()
            expiry = time.time() + self._active_ttl()
            await self.redis.zadd(ACTIVE, {self.spec.sid: expiry})
            await self.redis.zadd(active_for(self.tenant), {self.spec.sid: expiry})
            if await self.redis.exists(self.keys.owner):
                claimed = True
            elif claimed:  # the lease lapsed: the worker is gone; place the session again
                claimed = False
                placed_at = now
                await self._place()
            elif now - placed_at > placement_timeout:
                raise Ended(no_worker("no streaming worker took the session; try again later"))
            decoded = await self.redis.hget(self.keys.state, "decoded_s")
            if decoded is not None and float(decoded) != self.decoded_s:
                self.decoded_s = float(decoded)
                self.progressed.set()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(self.keys.closed, "1", ex=300)
            if self._admitted:
                pipe.zrem(ACTIVE, self.spec.sid)
                pipe.zrem(active_for(self.tenant), self.spec.sid)
            for key in (self.keys.inbound, self.keys.outbound, self.keys.state):
                pipe.expire(key, 60)
            await pipe.execute()
        finally:
            await self.redis.aclose()


async def _ensure_group(redis: Redis) -> None:
    from redis.exceptions import ResponseError

    try:
        await redis.xgroup_create(PLACEMENTS, WORKER_GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
