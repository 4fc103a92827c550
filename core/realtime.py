"""The realtime contract between the API (which holds the WebSocket) and streaming workers.

Everything travels through Redis, so any API process can hold a socket and any streaming
worker can serve it:

    stt:rt:sessions          stream of placements; consumer group `workers` (one claims each)
    stt:rt:s:{sid}:in        the client's audio frames and commands, in order (`k`, `d`)
    stt:rt:s:{sid}:out       events for the client (`e`: the JSON text to send)
    stt:rt:s:{sid}:owner     the serving worker's lease (a key with a TTL it keeps renewing)
    stt:rt:s:{sid}:state     the checkpoint at the last final, and how far decoding has got
    stt:rt:s:{sid}:closed    set by the API when the socket is gone: the worker stops
    stt:rt:active            sorted set of open sessions (score: lease expiry), for limits
    stt:rt:active:{tenant}   the same per tenant

The checkpoint (`state`) is written in the same transaction as the final event it follows,
so a worker taking over replays the input from there: the client sees no final twice and
none lost.

Without Redis (the embedded default) the API reaches the one local streaming worker over
a WebSocket on a Unix socket in the data directory (`local_socket_path`), see
`worker/realtime/local.py`: one connection per session, the same events.
"""

from __future__ import annotations

import hashlib
import json
import struct
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.errors import SttError
from core.settings import Settings

PLACEMENTS = "stt:rt:sessions"
WORKER_GROUP = "workers"
ACTIVE = "stt:rt:active"

KIND_AUDIO = "a"
KIND_FINALIZE = "f"
KIND_DONE = "d"

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
"""Refused for good (bad key, bad parameters, a limit of the session): SDKs do not retry."""
CLOSE_TRY_LATER = 1013
"""Over the sessions limits: worth trying again later."""
CLOSE_INTERNAL = 1011


def active_for(tenant: str) -> str:
    return f"{ACTIVE}:{tenant}"


LOCAL_SOCKET = "realtime.sock"
_SUN_PATH_MAX = 100
"""A Unix socket's path must fit `sun_path` (108 bytes on Linux, 104 on macOS)."""


def local_socket_path(settings: Settings) -> Path:
    """Where the local streaming worker listens (no Redis): in the data directory, or, when
    that path is too long for a Unix socket, in the temp dir under a name derived from it."""
    path = settings.storage.data_dir.resolve() / LOCAL_SOCKET
    if len(str(path).encode()) <= _SUN_PATH_MAX:
        return path
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"stt-rt-{digest}.sock"


@dataclass(frozen=True)
class SessionKeys:
    """The Redis keys of one session."""

    sid: str

    def _key(self, name: str) -> str:
        return f"stt:rt:s:{self.sid}:{name}"

    @property
    def inbound(self) -> str:
        return self._key("in")

    @property
    def outbound(self) -> str:
        return self._key("out")

    @property
    def owner(self) -> str:
        return self._key("owner")

    @property
    def state(self) -> str:
        return self._key("state")

    @property
    def closed(self) -> str:
        return self._key("closed")

    def all(self) -> list[str]:
        return [self.inbound, self.outbound, self.owner, self.state, self.closed]


@dataclass(frozen=True)
class SessionSpec:
    """What a session was opened with: the placement message (to/from dict)."""

    sid: str
    model_spec: str
    language: str | None
    encoding: str
    sample_rate: int
    min_volume: float
    max_silence_s: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> SessionSpec:
        data: dict[str, Any] = json.loads(raw)
        return cls(
            sid=str(data["sid"]),
            model_spec=str(data["model_spec"]),
            language=None if data.get("language") is None else str(data["language"]),
            encoding=str(data["encoding"]),
            sample_rate=int(data["sample_rate"]),
            min_volume=float(data["min_volume"]),
            max_silence_s=float(data["max_silence_s"]),
        )


@dataclass(frozen=True)
class Checkpoint:
    """Where a new worker resumes: the input entry to replay from, the audio time that
    entry starts at, the time of the last final, and the text before it (the prompt)."""

    entry_id: str = "0"
    entry_start_s: float = 0.0
    final_end_s: float = 0.0
    prompt: str = ""
    finals: int = 0
    seen_id: str = "0"
    """The last input entry handled: commands up to it are not replayed."""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> Checkpoint:
        if not raw:
            return cls()
        data: dict[str, Any] = json.loads(raw)
        return cls(
            entry_id=str(data["entry_id"]),
            entry_start_s=float(data["entry_start_s"]),
            final_end_s=float(data["final_end_s"]),
            prompt=str(data["prompt"]),
            finals=int(data["finals"]),
            seen_id=str(data.get("seen_id", "0")),
        )


def transcript_event(
    sid: str,
    *,
    text: str,
    is_final: bool,
    duration: float,
    language: str,
    words: list[tuple[str, float, float]] | None = None,
) -> dict[str, Any]:
    """Cartesia's `transcript` event. `words` is a list of `{word, start, end}` as Cartesia's
    API sends it (and as `/stt` answers); the Python SDK types it loosely and parses it."""
    event: dict[str, Any] = {
        "type": "transcript",
        "request_id": sid,
        "is_final": is_final,
        "text": text,
        "duration": round(duration, 3),
        "language": language,
    }
    if words is not None:
        event["words"] = [
            {"word": w, "start": round(s, 3), "end": round(e, 3)} for w, s, e in words
        ]
    return event


def flush_done_event(sid: str) -> dict[str, Any]:
    return {"type": "flush_done", "request_id": sid}


def done_event(sid: str) -> dict[str, Any]:
    return {"type": "done", "request_id": sid}


@dataclass(frozen=True)
class SessionError:
    """Why a session is refused or ended: an error event, then a close code."""

    status: int
    code: str
    title: str
    message: str
    close: int = CLOSE_POLICY

    @classmethod
    def of(cls, error: SttError, close: int = CLOSE_POLICY) -> SessionError:
        return cls(error.status, error.code, error.title, error.message, close)


def over_limit(message: str) -> SessionError:
    """Over the sessions per key or in all: worth trying again later."""
    return SessionError(429, "rate_limited", "Too many sessions", message, CLOSE_TRY_LATER)


def no_worker(detail: str) -> SessionError:
    """No streaming worker could take the session."""
    return SessionError(503, "no_streaming_worker", "Service unavailable", detail, CLOSE_TRY_LATER)


def lost_worker(detail: str) -> SessionError:
    """The worker serving the session is gone and no other can take it over."""
    return SessionError(
        503, "no_streaming_worker", "Service unavailable", f"{detail}; try again", CLOSE_INTERNAL
    )


def error_event(sid: str | None, error: SessionError) -> dict[str, Any]:
    """Cartesia's websocket error shape (`STTErrorResponse`)."""
    return {
        "type": "error",
        "status_code": error.status,
        "error_code": error.code,
        "title": error.title,
        "message": error.message,
        "request_id": sid,
    }


# -- the local backend's wire (api/realtime_local.py, worker/realtime/local.py) --------------

LOCAL_PROGRESS = struct.Struct("!d")
"""A binary message from the local worker: seconds of the session's audio decoded."""


def local_opening(spec: SessionSpec, tenant: str) -> str:
    return json.dumps({"spec": spec.to_json(), "tenant": tenant})


def parse_local_opening(text: str | bytes) -> tuple[SessionSpec, str]:
    data: dict[str, Any] = json.loads(text)
    return SessionSpec.from_json(data["spec"]), str(data["tenant"])


def local_refusal(error: SessionError) -> str:
    return json.dumps({"refused": asdict(error)})


def local_ready() -> str:
    return json.dumps({"ready": True})


def parse_local_answer(text: str | bytes) -> SessionError | None:
    """None when the worker took the session, else why it refused."""
    data: dict[str, Any] = json.loads(text)
    refused = data.get("refused")
    return None if refused is None else SessionError(**refused)
