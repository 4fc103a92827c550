"""Realtime STT over `/stt/websocket`: the Cartesia SDK, the protocol, limits and failover.

Each group of tests runs against its own live service (API + streaming worker, tiny.en) on
Postgres and Redis; the failover test runs two streaming workers of its own and kills one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from cartesia import AsyncCartesia
from websockets.exceptions import ConnectionClosed

from api.cli import create_key
from bench.realtime_client import Received, pcm16, stream, ws_url
from core.audio import SAMPLE_RATE, decode
from core.realtime import ACTIVE
from core.settings import load_settings
from tests.conftest import SERVICE_ENV
from tests.support import (
    ROOT,
    LiveService,
    clip,
    error_rate,
    kill_group,
    start_service,
    stop_service_proc,
    wait_until,
)

pytestmark = pytest.mark.e2e

RT_ENV = {
    **SERVICE_ENV,
    "STT_DEFAULT_MODEL": "bundled:tiny.en",
    "STT_EMBEDDED_WORKERS": "0",  # no batch worker: these tests only stream
    "STT_RT_EMBEDDED_WORKERS": "1",
    "STT_RT_MAX_BUFFER_S": "4",  # a client may be 4 s ahead of decoding, then it is paced
}
JFK = "en_jfk_inaugural.flac"
MARGIN = 0.15
"""Allowed WER above the corpus's batch baseline (base, beam 5): tiny.en, greedy, windows."""


def wait_streaming_ready(svc: LiveService, count: int = 1, timeout: float = 90.0) -> None:
    wait_until(
        lambda: svc.log().count("is taking sessions") >= count,
        timeout,
        "a streaming worker to become ready",
    )


@pytest.fixture(scope="module")
def rt(
    tmp_path_factory: pytest.TempPathFactory, module_pg_url: str, module_redis_url: str
) -> Iterator[LiveService]:
    svc = start_service(
        tmp_path_factory.mktemp("rt"),
        {"DATABASE_URL": module_pg_url, "REDIS_URL": module_redis_url, **RT_ENV},
    )
    wait_streaming_ready(svc)
    yield svc
    stop_service_proc(svc.proc)


def url(svc: LiveService, **query: object) -> str:
    base: dict[str, object] = {"model": "ink-whisper", "encoding": "pcm_s16le"}
    base["sample_rate"] = SAMPLE_RATE
    return ws_url(svc.url, **{**base, **query})


def audio_of(name: str) -> np.ndarray[Any, np.dtype[np.float32]]:
    return decode(clip(name).path)


def check_text(reference_names: list[str], text: str, detail: object = "") -> None:
    reference = " ".join(clip(n).reference for n in reference_names)
    baseline = max(clip(n).baseline_error for n in reference_names)
    assert error_rate(reference, text, "en") <= baseline + MARGIN, (text, detail)


# -- the official SDK -----------------------------------------------------------------------


async def _sdk_stream(svc: LiveService, audio: np.ndarray[Any, Any]) -> list[Any]:
    client = AsyncCartesia(api_key=svc.key, base_url=svc.url)
    events: list[Any] = []
    async with client.stt.manual_finalize.websocket(
        model="ink-whisper", encoding="pcm_s16le", sample_rate=SAMPLE_RATE, language="en"
    ) as ws:

        async def receive() -> None:
            async for event in ws:
                events.append(event)
                if event.type == "done":
                    return

        receiver = asyncio.create_task(receive())
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        step = SAMPLE_RATE // 10
        for start in range(0, len(audio), step):  # a microphone: 100 ms frames at real time
            due = t0 + start / SAMPLE_RATE
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            await ws.send_raw(pcm16(audio[start : start + step]))
        await ws.send("finalize")
        await ws.send("close")
        await asyncio.wait_for(receiver, 120)
    await client.close()
    return events


def check_sdk_stream(events: list[Any]) -> tuple[list[Any], list[Any]]:
    """The SDK's events for JFK at real time: interims as it speaks, finals that match the
    reference, then flush_done and done. Returns (transcripts, finals)."""
    kinds = [e.type for e in events]
    transcripts = [e for e in events if e.type == "transcript"]
    assert any(not e.is_final for e in transcripts), kinds  # interim results as it speaks
    finals = [e for e in transcripts if e.is_final]
    assert finals, kinds
    check_text([JFK], "".join(e.text for e in finals))
    assert kinds[-2:] == ["flush_done", "done"], kinds
    return transcripts, finals


def test_sdk_streams_a_clip_at_real_time(rt: LiveService) -> None:
    transcripts, finals = check_sdk_stream(asyncio.run(_sdk_stream(rt, audio_of(JFK))))
    first = transcripts[0]
    assert first.request_id and first.language == "en" and first.duration is not None
    # [{word, start, end}] as Cartesia's API sends them (the SDK parses them loosely)
    words = [(w.word, w.start, w.end) for w in finals[0].words or []]  # type: ignore[attr-defined]
    assert words and all(w and 0 <= s <= e <= 11.1 for w, s, e in words), words
    assert [s for _, s, _ in words] == sorted(s for _, s, _ in words)


# -- the protocol -----------------------------------------------------------------------------


def test_finalize_then_done(rt: LiveService) -> None:
    audio = audio_of(JFK)[: 4 * SAMPLE_RATE]
    got = asyncio.run(stream(url(rt), audio, headers=rt.headers(), speed=4.0))
    kinds = [e["type"] for e in got.events]
    assert kinds[-2:] == ["flush_done", "done"], kinds
    assert got.finals and "americans" in got.final_text.lower()
    # the final that answers `finalize` comes before its flush_done
    assert kinds.index("flush_done") > max(i for i, e in enumerate(got.events) if e.get("is_final"))
    assert got.close_code == 1000


def test_key_in_the_query_and_x_api_key(rt: LiveService) -> None:
    silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
    for target, headers in (
        (url(rt, api_key=rt.key), {}),
        (url(rt), {"X-API-Key": str(rt.key)}),
        (url(rt, access_token=rt.key, cartesia_version="2025-04-16"), {}),
    ):
        got = asyncio.run(stream(target, silence, headers=headers, speed=10.0))
        assert [e["type"] for e in got.events][-2:] == ["flush_done", "done"], got.events


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"encoding": "mp3"}, "encoding"),
        ({"encoding": ""}, "encoding"),
        ({"sample_rate": "fast"}, "sample_rate"),
        ({"sample_rate": "10"}, "sample_rate"),
        ({"model": "nope"}, "model"),
        ({"min_volume": "loud"}, "min_volume"),
    ],
)
def test_bad_parameters_are_an_error_event(
    rt: LiveService, query: dict[str, str], param: str
) -> None:
    got = asyncio.run(stream(url(rt, **query), np.zeros(1600, np.float32), headers=rt.headers()))
    assert got.events and got.events[0]["type"] == "error", got.events
    error = got.events[0]
    assert error["status_code"] == 400 and param in error["message"]
    assert {"title", "message", "status_code", "error_code"} <= error.keys()
    assert got.close_code == 1008


def test_unknown_command_is_an_error_event(rt: LiveService) -> None:
    got = asyncio.run(
        stream(url(rt), np.zeros(1600, np.float32), headers=rt.headers(), commands=("flush",))
    )
    assert got.events[-1]["type"] == "error" and "flush" in got.events[-1]["message"]
    assert got.close_code == 1008


def _session_keys(redis_url: str) -> set[bytes]:
    client = redis.Redis.from_url(redis_url)
    try:
        return set(client.scan_iter(match="stt:rt:s:*"))
    finally:
        client.close()


@pytest.mark.parametrize("key", [None, "sk-stt-wrong", ""])
def test_wrong_key_is_refused_before_audio(
    rt: LiveService, module_redis_url: str, key: str | None
) -> None:
    before = _session_keys(module_redis_url)
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    got = asyncio.run(stream(url(rt), audio_of(JFK)[:SAMPLE_RATE], headers=headers))
    assert got.events and got.events[0]["type"] == "error", got.events
    assert got.events[0]["status_code"] == 401 and len(got.events) == 1
    assert got.close_code == 1008
    assert not _session_keys(module_redis_url) - before  # no session, no audio


# -- limits -----------------------------------------------------------------------------------

LIMITS_ENV = {
    "STT_RT_SESSIONS_PER_KEY": "1",
    "STT_RT_SESSIONS_TOTAL": "2",
    "STT_RT_IDLE_TIMEOUT_S": "2",
    "STT_RT_MAX_SESSION_S": "6",
}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Limited]:
    """A service with tight limits, on its own Postgres and Redis databases."""
    from tests.conftest import _claim_redis_db, _create_database, _drop_database, _release_redis_db

    db = _create_database()
    pg = f"postgresql://postgres@127.0.0.1:5432/{db}"
    redis_url, handle = _claim_redis_db()
    svc = start_service(
        tmp_path_factory.mktemp("limited"),
        {"DATABASE_URL": pg, "REDIS_URL": redis_url, **RT_ENV, **LIMITS_ENV},
    )
    try:
        wait_streaming_ready(svc)
        settings = load_settings({"DATABASE_URL": pg})
        keys = [create_key(settings, f"k{i}", f"tenant-{i}")[0] for i in range(2)]
        yield Limited(svc, [str(svc.key), *keys], redis_url)
    finally:
        stop_service_proc(svc.proc)
        _release_redis_db(redis_url, handle)
        _drop_database(db)


@dataclass
class Limited:
    svc: LiveService
    keys: list[str]
    redis_url: str

    def active(self) -> int:
        client = redis.Redis.from_url(self.redis_url)
        try:
            return int(client.zcard(ACTIVE))
        finally:
            client.close()


def _no_open_session(limited: Limited) -> None:
    """Wait until the sessions an earlier test closed are released (the server lets go of
    them after the client's close, not before it returns): else the per-key limit refuses."""
    wait_until(lambda: limited.active() == 0, 30, "no open session")


async def _hold_then(limited: Limited, hold: list[str], probe: str) -> Received:
    """Open sessions with `hold` keys (kept open, counted), then one with `probe`."""
    from websockets.asyncio.client import connect

    svc = limited.svc
    await asyncio.to_thread(_no_open_session, limited)
    held = []
    try:
        for key in hold:
            ws = await connect(url(svc), additional_headers={"Authorization": f"Bearer {key}"})
            held.append(ws)
            await ws.send(pcm16(np.zeros(1600, np.float32)))
        await asyncio.to_thread(
            wait_until, lambda: limited.active() == len(hold), 30, "the held sessions"
        )
        return await stream(
            url(svc),
            np.zeros(1600, np.float32),
            headers={"Authorization": f"Bearer {probe}"},
        )
    finally:
        for ws in held:
            await ws.close()


def test_sessions_per_key_limit(limited: Limited) -> None:
    keys = limited.keys
    got = asyncio.run(_hold_then(limited, [keys[0]], keys[0]))
    assert got.events[0]["type"] == "error" and got.events[0]["status_code"] == 429
    assert "per key" in got.events[0]["message"] and got.close_code == 1013


def test_sessions_total_limit(limited: Limited) -> None:
    keys = limited.keys
    got = asyncio.run(_hold_then(limited, keys[:2], keys[2]))
    assert got.events[0]["type"] == "error" and "in all" in got.events[0]["message"]
    assert got.close_code == 1013


async def _idle(svc: LiveService) -> Received:
    from websockets.asyncio.client import connect

    got = Received()
    async with connect(url(svc), additional_headers=svc.headers()) as ws:
        await ws.send(pcm16(np.zeros(1600, np.float32)))
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:  # nothing more is sent: the server must end it
                got.events.append(json.loads(message))
        got.close_code = ws.close_code
    return got


def test_idle_timeout(limited: Limited) -> None:
    _no_open_session(limited)
    got = asyncio.wait_for(_idle(limited.svc), 60)
    result = asyncio.run(got)
    assert result.events[-1]["error_code"] == "idle_timeout", result.events
    assert result.close_code == 1008


def test_max_session_length(limited: Limited) -> None:
    svc = limited.svc
    _no_open_session(limited)
    silence = np.zeros(12 * SAMPLE_RATE, dtype=np.float32)  # longer than the 6 s allowed
    got = asyncio.run(stream(url(svc), silence, headers=svc.headers()))
    assert got.events[-1]["error_code"] == "session_too_long", got.events
    assert got.close_code == 1008


def test_a_client_sending_far_faster_than_real_time_is_paced_not_refused(
    rt: LiveService,
) -> None:
    """22 s of speech sent as fast as the socket takes it, over the 4 s bound: the server
    stops reading while decoding catches up (TCP paces the client); all of it is final."""
    speech = np.concatenate([audio_of(JFK)] * 2)
    got = asyncio.run(stream(url(rt), speech, headers=rt.headers(), speed=1000.0))
    assert not got.of_type("error"), got.events
    assert [e["type"] for e in got.events][-2:] == ["flush_done", "done"], got.events
    check_text([JFK, JFK], got.final_text)
    assert got.close_code == 1000


# -- failover ---------------------------------------------------------------------------------


def _streaming_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    full = {**os.environ, "PYTHONUNBUFFERED": "1", "STT_CPU_THREADS": "1", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "worker", "--realtime"],
        cwd=ROOT,
        env=full,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_worker_killed_mid_session_moves_the_session(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    env = {"DATABASE_URL": pg_url, "REDIS_URL": redis_url, **RT_ENV, "STT_RT_LEASE_S": "1.5"}
    svc = start_service(tmp_path / "svc", {**env, "STT_RT_EMBEDDED_WORKERS": "0"})
    logs = [tmp_path / f"rt{i}.log" for i in range(2)]
    workers = [_streaming_worker(env, log) for log in logs]
    client = redis.Redis.from_url(redis_url)
    try:
        wait_until(
            lambda: (
                all("taking sessions" in log.read_text() for log in logs if log.exists())
                and all(log.exists() for log in logs)
            ),
            90,
            "two streaming workers",
        )
        names = ["en_jfk_inaugural.flac", "en_librispeech_1272-128104-0000.wav"]
        gap = np.zeros(SAMPLE_RATE, dtype=np.float32)
        audio = np.concatenate([audio_of(names[0]), gap, audio_of(names[1])])
        killed: list[int] = []
        checkpoints: list[str] = []

        kill_at = int(len(audio) / SAMPLE_RATE * 10 * 0.6)  # 60% in, mid-speech

        async def kill_the_serving_worker(frame: int) -> None:
            if killed or frame < kill_at:
                return
            owners = [client.get(k) for k in client.scan_iter(match="stt:rt:s:*:owner")]
            finals = list(client.scan_iter(match="stt:rt:s:*:state"))
            if not owners or not finals or owners[0] is None:
                return
            owner = owners[0]
            name = owner.decode() if isinstance(owner, bytes) else str(owner)
            pid = int(name.rsplit(":", 1)[1])
            victim = next(w for w in workers if w.pid == pid)
            kill_group(victim, signal.SIGKILL)
            killed.append(pid)
            checkpoints.append(str(client.hget(finals[0], "checkpoint")))

        got = asyncio.run(
            stream(
                url(svc),
                audio,
                headers=svc.headers(),
                speed=1.0,
                on_frame=kill_the_serving_worker,
            )
        )
        assert killed, "the serving worker was never killed (no final before the end?)"
        kinds = [e["type"] for e in got.events]
        assert kinds[-2:] == ["flush_done", "done"], kinds
        trace = [
            (round(t, 1), e.get("is_final"), e.get("text"))
            for t, e in zip(got.times, got.events, strict=True)
        ]
        (tmp_path / "trace.json").write_text(json.dumps([killed, checkpoints, trace, got.events]))
        check_text(names, got.final_text, (killed, trace))
    finally:
        client.close()
        for w in workers:
            if w.poll() is None:
                kill_group(w, signal.SIGTERM)
        stop_service_proc(svc.proc)
