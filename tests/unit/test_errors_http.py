"""Error responses over HTTP, in-process: status and shape for both path families.

Every request here fails before a job is queued, so no worker is needed; each test also
checks that nothing was left behind (no stored audio, no job rows).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar, get
from litestar.exceptions import HTTPException
from litestar.testing import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DataError, InterfaceError, OperationalError, ProgrammingError

from api.app import create_app
from api.errors import EXCEPTION_HANDLERS, OPENAI_ERROR_TYPES
from core import errors as errors_module
from core.errors import ALL_ERRORS, ModelNotFound, NotFound, SttError
from core.migrate import upgrade
from core.settings import Settings, load_settings
from tests.support import clip

KEY = "k1"
BEARER = {"Authorization": f"Bearer {KEY}"}
CARTESIA = "/stt"
TRANSLATIONS = ("/v1/audio/translations", "/audio/translations")
OPENAI_PATHS = ("/v1/audio/transcriptions", "/audio/transcriptions", *TRANSLATIONS)
PATHS = (CARTESIA, *OPENAI_PATHS)
MODEL = {"model": "whisper-1"}

CARTESIA_KEYS = {"error_code", "title", "message", "request_id"}
OPENAI_KEYS = {"message", "type", "param", "code"}


@dataclass
class Service:
    settings: Settings
    client: TestClient[Litestar]

    def post(
        self,
        path: str,
        *,
        data: Mapping[str, Any] | None = None,
        file: bytes | None = None,
        filename: str = "audio.wav",
        headers: Mapping[str, str] | None = BEARER,
        **kwargs: Any,
    ) -> httpx.Response:
        files = {"file": (filename, file, "application/octet-stream")} if file is not None else None
        if files is None and data is not None:
            # Still multipart: httpx sends a urlencoded body for data without files.
            files = {"unrelated": ("x.txt", b"", "text/plain")}
        return self.client.post(path, data=data, files=files, headers=headers, **kwargs)

    def leftovers(self) -> tuple[list[Path], int]:
        """Stored files and job rows (there should be none), removed for the next test."""
        files = [
            Path(root, n)
            for root, _, names in os.walk(self.settings.storage.audio_dir)
            for n in names
        ]
        for path in files:
            path.unlink()
        engine = create_engine(self.settings.database.url)
        try:
            with engine.begin() as conn:
                jobs = int(conn.execute(text("SELECT count(*) FROM jobs")).scalar_one())
                conn.execute(text("DELETE FROM jobs"))
        finally:
            engine.dispose()
        return files, jobs


_services: list[Service] = []


def _start(tmp: Path, env: Mapping[str, str]) -> Iterator[Service]:
    settings = load_settings({"STT_DATA_DIR": str(tmp), "STT_API_KEY": KEY, **env})
    upgrade(settings.database.url)
    with TestClient(create_app(settings)) as client:
        service = Service(settings, client)
        _services.append(service)
        yield service
        _services.remove(service)


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from _start(
        tmp_path_factory.mktemp("stt"), {"STT_MODEL_ALIASES": '{"english": "bundled:tiny.en"}'}
    )


@pytest.fixture(scope="module")
def small_uploads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from _start(tmp_path_factory.mktemp("small"), {"STT_MAX_UPLOAD_BYTES": "1000"})


@pytest.fixture(scope="module")
def short_audio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from _start(tmp_path_factory.mktemp("short"), {"STT_MAX_AUDIO_SECONDS": "1"})


@pytest.fixture(autouse=True)
def nothing_left_behind() -> Iterator[None]:
    yield
    left = [service.leftovers() for service in _services]
    assert all(found == ([], 0) for found in left), left


@pytest.fixture(scope="module")
def wav() -> bytes:
    return clip("en_fleurs_004.ogg").path.read_bytes()


def assert_error(
    response: httpx.Response,
    path: str,
    status: int,
    code: str | None = None,
    param: str | None = None,
) -> str:
    """Check the status and the family's shape; return the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if path.startswith("/stt"):
        assert set(body) == CARTESIA_KEYS, body
        assert all(isinstance(body[k], str) and body[k] for k in CARTESIA_KEYS)
        if code is not None:
            assert body["error_code"] == code
        message: str = body["message"]
    else:
        assert set(body) == {"error"}, body
        error = body["error"]
        assert set(error) == OPENAI_KEYS, body
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["type"], str)
        if code is not None:
            assert error["code"] == code
        if param is not None:
            assert error["param"] == param
        message = error["message"]
    return message


# --- authentication ------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_no_key(svc: Service, path: str, wav: bytes) -> None:
    r = svc.post(path, data=MODEL, file=wav, headers={})
    assert_error(r, path, 401, "invalid_api_key")
    if path != CARTESIA:
        assert r.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong"},
        {"X-API-Key": "wrong"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {KEY}x"},
    ],
)
def test_wrong_key(svc: Service, path: str, headers: dict[str, str], wav: bytes) -> None:
    assert_error(svc.post(path, data=MODEL, file=wav, headers=headers), path, 401)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "headers", [BEARER, {"X-API-Key": KEY}, {"authorization": f"bearer {KEY}"}]
)
def test_key_accepted(svc: Service, path: str, headers: dict[str, str], wav: bytes) -> None:
    """Authentication passes, so the unknown model is what is reported."""
    r = svc.post(path, data={"model": "nope"}, file=wav, headers=headers)
    assert_error(r, path, 400, "model_not_found", "model")


# --- the form --------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_no_file(svc: Service, path: str) -> None:
    message = assert_error(svc.post(path, data=MODEL), path, 400, "invalid_request", "file")
    assert "file" in message


@pytest.mark.parametrize("path", PATHS)
def test_file_under_another_name_is_not_the_file(svc: Service, path: str, wav: bytes) -> None:
    r = svc.client.post(path, data=MODEL, files={"audio": ("a.ogg", wav)}, headers=BEARER)
    assert_error(r, path, 400, "invalid_request", "file")


@pytest.mark.parametrize("path", PATHS)
def test_empty_file(svc: Service, path: str) -> None:
    r = svc.post(path, data=MODEL, file=b"")
    assert "empty" in assert_error(r, path, 400, "invalid_request", "file")


@pytest.mark.parametrize("path", PATHS)
def test_two_files(svc: Service, path: str, wav: bytes) -> None:
    files = [("file", ("a.ogg", wav)), ("file", ("b.ogg", wav))]
    r = svc.client.post(path, data=MODEL, files=files, headers=BEARER)
    assert_error(r, path, 400, "invalid_request", "file")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", ["random.wav", "notes.txt", "cut.mp3"])
def test_not_audio(svc: Service, path: str, name: str) -> None:
    data = {
        "random.wav": os.urandom(4096),
        "notes.txt": b"Not audio, just some text.\n" * 40,
        # The first 1 KB: the header claims 8 s, the data holds a fraction of one.
        "cut.mp3": clip("en_ljspeech_LJ001-0005.mp3").path.read_bytes()[:1024],
    }[name]
    r = svc.post(path, data=MODEL, file=data, filename=name)
    assert_error(r, path, 415, "unsupported_audio", None)


@pytest.mark.parametrize("path", PATHS)
def test_unknown_model(svc: Service, path: str, wav: bytes) -> None:
    r = svc.post(path, data={"model": "gpt-4o-transcribe"}, file=wav)
    message = assert_error(r, path, 400, "model_not_found", "model")
    assert "whisper-1" in message
    assert "ink-whisper" in message


@pytest.mark.parametrize("path", PATHS)
def test_missing_model(svc: Service, path: str, wav: bytes) -> None:
    assert_error(svc.post(path, data={}, file=wav), path, 400, "model_not_found", "model")


@pytest.mark.parametrize("path", PATHS)
def test_conflicting_model_fields(svc: Service, path: str, wav: bytes) -> None:
    r = svc.post(path, data={"model": ["whisper-1", "ink-whisper"]}, file=wav)
    assert_error(r, path, 400, "invalid_request", "model")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("language", ["xx", "english", "en-US"])
def test_invalid_language(svc: Service, path: str, language: str, wav: bytes) -> None:
    r = svc.post(path, data={**MODEL, "language": language}, file=wav)
    assert_error(r, path, 400, "invalid_request", "language")


@pytest.mark.parametrize("path", [p for p in PATHS if p not in TRANSLATIONS])
def test_english_only_model_refuses_french(svc: Service, path: str, wav: bytes) -> None:
    r = svc.post(path, data={"model": "english", "language": "fr"}, file=wav)
    assert "English-only" in assert_error(r, path, 400, "invalid_request", "language")


@pytest.mark.parametrize("path", TRANSLATIONS)
@pytest.mark.parametrize("language", [None, "en", "fr"])
def test_english_only_model_cannot_translate(
    svc: Service, path: str, language: str | None, wav: bytes
) -> None:
    data = {"model": "english", **({"language": language} if language else {})}
    message = assert_error(svc.post(path, data=data, file=wav), path, 400, "invalid_request")
    assert "cannot translate" in message and "multilingual" in message
    assert svc.post(path, data=data, file=wav).json()["error"]["param"] == "model"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stream", ["yes", "2", "True!"])
def test_bad_stream(svc: Service, path: str, stream: str, wav: bytes) -> None:
    r = svc.post(path, data={**MODEL, "stream": stream}, file=wav)
    assert_error(r, path, 400, "invalid_request", "stream")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("field", ["timestamp_granularities[]", "timestamp_granularities"])
def test_unknown_granularity(svc: Service, path: str, field: str, wav: bytes) -> None:
    r = svc.post(path, data={**MODEL, field: ["word", "sentence"]}, file=wav)
    message = assert_error(r, path, 400, "invalid_request", "timestamp_granularities")
    assert "sentence" in message


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("fmt", ["xml", "JSON", "srt "])
def test_bad_response_format(svc: Service, path: str, fmt: str, wav: bytes) -> None:
    r = svc.post(path, data={**MODEL, "response_format": fmt}, file=wav)
    assert_error(r, path, 400, "invalid_request", "response_format")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("temperature", ["5", "-0.1", "hot", "nan", "inf"])
def test_bad_temperature(svc: Service, path: str, temperature: str, wav: bytes) -> None:
    r = svc.post(path, data={**MODEL, "temperature": temperature}, file=wav)
    assert_error(r, path, 400, "invalid_request", "temperature")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"model": "whisper-1"}'),
        ("application/x-www-form-urlencoded", b"model=whisper-1"),
        ("multipart/form-data", b"no boundary"),
        (f"multipart/form-data; boundary=abc{'d' * 200}", b"long boundary"),
    ],
)
def test_not_multipart(svc: Service, path: str, content_type: str, body: bytes) -> None:
    r = svc.client.post(path, content=body, headers={**BEARER, "Content-Type": content_type})
    assert_error(r, path, 400, "invalid_request")


@pytest.mark.parametrize("path", PATHS)
def test_truncated_multipart(svc: Service, path: str, wav: bytes) -> None:
    boundary = "xyzzy"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.ogg"\r\n\r\n'
    ).encode() + wav[:2000]
    headers = {**BEARER, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    r = svc.client.post(path, content=body, headers=headers)
    assert "truncated" in assert_error(r, path, 400, "invalid_request")


# --- Cartesia's raw PCM query parameters --------------------------------------------------


def test_raw_encoding_without_sample_rate(svc: Service) -> None:
    r = svc.post("/stt?encoding=pcm_s16le", data=MODEL, file=b"\x00\x01" * 100)
    assert "sample_rate" in assert_error(r, CARTESIA, 400, "invalid_request")


@pytest.mark.parametrize(
    "query",
    [
        "encoding=bogus&sample_rate=16000",
        "encoding=pcm_s16le&sample_rate=fast",
        "encoding=pcm_s16le&sample_rate=999",
        "sample_rate=abc",
    ],
)
def test_bad_raw_query(svc: Service, query: str) -> None:
    r = svc.post(f"/stt?{query}", data=MODEL, file=b"\x00\x01" * 100)
    assert_error(r, CARTESIA, 400, "invalid_request")


def test_empty_raw_upload(svc: Service) -> None:
    r = svc.post("/stt?encoding=pcm_s16le&sample_rate=16000", data=MODEL, file=b"\x00")
    assert_error(r, CARTESIA, 415, "unsupported_audio")


# --- limits -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_upload_over_the_limit(small_uploads: Service, path: str) -> None:
    r = small_uploads.post(path, data=MODEL, file=os.urandom(5000))
    assert_error(r, path, 413, "payload_too_large", "file")


@pytest.mark.parametrize("path", PATHS)
def test_body_over_the_request_limit(small_uploads: Service, path: str) -> None:
    """A body larger than the upload limit plus the form's overhead is cut off by Litestar."""
    r = small_uploads.post(path, data=MODEL, file=b"\x00" * (1024 * 1024 + 2000))
    assert "larger than the upload limit" in assert_error(r, path, 413, "payload_too_large")


@pytest.mark.parametrize("path", PATHS)
def test_upload_at_the_limit_passes_the_size_check(small_uploads: Service, path: str) -> None:
    r = small_uploads.post(path, data=MODEL, file=os.urandom(1000))
    assert_error(r, path, 415, "unsupported_audio")


@pytest.mark.parametrize("path", PATHS)
def test_audio_over_the_duration_limit(short_audio: Service, path: str) -> None:
    data = clip("en_jfk_inaugural.flac").path.read_bytes()
    r = short_audio.post(path, data=MODEL, file=data, filename="jfk.flac")
    message = assert_error(r, path, 413, "payload_too_large", "file")
    assert "11 s" in message


def test_raw_audio_over_the_duration_limit(short_audio: Service) -> None:
    r = short_audio.post(
        "/stt?encoding=pcm_s16le&sample_rate=8000", data=MODEL, file=b"\x00\x00" * 8001
    )
    assert_error(r, CARTESIA, 413, "payload_too_large")


# --- routing ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/stt/nope", "/v1/nope", "/nope", "/v1/audio/speech"])
def test_unknown_route(svc: Service, path: str) -> None:
    assert_error(svc.client.get(path, headers=BEARER), path, 404, "not_found")
    assert_error(svc.client.post(path, headers=BEARER), path, 404, "not_found")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_wrong_method(svc: Service, path: str, method: str) -> None:
    r = svc.client.request(method, path, headers=BEARER)
    assert_error(r, path, 405, "method_not_allowed")


# --- models -------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/v1"])
def test_models_in_openais_list_shape(svc: Service, prefix: str) -> None:
    body = svc.client.get(f"{prefix}/models", headers=BEARER).json()
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert ids == [
        "english",
        "gpt-4o-transcribe-diarize",
        "ink-whisper",
        "ink-whisper-2025-06-04",
        "whisper-1",
    ]
    for m in body["data"]:
        assert set(m) == {"id", "object", "created", "owned_by"}
        assert m["object"] == "model" and isinstance(m["created"], int) and m["owned_by"]
    one = svc.client.get(f"{prefix}/models/whisper-1", headers=BEARER).json()
    assert one == next(m for m in body["data"] if m["id"] == "whisper-1")


@pytest.mark.parametrize("prefix", ["", "/v1"])
def test_unknown_model_id_is_a_404(svc: Service, prefix: str) -> None:
    path = f"{prefix}/models/gpt-4o-transcribe"
    r = svc.client.get(path, headers=BEARER)
    assert "gpt-4o-transcribe" in assert_error(r, path, 404, "model_not_found", "model")


@pytest.mark.parametrize("path", ["/models", "/v1/models", "/v1/models/whisper-1"])
def test_models_need_a_key(svc: Service, path: str) -> None:
    assert_error(svc.client.get(path), path, 401, "invalid_api_key")
    assert_error(svc.client.get(path, headers={"Authorization": "Bearer no"}), path, 401)


def test_liveness(svc: Service) -> None:
    assert svc.client.get("/health/live").json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/health/live", "/health/ready"])
def test_head_on_health_is_answered_like_get(svc: Service, path: str) -> None:
    """Load balancers probe with HEAD: the status of GET, no body (never a 405)."""
    head, got = svc.client.head(path), svc.client.get(path)
    assert head.status_code == got.status_code != 405
    assert head.content == b""


# --- every error class, in both shapes ----------------------------------------------------


@get(["/stt/raise/{index:int}", "/v1/raise/{index:int}"])
async def raise_error(index: int) -> None:
    error = ALL_ERRORS[index]("boom", param="p", headers={"X-Test": "yes"})
    raise error


@get(["/stt/raise-http/{status:int}", "/v1/raise-http/{status:int}"])
async def raise_http(status: int) -> None:
    raise HTTPException(status_code=status, detail="custom detail")


@get(["/stt/raise-db", "/v1/raise-db"])
async def raise_db() -> None:
    raise OperationalError("SELECT 1", {}, Exception("connection refused"))


@get(["/stt/raise-db-interface", "/v1/raise-db-interface"])
async def raise_db_interface() -> None:
    raise InterfaceError("SELECT 1", {}, Exception("connection closed"))


@get(["/stt/raise-db-data", "/v1/raise-db-data"])
async def raise_db_data() -> None:
    raise DataError("SELECT 1", {}, Exception("invalid byte sequence for encoding UTF8: 0x00"))


@get(["/stt/raise-db-bug", "/v1/raise-db-bug"])
async def raise_db_bug() -> None:
    raise ProgrammingError("SELEC 1", {}, Exception("syntax error"))


@get(["/stt/raise-bug", "/v1/raise-bug"])
async def raise_bug() -> None:
    raise KeyError("secret internal detail")


@pytest.fixture(scope="module")
def tiny() -> Iterator[TestClient[Litestar]]:
    app = Litestar(
        route_handlers=[
            raise_error,
            raise_http,
            raise_db,
            raise_db_interface,
            raise_db_data,
            raise_db_bug,
            raise_bug,
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        logging_config=None,
    )
    with TestClient(app) as client:
        yield client


OPENAI_TYPES = {
    401: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
    507: "server_error",
}


@pytest.mark.parametrize("prefix", ["/stt", "/v1"])
@pytest.mark.parametrize("index", range(len(ALL_ERRORS)), ids=[e.__name__ for e in ALL_ERRORS])
def test_every_error_renders(tiny: TestClient[Litestar], prefix: str, index: int) -> None:
    cls: type[SttError] = ALL_ERRORS[index]
    path = f"{prefix}/raise/{index}"
    r = tiny.get(path)
    assert assert_error(r, path, cls.status, cls.code, "p") == "boom"
    assert r.headers["x-test"] == "yes"
    body = r.json()
    if prefix == "/stt":
        assert body["title"] == cls.title
    else:
        assert body["error"]["type"] == OPENAI_TYPES.get(cls.status, "invalid_request_error")


def test_error_classes_are_distinct() -> None:
    # UnknownModel (400) and ModelNotFound (404) share OpenAI's `model_not_found` code.
    assert len({(e.status, e.code) for e in ALL_ERRORS}) == len(ALL_ERRORS)
    assert all(400 <= e.status < 600 for e in ALL_ERRORS)


def test_all_errors_is_the_whole_tree() -> None:
    def walk(cls: type[SttError]) -> set[type[SttError]]:
        return {c for sub in cls.__subclasses__() for c in {sub, *walk(sub)}}

    assert set(ALL_ERRORS) == walk(SttError)
    assert ModelNotFound in ALL_ERRORS and issubclass(ModelNotFound, NotFound)
    assert all(cls.__name__ in errors_module.__doc__ for cls in ALL_ERRORS)  # type: ignore[operator]


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=[e.__name__ for e in ALL_ERRORS])
def test_every_error_class_has_an_http_mapping(cls: type[SttError]) -> None:
    """A class added to the tree without its OpenAI `type` fails here (not via its base)."""
    assert cls in OPENAI_ERROR_TYPES
    assert OPENAI_ERROR_TYPES[cls] == OPENAI_TYPES.get(cls.status, "invalid_request_error")


@pytest.mark.parametrize("prefix", ["/stt", "/v1"])
def test_http_exceptions(tiny: TestClient[Litestar], prefix: str) -> None:
    path = f"{prefix}/raise-http/429"
    assert assert_error(tiny.get(path), path, 429, "rate_limited") == "custom detail"
    path = f"{prefix}/raise-http/413"
    message = assert_error(tiny.get(path), path, 413, "payload_too_large")
    assert message == "the request body is larger than the upload limit"
    path = f"{prefix}/raise-http/418"
    assert_error(tiny.get(path), path, 418, "error")


@pytest.mark.parametrize("prefix", ["/stt", "/v1"])
def test_database_errors_are_503(tiny: TestClient[Litestar], prefix: str) -> None:
    for kind in ("raise-db", "raise-db-interface"):
        r = tiny.get(f"{prefix}/{kind}")
        assert_error(r, prefix, 503, "service_unavailable")
        assert r.headers["retry-after"] == "5"


@pytest.mark.parametrize("prefix", ["/stt", "/v1"])
def test_only_connection_errors_are_503(tiny: TestClient[Litestar], prefix: str) -> None:
    """Bad data is the client's (400); any other driver error is a bug (500), not an outage."""
    r = tiny.get(f"{prefix}/raise-db-data")
    assert "NUL" in assert_error(r, prefix, 400, "invalid_request")
    r = tiny.get(f"{prefix}/raise-db-bug")
    assert assert_error(r, prefix, 500, "internal_error") == "an unexpected error occurred"
    assert "syntax" not in r.text


@pytest.mark.parametrize("prefix", ["/stt", "/v1"])
def test_unexpected_errors_are_500_without_details(tiny: TestClient[Litestar], prefix: str) -> None:
    r = tiny.get(f"{prefix}/raise-bug")
    assert assert_error(r, prefix, 500, "internal_error") == "an unexpected error occurred"
    assert "secret" not in r.text
