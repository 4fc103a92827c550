"""Job-ended announcements over Redis pub/sub (the database stays the source of truth)."""

from __future__ import annotations

JOB_EVENTS_CHANNEL = "stt:job-events"
"""One channel for every job; the message is the job id. The API holds one subscription."""
