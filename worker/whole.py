"""A job transcribed whole by one worker: decode → engine → lifecycle.finish."""

from __future__ import annotations

import logging

from core.audio import decode
from core.errors import FailureCode, UnsupportedMedia
from core.notify import TextUpdate, segments_channel
from worker import lifecycle
from worker.context import WorkerContext
from worker.engine import Cancelled, transcribe_options
from worker.heartbeat import job_heartbeat
from worker.lifecycle import Claim

log = logging.getLogger("stt.worker")


class TextPublisher:
    """For a streaming job: publishes the text as each segment adds to it (Redis pub/sub),
    so the API can send it on at once. Without Redis, the API reads `text_so_far`."""

    def __init__(self, ctx: WorkerContext, job_id: str) -> None:
        self.client = ctx.redis_client()
        self.channel = segments_channel(job_id)
        self.sent = ""

    def __call__(self, seconds_done: float, text: str) -> None:
        if self.client is None or text == self.sent:
            return
        offset = len(self.sent) if text.startswith(self.sent) else 0
        try:
            self.client.publish(self.channel, TextUpdate(offset, text[offset:]).encode())
        except Exception:  # the stream falls back to the database; the job goes on
            log.warning("could not publish text for %s; stopped publishing", self.channel)
            self.client = None
        self.sent = text


def run_whole(ctx: WorkerContext, claim: Claim) -> None:
    """Transcribe a claimed job in one piece and store its transcript."""
    job_id = claim.job_id
    try:
        # An object store's audio is streamed to this machine's scratch dir for the decode.
        with ctx.storage.local_copy(claim.audio_key) as path:
            audio = decode(path, claim.options.raw)
    except UnsupportedMedia as exc:
        lifecycle.fail(ctx, job_id, FailureCode(exc.code), exc.message)
        return
    except FileNotFoundError:
        lifecycle.fail(ctx, job_id, FailureCode.audio_missing, "the job's audio is gone")
        return
    try:
        with job_heartbeat(ctx, job_id, len(audio) / 16000) as beat:
            # A first model load can outlast the stale window: the heartbeat covers it.
            model, config = ctx.model_for(claim.model_spec)
            publish = TextPublisher(ctx, job_id) if claim.options.stream else None

            def progress(seconds_done: float, text: str) -> None:
                beat.progress(seconds_done, text)
                if publish is not None:
                    publish(seconds_done, text)

            transcript = ctx.transcribe(
                model,
                audio,
                transcribe_options(claim.options, claim.language),
                config,
                on_progress=progress,
                should_stop=beat.stop_requested.is_set,
            )
    except Cancelled:
        log.info("job %s stopped: cancelled or taken over", job_id)
        return
    lifecycle.finish(ctx, job_id, transcript)
