"""STT_METRICS_PORT: /metrics answers on its own port and not on the API's (which compose
publishes), on the embedded default."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_KEY
from tests.support import free_port, start_service, stop_service_proc

pytestmark = pytest.mark.e2e


def test_metrics_only_on_the_metrics_port(tmp_path: Path) -> None:
    port = free_port()
    service = start_service(tmp_path, {"STT_API_KEY": TEST_KEY, "STT_METRICS_PORT": str(port)}, 0)
    try:
        public = httpx.get(f"{service.url}/metrics", timeout=30)
        private = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
        health = httpx.get(f"{service.url}/health/live", timeout=30)
    finally:
        stop_service_proc(service.proc)
    assert public.status_code == 404, public.text
    assert "error" in public.json()  # in the service's JSON error shape, not a bare page
    assert private.status_code == 200 and "stt_queue_depth" in private.text
    assert health.status_code == 200  # the API's port serves everything else as before
