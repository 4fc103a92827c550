"""A small client for the job API, used by the end-to-end tests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.support import LiveService


def submit(
    service: LiveService,
    path: Path,
    *,
    key: str | None = None,
    data: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    url: str = "/stt/jobs",
) -> httpx.Response:
    with path.open("rb") as f:
        return httpx.post(
            f"{service.url}{url}",
            headers={**service.headers(key), **(headers or {})},
            files={"file": (path.name, f)},
            data={"model": "ink-whisper", **(data or {})},
            timeout=120,
        )


def get(
    service: LiveService, job_id: str, *, key: str | None = None, wait: float = 0
) -> httpx.Response:
    params = {"wait": str(wait)} if wait else {}
    return httpx.get(
        f"{service.url}/stt/jobs/{job_id}",
        headers=service.headers(key),
        params=params,
        timeout=wait + 30,
    )


ENDED = {"succeeded", "failed", "cancelled"}


def wait_until(
    service: LiveService,
    job_id: str,
    statuses: set[str],
    timeout: float = 180,
    key: str | None = None,
) -> dict[str, Any]:
    """Long-poll until the job's status is one of `statuses` (fail if it ends otherwise)."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = get(service, job_id, key=key).json()
    while time.monotonic() < deadline:
        if body["status"] in statuses:
            return body
        if body["status"] in ENDED:
            raise AssertionError(f"job {job_id} ended {body['status']}, not {statuses}: {body}")
        body = get(service, job_id, key=key, wait=10).json()
    raise AssertionError(f"job {job_id} never reached {statuses}")


def wait_ended(
    service: LiveService, job_id: str, timeout: float = 180, key: str | None = None
) -> dict[str, Any]:
    return wait_until(service, job_id, ENDED, timeout, key=key)
