"""The shape of every JSON response, as msgspec Structs: handlers return these, and the
OpenAPI document is generated from them (each becomes a component schema).

Field order is the wire order. A field that is `UNSET` is left out of the body (the
transcript's `words` unless word timestamps were asked for; verbose_json's optional parts).
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import msgspec
from msgspec import UNSET, Struct, UnsetType

# --- errors -------------------------------------------------------------------------------


class CartesiaError(Struct):
    """An error on the Cartesia paths (`/stt…`)."""

    error_code: str
    title: str
    message: str
    request_id: str


class OpenAIErrorDetail(Struct):
    message: str
    type: str
    param: str | None
    code: str


class OpenAIError(Struct):
    """An error on the OpenAI paths."""

    error: OpenAIErrorDetail


# --- transcripts --------------------------------------------------------------------------


class WordTimestamp(Struct):
    word: str
    start: float
    end: float
    speaker: str | UnsetType = UNSET
    """Who said it (a diarized request)."""


class SpeakerTurn(Struct):
    """Consecutive words of one speaker (a diarized request)."""

    start: float
    end: float
    text: str
    speaker: str


class Usage(Struct):
    type: Literal["duration"]
    seconds: int


class TranscriptResponse(Struct):
    """The `json` body of both families (Cartesia's batch STT shape)."""

    type: Literal["transcript"]
    request_id: str
    text: str
    language: str
    duration: float
    words: list[WordTimestamp] | UnsetType = UNSET
    usage: Usage | UnsetType = UNSET
    """OpenAI's `Transcription.usage` (a transcription's, not a translation's)."""
    speakers: list[SpeakerTurn] | UnsetType = UNSET


class VerboseSegment(Struct):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class VerboseTranscription(Struct):
    """OpenAI's `verbose_json`."""

    task: str
    language: str
    duration: float
    text: str
    segments: list[VerboseSegment] | UnsetType = UNSET
    words: list[WordTimestamp] | UnsetType = UNSET
    usage: Usage | UnsetType = UNSET


class DiarizedSegment(Struct):
    """`openai.types.audio.TranscriptionDiarizedSegment` (and the stream's segment event)."""

    type: Literal["transcript.text.segment"]
    id: str
    start: float
    end: float
    text: str
    speaker: str


class DiarizedTranscription(Struct):
    """OpenAI's `diarized_json` (`openai.types.audio.TranscriptionDiarized`)."""

    task: Literal["transcribe"]
    duration: float
    text: str
    segments: list[DiarizedSegment]
    usage: Usage


# --- jobs ---------------------------------------------------------------------------------

JobStatusName = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobError(Struct):
    code: str | None
    message: str | None


class JobResponse(Struct):
    """A job: its status, progress and, once it succeeded, its transcript."""

    id: str
    status: JobStatusName
    model: str
    language: str | None
    created_at: str | None
    started_at: str | None
    completed_at: str | None
    duration: float | None
    progress: float
    attempts: int
    """Attempts started so far (a worker lost mid-job, or trouble that passes, adds one)."""
    retrying: bool
    """On another try: queued again after a lost or handed-back attempt, or running a later
    attempt (progress and `started_at` are those of the current attempt)."""
    text_so_far: str | None
    error: JobError | None
    result: TranscriptResponse | None


class JobList(Struct):
    """A page of the caller's jobs, newest first (without their transcripts)."""

    data: list[JobResponse]
    has_more: bool
    next_cursor: str | None


# --- models and health --------------------------------------------------------------------


class ModelCard(Struct):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(Struct):
    object: Literal["list"]
    data: list[ModelCard]


class Liveness(Struct):
    status: str


class Readiness(Struct):
    status: Literal["ok", "unavailable"]
    checks: dict[str, bool]


T = TypeVar("T")


def typed(body: dict[str, Any], schema: type[T]) -> T:
    """A body built as a dict, checked against its schema (a mismatch is a bug: 500)."""
    return msgspec.convert(body, schema)
