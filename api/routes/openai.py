"""OpenAI-compatible paths, each with and without `/v1`: transcriptions, translations, models."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post

from api import operations as doc
from api.respond import transcribe
from api.schemas import ModelCard, ModelList
from api.state import AppState
from core.echo import quoted
from core.errors import ModelNotFound
from core.model_registry import public_models

OWNED_BY = "selfhosted-stt"
MODEL_ERRORS = doc.errors(False, (401, 429, 503))


@post(
    ["/audio/transcriptions", "/v1/audio/transcriptions"],
    status_code=200,
    summary="Transcribe audio (OpenAI-compatible)",
    responses=doc.transcription_responses(cartesia=False),
    operation_class=doc.form_operation(doc.TRANSCRIPTION_FORM, doc.TRANSCRIPTION_FORMATS),
    security=doc.SECURITY,
)
async def transcriptions(
    request: Request[Any, Any, Any], stt: AppState, tenant: str
) -> Response[Any]:
    """Multipart `file`, `model`, optional `language`, `prompt`, `temperature`,
    `response_format`, `timestamp_granularities[]` and `stream`."""
    return await transcribe(request, stt, tenant, None)


@post(
    ["/audio/translations", "/v1/audio/translations"],
    status_code=200,
    summary="Translate speech into English text (OpenAI-compatible)",
    responses=doc.transcription_responses(cartesia=False),
    operation_class=doc.form_operation(doc.TRANSLATION_FORM, doc.TRANSCRIPTION_FORMATS),
    security=doc.SECURITY,
)
async def translations(
    request: Request[Any, Any, Any], stt: AppState, tenant: str
) -> Response[Any]:
    """Multipart `file`, `model`, optional `prompt` (in English), `temperature`,
    `response_format`; a multilingual model is required."""
    return await transcribe(request, stt, tenant, None, task="translate")


def _model(name: str, state: AppState) -> ModelCard:
    return ModelCard(id=name, object="model", created=state.started_at, owned_by=OWNED_BY)


@get(
    ["/models", "/v1/models"],
    summary="The model names this server accepts",
    responses=MODEL_ERRORS,
    security=doc.SECURITY,
    operation_class=doc.DocumentedOperation,
)
async def list_models(stt: AppState, tenant: str) -> ModelList:
    return ModelList(
        object="list", data=[_model(name, stt) for name in public_models(stt.settings)]
    )


@get(
    ["/models/{model_id:str}", "/v1/models/{model_id:str}"],
    summary="One model",
    responses=doc.errors(False, (400, 401, 404, 429, 503)),
    security=doc.SECURITY,
    operation_class=doc.DocumentedOperation,
)
async def get_model(stt: AppState, tenant: str, model_id: str) -> ModelCard:
    if model_id not in public_models(stt.settings):
        raise ModelNotFound(f"the model {quoted(model_id)} does not exist", param="model")
    return _model(model_id, stt)
