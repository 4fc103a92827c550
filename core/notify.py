"""Announcements over Redis pub/sub (the database stays the source of truth).

Two kinds: one channel where workers announce that a job ended (the message is its id),
and one channel per streaming job where its worker publishes the text as it grows."""

from __future__ import annotations

import json
from dataclasses import dataclass

JOB_EVENTS_CHANNEL = "stt:job-events"
"""One channel for every job; the message is the job id. The API holds one subscription."""


def segments_channel(job_id: str) -> str:
    """Where the worker publishes a streaming job's text, segment by segment."""
    return f"stt:job:{job_id}:segments"


@dataclass(frozen=True)
class TextUpdate:
    """The job's text so far is its previous text cut at `offset`, then `delta`.

    `offset` is the length of what this worker published before, so a job that is run again
    from the start (offset 0) replaces what an earlier attempt had published."""

    offset: int
    delta: str

    def encode(self) -> str:
        return json.dumps({"offset": self.offset, "delta": self.delta}, ensure_ascii=False)

    @classmethod
    def decode(cls, data: bytes | str) -> TextUpdate | None:
        try:
            body = json.loads(data)
            offset, delta = body["offset"], body["delta"]
        except (ValueError, TypeError, KeyError):
            return None
        if not isinstance(offset, int) or offset < 0 or not isinstance(delta, str):
            return None
        return cls(offset, delta)
