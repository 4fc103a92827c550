"""Realtime on the embedded default (no Redis, no Postgres): `stt serve` runs the local
streaming worker beside the API, reached over a Unix socket. The Cartesia SDK, a client
sending far faster than real time, the limits, a stalled and a killed worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.cli import create_key
from bench.realtime_client import pcm16, stream, ws_url
from core.audio import SAMPLE_RATE
from core.settings import load_settings
from tests.e2e.test_realtime import JFK, _sdk_stream, audio_of, check_sdk_stream, check_text
from tests.support import LiveService, start_service, stop_service_proc, wait_until

pytestmark = pytest.mark.e2e

LOCAL_ENV = {
    "STT_DEFAULT_MODEL": "bundled:tiny.en",
    "STT_RATE_LIMIT_PER_MINUTE": "0",
    "STT_RT_SESSIONS_PER_KEY": "1",
    "STT_RT_SESSIONS_TOTAL": "2",
    "STT_RT_MAX_BUFFER_S": "4",
    "STT_RT_IDLE_TIMEOUT_S": "20",  # also how long a stalled worker is waited for
    "STT_API_WORKERS": "2",  # every API process reaches the one local streaming worker
}
"""Nothing but the model and the limits: no DATABASE_URL, no REDIS_URL."""
READY = re.compile(r"local streaming worker pid (\d+) is taking sessions")


def worker_pids(svc: LiveService) -> list[int]:
    return [int(pid) for pid in READY.findall(svc.log())]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    svc = start_service(tmp_path_factory.mktemp("rt-local"), LOCAL_ENV, workers=0)
    try:
        wait_until(lambda: worker_pids(svc), 120, "the local streaming worker")
        yield svc
    finally:
        stop_service_proc(svc.proc)


def url(svc: LiveService) -> str:
    return ws_url(svc.url, model="ink-whisper", encoding="pcm_s16le", sample_rate=SAMPLE_RATE)


def test_sdk_streams_a_clip_without_redis(local: LiveService) -> None:
    assert (local.data_dir / "realtime.sock").is_socket()
    check_sdk_stream(asyncio.run(_sdk_stream(local, audio_of(JFK))))


def test_a_client_sending_far_faster_than_real_time_is_paced_not_refused(
    local: LiveService,
) -> None:
    """22 s of speech sent as fast as the socket takes it, over a 4 s bound: the server
    stops reading while decoding catches up, and all of it is transcribed."""
    speech = np.concatenate([audio_of(JFK)] * 2)
    got = asyncio.run(stream(url(local), speech, headers=local.headers(), speed=1000.0))
    assert not got.of_type("error"), got.events
    assert [e["type"] for e in got.events][-2:] == ["flush_done", "done"], got.events
    check_text([JFK, JFK], got.final_text)
    assert got.close_code == 1000


# -- limits -----------------------------------------------------------------------------------


async def _open_session(svc: LiveService, key: str) -> ClientConnection | dict[str, Any]:
    """A session that the worker took (it answered a finalize), or the error it got."""
    ws = await connect(url(svc), additional_headers={"Authorization": f"Bearer {key}"})
    with contextlib.suppress(ConnectionClosed):  # a refused session may close first
        await ws.send(pcm16(np.zeros(1600, np.float32)))
        await ws.send("finalize")
    async for message in ws:
        event = json.loads(message)
        if event["type"] == "flush_done":
            return ws
        if event["type"] == "error":
            await ws.close()
            return dict(event)
    raise AssertionError("the session closed without an answer")


async def _hold(svc: LiveService, key: str) -> ClientConnection:
    got = await _open_session(svc, key)
    assert isinstance(got, ClientConnection), got
    return got


def wait_all_released(svc: LiveService) -> None:
    """Every session the worker took has been released (the last test's are gone)."""
    wait_until(
        lambda: svc.log().count("on the local streaming worker") == svc.log().count(" released"),
        30,
        "the open sessions to be released",
    )


async def _hold_then(
    svc: LiveService, hold: list[str], probe: str
) -> ClientConnection | dict[str, Any]:
    await asyncio.to_thread(wait_all_released, svc)
    held = [await _hold(svc, key) for key in hold]
    try:
        return await _open_session(svc, probe)
    finally:
        for ws in held:
            await ws.close()


@pytest.fixture(scope="module")
def keys(local: LiveService) -> list[str]:
    settings = load_settings({"STT_DATA_DIR": str(local.data_dir)})  # its SQLite database
    return [str(local.key), *(create_key(settings, f"k{i}", f"t{i}")[0] for i in range(2))]


def test_sessions_per_key_limit_without_redis(local: LiveService, keys: list[str]) -> None:
    got = asyncio.run(_hold_then(local, keys[:1], keys[0]))
    assert isinstance(got, dict) and got["status_code"] == 429, got
    assert "per key" in got["message"]


def test_sessions_total_limit_without_redis(local: LiveService, keys: list[str]) -> None:
    got = asyncio.run(_hold_then(local, keys[:2], keys[2]))
    assert isinstance(got, dict) and got["status_code"] == 429, got
    assert "in all" in got["message"]


def test_over_a_limit_the_socket_closes_with_1013(local: LiveService, keys: list[str]) -> None:
    """Over a limit the socket closes with 1013 (try later), after the error event."""

    async def probe() -> int | None:
        await asyncio.to_thread(wait_all_released, local)
        held = await _hold(local, keys[0])
        try:
            got = await stream(url(local), np.zeros(1600, np.float32), headers=local.headers())
        finally:
            await held.close()
        assert got.events[0]["error_code"] == "rate_limited", got.events
        return got.close_code

    assert asyncio.run(probe()) == 1013


# -- a stalled, then a killed worker ----------------------------------------------------------


def test_a_stalled_worker_ends_a_fast_session_with_audio_too_fast(local: LiveService) -> None:
    """Over the bound with no decoding progress for the idle timeout: an error, not a hang."""
    wait_all_released(local)
    pid = worker_pids(local)[-1]
    started = local.log().count("on the local streaming worker")
    stopped: list[int] = []

    async def stall_the_worker(frame: int) -> None:
        if frame == 0:  # once the worker has taken the session, stop it (SIGSTOP)
            await asyncio.to_thread(
                wait_until,
                lambda: local.log().count("on the local streaming worker") > started,
                30,
                "the session to start",
            )
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)

    speech = np.concatenate([audio_of(JFK)] * 2)
    try:
        got = asyncio.run(
            stream(
                url(local),
                speech,
                headers=local.headers(),
                speed=1000.0,
                on_frame=stall_the_worker,
                wait_s=60,
            )
        )
    finally:
        for p in stopped:
            os.kill(p, signal.SIGCONT)
    assert stopped
    assert got.events[-1]["error_code"] == "audio_too_fast", got.events
    assert got.close_code == 1008


def test_a_killed_worker_ends_the_session_with_an_error_and_is_restarted(
    local: LiveService,
) -> None:
    wait_all_released(local)
    before = worker_pids(local)
    victim = before[-1]
    killed: list[int] = []

    async def kill_the_worker(frame: int) -> None:
        if frame == 30 and not killed:  # 3 s in, mid-speech
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    got = asyncio.run(
        stream(
            url(local),
            audio_of(JFK),
            headers=local.headers(),
            on_frame=kill_the_worker,
            wait_s=60,
        )
    )
    assert killed
    error = got.events[-1]
    assert error["type"] == "error" and error["error_code"] == "no_streaming_worker", got.events
    assert got.close_code == 1011
    # `stt serve` starts another; the next session is served by it
    wait_until(lambda: len(worker_pids(local)) > len(before), 120, "a new streaming worker")
    assert worker_pids(local)[-1] != victim
    silence = np.zeros(SAMPLE_RATE, np.float32)
    again = asyncio.run(stream(url(local), silence, headers=local.headers()))
    assert [e["type"] for e in again.events][-2:] == ["flush_done", "done"], again.events
