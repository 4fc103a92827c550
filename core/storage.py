"""Audio storage by key, behind one small interface with two backends.

- :class:`LocalStorage`: files under one directory (the embedded default, `$STT_DATA_DIR/audio`).
- :class:`S3Storage`: objects in an S3-compatible bucket (S3, MinIO, R2, GCS in S3 mode), so
  that the API and the workers need share no disk.

Keys are made by the service from job ids (:func:`audio_key`), never from client input, and
are validated anyway. Writes stream through a :class:`Sink` that commits on `close()` and
leaves nothing on `abort()`; readers get a local file from :meth:`Storage.local_copy`.
Blocking I/O throughout: the API calls it from worker threads.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from core.errors import InsufficientStorage, StorageFault, SttError

if TYPE_CHECKING:
    from core.settings import Settings

log = logging.getLogger("stt.storage")

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)*$")
_MAX_KEY = 200
_AUDIO_KEY = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{32}$")

PART_SIZE = 8 * 1024 * 1024
"""S3 multipart part size (S3's minimum is 5 MiB): at most one part is buffered per upload."""
MAX_PARTS = 10_000
DOWNLOAD_CHUNK = 1024 * 1024
SCRATCH_MAX_AGE_S = 24 * 3600.0
"""Scratch files older than this were left by a killed process and are removed at start."""


class StorageUnavailable(ConnectionError):
    """The object store could not be reached or refused a request. A ConnectionError, so a
    worker hands the job back and retries it, and the API answers 503."""


_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_REFUSED = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO})
RETRY_AFTER_S = "30"
"""What a client is told to wait after a storage fault (an operator has to act)."""


def storage_error(exc: OSError) -> SttError | None:
    """The error of the tree a storage `OSError` is, by its errno: full → 507, refused
    (read-only, permission, I/O) → 503 with `Retry-After`; None for any other."""
    if exc.errno in _FULL:
        return InsufficientStorage(
            "audio storage is full; try again later", headers={"Retry-After": RETRY_AFTER_S}
        )
    if exc.errno in _REFUSED:
        reason = os.strerror(exc.errno) if exc.errno is not None else "refused"
        return StorageFault(
            f"audio storage refuses writes ({reason.lower()}); try again later",
            headers={"Retry-After": RETRY_AFTER_S},
        )
    return None


@contextlib.contextmanager
def storage_errors() -> Iterator[None]:
    """Re-raise a storage `OSError` as its error of the tree (see :func:`storage_error`)."""
    try:
        yield
    except OSError as exc:
        typed = storage_error(exc)
        if typed is None:
            raise
        log.error("audio storage fault: %s", exc)
        raise typed from exc


def validate_key(key: str) -> str:
    """The key itself, or ValueError: path components of `[A-Za-z0-9._-]` that start with a
    letter or digit (no `..`, no leading `/`, no hidden names), 200 characters at most."""
    if len(key) > _MAX_KEY or not _KEY.match(key):
        raise ValueError(f"invalid storage key {key!r}")
    return key


def audio_key(job_id: str) -> str:
    """Where a job's audio is stored: keyed by job (no content dedupe), fanned out by the
    id's first two characters."""
    return validate_key(f"{job_id[:2]}/{job_id}")


def is_audio_key(key: str) -> bool:
    """Whether `key` has the shape :func:`audio_key` gives (the orphan sweep touches no other)."""
    return bool(_AUDIO_KEY.match(key))


class Sink(Protocol):
    """A write in progress: `close()` commits it, `abort()` leaves nothing. As a context
    manager it commits on a clean exit and aborts on an exception."""

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def __enter__(self) -> Sink: ...
    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class Storage(Protocol):
    """What the API and the workers need from audio storage."""

    def open_write(self, key: str) -> Sink:
        """A sink that stores `key` when closed (replacing any earlier object)."""
        ...

    def local_copy(self, key: str) -> AbstractContextManager[Path]:
        """A local file holding the object for the `with` block; FileNotFoundError if none."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The object's own file when the backend is a local directory, else None."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove the object; a missing one is not an error."""
        ...

    def keys_older_than(self, before: float) -> Iterator[str]:
        """Keys of stored objects last written before `before` (a POSIX time)."""
        ...

    def sweep_incomplete(self, before: float) -> int:
        """Drop writes begun before `before` and never committed (a killed process's);
        returns how many."""
        ...

    def ready(self) -> bool:
        """Whether storage is reachable and usable (for `/health/ready`)."""
        ...


class _SinkBase:
    """close/abort bookkeeping and the context-manager protocol for the sinks below."""

    _state = "open"

    def write(self, data: bytes) -> None:
        self._check_open()
        try:
            self._write(data)
        except BaseException:
            self.abort()
            raise

    def close(self) -> None:
        if self._state == "closed":
            return
        self._check_open()
        try:
            self._commit()
        except BaseException:
            self.abort()
            raise
        self._state = "closed"

    def abort(self) -> None:
        """Discard the write; after a successful close it does nothing (use `delete`)."""
        if self._state != "open":
            return
        self._state = "aborted"
        self._discard()

    def _check_open(self) -> None:
        if self._state != "open":
            raise ValueError(f"write to a {self._state} sink")

    def __enter__(self) -> Sink:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _discard(self) -> None:
        raise NotImplementedError


class _FileSink(_SinkBase):
    """Writes a temporary file beside the target and renames it into place on close, so a
    reader never sees a partial file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.part")
        with storage_errors():
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self._tmp.open("xb")

    def _write(self, data: bytes) -> None:
        with storage_errors():
            self._file.write(data)

    def _commit(self) -> None:
        with storage_errors():
            self._file.close()
            os.replace(self._tmp, self.path)

    def _discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self._tmp.unlink(missing_ok=True)


class TeeSink(_SinkBase):
    """Writes through to another sink and to a local file (the API probes that copy while
    the upload streams to the object store). Abort removes both; the caller removes the
    copy after a close."""

    def __init__(self, sink: Sink, copy: Path) -> None:
        self._sink, self.copy = sink, copy
        with storage_errors():
            copy.parent.mkdir(parents=True, exist_ok=True)
            self._file = copy.open("xb")

    def _write(self, data: bytes) -> None:
        with storage_errors():
            self._file.write(data)
        self._sink.write(data)

    def _commit(self) -> None:
        with storage_errors():
            self._file.close()
        self._sink.close()

    def _discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self.copy.unlink(missing_ok=True)
        self._sink.abort()


class LocalStorage:
    """Audio files under one directory (shared by the API and the workers on one machine)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def open_write(self, key: str) -> Sink:
        return _FileSink(self.path(key))

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(f"no stored object {key!r}")
        yield path

    def local_path(self, key: str) -> Path | None:
        return self.path(key)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def _files(self) -> Iterator[Path]:
        if not self.root.is_dir():
            return
        for folder, _, names in os.walk(self.root):
            for name in names:
                yield Path(folder, name)

    def keys_older_than(self, before: float) -> Iterator[str]:
        for path in self._files():
            key = path.relative_to(self.root).as_posix()
            if _KEY.match(key):
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < before:
                        yield key

    def sweep_incomplete(self, before: float) -> int:
        removed = 0
        for path in self._files():
            if path.name.startswith(".") and path.name.endswith(".part"):
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < before:
                        path.unlink()
                        removed += 1
        return removed

    def ready(self) -> bool:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
        return os.access(self.root, os.W_OK | os.X_OK)


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status:
            return str(status)
    return type(exc).__name__


def _is_missing(exc: BaseException) -> bool:
    return _error_code(exc) in ("NoSuchKey", "404", "NotFound")


class _S3Sink(_SinkBase):
    """A multipart upload, one part buffered at a time; a small object is one PUT."""

    def __init__(self, store: S3Storage, key: str, part_size: int) -> None:
        self._store, self._key, self._part_size = store, key, part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            room = self._part_size - len(self._buffer)
            self._buffer += view[:room]
            view = view[room:]
            if len(self._buffer) >= self._part_size:
                self._upload_part()

    def _upload_part(self) -> None:
        client = self._store.client()
        bucket = self._store.bucket
        with self._store.translated(self._key):
            if self._upload_id is None:
                started = client.create_multipart_upload(Bucket=bucket, Key=self._key)
                self._upload_id = str(started["UploadId"])
            number = len(self._parts) + 1
            done = client.upload_part(
                Bucket=bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=bytes(self._buffer),
            )
        self._parts.append({"ETag": done["ETag"], "PartNumber": number})
        self._buffer.clear()

    def _commit(self) -> None:
        client = self._store.client()
        if self._upload_id is None:
            with self._store.translated(self._key):
                client.put_object(
                    Bucket=self._store.bucket, Key=self._key, Body=bytes(self._buffer)
                )
            self._buffer.clear()
            return
        if self._buffer:
            self._upload_part()  # the last part may be smaller than the minimum
        with self._store.translated(self._key):
            client.complete_multipart_upload(
                Bucket=self._store.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )

    def _discard(self) -> None:
        self._buffer.clear()
        if self._upload_id is None:
            return
        try:
            self._store.client().abort_multipart_upload(
                Bucket=self._store.bucket, Key=self._key, UploadId=self._upload_id
            )
        except Exception as exc:  # the orphan sweep aborts it later
            log.warning("could not abort the upload of %s: %s", self._key, _error_code(exc))


_session_lock = threading.Lock()
_sessions: dict[int, Any] = {}


def _new_client(**kwargs: Any) -> Any:
    """An S3 client from this process's one boto3 session (making a session reads the
    service models: slow). Sessions are not thread-safe, so clients are made under a lock."""
    import boto3

    with _session_lock:
        pid = os.getpid()
        if pid not in _sessions:
            _sessions.clear()
            _sessions[pid] = boto3.session.Session()
        return _sessions[pid].client("s3", **kwargs)


class S3Storage:
    """Objects under `prefix/` in an S3-compatible bucket. Credentials and region come from
    the usual AWS environment (or config files, or an instance role), never from settings."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        scratch_dir: Path,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        part_size: int = PART_SIZE,
    ) -> None:
        if part_size < 5 * 1024 * 1024:
            raise ValueError("S3 multipart parts must be at least 5 MiB")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.scratch_dir = scratch_dir
        self.endpoint_url = endpoint_url
        self.region = region
        self.part_size = part_size
        self._lock = threading.Lock()
        self._client: Any = None
        self._pid = 0

    def __repr__(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return f"S3Storage({where!r}, endpoint={self.endpoint_url!r})"

    def client(self) -> Any:
        """A boto3 client for this process (made again after a fork; shared by threads)."""
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                from botocore.config import Config

                config = Config(
                    connect_timeout=5,
                    read_timeout=60,
                    retries={"mode": "standard", "max_attempts": 3},
                    # Only what S3 requires: newer default checksums trip some S3-compatible
                    # stores (older MinIO, GCS).
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    # A custom endpoint (MinIO, R2, a loopback test server) has no per-bucket
                    # DNS names.
                    s3={"addressing_style": "path" if self.endpoint_url else "auto"},
                )
                self._client = _new_client(
                    endpoint_url=self.endpoint_url, region_name=self.region, config=config
                )
                self._pid = os.getpid()
            return self._client

    def object_key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _key_of(self, object_key: str) -> str | None:
        lead = f"{self.prefix}/" if self.prefix else ""
        if not object_key.startswith(lead):
            return None
        key = object_key[len(lead) :]
        return key if len(key) <= _MAX_KEY and _KEY.match(key) else None

    @contextlib.contextmanager
    def translated(self, key: str) -> Iterator[None]:
        """botocore errors as FileNotFoundError (no such object) or StorageUnavailable."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            if _is_missing(exc):
                raise FileNotFoundError(f"no stored object {key!r}") from exc
            raise StorageUnavailable(f"object store error on {key!r}: {_error_code(exc)}") from exc

    def open_write(self, key: str) -> Sink:
        return _S3Sink(self, self.object_key(key), self.part_size)

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        """Streams the object down in chunks to a scratch file, removed on exit."""
        name = self.object_key(key)
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        fd, raw = tempfile.mkstemp(prefix="audio-", suffix=".tmp", dir=self.scratch_dir)
        path = Path(raw)
        try:
            with os.fdopen(fd, "wb") as out, self.translated(key):
                body = self.client().get_object(Bucket=self.bucket, Key=name)["Body"]
                try:
                    for chunk in body.iter_chunks(DOWNLOAD_CHUNK):
                        out.write(chunk)
                finally:
                    body.close()
            yield path
        finally:
            path.unlink(missing_ok=True)

    def local_path(self, key: str) -> Path | None:
        validate_key(key)
        return None

    def exists(self, key: str) -> bool:
        try:
            with self.translated(key):
                self.client().head_object(Bucket=self.bucket, Key=self.object_key(key))
        except FileNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        with self.translated(key):
            self.client().delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def _list_prefix(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def keys_older_than(self, before: float) -> Iterator[str]:
        pages = self.client().get_paginator("list_objects_v2")
        with self.translated(self._list_prefix()):
            for page in pages.paginate(Bucket=self.bucket, Prefix=self._list_prefix()):
                for item in page.get("Contents", []):
                    key = self._key_of(item["Key"])
                    if key is not None and item["LastModified"].timestamp() < before:
                        yield key

    def sweep_incomplete(self, before: float) -> int:
        client = self.client()
        removed = 0
        with self.translated(self._list_prefix()):
            pages = client.get_paginator("list_multipart_uploads")
            for page in pages.paginate(Bucket=self.bucket, Prefix=self._list_prefix()):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"].timestamp() < before:
                        client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        removed += 1
        return removed

    def ready(self) -> bool:
        try:
            with self.translated(""):
                self.client().head_bucket(Bucket=self.bucket)
        except (StorageUnavailable, FileNotFoundError):
            return False
        return True


def discard(storage: Storage, key: str) -> None:
    """Delete `key` if it can be; log otherwise (the reconciler's orphan sweep retries)."""
    try:
        storage.delete(key)
    except Exception as exc:
        log.warning("could not delete stored audio %s (%s); the sweep will", key, exc)


def clean_scratch(folder: Path, max_age_s: float = SCRATCH_MAX_AGE_S) -> int:
    """Remove scratch files a killed process left behind (none is in use for a day)."""
    removed = 0
    if not folder.is_dir():
        return 0
    cutoff = time.time() - max_age_s
    for path in folder.iterdir():
        with contextlib.suppress(OSError):
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed


def make_storage(settings: Settings) -> Storage:
    """The backend `STT_STORAGE_URL` names: unset → `$STT_DATA_DIR/audio`, `file:///dir` → that
    directory, `s3://bucket/prefix` → the bucket (endpoint from `STT_S3_ENDPOINT_URL`)."""
    clean_scratch(settings.storage.scratch_dir)
    url = settings.storage.url
    parts = urlsplit(url or "")
    if parts.scheme != "s3":
        local = LocalStorage(Path(parts.path) if url else settings.storage.audio_dir)
        local.root.mkdir(parents=True, exist_ok=True)
        return local
    return S3Storage(
        parts.netloc,
        parts.path,
        settings.storage.scratch_dir,
        endpoint_url=settings.storage.s3_endpoint_url,
        region=settings.storage.s3_region,
        # S3 allows 10,000 parts: larger parts if the upload limit needs them.
        part_size=max(PART_SIZE, -(-settings.limits.max_upload_bytes // MAX_PARTS)),
    )
