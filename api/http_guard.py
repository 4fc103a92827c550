"""Connection hygiene below the ASGI app: slow or malformed clients cannot hold the server.

- :class:`GuardedHttpProtocol` (uvicorn's httptools protocol, passed as `http=`): a
  connection whose request headers are not complete `STT_HEADER_TIMEOUT_S` after it opened
  (or after its last answer) is answered 408 and closed; headers larger than
  :data:`MAX_HEADER_BYTES` are a 431; malformed HTTP is answered in the family's JSON shape
  instead of uvicorn's plain text.
- :func:`body_timeout` (ASGI): a body that sends nothing for `STT_BODY_TIMEOUT_S` ends the
  request with a 408 (:class:`core.errors.RequestTimeout`) in the family's shape.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from typing import Any

import anyio
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.errors import error_body
from core.errors import RequestTimeout
from core.settings import load_settings

log = logging.getLogger("stt.api")

MAX_HEADER_BYTES = 64 * 1024
"""Bytes a client may send before its request headers are complete."""

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


@functools.cache
def _timeouts() -> tuple[float, float]:
    """(header, body) timeouts of this process, read once at the first connection."""
    api = load_settings().api
    return api.header_timeout_s, api.body_timeout_s


def raw_error(status: int, code: str, message: str, path: str = "") -> bytes:
    """A whole HTTP/1.1 response carrying the family's JSON error; the connection closes."""
    title = _REASONS[status].decode()
    body = json.dumps(error_body(path, status, code, title, message)).encode()
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n" % (status, _REASONS[status], len(body))
    )
    return head + body


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline, a header size cap and JSON
    answers to requests it cannot parse."""

    header_timeout_s: float | None = None
    """None: the setting (`STT_HEADER_TIMEOUT_S`); tests may set it on a subclass."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0

    def _timeout(self) -> float:
        return self.header_timeout_s or _timeouts()[0]

    def _arm(self) -> None:
        self._disarm()
        self._header_bytes = 0
        self._deadline = self.loop.call_later(self._timeout(), self._headers_too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        counting = self._deadline is not None
        if counting:
            self._header_bytes += len(data)
        super().data_received(data)
        # still no complete headers (the data may hold the headers' end and some body)
        if counting and self._deadline is not None and self._header_bytes > MAX_HEADER_BYTES:
            self._answer(431, "request_headers_too_large", "the request headers are too large")

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request's headers get the same deadline

    def _busy(self) -> bool:
        cycle = self.cycle
        return bool(self.pipeline) or (cycle is not None and not cycle.response_complete)

    def _headers_too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._busy():
            return
        log.info("closed a connection whose request headers took over %.0f s", self._timeout())
        self._answer(408, "request_timeout", "the request headers did not arrive in time")

    def send_400_response(self, msg: str) -> None:
        self._answer(400, "invalid_request", f"malformed HTTP request: {msg}")

    def _answer(self, status: int, code: str, message: str) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        path = self.url.decode("latin-1").partition("?")[0] if getattr(self, "url", b"") else ""
        self.transport.write(raw_error(status, code, message, path))
        self.transport.close()


ASGIApp = Any


def body_timeout(app: ASGIApp, seconds: float | None = None) -> ASGIApp:
    """Wrap an ASGI app: each wait for more of the request body lasts at most `seconds`
    (default `STT_BODY_TIMEOUT_S`); past it the handler sees :class:`RequestTimeout`."""

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        limit = seconds or _timeouts()[1]
        body_done = False

        async def timed_receive() -> Any:
            nonlocal body_done
            if body_done:  # waiting for a disconnect is not waiting for the body
                return await receive()
            with anyio.move_on_after(limit) as waited:
                message = await receive()
            if waited.cancelled_caught:
                raise RequestTimeout(
                    f"the request body sent nothing for {limit:.0f} s",
                    headers={"Connection": "close"},
                )
            if message.get("type") != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await app(scope, timed_receive, send)

    return guarded
