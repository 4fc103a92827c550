"""One error tree for the whole service. Each family of paths renders it in its own shape.

SttError                     (status, code)
├── InvalidRequest           400 invalid_request
│   ├── UnknownModel         400 model_not_found
│   ├── InvalidSpeakerReference  400 invalid_speaker_reference
│   └── DiarizationUnavailable   400 diarization_unavailable
├── Unauthorized             401 invalid_api_key
├── RequestTimeout           408 request_timeout   (the body arrived too slowly)
├── NotFound                 404 not_found
│   └── ModelNotFound        404 model_not_found   (OpenAI's `/models/{id}`)
├── Conflict                 409 conflict
├── PayloadTooLarge          413 payload_too_large
├── UnsupportedMedia         415 unsupported_audio
├── RateLimited              429 rate_limited
├── ServiceUnavailable       503 service_unavailable
│   └── StorageFault         503 storage_unavailable   (EROFS, EACCES, EIO: Retry-After)
├── InsufficientStorage      507 insufficient_storage  (ENOSPC, EDQUOT)
└── TranscriptionFailed      500 transcription_failed  (the worker failed; never client input)
ConfigError                  raised at start-up for bad settings, never over HTTP

A failed job stores one `FailureCode` (its `error_code`): the codes of the tree that a
worker can end a job with, plus the few that only the job's life can give.

`ALL_ERRORS` is every class under `SttError`, walked from the tree, so a new class is
picked up by the HTTP mapping's test (`api/errors.py` must map it) without a list to edit.
"""

from __future__ import annotations

import enum


class ConfigError(ValueError):
    """A setting has a value the service cannot use."""


class SttError(Exception):
    """Base of every error a client can see."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or {}


class InvalidRequest(SttError):
    status = 400
    code = "invalid_request"
    title = "Invalid request"


class UnknownModel(InvalidRequest):
    code = "model_not_found"
    title = "Unknown model"


class Unauthorized(SttError):
    status = 401
    code = "invalid_api_key"
    title = "Unauthorized"


class NotFound(SttError):
    status = 404
    code = "not_found"
    title = "Not found"


class ModelNotFound(NotFound):
    """OpenAI's code for an unknown model id on `/models/{id}`."""

    code = "model_not_found"
    title = "Model not found"


class Conflict(SttError):
    status = 409
    code = "conflict"
    title = "Conflict"


class PayloadTooLarge(SttError):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class UnsupportedMedia(SttError):
    status = 415
    code = "unsupported_audio"
    title = "Unsupported audio"


class RateLimited(SttError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"


class ServiceUnavailable(SttError):
    status = 503
    code = "service_unavailable"
    title = "Service unavailable"


class TranscriptionFailed(SttError):
    status = 500
    code = "transcription_failed"
    title = "Transcription failed"


class FailureCode(enum.StrEnum):
    """Why a job ended without a transcript (`jobs.error_code`)."""

    transcription_failed = TranscriptionFailed.code
    unsupported_audio = UnsupportedMedia.code
    audio_missing = "audio_missing"
    too_many_attempts = "too_many_attempts"
    cancelled = "cancelled"
    invalid_speaker_reference = "invalid_speaker_reference"
    """A known speaker's reference holds too little speech (found by the worker's VAD)."""


class InvalidSpeakerReference(InvalidRequest):
    """A known-speaker reference clip cannot serve as a voice print: it does not decode, or
    it is too short, too long or holds too little speech (the reference clips are 2-10 s)."""

    code = "invalid_speaker_reference"
    title = "Invalid speaker reference"


class DiarizationUnavailable(InvalidRequest):
    """Speaker labels were asked for where no diarization backend is configured or loadable."""

    code = "diarization_unavailable"
    title = "Diarization unavailable"


class RequestTimeout(SttError):
    """The request's body did not arrive within the body read timeout."""

    status = 408
    code = "request_timeout"
    title = "Request timeout"


class StorageFault(ServiceUnavailable):
    """Audio storage refused a write it should take (read-only, permission, I/O error)."""

    code = "storage_unavailable"
    title = "Storage unavailable"


class InsufficientStorage(SttError):
    """Audio storage is full (no space, or the quota is spent)."""

    status = 507
    code = "insufficient_storage"
    title = "Insufficient storage"


def _walk(cls: type[SttError]) -> list[type[SttError]]:
    """`cls`'s subclasses, depth first, in the order they are defined (the docstring's)."""
    return [c for sub in cls.__subclasses__() for c in (sub, *_walk(sub))]


ALL_ERRORS: tuple[type[SttError], ...] = tuple(_walk(SttError))
"""Every error a client can see, from the tree above."""
