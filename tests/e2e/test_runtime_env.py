"""The runtime-only environment (`uv sync --no-dev`, as `make run` and the Dockerfile build it)
can start the service: no module the API or the worker imports lives in the dev group."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT, start_service, stop_service_proc, wait_until

pytestmark = pytest.mark.e2e

DEV_ONLY = ("pytest", "moto", "schemathesis", "mypy", "openai", "cartesia", "jiwer")


def _uv() -> str:
    found = shutil.which("uv") or str(ROOT / ".venv-tools" / "bin" / "uv")
    if not Path(found).exists():
        pytest.skip("uv is not installed (make installs it into .venv-tools)")
    return found


@pytest.fixture(scope="module")
def runtime_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh runtime-only environment, linked from the uv cache (seconds, no network)."""
    venv = tmp_path_factory.mktemp("runtime") / "venv"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)}
    subprocess.run(
        [_uv(), "sync", "--frozen", "--no-dev", "--offline", "--quiet"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
    )
    return venv / "bin" / "python"


def test_runtime_env_has_no_dev_tools(runtime_python: Path) -> None:
    probe = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    out = subprocess.run(
        [str(runtime_python), "-c", probe, *DEV_ONLY],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == "[]"


def test_runtime_env_imports_api_and_worker(runtime_python: Path) -> None:
    modules = "api.app, api.cli, worker.__main__, worker.jobs, worker.engine, core.migrate"
    done = subprocess.run(
        [str(runtime_python), "-c", f"import {modules}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_runtime_env_serves_until_ready(runtime_python: Path, tmp_path: Path) -> None:
    service = start_service(tmp_path / "data", {}, workers=1, python=str(runtime_python))
    try:

        def ready() -> bool:
            return httpx.get(f"{service.url}/health/ready", timeout=5).status_code == 200

        wait_until(ready, timeout=120, what="/health/ready from the runtime-only environment")
    finally:
        stop_service_proc(service.proc)
