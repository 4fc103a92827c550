"""The API under load (many pollers, some submitters) and its memory while receiving a
large upload. Loopback only, bounded in time and size."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.harness import headers, percentile
from bench.idle import tree_cpu_seconds


@dataclass
class Latencies:
    seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ms = [s * 1000 for s in self.seconds]
        return {
            "requests": len(ms),
            "errors": len(self.errors),
            "error_examples": sorted(set(self.errors))[:5],
            "p50_ms": round(percentile(ms, 50), 1),
            "p99_ms": round(percentile(ms, 99), 1),
            "max_ms": round(max(ms), 1) if ms else None,
        }


WARM_UP_S = 3.0
"""Requests in the first seconds (while 250 connections open) are not timed."""


class Connection:
    """A keep-alive HTTP/1.1 connection sending prepared requests: a load generator far
    lighter than a full client, so that the API, not the clients, gets the CPU."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes) -> int:
        """Send one request, read the whole response; its status code."""
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(request)
        status_line = await self.reader.readline()
        if not status_line:
            self.writer = None
            raise ConnectionError("connection closed")
        status = int(status_line.split()[1])
        length, chunked, closing = 0, False, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                closing = True
        if chunked:
            while size := int((await self.reader.readline()).strip(), 16):
                await self.reader.readexactly(size + 2)
            await self.reader.readline()
        else:
            await self.reader.readexactly(length)
        if closing:
            self.writer.close()
            self.writer = None
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _get(host: str, path: str) -> bytes:
    auth = headers()["Authorization"]
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n\r\n".encode()


def _post_job(host: str, audio: bytes) -> bytes:
    boundary = "stt-bench-load"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nink-whisper\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + audio
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST /stt/jobs HTTP/1.1\r\nHost: {host}\r\nAuthorization: {headers()['Authorization']}"
        f"\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def _client(
    connection: Connection,
    requests: list[bytes],
    expect: int,
    window: tuple[float, float],
    every: float,
    out: Latencies,
) -> None:
    """Requests every `every` s until the window's end; latencies are kept from its start
    (after every client has connected), errors throughout."""
    counted_from, until = window
    await asyncio.sleep(random.uniform(0, every))  # noqa: S311 (spread the clients out)
    while time.monotonic() < until:
        started = time.perf_counter()
        counted = time.monotonic() >= counted_from
        try:
            status = await connection.send(random.choice(requests))  # noqa: S311
            if status != expect:
                out.errors.append(f"HTTP {status}")
            elif counted:
                out.seconds.append(time.perf_counter() - started)
        except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
            out.errors.append(type(exc).__name__)
            connection.close()
            connection.writer = None
        await asyncio.sleep(max(0.0, every - (time.perf_counter() - started)))
    connection.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its children (`stt serve` runs
    STT_API_WORKERS API processes under one supervisor)."""
    return tree_cpu_seconds(pid)


def api_under_load(
    url: str,
    api_pid: int,
    poll_ids: list[str],
    short_audio: Path,
    *,
    pollers: int = 200,
    submitters: int = 50,
    seconds: float = 20.0,
    poll_every: float = 1.0,
    submit_every: float = 2.0,
) -> dict[str, Any]:
    """`pollers` clients GET a job every `poll_every` s and `submitters` POST a short job
    every `submit_every` s, each on its own keep-alive connection, all at once for
    `seconds` after `WARM_UP_S` (the connections being opened): latency percentiles, and
    errors (anything but 200 / 202, or a broken connection) over the whole run."""
    polls, submits = Latencies(), Latencies()
    address = httpx.URL(url)
    host, port = address.host, address.port or 80
    hostport = f"{host}:{port}"
    gets = [_get(hostport, f"/stt/jobs/{job_id}") for job_id in poll_ids]
    post = [_post_job(hostport, short_audio.read_bytes())]

    async def main() -> None:
        now = time.monotonic()
        window = (now + WARM_UP_S, now + WARM_UP_S + seconds)
        await asyncio.gather(
            *(
                _client(Connection(host, port), gets, 200, window, poll_every, polls)
                for _ in range(pollers)
            ),
            *(
                _client(Connection(host, port), post, 202, window, submit_every, submits)
                for _ in range(submitters)
            ),
        )

    async def cost(requests: list[bytes], count: int) -> float:
        """The API's CPU per request, one request at a time (ms), over the requests."""
        connection = Connection(host, port)
        await connection.send(requests[0])
        before = cpu_seconds(api_pid)
        for i in range(count):
            await connection.send(requests[i % len(requests)])
        connection.close()
        return round((cpu_seconds(api_pid) - before) / count * 1000, 2)

    poll_ms = asyncio.run(cost(gets, 200))
    submit_ms = asyncio.run(cost(post, 40))
    cpu_before, wall_before = cpu_seconds(api_pid), time.monotonic()
    asyncio.run(main())
    api_cpu = (cpu_seconds(api_pid) - cpu_before) / (time.monotonic() - wall_before)
    return {
        "clients": {"pollers": pollers, "submitters": submitters},
        "api_cpu_cores": round(api_cpu, 2),
        "api_cpu_ms_per_poll": poll_ms,
        "api_cpu_ms_per_submit": submit_ms,
        "api_cores_needed": round(
            (pollers / poll_every * poll_ms + submitters / submit_every * submit_ms) / 1000, 2
        ),
        "seconds": seconds,
        "warm_up_s": WARM_UP_S,
        "poll_every_s": poll_every,
        "submit_every_s": submit_every,
        "polls": polls.summary(),
        "submits": submits.summary(),
    }


def _kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def _wav_header(data_bytes: int) -> bytes:
    rate, channels, width = 16000, 1, 2
    return b"".join(
        [
            b"RIFF",
            (36 + data_bytes).to_bytes(4, "little"),
            b"WAVEfmt ",
            (16).to_bytes(4, "little"),
            (1).to_bytes(2, "little"),
            channels.to_bytes(2, "little"),
            rate.to_bytes(4, "little"),
            (rate * channels * width).to_bytes(4, "little"),
            (channels * width).to_bytes(2, "little"),
            (width * 8).to_bytes(2, "little"),
            b"data",
            data_bytes.to_bytes(4, "little"),
        ]
    )


def _multipart(data_bytes: int, boundary: str) -> tuple[int, Iterator[bytes]]:
    """A multipart body with a WAV file of `data_bytes` of quiet noise, generated as it is
    sent (1 MiB at a time: the client never holds the file)."""
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nink-whisper\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode() + _wav_header(data_bytes)
    tail = f"\r\n--{boundary}--\r\n".encode()
    block = np.random.default_rng(1).integers(-300, 300, 1 << 19, dtype="<i2").tobytes()

    def body() -> Iterator[bytes]:
        yield head
        left = data_bytes
        while left > 0:
            piece = block[: min(left, len(block))]
            left -= len(piece)
            yield piece
        yield tail

    return len(head) + data_bytes + len(tail), body()


def upload_memory(url: str, api_pid: int, data_bytes: int) -> dict[str, Any]:
    """The API process's resident memory while it receives one upload of `data_bytes`:
    its growth over the RSS before, from VmHWM (reset first, where the kernel allows) and
    from samples every 20 ms."""
    reset = True
    try:
        Path(f"/proc/{api_pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    except OSError:
        reset = False
    before = _kb(api_pid, "VmRSS")
    peak_sampled = before
    samples = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_sampled, samples
        while not done.wait(0.02):
            peak_sampled = max(peak_sampled, _kb(api_pid, "VmRSS"))
            samples += 1

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    boundary = "stt-bench-boundary-7f3a"
    length, body = _multipart(data_bytes, boundary)
    started = time.perf_counter()
    try:
        r = httpx.post(
            f"{url}/stt/jobs",
            headers={
                **headers(),
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(length),
            },
            content=body,
            timeout=3600,
        )
    finally:
        elapsed = time.perf_counter() - started
        done.set()
        sampler.join()
    hwm = _kb(api_pid, "VmHWM")
    peak = max(peak_sampled, hwm if reset else peak_sampled)
    return {
        "upload_bytes": length,
        "status": r.status_code,
        "seconds": round(elapsed, 2),
        "throughput_mb_s": round(length / elapsed / 1e6, 1),
        "rss_before_mb": round(before / 1024, 1),
        "rss_peak_mb": round(peak / 1024, 1),
        "growth_mb": round((peak - before) / 1024, 1),
        "rss_samples": samples,
        "peak_from": "VmHWM (reset before) and 20 ms samples" if reset else "20 ms samples",
    }
