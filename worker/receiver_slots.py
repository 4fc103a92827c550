"""A cap on the deliveries one webhook worker makes at once to one receiver host, so that a
receiver that never answers holds a few of the worker's threads, never all of them."""

from __future__ import annotations

import threading
from collections import Counter


class ReceiverSlots:
    """`take(host)` is False when `per_receiver` deliveries to `host` are already under way;
    every True is paired with one `give(host)`."""

    def __init__(self, per_receiver: int) -> None:
        self.per_receiver = max(per_receiver, 1)
        self._lock = threading.Lock()
        self._busy: Counter[str] = Counter()

    def take(self, host: str) -> bool:
        with self._lock:
            if self._busy[host] >= self.per_receiver:
                return False
            self._busy[host] += 1
            return True

    def give(self, host: str) -> None:
        with self._lock:
            self._busy[host] -= 1
            if self._busy[host] <= 0:
                del self._busy[host]

    def busy(self, host: str) -> int:
        with self._lock:
            return self._busy[host]
