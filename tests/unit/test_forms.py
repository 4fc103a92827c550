"""`api.forms.read_form`: streaming multipart parsing with limits, fed in small chunks."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from api import forms
from api.forms import MAX_FIELD_BYTES, MAX_PARTS, Form, read_form
from core.errors import InvalidRequest, PayloadTooLarge
from core.storage import LocalStorage

BOUNDARY = "----unit-test-boundary-7MA4YWxkTrZu0gW"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
KEY = "ab/abcdef0123456789"

Part = tuple[str, bytes] | tuple[str, bytes, str | None, str | None]
"""(name, value) for a field; (name, data, filename, content type) for a file."""


def multipart(parts: Iterable[Part], *, close: bool = True) -> bytes:
    """A multipart/form-data body built by hand."""
    out = bytearray()
    for part in parts:
        name, data = part[0], part[1]
        disposition = f'form-data; name="{name}"'
        extra = ""
        if len(part) == 4:
            filename, ctype = part[2], part[3]
            if filename is not None:
                disposition += f'; filename="{filename}"'
            if ctype is not None:
                extra = f"Content-Type: {ctype}\r\n"
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n{extra}\r\n".encode()
        out += data + b"\r\n"
    if close:
        out += f"--{BOUNDARY}--\r\n".encode()
    return bytes(out)


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


def parse(
    body: bytes,
    storage: LocalStorage,
    *,
    chunk: int = 7,
    max_file_bytes: int = 1 << 20,
    content_type: str | None = CONTENT_TYPE,
) -> Form:
    return asyncio.run(read_form(_chunks(body, chunk), content_type, storage, KEY, max_file_bytes))


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "audio")


def files_under(storage: LocalStorage) -> list[Path]:
    return [p for p in storage.root.rglob("*") if p.is_file()] if storage.root.exists() else []


def test_fields_and_file_are_stored(storage: LocalStorage) -> None:
    audio = os.urandom(5000) + b"\r\n--not-the-boundary\r\n" + os.urandom(100)
    body = multipart(
        [
            ("model", b"whisper-1"),
            ("file", audio, "clip.wav", "audio/wav"),
            ("language", "español".encode()),
        ]
    )
    form = parse(body, storage)
    assert form.fields == {"model": ["whisper-1"], "language": ["español"]}
    assert form.get("model") == "whisper-1"
    assert form.get("absent") is None
    assert form.file is not None
    assert form.file.key == KEY
    assert form.file.size == len(audio)
    assert form.file.filename == "clip.wav"
    assert form.file.content_type == "audio/wav"
    assert storage.path(KEY).read_bytes() == audio
    assert files_under(storage) == [storage.path(KEY)]


@pytest.mark.parametrize("chunk", [1, 3, 64, 1 << 20])
def test_chunk_size_does_not_matter(storage: LocalStorage, chunk: int) -> None:
    audio = bytes(range(256)) * 20
    form = parse(multipart([("file", audio, "a.bin", None), ("model", b"m")]), storage, chunk=chunk)
    assert form.file is not None
    assert form.file.size == len(audio)
    assert form.file.content_type is None
    assert storage.path(KEY).read_bytes() == audio
    assert form.get("model") == "m"


def test_file_without_filename_is_still_the_file(storage: LocalStorage) -> None:
    form = parse(multipart([("file", b"abc")]), storage)
    assert form.file is not None
    assert form.file.filename is None
    assert form.file.size == 3
    assert form.fields == {}


def test_repeated_fields(storage: LocalStorage) -> None:
    body = multipart(
        [
            ("timestamp_granularities[]", b"word"),
            ("timestamp_granularities[]", b"segment"),
            ("timestamp_granularities", b"word"),
            ("model", b"a"),
            ("model", b"a"),
        ]
    )
    form = parse(body, storage)
    assert form.fields["timestamp_granularities[]"] == ["word", "segment"]
    assert form.getlist("timestamp_granularities[]", "timestamp_granularities") == [
        "word",
        "segment",
        "word",
    ]
    assert form.getlist("nothing") == []
    assert form.get("model") == "a"  # the same value twice is harmless
    assert form.file is None


def test_conflicting_duplicates_are_refused() -> None:
    form = Form(fields={"language": ["en", "fr"]})
    with pytest.raises(InvalidRequest) as info:
        form.get("language")
    assert info.value.param == "language"
    assert form.getlist("language") == ["en", "fr"]


def test_empty_field_value(storage: LocalStorage) -> None:
    assert parse(multipart([("prompt", b"")]), storage).fields == {"prompt": [""]}


def test_file_over_limit_is_refused_and_removed(storage: LocalStorage) -> None:
    body = multipart([("model", b"m"), ("file", b"x" * 5000, "a.wav", "audio/wav")])
    with pytest.raises(PayloadTooLarge) as info:
        parse(body, storage, chunk=100, max_file_bytes=1000)
    assert info.value.status == 413
    assert info.value.param == "file"
    assert files_under(storage) == []


def test_file_at_the_limit_is_accepted(storage: LocalStorage) -> None:
    form = parse(multipart([("file", b"x" * 1000, "a.wav", None)]), storage, max_file_bytes=1000)
    assert form.file is not None
    assert form.file.size == 1000


def test_too_many_parts(storage: LocalStorage) -> None:
    parts: list[Part] = [("file", b"abc", "a.wav", None)]
    parts += [(f"f{i}", b"v") for i in range(MAX_PARTS)]
    with pytest.raises(InvalidRequest, match="too many form parts"):
        parse(multipart(parts), storage, chunk=512)
    assert files_under(storage) == []


def test_max_parts_is_allowed(storage: LocalStorage) -> None:
    form = parse(multipart([(f"f{i}", b"v") for i in range(MAX_PARTS)]), storage, chunk=512)
    assert len(form.fields) == MAX_PARTS


def test_oversized_field(storage: LocalStorage) -> None:
    body = multipart([("prompt", b"p" * (MAX_FIELD_BYTES + 1))])
    with pytest.raises(InvalidRequest, match="prompt") as info:
        parse(body, storage, chunk=4096)
    assert info.value.param == "prompt"


def test_field_at_the_limit_is_accepted(storage: LocalStorage) -> None:
    form = parse(multipart([("prompt", b"p" * MAX_FIELD_BYTES)]), storage, chunk=4096)
    assert form.get("prompt") == "p" * MAX_FIELD_BYTES


def test_invalid_utf8_field(storage: LocalStorage) -> None:
    body = multipart([("file", b"abc", "a.wav", None), ("language", b"\xff\xfe")])
    with pytest.raises(InvalidRequest, match="UTF-8"):
        parse(body, storage)
    assert files_under(storage) == []


def test_two_files_are_refused(storage: LocalStorage) -> None:
    body = multipart([("file", b"one", "a.wav", None), ("file", b"two", "b.wav", None)])
    with pytest.raises(InvalidRequest, match="only one file") as info:
        parse(body, storage)
    assert info.value.param == "file"
    assert files_under(storage) == []


def test_file_under_another_name_is_ignored(storage: LocalStorage) -> None:
    big = b"y" * (MAX_FIELD_BYTES * 2)  # would overflow a field if it were kept
    body = multipart(
        [("attachment", big, "other.wav", "audio/wav"), ("file", b"abc", "a.wav", None)]
    )
    form = parse(body, storage, chunk=4096, max_file_bytes=10)
    assert "attachment" not in form.fields
    assert form.file is not None
    assert form.file.size == 3
    assert files_under(storage) == [storage.path(KEY)]


def test_part_without_name(storage: LocalStorage) -> None:
    body = f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nv\r\n--{BOUNDARY}--\r\n".encode()
    with pytest.raises(InvalidRequest, match="no name"):
        parse(body, storage)


def test_malformed_part_headers(storage: LocalStorage) -> None:
    good = multipart([("file", b"abc" * 100, "a.wav", None)])
    body = good[:200].replace(b"\r\n\r\n", b"\r\n\x00garbage\r\n", 1) + b"nonsense"
    with pytest.raises(InvalidRequest, match="malformed"):
        parse(body, storage)
    assert files_under(storage) == []


def test_malformed_after_the_file_removes_it(storage: LocalStorage) -> None:
    body = multipart([("file", b"abc" * 100, "a.wav", None)], close=False)
    body += f"--{BOUNDARY}\r\n\x00bad header\r\n\r\nv\r\n--{BOUNDARY}--\r\n".encode()
    with pytest.raises(InvalidRequest, match="malformed"):
        parse(body, storage)
    assert files_under(storage) == []


@pytest.mark.parametrize("body", [b"this is not multipart at all", b"--wrong\r\n\r\n"])
def test_garbage_body(storage: LocalStorage, body: bytes) -> None:
    with pytest.raises(InvalidRequest):
        parse(body, storage)


def test_truncated_body_removes_partial_file(storage: LocalStorage) -> None:
    body = multipart([("model", b"m"), ("file", b"z" * 3000, "a.wav", None)], close=False)
    with pytest.raises(InvalidRequest, match="truncated"):
        parse(body[:-500], storage, chunk=256)
    assert files_under(storage) == []


def test_body_without_closing_boundary(storage: LocalStorage) -> None:
    body = multipart([("file", b"z" * 300, "a.wav", None)], close=False)
    with pytest.raises(InvalidRequest, match="truncated"):
        parse(body, storage)
    assert files_under(storage) == []


def test_empty_body(storage: LocalStorage) -> None:
    with pytest.raises(InvalidRequest):
        parse(b"", storage)


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=" + "b" * 201,
        "multipart/mixed; boundary=abc",
    ],
)
def test_bad_content_type(storage: LocalStorage, content_type: str | None) -> None:
    body = multipart([("model", b"m")])
    with pytest.raises(InvalidRequest):
        parse(body, storage, content_type=content_type)
    assert files_under(storage) == []


def test_quoted_boundary_and_case(storage: LocalStorage) -> None:
    ctype = f'Multipart/Form-Data; boundary="{BOUNDARY}"'
    assert parse(multipart([("model", b"m")]), storage, content_type=ctype).get("model") == "m"


def test_error_from_the_stream_removes_partial_file(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forms, "BATCH_BYTES", 1000)  # the first batch reaches storage
    body = multipart([("file", b"q" * 4000, "a.wav", None)])

    async def failing() -> AsyncIterator[bytes]:
        yield body[:2000]
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        asyncio.run(read_form(failing(), CONTENT_TYPE, storage, KEY, 1 << 20))
    assert files_under(storage) == []


def test_a_file_larger_than_a_batch(storage: LocalStorage) -> None:
    audio = os.urandom(3 * forms.BATCH_BYTES + 17)
    form = parse(
        multipart([("file", audio, "a.wav", None)]), storage, chunk=65536, max_file_bytes=1 << 30
    )
    assert form.file is not None and form.file.size == len(audio)
    assert storage.path(KEY).read_bytes() == audio


def test_spool_gets_a_copy_of_the_file(storage: LocalStorage, tmp_path: Path) -> None:
    audio = os.urandom(5000)
    spool = tmp_path / "scratch" / "upload.part"
    body = multipart([("file", audio, "a.wav", None), ("model", b"m")])
    asyncio.run(read_form(_chunks(body, 333), CONTENT_TYPE, storage, KEY, 1 << 20, spool))
    assert spool.read_bytes() == audio
    assert storage.path(KEY).read_bytes() == audio


@pytest.mark.parametrize("cut", [500, 5200])
def test_a_refused_body_leaves_no_spool(storage: LocalStorage, tmp_path: Path, cut: int) -> None:
    """Cut inside the file, or after it (when both copies were already complete)."""
    spool = tmp_path / "upload.part"
    body = multipart([("file", os.urandom(5000), "a.wav", None), ("model", b"m")])
    with pytest.raises(InvalidRequest):
        asyncio.run(read_form(_chunks(body[:cut], 100), CONTENT_TYPE, storage, KEY, 1 << 20, spool))
    assert not spool.exists()
    assert files_under(storage) == []
