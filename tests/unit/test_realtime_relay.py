"""The relay's end never hangs on one of its tasks: a task that swallows its cancel (as a
Redis read caught at the wrong moment may) still lets the session end with its event and
close code."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from api.realtime import Relay
from core.realtime import SessionSpec
from core.settings import load_settings


class Socket:
    """A client that sends nothing after connecting: the idle timeout must end it."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.closed: int | None = None

    async def receive(self) -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    async def send_json(self, data: Any) -> None:
        self.sent.append(data)

    async def send_text(self, text: str) -> None:
        self.sent.append(text)

    async def close(self, code: int = 1000) -> None:
        self.closed = code


class StubbornLink:
    """A link whose `watch` takes its first cancel as if nothing happened."""

    def __init__(self) -> None:
        self.decoded_s = 0.0
        self.progressed = asyncio.Event()
        self.released = False

    async def open(self) -> None:
        pass

    async def send(self, kind: str, data: bytes = b"") -> None:
        pass

    async def events(self) -> AsyncIterator[str]:
        await asyncio.Event().wait()
        yield ""  # never reached

    async def watch(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # swallowed: must not hold the end
            await asyncio.Event().wait()
        await asyncio.Event().wait()

    async def close(self) -> None:
        self.released = True


def test_a_task_that_ignores_its_cancel_does_not_hold_the_sessions_end() -> None:
    settings = load_settings({"STT_RT_IDLE_TIMEOUT_S": "0.2", "STT_RT_MAX_SESSION_S": "3600"})
    spec = SessionSpec("s1", "bundled:tiny.en", "en", "pcm_s16le", 16000, 0.0, 1.0)
    socket, link = Socket(), StubbornLink()

    async def run() -> None:
        relay = Relay(socket, link, settings.realtime, spec)  # type: ignore[arg-type]
        await asyncio.wait_for(relay.run(), 30)

    asyncio.run(run())
    assert [e["error_code"] for e in socket.sent] == ["idle_timeout"]
    assert socket.closed == 1008
    assert link.released
