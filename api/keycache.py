"""A bounded, short-lived memory of API key → tenant, so a poll does not ask the database
who the caller is every time.

The bound is the revocation guarantee: a key revoked in the database is refused by every API
process at most `ttl_s` seconds later (STT_KEY_CACHE_S; 0 turns the cache off). Only keys
that were found valid are remembered; an unknown key is looked up every time, so a new key
works at once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

MAX_KEYS = 10_000


class KeyCache:
    def __init__(
        self,
        ttl_s: float,
        *,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_keys = max_keys
        self._clock = clock
        self._tenants: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def get(self, digest: str) -> str | None:
        """The tenant of a key hash looked up less than `ttl_s` ago, else None."""
        entry = self._tenants.get(digest)
        if entry is None:
            return None
        tenant, expires = entry
        if self._clock() >= expires:
            del self._tenants[digest]
            return None
        return tenant

    def put(self, digest: str, tenant: str) -> None:
        if self.ttl_s <= 0:
            return
        self._tenants[digest] = (tenant, self._clock() + self.ttl_s)
        self._tenants.move_to_end(digest)
        while len(self._tenants) > self.max_keys:
            self._tenants.popitem(last=False)

    def __len__(self) -> int:
        return len(self._tenants)
