"""The job API in-process: SQLite and the embedded filesystem broker, no worker.

The broker takes messages with nobody consuming them, so every accepted job stays `queued`.
Each refused submission is checked to leave no stored audio and no job row behind.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import func, select

from api.app import create_app
from api.waiter import JobWaiter
from core.db import make_engine, session_factory, transaction
from core.keys import hash_key
from core.migrate import upgrade
from core.models import ApiKey, Job
from core.queues import BATCH_QUEUE, TRANSCRIBE_TASK
from core.settings import Settings, load_settings
from tests.support import clip

KEY = "k1"
OTHER_KEY = "sk-stt-other-tenant-0123456789"
JOBS = "/stt/jobs"
OPENAI = "/v1/audio/transcriptions"
ASYNC = {"Prefer": "respond-async"}
FORM = {"model": "ink-whisper", "language": "en"}
JOB_FIELDS = {
    "id",
    "status",
    "model",
    "language",
    "created_at",
    "started_at",
    "completed_at",
    "duration",
    "progress",
    "attempts",
    "retrying",
    "text_so_far",
    "error",
    "result",
}
JFK = clip("en_jfk_inaugural.flac")


@pytest.fixture(scope="module")
def audio() -> bytes:
    return JFK.path.read_bytes()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Service:
    settings: Settings
    client: TestClient[Litestar]
    audio: bytes

    def submit(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        key: str = KEY,
        headers: Mapping[str, str] | None = None,
        path: str = JOBS,
    ) -> httpx.Response:
        files = {"file": ("jfk.flac", self.audio, "audio/flac")}
        return self.client.post(
            path,
            data=dict(FORM if data is None else data),
            files=files,
            headers={**bearer(key), **(headers or {})},
        )

    def get(self, path: str, *, key: str = KEY, **params: Any) -> httpx.Response:
        return self.client.get(path, headers=bearer(key), params=params)

    def delete(self, job_id: str, *, key: str = KEY) -> httpx.Response:
        return self.client.delete(f"{JOBS}/{job_id}", headers=bearer(key))

    def accepted(self, **kwargs: Any) -> dict[str, Any]:
        response = self.submit(**kwargs)
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()
        return body

    def audio_files(self) -> set[Path]:
        return {p for p in self.settings.storage.audio_dir.rglob("*") if p.is_file()}

    def job_rows(self) -> int:
        with self._sessions() as factory, factory() as session:
            return int(session.execute(select(func.count()).select_from(Job)).scalar_one())

    def row(self, job_id: str) -> Job | None:
        with self._sessions() as factory, factory() as session:
            job: Job | None = session.get(Job, job_id)
            return job

    def add_key(self, key: str, tenant: str) -> None:
        with self._sessions() as factory, transaction(factory) as session:
            session.add(ApiKey(tenant=tenant, name=tenant, key_hash=hash_key(key), prefix=key[:11]))

    def broker_messages(self) -> list[tuple[str, str, list[Any]]]:
        """(queue, task, args) of each message waiting in the filesystem broker."""
        out = []
        for path in sorted(self.settings.storage.broker_dir.glob("*.msg")):
            payload = json.loads(path.read_text())
            args = json.loads(base64.b64decode(payload["body"]))[0]
            out.append(
                (path.name.partition(".")[2].removesuffix(".msg"), payload["headers"]["task"], args)
            )
        return out

    @contextmanager
    def _sessions(self) -> Iterator[Any]:
        engine = make_engine(self.settings.database.url)
        try:
            yield session_factory(engine)
        finally:
            engine.dispose()

    @contextmanager
    def nothing_kept(self) -> Iterator[None]:
        """The block's requests leave no new audio file, job row or broker message."""
        before = (self.audio_files(), self.job_rows(), len(self.broker_messages()))
        yield
        assert (self.audio_files(), self.job_rows(), len(self.broker_messages())) == before


Start = Callable[..., Service]


@pytest.fixture
def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, audio: bytes) -> Iterator[Start]:
    """Start services with extra settings; each gets its own data directory."""
    monkeypatch.chdir(tmp_path)  # kombu's filesystem transport writes ./control
    started = 0
    with ExitStack() as stack:

        def _start(**env: str) -> Service:
            nonlocal started
            started += 1
            data_dir = tmp_path / f"svc{started}"
            data_dir.mkdir()
            settings = load_settings({"STT_DATA_DIR": str(data_dir), "STT_API_KEY": KEY, **env})
            upgrade(settings.database.url)
            client = stack.enter_context(TestClient(create_app(settings)))
            return Service(settings, client, audio)

        yield _start


@pytest.fixture
def svc(start: Start) -> Service:
    return start()


def cartesia_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error_code", "title", "message", "request_id"}, body
    assert body["error_code"] == code
    return body


def openai_error(
    response: httpx.Response, status: int, code: str, param: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, body
    assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return error


# --- submit and get ------------------------------------------------------------------------


def test_submit_answers_202_with_the_queued_job(svc: Service) -> None:
    response = svc.submit()
    assert response.status_code == 202, response.text
    job = response.json()
    assert set(job) == JOB_FIELDS
    assert response.headers["location"] == f"{JOBS}/{job['id']}"
    assert job["status"] == "queued"
    assert job["model"] == "ink-whisper"
    assert job["language"] == "en"
    assert isinstance(job["created_at"], str) and job["created_at"].endswith("Z")
    assert job["started_at"] is None
    assert job["completed_at"] is None
    assert job["duration"] == pytest.approx(JFK.duration, abs=0.1)
    assert job["duration"] == pytest.approx(11.0, abs=0.1)
    assert job["progress"] == 0
    assert (job["attempts"], job["retrying"]) == (0, False)  # not yet tried, so not a retry
    assert job["text_so_far"] is None
    assert job["error"] is None
    assert job["result"] is None
    # Submitted jobs go to the batch queue, by task name, carrying only the id.
    assert svc.broker_messages() == [(BATCH_QUEUE, TRANSCRIBE_TASK, [job["id"]])]
    assert len(svc.audio_files()) == 1

    got = svc.get(response.headers["location"])
    assert got.status_code == 200
    assert got.json() == job


def test_language_is_optional(svc: Service) -> None:
    job = svc.accepted(data={"model": "whisper-1"})
    assert job["language"] is None
    assert job["model"] == "whisper-1"


def test_openai_path_with_prefer_respond_async(svc: Service) -> None:
    response = svc.submit(path=OPENAI, headers={"Prefer": "wait=5, Respond-Async"})
    assert response.status_code == 202, response.text
    assert response.headers["preference-applied"] == "respond-async"
    job = response.json()
    assert response.headers["location"] == f"{JOBS}/{job['id']}"
    assert svc.get(f"{JOBS}/{job['id']}").json()["status"] == "queued"


def test_long_poll_returns_after_the_wait(svc: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[tuple[str, float, str | None]] = []
    real_wait = JobWaiter.wait

    async def recording_wait(
        self: JobWaiter,
        job_id: str,
        timeout: float,  # noqa: ASYNC109 (the signature of JobWaiter.wait, which it wraps)
        changed_from: str | None = None,
    ) -> str | None:
        waits.append((job_id, timeout, changed_from))
        return await real_wait(self, job_id, timeout, changed_from=changed_from)

    monkeypatch.setattr(JobWaiter, "wait", recording_wait)
    job = svc.accepted()
    response = svc.get(f"{JOBS}/{job['id']}", wait="0.5")
    assert response.status_code == 200
    assert response.json()["status"] == "queued"  # nothing changed: the job as it was
    assert waits == [(job["id"], 0.5, "queued")]  # it did wait, for the asked time


def test_unknown_job_is_404(svc: Service) -> None:
    cartesia_error(svc.get(f"{JOBS}/{'0' * 32}"), 404, "not_found")
    cartesia_error(svc.delete("0" * 32), 404, "not_found")


def test_job_routes_need_a_key(svc: Service) -> None:
    job = svc.accepted()
    with svc.nothing_kept():
        for response in (
            svc.client.get(f"{JOBS}/{job['id']}"),
            svc.client.get(JOBS),
            svc.client.delete(f"{JOBS}/{job['id']}"),
            svc.client.post(JOBS, files={"file": ("a.flac", svc.audio)}, data=FORM),
            svc.get(JOBS, key="wrong"),
        ):
            cartesia_error(response, 401, "invalid_api_key")
    assert svc.get(f"{JOBS}/{job['id']}").json()["status"] == "queued"


# --- admission control ---------------------------------------------------------------------


def test_per_tenant_backlog_limit(start: Start) -> None:
    svc = start(STT_MAX_QUEUED_PER_TENANT="2")
    svc.add_key(OTHER_KEY, "other")
    first = svc.accepted()
    svc.accepted()
    with svc.nothing_kept():
        refused = svc.submit()
        cartesia_error(refused, 429, "rate_limited")
        assert int(refused.headers["retry-after"]) > 0
        refused = svc.submit(path=OPENAI, headers=ASYNC)
        error = openai_error(refused, 429, "rate_limited")
        assert error["type"] == "rate_limit_error"
        assert int(refused.headers["retry-after"]) > 0
    # Another tenant's backlog is its own.
    svc.accepted(key=OTHER_KEY)
    # A cancelled job no longer counts.
    assert svc.delete(first["id"]).status_code == 200
    svc.accepted()


def test_total_backlog_limit(start: Start) -> None:
    svc = start(STT_MAX_QUEUED_TOTAL="2")
    svc.add_key(OTHER_KEY, "other")
    svc.accepted()
    svc.accepted(key=OTHER_KEY)
    with svc.nothing_kept():
        for key in (KEY, OTHER_KEY):
            refused = svc.submit(key=key)
            cartesia_error(refused, 429, "rate_limited")
            assert "retry-after" in refused.headers
            refused = svc.submit(key=key, path=OPENAI, headers=ASYNC)
            openai_error(refused, 429, "rate_limited")
            assert "retry-after" in refused.headers


# --- cancel and delete ---------------------------------------------------------------------


def test_cancel_a_queued_job_then_delete_it(svc: Service) -> None:
    job = svc.accepted()
    [audio_file] = svc.audio_files()
    response = svc.delete(job["id"])
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["id"] == job["id"]
    assert cancelled["status"] == "cancelled"
    assert cancelled["completed_at"] is not None
    assert cancelled["error"]["code"] == "cancelled"
    assert not audio_file.exists()
    assert svc.audio_files() == set()
    assert svc.get(f"{JOBS}/{job['id']}").json()["status"] == "cancelled"

    # An ended job is deleted outright.
    response = svc.delete(job["id"])
    assert response.status_code == 204
    assert response.content == b""
    cartesia_error(svc.get(f"{JOBS}/{job['id']}"), 404, "not_found")
    assert svc.job_rows() == 0
    cartesia_error(svc.delete(job["id"]), 404, "not_found")


# --- Idempotency-Key -----------------------------------------------------------------------


def test_idempotency_key_replays_the_same_job(svc: Service) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = svc.accepted(headers=headers)
    with svc.nothing_kept():
        again = svc.submit(headers=headers)
        assert again.status_code == 202, again.text
        assert again.json()["id"] == first["id"]
        assert again.headers["location"] == f"{JOBS}/{first['id']}"
    assert svc.job_rows() == 1
    assert len(svc.broker_messages()) == 1  # queued once


def test_idempotency_key_with_another_request_is_409(svc: Service) -> None:
    headers = {"Idempotency-Key": "order-43"}
    svc.accepted(headers=headers)
    with svc.nothing_kept():
        for data in ({**FORM, "language": "fr"}, {"model": "whisper-1", "language": "en"}):
            cartesia_error(svc.submit(data=data, headers=headers), 409, "conflict")
        conflict = svc.submit(
            data={**FORM, "language": "fr"}, headers={**headers, **ASYNC}, path=OPENAI
        )
        openai_error(conflict, 409, "conflict", "Idempotency-Key")


def test_a_translation_is_not_the_transcription_of_the_same_form(svc: Service) -> None:
    headers = {"Idempotency-Key": "order-44", **ASYNC}
    svc.accepted(headers=headers, path=OPENAI)
    with svc.nothing_kept():
        conflict = svc.submit(headers=headers, path="/v1/audio/translations")
        openai_error(conflict, 409, "conflict", "Idempotency-Key")


def test_idempotency_keys_are_per_tenant(svc: Service) -> None:
    svc.add_key(OTHER_KEY, "other")
    headers = {"Idempotency-Key": "shared-name"}
    mine = svc.accepted(headers=headers)
    theirs = svc.accepted(headers=headers, key=OTHER_KEY)
    assert mine["id"] != theirs["id"]
    assert svc.job_rows() == 2


@pytest.mark.parametrize("value", ["x" * 201, "   "])
def test_bad_idempotency_key(svc: Service, value: str) -> None:
    with svc.nothing_kept():
        cartesia_error(svc.submit(headers={"Idempotency-Key": value}), 400, "invalid_request")


# --- webhooks ------------------------------------------------------------------------------


def test_webhook_url_needs_a_secret(svc: Service) -> None:
    data = {**FORM, "webhook_url": "https://93.184.216.34/hook"}
    with svc.nothing_kept():
        body = cartesia_error(svc.submit(data=data), 400, "invalid_request")
        assert "STT_WEBHOOK_SECRET" in body["message"]
        openai_error(
            svc.submit(data=data, path=OPENAI, headers=ASYNC), 400, "invalid_request", "webhook_url"
        )


def test_webhook_to_loopback_is_refused(start: Start) -> None:
    svc = start(STT_WEBHOOK_SECRET="whsec-unit")
    data = {**FORM, "webhook_url": "http://127.0.0.1:9/x"}
    with svc.nothing_kept():
        body = cartesia_error(svc.submit(data=data), 400, "invalid_request")
        assert "private, loopback or link-local" in body["message"]
        openai_error(
            svc.submit(data=data, path=OPENAI, headers=ASYNC), 400, "invalid_request", "webhook_url"
        )


def test_webhook_to_a_public_address_is_kept(start: Start) -> None:
    svc = start(STT_WEBHOOK_SECRET="whsec-unit")
    job = svc.accepted(data={**FORM, "webhook_url": "http://93.184.216.34/hook"})
    row = svc.row(job["id"])
    assert row is not None
    assert row.webhook_url == "http://93.184.216.34/hook"
    assert row.webhook_status == "pending"


def test_webhook_allow_list_admits_loopback(start: Start) -> None:
    svc = start(STT_WEBHOOK_SECRET="whsec-unit", STT_WEBHOOK_ALLOW="127.0.0.0/8")
    job = svc.accepted(data={**FORM, "webhook_url": "http://127.0.0.1:9/x"})
    assert job["status"] == "queued"


# --- tenants -------------------------------------------------------------------------------


def test_tenants_see_only_their_own_jobs(svc: Service) -> None:
    svc.add_key(OTHER_KEY, "other")
    job = svc.accepted()
    path = f"{JOBS}/{job['id']}"
    cartesia_error(svc.get(path, key=OTHER_KEY), 404, "not_found")
    cartesia_error(svc.delete(job["id"], key=OTHER_KEY), 404, "not_found")
    listed = svc.get(JOBS, key=OTHER_KEY).json()
    assert listed == {"data": [], "has_more": False, "next_cursor": None}
    # Untouched for its owner.
    assert svc.get(path).json()["status"] == "queued"
    assert [j["id"] for j in svc.get(JOBS).json()["data"]] == [job["id"]]
    assert len(svc.audio_files()) == 1


def test_revoked_key_is_refused(svc: Service) -> None:
    svc.add_key(OTHER_KEY, "other")
    with svc._sessions() as factory, transaction(factory) as session:
        row = session.execute(select(ApiKey).where(ApiKey.tenant == "other")).scalar_one()
        row.revoked_at = row.created_at
    cartesia_error(svc.get(JOBS, key=OTHER_KEY), 401, "invalid_api_key")


# --- listing -------------------------------------------------------------------------------


def test_list_newest_first_with_cursor(svc: Service) -> None:
    ids = [svc.accepted()["id"] for _ in range(3)]
    newest_first = ids[::-1]

    page = svc.get(JOBS, limit="2").json()
    assert [j["id"] for j in page["data"]] == newest_first[:2]
    assert page["has_more"] is True
    assert isinstance(page["next_cursor"], str)
    assert all(set(j) == JOB_FIELDS and j["result"] is None for j in page["data"])

    rest = svc.get(JOBS, limit="2", cursor=page["next_cursor"]).json()
    assert [j["id"] for j in rest["data"]] == newest_first[2:]
    assert rest["has_more"] is False
    assert rest["next_cursor"] is None

    everything = svc.get(JOBS).json()
    assert [j["id"] for j in everything["data"]] == newest_first
    assert everything["has_more"] is False


def test_list_filters_by_status(svc: Service) -> None:
    kept, cancelled = svc.accepted()["id"], svc.accepted()["id"]
    assert svc.delete(cancelled).status_code == 200
    assert [j["id"] for j in svc.get(JOBS, status="queued").json()["data"]] == [kept]
    assert [j["id"] for j in svc.get(JOBS, status="cancelled").json()["data"]] == [cancelled]
    assert svc.get(JOBS, status="succeeded").json()["data"] == []


def _cursor(raw: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "2.5"}, "limit"),
        ({"status": "done"}, "status"),
        ({"status": "QUEUED"}, "status"),
        ({"cursor": "!!!"}, "cursor"),
        ({"cursor": "bm90IGpzb24"}, "cursor"),  # "not json"
        ({"cursor": _cursor([1, 2])}, "cursor"),
        ({"cursor": _cursor(["yesterday", "abc"])}, "cursor"),
        ({"cursor": _cursor({"a": 1})}, "cursor"),
    ],
)
def test_bad_list_parameters(svc: Service, params: dict[str, str], name: str) -> None:
    body = cartesia_error(svc.get(JOBS, **params), 400, "invalid_request")
    assert name in body["message"]


@pytest.mark.parametrize("wait", ["soon", "-1", "61", "nan", "inf", "1e9"])
def test_bad_wait(svc: Service, wait: str) -> None:
    job = svc.accepted()
    body = cartesia_error(svc.get(f"{JOBS}/{job['id']}", wait=wait), 400, "invalid_request")
    assert "wait" in body["message"]
