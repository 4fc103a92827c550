"""The error tree → HTTP, in the shape of the path family the request came in on.

OpenAI paths: `{"error": {"message", "type", "param", "code"}}`.
Cartesia paths (`/stt…`): `{"error_code", "title", "message", "request_id"}`.
Each class of `core.errors` carries its status, code and title; `OPENAI_ERROR_TYPES` gives
each its OpenAI `type`, and a test fails when a class of the tree is missing from it.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from core.errors import (
    Conflict,
    DiarizationUnavailable,
    InvalidRequest,
    InvalidSpeakerReference,
    ModelNotFound,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    SttError,
    TranscriptionFailed,
    Unauthorized,
    UnknownModel,
    UnsupportedMedia,
)

log = logging.getLogger("stt.api")

_OPENAI_TYPES = {
    401: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
}
"""OpenAI's `type` by status, for errors outside the tree (Litestar's, the database's)."""

OPENAI_ERROR_TYPES: dict[type[SttError], str] = {
    InvalidRequest: "invalid_request_error",
    UnknownModel: "invalid_request_error",
    InvalidSpeakerReference: "invalid_request_error",
    DiarizationUnavailable: "invalid_request_error",
    Unauthorized: "invalid_request_error",
    NotFound: "invalid_request_error",
    ModelNotFound: "invalid_request_error",
    Conflict: "invalid_request_error",
    PayloadTooLarge: "invalid_request_error",
    UnsupportedMedia: "invalid_request_error",
    RateLimited: "rate_limit_error",
    ServiceUnavailable: "server_error",
    TranscriptionFailed: "server_error",
}
"""Every class of the error tree → OpenAI's `type` for it."""
_HTTP_CODES = {
    400: ("invalid_request", "Invalid request"),
    401: ("invalid_api_key", "Unauthorized"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    429: ("rate_limited", "Too many requests"),
    503: ("service_unavailable", "Service unavailable"),
}


def is_cartesia(path: str) -> bool:
    return path == "/stt" or path.startswith("/stt/")


def request_id_of(request: Request[Any, Any, Any]) -> str:
    rid = request.scope.get("state", {}).get("request_id")
    return str(rid) if rid else uuid.uuid4().hex


def error_response(
    request: Request[Any, Any, Any],
    status: int,
    code: str,
    title: str,
    message: str,
    param: str | None = None,
    headers: dict[str, str] | None = None,
    openai_type: str | None = None,
) -> Response[dict[str, Any]]:
    if is_cartesia(request.url.path):
        body: dict[str, Any] = {
            "error_code": code,
            "title": title,
            "message": message,
            "request_id": request_id_of(request),
        }
    else:
        body = {
            "error": {
                "message": message,
                "type": openai_type or _OPENAI_TYPES.get(status, "invalid_request_error"),
                "param": param,
                "code": code,
            }
        }
    return Response(body, status_code=status, headers=headers or {})


def openai_type_of(cls: type[SttError]) -> str | None:
    """The mapped `type` of `cls`, or of its nearest mapped base."""
    return next((OPENAI_ERROR_TYPES[c] for c in cls.__mro__ if c in OPENAI_ERROR_TYPES), None)


def handle_stt_error(request: Request[Any, Any, Any], exc: SttError) -> Response[dict[str, Any]]:
    if exc.status >= 500:
        log.error("request failed: %s", exc.message)
    return error_response(
        request,
        exc.status,
        exc.code,
        exc.title,
        exc.message,
        exc.param,
        exc.headers,
        openai_type=openai_type_of(type(exc)),
    )


def handle_http_error(
    request: Request[Any, Any, Any], exc: HTTPException
) -> Response[dict[str, Any]]:
    status = exc.status_code
    code, title = _HTTP_CODES.get(status, ("error", "Error"))
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else title
    if status == 413:
        message = "the request body is larger than the upload limit"
    headers = dict(exc.headers or {})
    return error_response(request, status, code, title, message, headers=headers)


def handle_database_error(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[dict[str, Any]]:
    log.error("database unavailable: %s", type(exc).__name__)
    return error_response(
        request,
        503,
        "service_unavailable",
        "Service unavailable",
        "the database is unavailable; try again shortly",
        headers={"Retry-After": "5"},
    )


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unexpected error on %s", request.url.path)
    return error_response(
        request, 500, "internal_error", "Internal error", "an unexpected error occurred"
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    SttError: handle_stt_error,
    HTTPException: handle_http_error,
    OperationalError: handle_database_error,
    DBAPIError: handle_database_error,
    PoolTimeout: handle_database_error,
    ConnectionRefusedError: handle_database_error,
    Exception: handle_unexpected,
}
