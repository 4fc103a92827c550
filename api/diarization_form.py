"""A request's diarization fields: `diarize`, the diarizing model, known speakers and hints.

Everything is checked before the job is queued, references included (decoded off the event
loop by `check_references`), so a job never fails half-labelled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from api.forms import Form
from core.errors import DiarizationUnavailable, InvalidRequest
from core.settings import DIARIZE_MODEL, Settings
from core.speakers import (
    NAMES,
    REFERENCES,
    KnownSpeaker,
    check_bounds,
    check_known_speakers,
    data_url_bytes,
    decode_reference,
    speaker_bound,
)

DIARIZED = "diarized_json"
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


@dataclass(frozen=True)
class DiarizationRequest:
    diarize: bool = False
    min_speakers: int | None = None
    max_speakers: int | None = None
    known: tuple[KnownSpeaker, ...] = ()


def _flag(raw: str | None) -> bool:
    if raw is None or raw == "":
        return False
    value = _BOOLEANS.get(raw.strip().lower())
    if value is None:
        raise InvalidRequest("diarize must be true or false", param="diarize")
    return value


def check_chunking_strategy(raw: str | None, kind: str | None = None) -> None:
    """OpenAI requires `chunking_strategy` for its diarizing model: `auto` or a server_vad
    object (as JSON, or as the SDK's `chunking_strategy[type]` form fields). Accepted (the
    server cuts long audio its own way); anything else is a 400."""
    if kind is not None and kind != "server_vad":
        raise InvalidRequest(
            'chunking_strategy must be "auto" or a {"type": "server_vad"} object',
            param="chunking_strategy",
        )
    if raw is None or raw.strip() in ("", "auto"):
        return
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not (isinstance(value, dict) and value.get("type") == "server_vad") and value != "auto":
        raise InvalidRequest(
            'chunking_strategy must be "auto" or a {"type": "server_vad"} object',
            param="chunking_strategy",
        )


def diarization_request(
    form: Form, settings: Settings, model: str, response_format: str
) -> DiarizationRequest:
    """The diarization the form asks for, checked (references only for form: see
    `check_references`)."""
    check_chunking_strategy(form.get("chunking_strategy"), form.get("chunking_strategy[type]"))
    diarize = _flag(form.get("diarize")) or model == DIARIZE_MODEL
    names = form.getlist(f"{NAMES}[]", NAMES)
    references = form.getlist(f"{REFERENCES}[]", REFERENCES)
    lo = speaker_bound(form.get("min_speakers"), "min_speakers")
    hi = speaker_bound(form.get("max_speakers"), "max_speakers")
    if not diarize:
        if response_format == DIARIZED:
            raise InvalidRequest(
                f"response_format diarized_json needs diarization: model {DIARIZE_MODEL} "
                "or diarize=true",
                param="response_format",
            )
        if names or references:
            raise InvalidRequest("known speakers need diarization (diarize=true)", param=REFERENCES)
        if lo is not None or hi is not None:
            raise InvalidRequest(
                "min_speakers/max_speakers need diarization (diarize=true)",
                param="min_speakers" if lo is not None else "max_speakers",
            )
        return DiarizationRequest()
    if not settings.diarization.enabled:
        raise DiarizationUnavailable(
            "speaker diarization is not enabled on this server (STT_DIARIZATION=off)",
            param="diarize",
        )
    check_bounds(lo, hi)
    check_known_speakers(names, references)
    known = tuple(
        KnownSpeaker(n.strip(), data_url_bytes(r)) for n, r in zip(names, references, strict=True)
    )
    return DiarizationRequest(True, lo, hi, known)


def check_references(request: DiarizationRequest) -> None:
    """Decode each reference and check its length (blocking: run it on a worker thread)."""
    for known in request.known:
        decode_reference(known.audio)
