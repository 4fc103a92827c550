"""Streaming multipart parsing: the file goes to storage as it arrives, fields stay small.

Limits are checked while reading, so an oversized upload is refused (413) before the
whole body has been received, and a malformed body is a 400, never a 500. The parser runs
in a worker thread, one batch of the body at a time, so that storage writes (an object
store's part uploads) never block the event loop.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from core.audio import RawFormat
from core.echo import clipped, quoted
from core.errors import InvalidRequest, PayloadTooLarge
from core.speakers import MAX_KNOWN, MAX_REFERENCE_FIELD_BYTES, REFERENCES
from core.storage import Sink, Storage, TeeSink, discard

MAX_PARTS = 64
MAX_FIELD_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024
LARGE_FIELDS = frozenset({REFERENCES, f"{REFERENCES}[]"})
"""Fields that hold audio as data URLs: each up to MAX_REFERENCE_FIELD_BYTES."""
MAX_LARGE_FIELD_BYTES = MAX_KNOWN * MAX_REFERENCE_FIELD_BYTES
"""What all of them together may hold."""
FILE_FIELD = "file"
BATCH_BYTES = 1024 * 1024
"""Body bytes gathered before the parser (and storage) run on a worker thread."""


@dataclass
class UploadedFile:
    key: str
    size: int
    filename: str | None
    content_type: str | None
    sha256: str = ""


@dataclass(frozen=True)
class Upload:
    """An accepted upload: the audio in storage, what the client said of it, and what the
    probe found. It travels from the form to the job row as one value."""

    job_id: str
    key: str
    """Where the audio is stored (`core.storage.audio_key` of the job)."""
    filename: str | None
    content_type: str | None
    size: int
    sha256: str
    duration: float
    """Seconds of audio, as probed."""
    raw: RawFormat | None = None
    """Headerless PCM's encoding and rate (Cartesia's `encoding`, `sample_rate`)."""

    @classmethod
    def of(cls, job_id: str, file: UploadedFile, duration: float, raw: RawFormat | None) -> Upload:
        return cls(
            job_id=job_id,
            key=file.key,
            filename=file.filename,
            content_type=file.content_type,
            size=file.size,
            sha256=file.sha256,
            duration=duration,
            raw=raw,
        )


@dataclass
class Form:
    fields: dict[str, list[str]] = field(default_factory=dict)
    file: UploadedFile | None = None

    def get(self, name: str) -> str | None:
        """The value of a single-valued field; a repeated one is a 400."""
        values = self.fields.get(name)
        if not values:
            return None
        if len(values) > 1 and len(set(values)) > 1:
            raise InvalidRequest(f"field {quoted(name)} was given more than once", param=name)
        return values[0]

    def getlist(self, *names: str) -> list[str]:
        return [v for name in names for v in self.fields.get(name, [])]


class _Collector:
    """python-multipart callbacks that build a Form, writing the file part to storage (and
    to `spool`, a local copy, when given)."""

    def __init__(
        self, storage: Storage, file_key: str, max_file_bytes: int, spool: Path | None = None
    ) -> None:
        self.storage, self.file_key, self.max_file_bytes = storage, file_key, max_file_bytes
        self.spool = spool
        self.form = Form()
        self.parts = 0
        self.ended = False
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._header_bytes = 0
        self._name: str | None = None
        self._value = bytearray()
        self._sink: Sink | None = None
        self._digest = hashlib.sha256()
        self._skip = False
        self._large_bytes = 0

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise InvalidRequest(f"too many form parts (at most {MAX_PARTS})")
        self._headers, self._header_bytes = {}, 0
        self._name, self._value, self._skip = None, bytearray(), False

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            raise InvalidRequest("a form part's headers are too large")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_field).decode("latin-1").lower()] = bytes(
            self._header_value
        )
        self._header_field, self._header_value = bytearray(), bytearray()

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get("content-disposition"))
        raw_name = params.get(b"name")
        if raw_name is None:
            raise InvalidRequest("a form part has no name")
        self._name = _decode(raw_name, "a form field name")
        filename = params.get(b"filename")
        if self._name == FILE_FIELD:
            if self.form.file is not None:
                raise InvalidRequest("only one file may be uploaded", param=FILE_FIELD)
            content_type = self._headers.get("content-type")
            self.form.file = UploadedFile(
                key=self.file_key,
                size=0,
                filename=_decode(filename, "the file name") if filename else None,
                content_type=content_type.decode("latin-1") if content_type else None,
            )
            sink = self.storage.open_write(self.file_key)
            self._sink = TeeSink(sink, self.spool) if self.spool is not None else sink
        elif filename is not None:
            self._skip = True  # a file under another name: read past it, keep nothing

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        size = end - start
        if self._sink is not None and self.form.file is not None:
            self.form.file.size += size
            if self.form.file.size > self.max_file_bytes:
                raise PayloadTooLarge(
                    f"the file is larger than the limit of {self.max_file_bytes} bytes",
                    param=FILE_FIELD,
                )
            chunk = data[start:end]
            self._digest.update(chunk)
            self._sink.write(chunk)
        elif not self._skip:
            self._value += data[start:end]
            large = self._name in LARGE_FIELDS
            limit = MAX_REFERENCE_FIELD_BYTES if large else MAX_FIELD_BYTES
            if len(self._value) > limit:
                raise InvalidRequest(
                    f"field {quoted(self._name)} is longer than {limit} bytes",
                    param=self._name,
                )
            if large:
                self._large_bytes += size
                if self._large_bytes > MAX_LARGE_FIELD_BYTES:
                    raise InvalidRequest(
                        f"speaker references hold more than {MAX_LARGE_FIELD_BYTES} bytes",
                        param=self._name,
                    )

    def on_part_end(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None
            if self.form.file is not None:
                self.form.file.sha256 = self._digest.hexdigest()
        elif not self._skip and self._name is not None:
            value = _decode(bytes(self._value), f"field {quoted(self._name)}")
            self.form.fields.setdefault(self._name, []).append(value)

    def on_end(self) -> None:
        self.ended = True

    def abort(self) -> None:
        """Drop a file part still being written (an error came first)."""
        if self._sink is not None:
            self._sink.abort()
            self._sink = None


def _decode(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"{what} is not valid UTF-8") from exc


def boundary_of(content_type: str | None) -> bytes:
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise InvalidRequest("the request body must be multipart/form-data")
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise InvalidRequest("the multipart/form-data body has no usable boundary")
    return boundary


async def read_form(
    chunks: AsyncIterator[bytes],
    content_type: str | None,
    storage: Storage,
    file_key: str,
    max_file_bytes: int,
    spool: Path | None = None,
) -> Form:
    """Parse the body, storing the file under `file_key` (and copying it to `spool` if given).
    On any error the partial file (and the copy) is removed and the error raised."""
    collector = _Collector(storage, file_key, max_file_bytes, spool)
    parser = MultipartParser(boundary_of(content_type), collector.callbacks())  # type: ignore[arg-type]

    def finish() -> None:
        parser.finalize()
        if not collector.ended:
            raise InvalidRequest("the multipart/form-data body is truncated")

    def clean_up() -> None:
        collector.abort()
        discard(storage, file_key)  # the file may have been committed before the error
        if spool is not None:
            spool.unlink(missing_ok=True)

    try:
        batch = bytearray()
        async for chunk in chunks:
            batch += chunk
            if len(batch) >= BATCH_BYTES:
                await anyio.to_thread.run_sync(parser.write, bytes(batch))
                batch.clear()
        if batch:
            await anyio.to_thread.run_sync(parser.write, bytes(batch))
        await anyio.to_thread.run_sync(finish)
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(clean_up)
        if isinstance(exc, MultipartParseError):
            raise InvalidRequest(f"malformed multipart/form-data body: {clipped(exc)}") from exc
        raise
    return collector.form
