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
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from core.errors import (
    Conflict,
    DiarizationUnavailable,
    InsufficientStorage,
    InvalidRequest,
    InvalidSpeakerReference,
    ModelNotFound,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    ServiceUnavailable,
    StorageFault,
    SttError,
    TranscriptionFailed,
    Unauthorized,
    UnknownModel,
    UnsupportedMedia,
)
from core.storage import storage_error

log = logging.getLogger("stt.api")

_OPENAI_TYPES = {
    401: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
    507: "server_error",
}
"""OpenAI's `type` by status, for errors outside the tree (Litestar's, the database's)."""

OPENAI_ERROR_TYPES: dict[type[SttError], str] = {
    InvalidRequest: "invalid_request_error",
    UnknownModel: "invalid_request_error",
    InvalidSpeakerReference: "invalid_request_error",
    DiarizationUnavailable: "invalid_request_error",
    Unauthorized: "invalid_request_error",
    RequestTimeout: "invalid_request_error",
    NotFound: "invalid_request_error",
    ModelNotFound: "invalid_request_error",
    Conflict: "invalid_request_error",
    PayloadTooLarge: "invalid_request_error",
    UnsupportedMedia: "invalid_request_error",
    RateLimited: "rate_limit_error",
    ServiceUnavailable: "server_error",
    StorageFault: "server_error",
    InsufficientStorage: "server_error",
    TranscriptionFailed: "server_error",
}
"""Every class of the error tree → OpenAI's `type` for it."""
_HTTP_CODES = {
    400: ("invalid_request", "Invalid request"),
    401: ("invalid_api_key", "Unauthorized"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    408: ("request_timeout", "Request timeout"),
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
    path = request.url.path
    body = error_body(
        path, status, code, title, message, param, openai_type, request_id_of(request)
    )
    return Response(body, status_code=status, headers=headers or {})


def error_body(
    path: str,
    status: int,
    code: str,
    title: str,
    message: str,
    param: str | None = None,
    openai_type: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The error in the shape of `path`'s family (also used below the ASGI app, where the
    HTTP server itself answers: a malformed request, a header timeout)."""
    if is_cartesia(path):
        return {
            "error_code": code,
            "title": title,
            "message": message,
            "request_id": request_id or uuid.uuid4().hex,
        }
    return {
        "error": {
            "message": message,
            "type": openai_type or _OPENAI_TYPES.get(status, "invalid_request_error"),
            "param": param,
            "code": code,
        }
    }


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
    """Connection-type failures only (the database is down, the pool is spent): a 503."""
    log.error("database unavailable: %s", type(exc).__name__)
    return error_response(
        request,
        503,
        "service_unavailable",
        "Service unavailable",
        "the database is unavailable; try again shortly",
        headers={"Retry-After": "5"},
    )


def handle_bad_data(request: Request[Any, Any, Any], exc: DataError) -> Response[dict[str, Any]]:
    """A value the database refuses (a NUL byte, an out-of-range number): the client's
    input, so a 400, never an outage."""
    log.info("the database refused a value: %s", type(exc.orig).__name__)
    return error_response(
        request,
        400,
        "invalid_request",
        "Invalid request",
        "a value in the request cannot be stored (e.g. it holds a NUL byte)",
    )


def handle_dbapi_error(
    request: Request[Any, Any, Any], exc: DBAPIError
) -> Response[dict[str, Any]]:
    """Any other driver error: a lost connection is a 503, anything else a bug (500)."""
    if exc.connection_invalidated:
        return handle_database_error(request, exc)
    return handle_unexpected(request, exc)


def handle_os_error(request: Request[Any, Any, Any], exc: OSError) -> Response[dict[str, Any]]:
    """A storage fault that escaped a translated write (full → 507, refused → 503)."""
    typed = storage_error(exc)
    if typed is None:
        return handle_unexpected(request, exc)
    log.error("storage fault on %s: %s", request.url.path, exc)
    return handle_stt_error(request, typed)


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unexpected error on %s", request.url.path)
    return error_response(
        request, 500, "internal_error", "Internal error", "an unexpected error occurred"
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    SttError: handle_stt_error,
    HTTPException: handle_http_error,
    OperationalError: handle_database_error,
    InterfaceError: handle_database_error,
    PoolTimeout: handle_database_error,
    ConnectionRefusedError: handle_database_error,
    DataError: handle_bad_data,
    DBAPIError: handle_dbapi_error,
    OSError: handle_os_error,
    Exception: handle_unexpected,
}
