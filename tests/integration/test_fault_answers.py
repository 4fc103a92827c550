"""Faults that answer in words: storage full or refusing writes is a 507 or 503 (with
`Retry-After`) in both path families, bad ids and cursors are 4xx on Postgres and SQLite
(never a database outage), and a process that cannot start says why in one line."""

from __future__ import annotations

import base64
import errno
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import create_engine, text

from api.app import create_app
from api.state import AppState
from core.migrate import upgrade
from core.settings import load_settings
from core.storage import LocalStorage, Sink
from tests.support import ROOT, clip, free_port

KEY = "sk-stt-fault-key"
BEARER = {"Authorization": f"Bearer {KEY}"}
PATHS = ("/stt", "/v1/audio/transcriptions", "/stt/jobs")


def post(client: TestClient[Litestar], path: str, audio: bytes) -> httpx.Response:
    files = {"file": ("a.ogg", audio, "application/octet-stream")}
    return client.post(path, data={"model": "whisper-1"}, files=files, headers=BEARER)


def error_code(response: httpx.Response, path: str) -> str:
    """The family's code, after checking the family's shape."""
    body = response.json()
    if path.startswith("/stt"):
        assert set(body) == {"error_code", "title", "message", "request_id"}, body
        assert body["message"]
        return str(body["error_code"])
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "server_error" or response.status_code < 500
    return str(body["error"]["code"])


def job_rows(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM jobs")).scalar_one())
    finally:
        engine.dispose()


def app_for(data_dir: Path, **env: str) -> Iterator[TestClient[Litestar]]:
    settings = load_settings({"STT_DATA_DIR": str(data_dir), "STT_API_KEY": KEY, **env})
    upgrade(settings.database.url)
    with TestClient(create_app(settings)) as client:
        yield client


# --- storage faults through a real filesystem ----------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A private 1 MiB tmpfs (root only), unmounted afterwards."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def remount_read_only(mount: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)


@pytest.fixture
def big_audio() -> bytes:
    """Real speech larger than the 1 MiB tmpfs."""
    audio = clip("en_jfk_inaugural.flac").path.read_bytes()
    assert len(audio) > 1024 * 1024
    return audio


@pytest.mark.parametrize("path", PATHS)
def test_storage_full_is_507_in_the_familys_shape(
    tmp_path: Path, small_tmpfs: Path, big_audio: bytes, path: str
) -> None:
    audio_dir = small_tmpfs / "audio"
    for client in app_for(tmp_path / "data", STT_STORAGE_URL=f"file://{audio_dir}"):
        r = post(client, path, big_audio)
        assert r.status_code == 507, r.text
        assert error_code(r, path) == "insufficient_storage"
        assert r.headers["retry-after"] == "30"
        assert "full" in r.text
        # nothing half-written is left, and the service still answers
        assert [p for p in audio_dir.rglob("*") if p.is_file()] == []
        assert client.get("/health/live").status_code == 200
    assert job_rows(f"sqlite:///{tmp_path / 'data' / 'stt.db'}") == 0


@pytest.mark.parametrize("path", PATHS)
def test_read_only_storage_is_503_with_retry_after(
    tmp_path: Path, small_tmpfs: Path, path: str
) -> None:
    audio_dir = small_tmpfs / "audio"
    audio_dir.mkdir()
    for client in app_for(tmp_path / "data", STT_STORAGE_URL=f"file://{audio_dir}"):
        remount_read_only(small_tmpfs)
        r = post(client, path, clip("en_fleurs_004.ogg").path.read_bytes())
        assert r.status_code == 503, r.text
        assert error_code(r, path) == "storage_unavailable"
        assert r.headers["retry-after"] == "30"
        assert "read-only" in r.text


# --- every storage errno, through a storage whose disk fails --------------------------------


class _FailingFile:
    def __init__(self, err: int) -> None:
        self.err = err

    def write(self, data: bytes) -> int:
        raise OSError(self.err, os.strerror(self.err))

    def close(self) -> None:
        pass


class FailingDisk(LocalStorage):
    """Local storage whose files fail every write with one errno (no root needed)."""

    def __init__(self, root: Path, err: int) -> None:
        super().__init__(root)
        self.err = err

    def open_write(self, key: str) -> Sink:
        sink = super().open_write(key)
        real = sink._file  # type: ignore[attr-defined]
        real.close()
        sink._file = _FailingFile(self.err)  # type: ignore[attr-defined]
        return sink


ERRNOS = {
    errno.ENOSPC: (507, "insufficient_storage"),
    errno.EDQUOT: (507, "insufficient_storage"),
    errno.EROFS: (503, "storage_unavailable"),
    errno.EACCES: (503, "storage_unavailable"),
    errno.EIO: (503, "storage_unavailable"),
}


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient[Litestar]]:
    yield from app_for(tmp_path_factory.mktemp("plain"))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("err", list(ERRNOS), ids=[errno.errorcode[e] for e in ERRNOS])
def test_each_storage_errno_answers_in_words(
    plain: TestClient[Litestar], tmp_path: Path, path: str, err: int
) -> None:
    state = AppState.of(plain.app.state)
    real = state.storage
    state.storage = FailingDisk(tmp_path, err)
    try:
        r = post(plain, path, clip("en_fleurs_004.ogg").path.read_bytes())
    finally:
        state.storage = real
    status, code = ERRNOS[err]
    assert r.status_code == status, r.text
    assert error_code(r, path) == code
    assert r.headers["retry-after"] == "30"
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


# --- ids and cursors never reach the database malformed ------------------------------------


def cursor(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


BAD_IDS = ["%00", "abc%00def", "0" * 31 + "%00", "A" * 32, "x" * 5000]
BAD_CURSORS = [
    "%00",
    "abc%00",
    cursor(["2026-01-01T00:00:00+00:00", "\x00" * 32]),
    cursor(["2026-01-01T00:00:00\x00+00:00", uuid.uuid4().hex]),
    cursor(["2026-01-01T00:00:00", uuid.uuid4().hex]),  # naive: not one the service made
    cursor({"a": 1}),
    "!!!!",
    "A" * 5000,
]


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[TestClient[Litestar], list[str]]]:
    env = {}
    if request.param == "postgres":
        env["DATABASE_URL"] = request.getfixturevalue("pg_url")
    messages: list[str] = []
    for client in app_for(tmp_path, **env):
        yield client, messages


@pytest.mark.parametrize("job_id", BAD_IDS)
@pytest.mark.parametrize("prefix", ["/stt/jobs", "/stt/jobs/{}/transcript"])
def test_a_malformed_job_id_is_a_404(
    any_db: tuple[TestClient[Litestar], list[str]],
    job_id: str,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, _ = any_db
    url = f"{prefix}/{job_id}" if "{}" not in prefix else prefix.format(job_id)
    for method in ("GET", "DELETE") if "{}" not in prefix else ("GET",):
        r = client.request(method, url, headers=BEARER)
        assert r.status_code == 404, r.text
        assert r.json()["error_code"] == "not_found"
        assert len(r.json()["message"]) < 200
    assert "database unavailable" not in caplog.text


@pytest.mark.parametrize("bad", BAD_CURSORS, ids=range(len(BAD_CURSORS)))
def test_a_malformed_cursor_is_a_400(
    any_db: tuple[TestClient[Litestar], list[str]], bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = any_db
    r = client.get(f"/stt/jobs?cursor={bad}", headers=BEARER)
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == "invalid_request"
    assert "database unavailable" not in caplog.text


def test_a_cursor_the_service_made_still_pages(
    any_db: tuple[TestClient[Litestar], list[str]],
) -> None:
    client, _ = any_db
    good = cursor(["2026-01-01T00:00:00+00:00", uuid.uuid4().hex])
    r = client.get(f"/stt/jobs?cursor={good}", headers=BEARER)
    assert r.status_code == 200, r.text
    assert r.json()["data"] == []


def test_a_nul_byte_in_a_stored_field_is_never_an_outage(
    any_db: tuple[TestClient[Litestar], list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    """A NUL in a field that is stored: kept, or refused as the client's input; not a 503."""
    client, _ = any_db
    files = {"file": ("a.ogg", clip("en_fleurs_004.ogg").path.read_bytes(), "audio/ogg")}
    data = {"model": "whisper-1", "prompt": "a\x00b"}
    r = client.post("/stt/jobs", data=data, files=files, headers=BEARER)
    assert r.status_code in (202, 400), r.text
    assert "database unavailable" not in caplog.text


# --- a process that cannot start says why in one line ---------------------------------------


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("STT_", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**base, "STT_LOG_LEVEL": "INFO", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_line(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode != 0, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "cannot start" in lines[0] and all(w in lines[0] for w in words), lines[0]


COMMANDS = {
    "serve": ["-m", "api.cli", "serve", "--workers", "0"],
    "migrate": ["-m", "api.cli", "migrate"],
    "worker": ["-m", "worker"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_unreachable_database_is_one_line(tmp_path: Path, command: str) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://postgres@127.0.0.1:{port}/nothing"
    done = run_cli(COMMANDS[command], {"STT_DATA_DIR": str(tmp_path), "DATABASE_URL": url})
    assert_one_line(done, "unreachable", f"127.0.0.1:{port}")


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[Path]:
    """A directory this process cannot write: a read-only tmpfs as root, else chmod."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(folder)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    if not mounted:
        if os.geteuid() == 0:
            pytest.skip("root cannot be refused by permissions and no tmpfs can be mounted")
        folder.chmod(0o500)
    try:
        yield folder
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=True)
        else:
            folder.chmod(0o700)
            shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_unwritable_storage_is_one_line(unwritable: Path, command: str) -> None:
    done = run_cli(COMMANDS[command], {"STT_DATA_DIR": str(unwritable / "data")})
    assert_one_line(done, "not writable", str(unwritable))
