"""`stream=true`: the transcript as server-sent events, in OpenAI's shape.

    data: {"type": "transcript.text.delta", "delta": "And so my fellow Americans,"}
    data: {"type": "transcript.text.delta", "delta": " ask not what your country…"}
    data: {"type": "transcript.text.done", "text": "And so my fellow Americans, ask not…"}

The worker publishes the text as each segment is recognised (Redis pub/sub, on a channel the
API subscribes to before the job is queued); without Redis the API reads the job's
`text_so_far` from the database instead. Either way every delta extends what was sent, so
the deltas joined are exactly the final text, which the `done` event carries.

A diarized request learns who spoke only once the job has ended, so it gets no deltas: one
`transcript.text.segment` event per speaker turn (with its `speaker`), then the `done` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import select

from api.render import diarized_segments
from api.state import AppState
from core.jobview import failure_of
from core.models import Job, JobStatus
from core.notify import TextUpdate, segments_channel
from core.transcript import Transcript

log = logging.getLogger("stt.stream")

MEDIA_TYPE = "text/event-stream"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
TICK_S = 0.25
"""How often the stream looks for the job's end when nothing arrives."""
KEEPALIVE_S = 15.0
"""A comment line this often while nothing else is sent, so proxies keep the connection."""


def event(body: dict[str, Any]) -> bytes:
    """One server-sent event: a `data:` line of JSON and a blank line (as OpenAI sends)."""
    return f"data: {json.dumps(body, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


def error_event(code: str, message: str) -> bytes:
    """An error after the response has begun; both SDKs raise it (`data.error`)."""
    return event(
        {
            "type": "error",
            "error": {"message": message, "type": "server_error", "param": None, "code": code},
        }
    )


class LiveText:
    """The job's text as it grows, and what was sent of it.

    Every version of the text (published by the worker, or read from the database) is
    `"".join(segments).strip()` over the segments so far, so each is a prefix of the final
    text; a delta is sent only when it extends what was sent."""

    def __init__(self) -> None:
        self.text = ""
        self.sent = ""

    def apply(self, update: TextUpdate) -> None:
        if update.offset <= len(self.text):  # beyond it, a message was lost: wait for more
            self.text = self.text[: update.offset] + update.delta

    def offer(self, text: str) -> None:
        """A snapshot from the database, used when it is ahead of the published text."""
        if len(text) > len(self.text) and text.startswith(self.text):
            self.text = text

    def take(self) -> str:
        """The part not sent yet, if it extends what was sent."""
        if len(self.text) <= len(self.sent) or not self.text.startswith(self.sent):
            return ""
        delta, self.sent = self.text[len(self.sent) :], self.text
        return delta

    def finish(self, final: str) -> str:
        """The last delta, so that all of them joined equal `final`."""
        if not final.startswith(self.sent):
            log.warning("streamed text diverged from the final text (the job was run again)")
            return ""
        delta, self.sent = final[len(self.sent) :], final
        return delta


class SegmentFeed:
    """A subscription to one job's text channel; opened before the job is queued."""

    def __init__(self, client: aioredis.Redis, pubsub: Any) -> None:
        self.client, self.pubsub = client, pubsub

    @classmethod
    async def open(cls, redis_url: str | None, job_id: str) -> SegmentFeed | None:
        """None without Redis, or if it cannot be reached (the database is read instead)."""
        if not redis_url:
            return None
        client = aioredis.Redis.from_url(redis_url, socket_timeout=5)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(segments_channel(job_id))
        except Exception:
            log.warning("could not subscribe to the text of job %s; polling instead", job_id)
            await cls(client, pubsub).close()
            return None
        return cls(client, pubsub)

    async def get(self, timeout: float) -> list[TextUpdate]:  # noqa: ASYNC109
        """The updates that arrive within `timeout` (waiting for the first only)."""
        updates: list[TextUpdate] = []
        wait = timeout
        while True:
            message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
            if message is None:
                return updates
            if message.get("type") == "message":
                update = TextUpdate.decode(message["data"])
                if update is not None:
                    updates.append(update)
            wait = 0.0

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.pubsub.aclose()  # type: ignore[no-untyped-call]
        with contextlib.suppress(Exception):
            await self.client.aclose()


async def _snapshot(state: AppState, job_id: str) -> tuple[str | None, str | None]:
    async with state.sessions() as session:
        row = (
            await session.execute(select(Job.status, Job.text_so_far).where(Job.id == job_id))
        ).one_or_none()
    return (None, None) if row is None else (str(row.status), row.text_so_far)


async def _outcome(state: AppState, job_id: str) -> Job | None:
    async with state.sessions() as session:
        return (await session.execute(select(Job).where(Job.id == job_id))).scalar_one_or_none()


async def transcript_events(
    state: AppState, job_id: str, feed: SegmentFeed | None, *, diarized: bool = False
) -> AsyncIterator[bytes]:
    """Deltas while the job runs, then `transcript.text.done` (or an error event).

    If Redis fails mid-stream the database is read instead; if the database fails, the
    stream ends with an error event (the job goes on, and can be fetched later)."""
    live = LiveText()
    try:
        ended = False
        async for chunk in _while_running(state, job_id, feed, live, deltas=not diarized):
            if chunk == _ENDED:
                ended = True
            else:
                yield chunk
        if not ended:
            return
        job = await _outcome(state, job_id)
    except Exception:
        log.warning("stream of job %s lost the database", job_id, exc_info=True)
        yield error_event(
            "service_unavailable",
            f"the database is unavailable; the transcription goes on as job {job_id}",
        )
        return
    for chunk in _final(job, live, diarized=diarized):
        yield chunk


_ENDED = b""
"""Yielded by `_while_running` (never sent) when the job has ended."""


async def _while_running(
    state: AppState, job_id: str, feed: SegmentFeed | None, live: LiveText, *, deltas: bool = True
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + state.settings.limits.sync_timeout_s
    # A comment at once: the response has begun before the first segment is recognised.
    next_poll = next_keepalive = loop.time()
    status: str | None = None
    try:
        with state.waiter.watch(job_id) as announced:
            while True:
                if feed is not None:
                    try:
                        updates = await feed.get(TICK_S)
                    except Exception:
                        log.warning("lost the text feed of job %s; polling instead", job_id)
                        await feed.close()
                        feed, updates = None, []
                    for update in updates:
                        live.apply(update)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(announced.wait(), TICK_S)
                now = loop.time()
                if announced.is_set() or now >= next_poll:
                    announced.clear()
                    status, so_far = await _snapshot(state, job_id)
                    next_poll = now + state.waiter.poll_interval
                    if so_far:
                        live.offer(so_far)
                if status is None or JobStatus(status).ended:
                    yield _ENDED
                    return
                delta = live.take() if deltas else ""
                if delta:
                    yield event({"type": "transcript.text.delta", "delta": delta})
                    next_keepalive = now + KEEPALIVE_S
                elif now >= next_keepalive:
                    yield b": keep-alive\n\n"
                    next_keepalive = now + KEEPALIVE_S
                if now >= deadline:
                    yield error_event(
                        "timeout",
                        f"the transcription did not finish within "
                        f"{state.settings.limits.sync_timeout_s:.0f} s; it goes on as job {job_id}",
                    )
                    return
    finally:
        if feed is not None:
            await feed.close()


def _final(job: Job | None, live: LiveText, *, diarized: bool = False) -> list[bytes]:
    if job is None:
        return [error_event("transcription_failed", "the job disappeared while it ran")]
    if job.status == JobStatus.succeeded.value and job.result is not None:
        transcript = Transcript.from_dict(job.result)
        text = transcript.text
        if diarized:
            segments = [event(segment) for segment in diarized_segments(transcript)]
            return [*segments, event({"type": "transcript.text.done", "text": text})]
        delta = live.finish(text)
        done = event({"type": "transcript.text.done", "text": text})
        return [event({"type": "transcript.text.delta", "delta": delta}), done] if delta else [done]
    failure = failure_of(job)
    if failure is None:  # ended, yet neither a transcript nor a failure: a bug
        return [error_event("transcription_failed", "the transcription failed")]
    return [error_event(failure.code, failure.message)]
