"""A multi-host rehearsal on one machine: the API and a worker with separate data and
scratch directories and no path in common, sharing only Postgres, Redis and an
S3-compatible object store (moto's server on loopback)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import SERVICE_ENV
from tests.e2e.jobs_client import submit, wait_ended
from tests.support import (
    LiveService,
    MotoServer,
    clip,
    error_rate,
    kill_group,
    start_service,
    start_worker,
    stop_service_proc,
)

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
UPLOAD_LIMIT = 9 * MiB
"""Above one S3 part (8 MiB), so an over-limit upload is refused after a part went up."""


@dataclass
class Hosts:
    api: LiveService
    env: dict[str, str]
    """What every 'machine' is given: Postgres, Redis, the object store and the bucket."""
    bucket: str
    s3: MotoServer

    def stored(self) -> list[str]:
        """Objects and unfinished multipart uploads in the bucket."""
        return self.s3.objects(self.bucket) + self.s3.uploads(self.bucket)


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


@pytest.fixture(scope="module")
def hosts(
    tmp_path_factory: pytest.TempPathFactory,
    module_pg_url: str,
    module_redis_url: str,
    s3_server: MotoServer,
) -> Iterator[Hosts]:
    """The API host; the tests start a worker host beside it."""
    bucket = s3_server.create_bucket()
    env = {
        "DATABASE_URL": module_pg_url,
        "REDIS_URL": module_redis_url,
        **SERVICE_ENV,
        **s3_server.env,
        "STT_STORAGE_URL": f"s3://{bucket}/audio",
        "STT_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
    }
    api = start_service(tmp_path_factory.mktemp("api-host"), env, workers=0)
    yield Hosts(api, env, bucket, s3_server)
    stop_service_proc(api.proc)


def post_file(api: LiveService, name: str, data: bytes, fields: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{api.url}/stt/jobs",
        headers=api.headers(),
        files={"file": (name, data)},
        data=fields,
        timeout=60,
    )


def test_refused_uploads_leave_nothing_in_the_object_store(hosts: Hosts) -> None:
    api = hosts.api
    ready = httpx.get(f"{api.url}/health/ready", timeout=10)
    assert ready.json()["checks"]["storage"] is True  # no worker yet, so not ready overall
    form = {"model": "ink-whisper"}
    # Not audio: stored (in one PUT, or in parts), probed, refused, deleted.
    for size in (4096, 8 * MiB + 4096):
        r = post_file(api, "noise.wav", os.urandom(size), form)
        assert r.status_code == 415, r.text
    # Over the limit while streaming, after one part went up: the upload is aborted.
    r = post_file(api, "big.wav", os.urandom(UPLOAD_LIMIT + MiB // 2), form)
    assert r.status_code == 413, r.text
    # A valid file with an invalid form.
    audio = clip("en_librispeech_61-70968-0000.flac").path.read_bytes()
    r = post_file(api, "a.flac", audio, {"model": "x"})
    assert r.status_code == 400, r.text
    assert hosts.stored() == []
    assert files_under(api.data_dir / "scratch") == [], "the probe's spool files are removed"


def test_a_job_submitted_to_the_api_completes_on_a_worker_on_another_host(
    hosts: Hosts, tmp_path: Path
) -> None:
    c = clip("en_librispeech_61-70968-0000.flac")
    r = submit(hosts.api, c.path)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    # The upload is in the object store, and nowhere on the API host's disk.
    assert hosts.stored() == [f"audio/{job_id[:2]}/{job_id}"]
    assert [p.name for p in files_under(hosts.api.data_dir / "audio")] == []
    assert files_under(hosts.api.data_dir / "scratch") == []

    worker_host = tmp_path / "worker-host"
    worker_host.mkdir()
    api_host = hosts.api.data_dir
    assert not worker_host.is_relative_to(api_host) and not api_host.is_relative_to(worker_host)
    worker = start_worker({**hosts.env, "STT_DATA_DIR": str(worker_host)}, tmp_path / "worker.log")
    try:
        done = wait_ended(hosts.api, job_id, timeout=120)
    finally:
        kill_group(worker)
    assert done["status"] == "succeeded", (done["error"], (tmp_path / "worker.log").read_text())
    assert error_rate(c.reference, done["result"]["text"], "en") <= 0.1
    assert hosts.stored() == [], "the audio is deleted when the job ends"
    assert files_under(worker_host / "scratch") == [], "the worker's scratch copy is removed"
    assert not (worker_host / "audio").exists() or files_under(worker_host / "audio") == []
