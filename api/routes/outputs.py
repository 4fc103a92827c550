"""A finished job's transcript in any output format: `GET /stt/jobs/{id}/transcript`."""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Annotated, Any
from urllib.parse import quote

from litestar import Response, get
from litestar.params import Parameter

from api import operations as doc
from api import render, schemas
from api.jobs import JobService
from api.state import AppState
from core.errors import Conflict, InvalidRequest
from core.jobspec import JobOptions
from core.models import Job, JobStatus
from core.transcript import Transcript

TEXT = "text/plain"
VTT = "text/vtt"
"""Litestar adds `; charset=utf-8` to every `text/` type: named here, it came twice."""
JSON = "application/json"
EXTENSIONS = {
    "json": "json",
    "verbose_json": "json",
    "diarized_json": "json",
    "text": "txt",
    "srt": "srt",
    "vtt": "vtt",
}
"""The file extension each response format is downloaded with."""
MEDIA_TYPES = {
    "json": JSON,
    "verbose_json": JSON,
    "diarized_json": JSON,
    "text": TEXT,
    "srt": TEXT,
    "vtt": VTT,
}
_UNSAFE = re.compile(r"[^\w.\- ]+")


def download_name(filename: str | None, fmt: str) -> str:
    """`talk.mp3` → `talk.srt`: the uploaded file's stem, stripped of any path and of
    characters a header or a file system would trip on; `transcript` when there is none."""
    stem = PurePath((filename or "").replace("\\", "/")).stem.strip()
    stem = _UNSAFE.sub("_", stem).strip(" ._") or "transcript"
    return f"{stem[:120]}.{EXTENSIONS[fmt]}"


def content_disposition(name: str) -> str:
    """RFC 6266: an ASCII fallback and the UTF-8 name (RFC 5987)."""
    ascii_name = name.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


def render_format(t: Transcript, job: Job, fmt: str, layout: render.SubtitleLayout) -> Any:
    """The body of `fmt`. JSON keeps the job's own choice of words; verbose_json always
    lists segments and words, as every job keeps them."""
    options = JobOptions.from_dict(job.options)
    if fmt == "text":
        return render.plain_text(t)
    if fmt == render.DIARIZED:
        if not t.diarized:
            raise InvalidRequest(
                "diarized_json needs a job submitted with diarization (diarize=true)",
                param="response_format",
            )
        return render.diarized_json(t)
    if fmt == "srt":
        return render.srt(t, layout)
    if fmt == "vtt":
        return render.vtt(t, layout)
    if fmt == "verbose_json":
        return render.verbose_json(t, words=True, segments=True, task=options.task)
    return render.transcript_json(
        t, job.id, words=options.words, with_usage=options.task == "transcribe"
    )


def requested_format(raw: str | None, job: Job) -> str:
    fmt = raw or JobOptions.from_dict(job.options).response_format or "json"
    if fmt not in render.RESPONSE_FORMATS:
        raise InvalidRequest(
            f"response_format must be one of {', '.join(render.RESPONSE_FORMATS)}",
            param="response_format",
        )
    return fmt


ResponseFormat = Annotated[
    str | None,
    Parameter(
        description="another format than the job was submitted with",
        schema_extra={"type": "string", "enum": list(render.RESPONSE_FORMATS)},
    ),
]


@get(
    "/stt/jobs/{job_id:str}/transcript",
    summary="A finished job's transcript, in any format",
    responses={
        200: doc.ok(
            schemas.TranscriptResponse
            | schemas.VerboseTranscription
            | schemas.DiarizedTranscription,
            "The transcript, as a download named after the uploaded file",
        ),
        **doc.errors(True, (400, 401, 404, 409, 429, 503)),
    },
    security=doc.SECURITY,
    operation_class=doc.DownloadOperation,
)
async def job_transcript(
    stt: AppState,
    tenant: str,
    jobs: JobService,
    job_id: str,
    response_format: ResponseFormat = None,
) -> Response[Any]:
    """The format the job was submitted with, or `?response_format=` (json, text, srt, vtt,
    verbose_json, diarized_json for a diarized job), as a download named after the uploaded
    file. 409 until the job succeeds."""
    job = await jobs.own(tenant, job_id)
    fmt = requested_format(response_format, job)
    if job.status != JobStatus.succeeded.value or job.result is None:
        reason = f": {job.error_message}" if job.error_message else ""
        raise Conflict(
            f"job {job_id} is {job.status}{reason}; its transcript exists once it has succeeded"
        )
    transcript = Transcript.from_dict(job.result)
    body = render_format(transcript, job, fmt, render.SubtitleLayout.of(stt.settings))
    name = download_name(JobOptions.from_dict(job.options).filename, fmt)
    return Response(
        body,
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": content_disposition(name), "X-Request-Id": job.id},
    )
