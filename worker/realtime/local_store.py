"""A session's store on the local streaming worker: the few Redis calls `Session` makes,
held in memory for that one session.

On the Redis pool a session's input, events and checkpoint live in Redis so that another
worker can take it over. The local worker (no Redis, one machine, no failover) gives its
`Session` this store instead: the input is a queue filled from the API's connection,
events and decoding progress go straight back to it, and the checkpoint is not kept.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from core.realtime import KIND_AUDIO

Entry = tuple[str, dict[bytes, bytes]]


def _number(entry_id: str) -> int:
    """Entry ids are `N-0`, numbered from 1 ("0" and "-" come before them all)."""
    head = entry_id.partition("-")[0]
    return int(head) if head else 0


class LocalStore:
    """One session's input (in order, trimmed at finals) and its way back to the API."""

    def __init__(
        self, on_event: Callable[[str], None], on_progress: Callable[[float], None]
    ) -> None:
        self._on_event = on_event
        self._on_progress = on_progress
        self._ready = threading.Condition()
        self._entries: deque[tuple[int, dict[bytes, bytes]]] = deque()
        self._next = 1
        self.closed = False

    # -- fed by the connection ----------------------------------------------------------------

    def push_audio(self, data: bytes) -> None:
        self._push({b"k": KIND_AUDIO.encode(), b"d": data})

    def push_command(self, kind: str) -> None:
        self._push({b"k": kind.encode()})

    def _push(self, fields: dict[bytes, bytes]) -> None:
        with self._ready:
            self._entries.append((self._next, fields))
            self._next += 1
            self._ready.notify_all()

    def close_input(self) -> None:
        """The API's connection is gone: the session stops at its next read."""
        with self._ready:
            self.closed = True
            self._ready.notify_all()

    # -- what Session calls (Redis's names and shapes) ----------------------------------------

    def exists(self, *_names: str) -> int:
        return int(self.closed)

    def hget(self, _name: str, _key: str) -> bytes | None:
        return None  # no checkpoint: a local session is never resumed

    def hset(self, _name: str, key: str, value: str) -> int:
        if key == "decoded_s":
            self._on_progress(float(value))
        return 1

    def xadd(self, _name: str, fields: Mapping[str, Any], **_: Any) -> str:
        event = fields["e"]
        self._on_event(event.decode() if isinstance(event, bytes) else str(event))
        return "0-0"

    def xtrim(self, _name: str, minid: str, **_: Any) -> int:
        bound = _number(minid)
        with self._ready:
            dropped = 0
            while self._entries and self._entries[0][0] < bound:
                self._entries.popleft()
                dropped += 1
            return dropped

    def xrange(self, _name: str, min: str = "-", count: int | None = None) -> list[Entry]:
        return self._from(_number(min), count)

    def xread(
        self, streams: Mapping[str, str], count: int | None = None, block: int | None = None
    ) -> list[tuple[str, list[Entry]]]:
        ((name, cursor),) = streams.items()
        after = _number(cursor) + 1
        with self._ready:
            if block is not None and not self.closed and self._last() < after:
                self._ready.wait(block / 1000)
        rows = self._from(after, count)
        return [(name, rows)] if rows else []

    def pipeline(self, transaction: bool = True) -> LocalPipeline:
        return LocalPipeline(self)

    def close(self) -> None:
        pass

    def _last(self) -> int:
        return self._entries[-1][0] if self._entries else 0

    def _from(self, first: int, count: int | None) -> list[Entry]:
        with self._ready:
            rows = [(f"{n}-0", fields) for n, fields in self._entries if n >= first]
        return rows[:count] if count is not None else rows


class LocalPipeline:
    """Redis's pipeline for `LocalStore`: the calls run in order on `execute`."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        self._calls: list[Callable[[], object]] = []

    def xadd(self, name: str, fields: Mapping[str, Any], **kwargs: Any) -> LocalPipeline:
        self._calls.append(lambda: self.store.xadd(name, fields, **kwargs))
        return self

    def hset(self, name: str, key: str, value: str) -> LocalPipeline:
        self._calls.append(lambda: self.store.hset(name, key, value))
        return self

    def execute(self) -> list[object]:
        return [call() for call in self._calls]
