"""Connection hygiene against a live `stt serve` on loopback: trickling or idle clients are
closed after the header timeout, a stalled body is a 408, malformed HTTP and oversized
headers answer in JSON, and echoed client values are bounded."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.echo import MAX_ECHO, clipped, quoted
from tests.support import (
    ROOT,
    LiveService,
    clip,
    free_port,
    start_service,
    stop_service_proc,
    wait_until,
)

KEY = "sk-stt-hygiene-key"
TRICKLERS = 40


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    svc = start_service(
        tmp_path_factory.mktemp("hygiene"),
        {
            "STT_API_KEY": KEY,
            "STT_HEADER_TIMEOUT_S": "1",
            "STT_BODY_TIMEOUT_S": "1",
            "STT_RATE_LIMIT_PER_MINUTE": "0",
        },
        workers=0,
    )
    yield svc
    stop_service_proc(svc.proc)


def address(svc: LiveService) -> tuple[str, int]:
    host, port = svc.url.removeprefix("http://").split(":")
    return host, int(port)


def read_all(sock: socket.socket, deadline: float) -> bytes:
    """Everything the server sends until it closes the connection (or the deadline)."""
    data = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], 0.5)
        if ready:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    raise AssertionError(f"the server kept the connection open; got {data!r}")


def json_body(raw: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    parsed: dict[str, object] = json.loads(body)
    return status, parsed


def test_trickling_connections_are_closed_after_the_header_timeout(live: LiveService) -> None:
    request = b"POST /stt HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000
    socks = [socket.create_connection(address(live), timeout=5) for _ in range(TRICKLERS)]
    open_ = set(range(TRICKLERS))
    answers: dict[int, bytes] = {i: b"" for i in open_}
    try:
        sent = 0
        deadline = time.monotonic() + 60
        while open_ and time.monotonic() < deadline:
            for i in list(open_):  # one more header byte each round: never a whole header
                try:
                    socks[i].send(request[sent : sent + 1])
                except OSError:
                    open_.discard(i)
            sent += 1
            ready, _, _ = select.select([socks[i] for i in open_], [], [], 0.1)
            for sock in ready:
                i = socks.index(sock)
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    chunk = b""
                answers[i] += chunk
                if not chunk:
                    open_.discard(i)
        assert not open_, f"{len(open_)} of {TRICKLERS} trickling connections still open"
    finally:
        for sock in socks:
            sock.close()
    assert sent < len(request), "the whole header was sent: the test proves nothing"
    answered = [json_body(a) for a in answers.values() if a]
    assert answered and all(status == 408 for status, _ in answered)
    assert all(body["error_code"] == "request_timeout" for _, body in answered)  # /stt's shape
    assert httpx.get(f"{live.url}/health/live", timeout=5).status_code == 200


def test_an_idle_connection_is_closed(live: LiveService) -> None:
    with socket.create_connection(address(live), timeout=5) as sock:
        status, body = json_body(read_all(sock, time.monotonic() + 30))
    assert status == 408
    assert body["error"]["code"] == "request_timeout"  # type: ignore[index]


def test_a_keep_alive_connection_gets_the_deadline_again(live: LiveService) -> None:
    with socket.create_connection(address(live), timeout=5) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while b'"ok"' not in first:
            first += sock.recv(65536)
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHo")  # and never the rest
        assert b" 408 " in read_all(sock, time.monotonic() + 30)


def test_a_stalled_body_is_a_408_in_the_familys_shape(live: LiveService) -> None:
    audio = clip("en_fleurs_004.ogg").path.read_bytes()
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nink-whisper\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.ogg"\r\n'
        "\r\n"
    ).encode() + audio[:1000]
    with socket.create_connection(address(live), timeout=5) as sock:
        sock.sendall(
            b"POST /stt HTTP/1.1\r\nHost: x\r\nX-API-Key: " + KEY.encode() + b"\r\n"
            b"Content-Type: multipart/form-data; boundary=" + boundary.encode() + b"\r\n"
            b"Content-Length: " + str(len(head) + len(audio)).encode() + b"\r\n\r\n" + head
        )
        status, body = json_body(read_all(sock, time.monotonic() + 60))
    assert status == 408
    assert body["error_code"] == "request_timeout"
    assert list((live.data_dir / "audio").rglob("*.ogg")) == []


@pytest.mark.parametrize(
    "raw",
    [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", b"\x16\x03\x01\x02\x00\x01"],
)
def test_malformed_http_is_answered_in_json(live: LiveService, raw: bytes) -> None:
    with socket.create_connection(address(live), timeout=5) as sock:
        sock.sendall(raw)
        status, body = json_body(read_all(sock, time.monotonic() + 30))
    assert status == 400
    assert body["error"]["code"] == "invalid_request"  # type: ignore[index]


def test_oversized_headers_are_a_431(live: LiveService) -> None:
    with socket.create_connection(address(live), timeout=5) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nX-Big: " + b"a" * 70_000)
        status, _ = json_body(read_all(sock, time.monotonic() + 30))
    assert status == 431


@pytest.mark.parametrize("path", ["/stt", "/v1/audio/transcriptions"])
@pytest.mark.parametrize("field", ["model", "language", "response_format"])
def test_a_60_kb_value_gives_a_short_error(live: LiveService, path: str, field: str) -> None:
    data = {"model": "whisper-1", field: "m" * 60_000}
    files = {"file": ("a.ogg", clip("en_fleurs_004.ogg").path.read_bytes(), "audio/ogg")}
    r = httpx.post(
        f"{live.url}{path}", data=data, files=files, headers={"X-API-Key": KEY}, timeout=30
    )
    assert r.status_code == 400, r.text[:300]
    assert len(r.content) < 600, r.text[:600]
    assert "m" * MAX_ECHO not in r.text


def test_quoted_cuts_with_an_ellipsis() -> None:
    assert clipped("short") == "short"
    long = clipped("x" * 1000)
    assert len(long) == MAX_ECHO and long.endswith("…")
    assert quoted("x" * 1000) == repr(long)
    assert quoted(12) == "'12'"


def test_the_server_still_serves_after_all_that(live: LiveService) -> None:
    wait_until(
        lambda: httpx.get(f"{live.url}/health/live", timeout=5).status_code == 200,
        30,
        "the API to answer",
    )
    assert "Traceback" not in live.log()


def test_serving_on_is_printed_only_once_the_port_accepts(tmp_path: Path) -> None:
    """The line that says the API is up is true when it is read: a connection right after
    it appears is accepted."""
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("STT_", "DATABASE_URL"))},
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "STT_DATA_DIR": str(tmp_path / "data"),
        "STT_API_KEY": KEY,
        "PYTHONUNBUFFERED": "1",
    }
    with log_path.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--workers", "0"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    try:
        wait_until(lambda: "Serving on" in log_path.read_text() or proc.poll() is not None, 120)
        assert "Serving on" in log_path.read_text(), log_path.read_text()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        assert log_path.read_text().count("Serving on") == 1
    finally:
        stop_service_proc(proc)
