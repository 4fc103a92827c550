"""One realtime session on a streaming worker: input stream in, events out, checkpoints.

The session resumes from its checkpoint (the input entry holding the last final's end), so
a worker taking over from a dead one replays only the audio since the last final.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from redis import Redis

from core.audio import SAMPLE_RATE, Audio, RawFormat, raw_to_float
from core.realtime import (
    KIND_AUDIO,
    KIND_DONE,
    KIND_FINALIZE,
    Checkpoint,
    SessionKeys,
    SessionSpec,
    done_event,
    flush_done_event,
    transcript_event,
)
from worker.realtime.agreement import Result, StreamState
from worker.realtime.local_store import LocalStore

log = logging.getLogger("stt.realtime")

OUT_MAXLEN = 2000
READ_COUNT = 50


class Resampler:
    """Raw PCM chunks in the session's format → 16 kHz float32 (stateful across chunks)."""

    def __init__(self, fmt: RawFormat) -> None:
        self.fmt = fmt
        self._av = (
            None
            if fmt.sample_rate == SAMPLE_RATE
            else av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        )
        self._carry = b""

    def __call__(self, data: bytes) -> Audio:
        data = self._carry + data
        usable = len(data) - len(data) % self.fmt.sample_width
        self._carry = data[usable:]
        samples = raw_to_float(data[:usable], self.fmt)
        if self._av is None or samples.size == 0:
            return samples
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self.fmt.sample_rate
        out = [
            np.asarray(f.to_ndarray(), dtype=np.float32).reshape(-1)
            for f in self._av.resample(frame)
        ]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


class Session:
    """Serve one session until `done`, the client leaves, or this worker loses the lease."""

    def __init__(
        self,
        spec: SessionSpec,
        redis: Redis | LocalStore,
        make_state: Callable[[SessionSpec, Checkpoint], StreamState],
        lost: threading.Event,
    ) -> None:
        self.spec = spec
        self.redis = redis
        self.keys = SessionKeys(spec.sid)
        self.make_state = make_state
        self.lost = lost
        """Set by the pool when this worker's lease on the session is gone."""
        self.fmt = RawFormat(spec.encoding, spec.sample_rate)
        self.language = spec.language or "en"

    def run(self) -> None:
        raw_cp = self.redis.hget(self.keys.state, "checkpoint")
        cp = Checkpoint.from_json(raw_cp)  # type: ignore[arg-type]
        state = self.make_state(self.spec, cp)
        state.final_end = cp.final_end_s
        state.prompt, state.finals = cp.prompt, cp.finals
        resample = Resampler(self.fmt)
        received_s = cp.entry_start_s
        entries: deque[tuple[str, float]] = deque()
        entries.append((cp.entry_id, cp.entry_start_s))
        first = True
        cursor = cp.entry_id
        replay_until = cp.final_end_s
        while not self.lost.is_set() and not self.redis.exists(self.keys.closed):
            batch = self._read(cursor, first, block=not state.ready())
            first = False
            for entry_id, fields in batch:
                cursor = entry_id
                kind = fields.get(b"k", b"").decode()
                if kind == KIND_AUDIO:
                    if not entries or entries[-1][0] != entry_id:
                        entries.append((entry_id, received_s))
                    data = fields.get(b"d", b"")
                    received_s += (len(data) // self.fmt.sample_width) / self.fmt.sample_rate
                    state.append(resample(data))
                    if replay_until > state.window_start:
                        state.drop_before(min(replay_until, state.end_s))
                elif _after(entry_id, cp.seen_id) and kind in (KIND_FINALIZE, KIND_DONE):
                    self._emit(state.flush(), state, entries, entry_id, checkpoint=True)
                    if kind == KIND_DONE:
                        self._send(done_event(self.spec.sid))
                        return
                    self._send(flush_done_event(self.spec.sid))
            # With more input already waiting, catch up before decoding: an interim of
            # audio seconds old is of no use, and one decode over all of it is cheaper.
            behind = len(batch) >= READ_COUNT
            if state.ready() and not behind:
                self._emit(state.step(), state, entries, cursor)
            if batch or state.ready():
                self.redis.hset(self.keys.state, "decoded_s", f"{state.decoded_to:.3f}")

    def _read(self, cursor: str, first: bool, block: bool) -> list[tuple[str, dict[bytes, bytes]]]:
        if first:  # the checkpoint's entry itself is replayed (XRANGE is inclusive)
            rows: Any = self.redis.xrange(
                self.keys.inbound, min=cursor if cursor != "0" else "-", count=READ_COUNT
            )
        else:
            reply: Any = self.redis.xread(
                {self.keys.inbound: cursor}, count=READ_COUNT, block=200 if block else None
            )
            rows = reply[0][1] if reply else []
        return [(i.decode() if isinstance(i, bytes) else str(i), f) for i, f in rows]

    def _emit(
        self,
        results: list[Result],
        state: StreamState,
        entries: deque[tuple[str, float]],
        seen_id: str,
        checkpoint: bool = False,
    ) -> None:
        """Send the results; a final (or `checkpoint`) moves the checkpoint in the same
        transaction, then the input before it is trimmed."""
        pipe = self.redis.pipeline(transaction=True)
        moved = checkpoint
        for r in results:
            event = transcript_event(
                self.spec.sid,
                text=r.text,
                is_final=r.is_final,
                duration=r.end_s - r.start_s,
                language=self.language,
                words=[(w.text.strip(), w.start, w.end) for w in r.words],
            )
            pipe.xadd(self.keys.outbound, {"e": json.dumps(event)}, maxlen=OUT_MAXLEN)
            moved = moved or r.is_final
        if moved:
            resume_at = state.window_start
            while len(entries) > 1 and entries[1][1] <= resume_at:
                entries.popleft()
            entry_id, entry_start = entries[0]
            cp = Checkpoint(
                entry_id=entry_id,
                entry_start_s=entry_start,
                final_end_s=resume_at,
                prompt=state.prompt[-200:],
                finals=state.finals,
                seen_id=seen_id,
            )
            pipe.hset(self.keys.state, "checkpoint", cp.to_json())
        pipe.execute()
        if moved and entries[0][0] != "0":
            self.redis.xtrim(self.keys.inbound, minid=entries[0][0])

    def _send(self, event: dict[str, Any]) -> None:
        self.redis.xadd(self.keys.outbound, {"e": json.dumps(event)}, maxlen=OUT_MAXLEN)


def _after(entry_id: str, seen_id: str) -> bool:
    """Whether stream entry `entry_id` comes after `seen_id` (ids are `ms-seq`)."""

    def parts(i: str) -> tuple[int, int]:
        ms, _, seq = i.partition("-")
        return int(ms), int(seq or 0)

    return parts(entry_id) > parts(seen_id)
