"""`stream=true`: the delta bookkeeping, the SSE framing as the OpenAI SDK decodes it, and
the event stream of a job (database polling, the embedded default's path)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from openai._streaming import SSEDecoder
from openai.types.audio import TranscriptionTextDeltaEvent, TranscriptionTextDoneEvent
from sqlalchemy import update

from api.app import build_state
from api.state import AppState
from api.streaming import LiveText, error_event, event, transcript_events
from core.migrate import upgrade
from core.models import Job, JobStatus, utcnow
from core.notify import TextUpdate, segments_channel
from core.settings import load_settings
from core.transcript import Segment, Transcript
from worker.whole import TextPublisher

SEGMENTS = [" Hello there,", " general Kenobi.", "  ", " You are a bold one. "]


def texts_so_far(segments: list[str]) -> list[str]:
    """What the worker reports after each segment: the segments so far, joined and stripped."""
    return ["".join(segments[: i + 1]).strip() for i in range(len(segments))]


def test_text_update_round_trip() -> None:
    update = TextUpdate(12, " général")
    assert TextUpdate.decode(update.encode().encode()) == update
    assert TextUpdate.decode(update.encode()) == update
    for bad in ["", "null", "[]", '{"offset": -1, "delta": ""}', '{"offset": 1}', "{"]:
        assert TextUpdate.decode(bad) is None
    assert segments_channel("abc") == "stt:job:abc:segments"


def test_deltas_join_to_the_final_text() -> None:
    live = LiveText()
    deltas = []
    for text in texts_so_far(SEGMENTS):
        live.offer(text)
        deltas.append(live.take())
    final = "".join(SEGMENTS).strip()
    deltas.append(live.finish(final))
    assert "".join(deltas) == final
    assert deltas[0] == "Hello there,"  # the first is left-stripped
    assert "" in deltas  # the blank segment adds nothing


def test_published_updates_replay_and_gaps() -> None:
    live = LiveText()
    live.apply(TextUpdate(0, "Hello"))
    assert live.take() == "Hello"
    live.apply(TextUpdate(9, " lost"))  # a message was missed: wait
    assert live.take() == ""
    live.apply(TextUpdate(5, " there"))
    assert live.take() == " there"
    live.apply(TextUpdate(0, "Hello"))  # the job was run again from the start
    live.apply(TextUpdate(5, " there, friend"))
    assert live.take() == ", friend"
    live.offer("Hello")  # an older snapshot from the database changes nothing
    assert live.take() == ""
    assert live.finish("Hello there, friend.") == "."


def test_finish_cannot_take_back_what_was_sent() -> None:
    live = LiveText()
    live.offer("Hello world")
    live.take()
    assert live.finish("Hullo world") == ""


class FakeRedis:
    def __init__(self) -> None:
        self.published: list[tuple[str, str]] = []

    def publish(self, channel: str, message: str) -> None:
        self.published.append((channel, message))


class Ctx:
    def __init__(self, client: Any) -> None:
        self.client = client

    def redis_client(self) -> Any:
        return self.client


def test_worker_publishes_what_each_segment_adds() -> None:
    fake = FakeRedis()
    publish = TextPublisher(Ctx(fake), "job1")  # type: ignore[arg-type]
    for i, text in enumerate(texts_so_far(SEGMENTS)):
        publish(float(i), text)
    assert {channel for channel, _ in fake.published} == {"stt:job:job1:segments"}
    updates = [TextUpdate.decode(m) for _, m in fake.published]
    assert updates == [
        TextUpdate(0, "Hello there,"),
        TextUpdate(12, " general Kenobi."),
        TextUpdate(28, "   You are a bold one."),
    ]
    live = LiveText()
    for u in updates:
        assert u is not None
        live.apply(u)
    assert live.take() == "".join(SEGMENTS).strip()


def test_publisher_without_redis_does_nothing() -> None:
    publish = TextPublisher(Ctx(None), "job1")  # type: ignore[arg-type]
    publish(1.0, "Hello")
    assert publish.client is None
    assert publish.sent == ""  # nothing counted as sent: the API reads text_so_far instead


class DownRedis(FakeRedis):
    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def publish(self, channel: str, message: str) -> None:
        self.attempts += 1
        raise ConnectionError("redis went away")


def test_publisher_stops_after_redis_fails() -> None:
    down = DownRedis()
    publish = TextPublisher(Ctx(down), "job1")  # type: ignore[arg-type]
    publish(1.0, "Hello")  # the failure is swallowed: the job goes on
    publish(2.0, "Hello there")
    assert down.attempts == 1  # it stopped publishing after the first failure
    assert publish.client is None


def decode(raw: bytes) -> list[dict[str, Any]]:
    """Events as the OpenAI SDK's own decoder reads them."""
    return [sse.json() for sse in SSEDecoder().iter_bytes(iter([raw]))]


def test_event_framing_is_what_the_sdk_reads() -> None:
    raw = (
        event({"type": "transcript.text.delta", "delta": "Ça va?\nOui."})
        + b": keep-alive\n\n"
        + event({"type": "transcript.text.done", "text": "Ça va?\nOui."})
    )
    assert raw.startswith(b'data: {"type":"transcript.text.delta"')
    first, done = decode(raw)
    assert TranscriptionTextDeltaEvent(**first).delta == "Ça va?\nOui."
    assert TranscriptionTextDoneEvent(**done).text == "Ça va?\nOui."
    (error,) = decode(error_event("transcription_failed", "boom"))
    assert error["error"]["message"] == "boom"  # the SDKs raise on `error`


# --- a job's events, polling the database -------------------------------------------------


@pytest.fixture
def state(tmp_path: Path) -> AppState:
    settings = load_settings({"STT_DATA_DIR": str(tmp_path), "STT_SYNC_TIMEOUT_S": "20"})
    upgrade(settings.database.url)
    return build_state(settings)


async def _add_job(state: AppState) -> str:
    job = Job(
        id="j" * 32,
        tenant="t",
        status=JobStatus.running.value,
        queue="q",
        model="whisper-1",
        model_spec="bundled:base",
        options={},
        created_at=utcnow(),
    )
    async with state.sessions() as session, session.begin():
        session.add(job)
    return job.id


async def _set(state: AppState, job_id: str, **values: Any) -> None:
    async with state.sessions() as session, session.begin():
        await session.execute(update(Job).where(Job.id == job_id).values(**values))


async def _collect(state: AppState, job_id: str, script: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []

    async def consume() -> None:
        async for chunk in transcript_events(state, job_id, None):
            events.extend(decode(chunk) if not chunk.startswith(b":") else [])

    task = asyncio.create_task(consume())
    await script(events)
    await asyncio.wait_for(task, 10)
    await state.engine.dispose()
    return events


async def _until(events: list[dict[str, Any]], count: int) -> None:
    """Wait (yielding to the consumer task) until `count` events have arrived, at most 10 s."""
    try:
        async with asyncio.timeout(10):
            while True:
                if len(events) >= count:
                    return
                await asyncio.sleep(0.01)  # a poll of the condition, bounded by the timeout
    except TimeoutError:
        raise AssertionError(f"only {len(events)} events: {events}") from None


def test_job_events_arrive_while_it_runs(state: AppState) -> None:
    final = "".join(SEGMENTS).strip()
    result = Transcript(
        text=final, language="en", duration=3.0, segments=[Segment(0, 0.0, 3.0, final)]
    ).to_dict()

    async def main() -> list[dict[str, Any]]:
        job_id = await _add_job(state)

        async def script(events: list[dict[str, Any]]) -> None:
            so_far = texts_so_far(SEGMENTS)
            await _set(state, job_id, text_so_far=so_far[0])
            await _until(events, 1)  # the first delta came before the job ended
            await _set(state, job_id, text_so_far=so_far[1])
            await _until(events, 2)
            await _set(state, job_id, status=JobStatus.succeeded.value, result=result)

        return await _collect(state, job_id, script)

    events = asyncio.run(main())
    assert [e["type"] for e in events][:2] == ["transcript.text.delta"] * 2
    assert events[-1] == {"type": "transcript.text.done", "text": final}
    deltas = [e["delta"] for e in events if e["type"] == "transcript.text.delta"]
    assert deltas[:2] == ["Hello there,", " general Kenobi."]
    assert "".join(deltas) == final


def test_a_failed_job_ends_with_an_error_event(state: AppState) -> None:
    async def main() -> list[dict[str, Any]]:
        job_id = await _add_job(state)

        async def script(events: list[dict[str, Any]]) -> None:
            await _set(
                state,
                job_id,
                status=JobStatus.failed.value,
                error_code="unsupported_audio",
                error_message="no audio stream",
            )

        return await _collect(state, job_id, script)

    (error,) = asyncio.run(main())
    assert error["type"] == "error"
    assert error["error"]["code"] == "unsupported_audio"
    assert json.dumps(error)


# --- over HTTP, in-process (no worker: the stream gives up at STT_SYNC_TIMEOUT_S) ----------


def test_stream_wins_over_prefer_async_and_times_out_with_an_error_event(tmp_path: Path) -> None:
    from litestar.testing import TestClient

    from api.app import create_app
    from tests.support import clip

    settings = load_settings(
        {"STT_DATA_DIR": str(tmp_path), "STT_API_KEY": "k", "STT_SYNC_TIMEOUT_S": "1"}
    )
    upgrade(settings.database.url)
    audio = clip("en_fleurs_004.ogg").path.read_bytes()
    with TestClient(create_app(settings)) as client:
        r = client.post(
            "/v1/audio/transcriptions",
            data={"model": "whisper-1", "stream": "true"},
            files={"file": ("a.ogg", audio)},
            headers={"Authorization": "Bearer k", "Prefer": "respond-async"},
        )
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert "preference-applied" not in r.headers
        job_id = r.headers["x-request-id"]
        (error,) = decode(r.content)
        assert error["type"] == "error" and error["error"]["code"] == "timeout"
        assert job_id in error["error"]["message"]
        job = client.get(f"/stt/jobs/{job_id}", headers={"Authorization": "Bearer k"}).json()
        assert job["status"] == "queued"  # no worker here; it goes on as a job


class BrokenFeed:
    """A Redis feed whose connection drops at once."""

    closed = False

    async def get(self, timeout: float) -> list[TextUpdate]:  # noqa: ASYNC109 (SegmentFeed.get's signature)
        raise ConnectionError("Redis went away")

    async def close(self) -> None:
        self.closed = True


def test_a_lost_feed_falls_back_to_the_database(state: AppState) -> None:
    final = "Hello there, general Kenobi."
    result = Transcript(text=final, language="en", duration=2.0).to_dict()
    feed = BrokenFeed()

    async def main() -> list[dict[str, Any]]:
        job_id = await _add_job(state)
        events: list[dict[str, Any]] = []

        async def consume() -> None:
            async for chunk in transcript_events(state, job_id, feed):  # type: ignore[arg-type]
                events.extend(decode(chunk) if not chunk.startswith(b":") else [])

        task = asyncio.create_task(consume())
        await _set(state, job_id, text_so_far="Hello there,")
        await _until(events, 1)
        await _set(state, job_id, status=JobStatus.succeeded.value, result=result)
        await asyncio.wait_for(task, 10)
        await state.engine.dispose()
        return events

    events = asyncio.run(main())
    assert feed.closed
    assert events[0] == {"type": "transcript.text.delta", "delta": "Hello there,"}
    assert "".join(e.get("delta", "") for e in events) == final == events[-1]["text"]


def test_a_lost_database_ends_the_stream_with_an_error_event(
    state: AppState, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    import api.streaming

    async def down(*_: Any) -> None:
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(api.streaming, "_snapshot", down)

    async def main() -> list[bytes]:
        chunks = [c async for c in transcript_events(state, "j" * 32, None)]
        await state.engine.dispose()
        return chunks

    *_, last = asyncio.run(main())
    (error,) = decode(last)
    assert error["error"]["code"] == "service_unavailable" and "j" * 32 in error["error"]["message"]
