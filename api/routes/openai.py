"""OpenAI-compatible paths, each with and without `/v1`: transcriptions, translations, models."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import State

from api.auth import authenticate
from api.respond import transcribe
from api.state import AppState
from core.errors import NotFound
from core.model_registry import public_models

OWNED_BY = "selfhosted-stt"


class ModelNotFound(NotFound):
    """OpenAI's code for an unknown model id on `/models/{id}`."""

    code = "model_not_found"


@post(
    ["/audio/transcriptions", "/v1/audio/transcriptions"],
    status_code=200,
    summary="Transcribe audio (OpenAI-compatible)",
)
async def transcriptions(request: Request[Any, Any, State]) -> Response[Any]:
    """Multipart `file`, `model`, optional `language`, `prompt`, `temperature`,
    `response_format`, `timestamp_granularities[]` and `stream`."""
    return await transcribe(request, None)


@post(
    ["/audio/translations", "/v1/audio/translations"],
    status_code=200,
    summary="Translate speech into English text (OpenAI-compatible)",
)
async def translations(request: Request[Any, Any, State]) -> Response[Any]:
    """Multipart `file`, `model`, optional `prompt` (in English), `temperature`,
    `response_format`; a multilingual model is required."""
    return await transcribe(request, None, task="translate")


def _model(name: str, state: AppState) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": state.started_at, "owned_by": OWNED_BY}


@get(["/models", "/v1/models"], summary="The model names this server accepts")
async def list_models(request: Request[Any, Any, State]) -> dict[str, Any]:
    state = AppState.of(request.app.state)
    await authenticate(request, state.settings, state.sessions)
    return {
        "object": "list",
        "data": [_model(name, state) for name in public_models(state.settings)],
    }


@get(["/models/{model_id:str}", "/v1/models/{model_id:str}"], summary="One model")
async def get_model(request: Request[Any, Any, State], model_id: str) -> dict[str, Any]:
    state = AppState.of(request.app.state)
    await authenticate(request, state.settings, state.sessions)
    if model_id not in public_models(state.settings):
        raise ModelNotFound(f"the model {model_id!r} does not exist", param="model")
    return _model(model_id, state)
