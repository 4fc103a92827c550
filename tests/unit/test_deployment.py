"""The container deployment (compose.yaml, Dockerfile) and the wiring it relies on:
what the worker consumes, where jobs are sent, and which tasks a worker registers."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

import celery._state
import pytest
from celery import Celery
from celery.exceptions import DuplicateTaskNameWarning  # type: ignore[attr-defined]
from celery.signals import worker_ready

import worker.__main__ as worker_main
from core.queues import (
    ALL_QUEUES,
    BATCH_QUEUE,
    INTERACTIVE_QUEUE,
    RECONCILE_TASK,
    TRANSCRIBE_TASK,
    TRANSCRIPTION_QUEUES,
    WEBHOOK_QUEUE,
    WEBHOOK_QUEUES,
    WEBHOOK_TASK,
    enqueue,
    enqueue_webhook,
    make_celery,
)
from core.settings import load_settings
from worker.celery_app import create_worker_app

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
S3_APIS = ("api-s3",)
S3_WORKERS = ("worker-gpu-s3", "worker-cpu-s3")
WEBHOOK_WORKER = "worker-webhooks"
APP_SERVICES = (
    "migrate",
    "api",
    "worker-gpu",
    "worker-cpu",
    WEBHOOK_WORKER,
    *S3_APIS,
    *S3_WORKERS,
)
WORKERS = ("worker-gpu", "worker-cpu")
HEALTHCHECKED = (
    "postgres",
    "redis",
    "api",
    *WORKERS,
    WEBHOOK_WORKER,
    "minio",
    *S3_APIS,
    *S3_WORKERS,
)
THIRD_PARTY = ("postgres", "redis", "minio", "minio-init")
AWS_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"}
"""Read by boto3 itself (credentials) or by the settings (region)."""


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def argv(command: str | list[str]) -> list[str]:
    """A compose `command` as an argument list, whichever form it was written in."""
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` and `${VAR:?error}` as they come out with VAR unset
    (a required variable gets a stand-in)."""

    def one(match: re.Match[str]) -> str:
        op, arg = match.group(2), match.group(3) or ""
        return arg if op == ":-" else "required-value"

    return re.sub(r"\$\{(\w+)(:-|:\?)?([^}]*)\}", one, value)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: interpolate(str(v)) for k, v in env.items()}


# --- compose.yaml ------------------------------------------------------------------------


def test_no_version_key(compose: dict[str, Any]) -> None:
    """The Compose spec dropped `version:`; current Compose warns about it."""
    assert "version" not in compose


def test_every_service_exists(services: dict[str, dict[str, Any]]) -> None:
    assert {"postgres", "redis", "minio", "minio-init", *APP_SERVICES} <= set(services)


def test_commands(services: dict[str, dict[str, Any]]) -> None:
    assert argv(services["migrate"]["command"]) == ["stt", "migrate"]
    for name in ("api", *S3_APIS):
        assert argv(services[name]["command"]) == ["stt", "serve", "--workers", "0"], name
    for name in (*WORKERS, *S3_WORKERS):
        assert argv(services[name]["command"]) == ["python", "-m", "worker"], name
    assert argv(services[WEBHOOK_WORKER]["command"]) == ["python", "-m", "worker", "--webhooks"]
    assert "profiles" not in services[WEBHOOK_WORKER]  # every layout delivers webhooks


def test_startup_order(services: dict[str, dict[str, Any]]) -> None:
    """Migrations run once Postgres is healthy; the API and workers start after them."""
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", *WORKERS, WEBHOOK_WORKER, *S3_APIS, *S3_WORKERS):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["redis"]["condition"] == "service_healthy", name


def test_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name in HEALTHCHECKED:
        check = services[name].get("healthcheck") or {}
        assert not check.get("disable"), name
        test = argv(check.get("test") or [])
        assert test and test[0] in ("CMD", "CMD-SHELL"), name
    assert "pg_isready" in " ".join(argv(services["postgres"]["healthcheck"]["test"]))
    assert "redis-cli ping" in " ".join(argv(services["redis"]["healthcheck"]["test"]))
    api_check = " ".join(argv(services["api"]["healthcheck"]["test"]))
    assert "http://127.0.0.1:8000/health/ready" in api_check
    assert "curl" not in api_check and "wget" not in api_check  # neither is in the slim image


def test_redis_keeps_queued_messages(services: dict[str, dict[str, Any]]) -> None:
    command = argv(services["redis"]["command"])
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])


def test_postgres_has_a_named_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    volume, _, target = services["postgres"]["volumes"][0].partition(":")
    assert target == "/var/lib/postgresql/data"
    assert volume in compose["volumes"]


def test_api_environment(services: dict[str, dict[str, Any]]) -> None:
    api = services["api"]
    env = api["environment"]
    assert env["HOST"] == "0.0.0.0"  # noqa: S104 (inside the container)
    assert str(env["PORT"]) == "8000"
    assert env["DATABASE_URL"] == "postgresql://stt:stt@postgres:5432/stt"
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["STT_API_KEY"].startswith("${STT_API_KEY:?")  # refuses to start without a key
    assert env["STT_DATA_DIR"] == "/data"
    assert any(str(port).endswith("8000") for port in api["ports"])


@pytest.mark.parametrize("name", ["api", *S3_APIS])
def test_api_is_published_on_loopback_only_and_metrics_not_at_all(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    api = services[name]
    [published] = [interpolate(str(port)) for port in api["ports"]]
    assert published == "127.0.0.1:8000:8000"
    metrics_port = environment(api)["STT_METRICS_PORT"]
    assert load_settings(environment(api)).api.metrics_port == int(metrics_port) != 8000
    assert not any(metrics_port in str(port) for port in api["ports"])
    assert metrics_port in [str(port) for port in api.get("expose", [])]


@pytest.mark.parametrize("name", THIRD_PARTY)
def test_third_party_images_are_pinned(services: dict[str, dict[str, Any]], name: str) -> None:
    """An exact tag: a version with a minor part, or a dated MinIO release; never latest."""
    image = services[name]["image"]
    _, _, tag = image.rpartition(":")
    assert tag and tag != "latest", image
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?|RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", tag), image


def test_one_image_is_built_and_every_app_service_runs_it(
    services: dict[str, dict[str, Any]],
) -> None:
    """Only `migrate` builds; migrate, the API and every kind of worker run that image."""
    builders = [name for name, service in services.items() if "build" in service]
    assert builders == ["migrate"]
    image = services["migrate"]["image"]
    assert interpolate(image) == "selfhosted-stt:local"
    for name in APP_SERVICES:
        assert services[name]["image"] == image, name


def test_database_url_matches_postgres(services: dict[str, dict[str, Any]]) -> None:
    pg = services["postgres"]["environment"]
    expected = (
        f"postgresql://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/"
        f"{pg['POSTGRES_DB']}"
    )
    for name in APP_SERVICES:
        assert environment(services[name])["DATABASE_URL"] == expected, name


def test_app_environments_load_as_settings(services: dict[str, dict[str, Any]]) -> None:
    """Every variable an app service sets is one the settings read, with a usable value."""
    known = set(re.findall(r'"((?:STT_|DATABASE_|REDIS_)\w+|HOST|PORT)"', _settings_source()))
    for name in APP_SERVICES:
        env = environment(services[name])
        unknown = {k for k in env if k not in known | AWS_VARIABLES and k != "HF_HOME"}
        assert not unknown, (name, unknown)
        settings = load_settings(env)  # a ConfigError here names the bad variable
        assert settings.storage.data_dir == Path("/data")
        assert not settings.broker.embedded, name  # Redis, shared by every container
        if name in (*S3_APIS, *S3_WORKERS):
            assert settings.storage.url == "s3://stt/audio", name
            assert settings.storage.s3_endpoint_url == "http://minio:9000", name
        else:
            assert settings.storage.url is None, name


def _settings_source() -> str:
    return (ROOT / "core" / "settings.py").read_text()


def test_audio_volume_is_shared(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    assert "audio" in compose["volumes"]
    for name in ("api", *WORKERS):
        assert "audio:/data" in services[name]["volumes"], name
        assert environment(services[name])["STT_DATA_DIR"] == "/data", name


@pytest.mark.parametrize("name", ["worker-gpu", "worker-gpu-s3"])
def test_gpu_worker(services: dict[str, dict[str, Any]], name: str) -> None:
    gpu = services[name]
    # The one image is the Dockerfile's `gpu` stage unless a CPU-only host asks otherwise.
    assert interpolate(services["migrate"]["build"]["target"]) == "gpu"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    device = devices[0]
    assert device["driver"] == "nvidia"
    assert device["count"] == 1
    assert "gpu" in device["capabilities"]
    env = environment(gpu)
    assert env["STT_DEVICE"] == "cuda"
    assert env.get("STT_WORKER_CONCURRENCY", "1") == "1"  # one process (one model) per GPU
    assert gpu.get("profiles", []) == ([] if name == "worker-gpu" else ["s3"])


def test_cpu_worker(services: dict[str, dict[str, Any]]) -> None:
    cpu = services["worker-cpu"]
    assert cpu["profiles"] == ["cpu"]
    env = environment(cpu)
    assert env["STT_DEVICE"] == "cpu"
    assert env["STT_COMPUTE_TYPE"] == "int8"
    assert "deploy" not in cpu


def test_minio_and_its_bucket(services: dict[str, dict[str, Any]]) -> None:
    minio, init = services["minio"], services["minio-init"]
    assert minio["profiles"] == init["profiles"] == ["s3"]
    assert argv(minio["command"])[:2] == ["server", "/data"]
    assert "ports" not in minio  # reachable from the compose network alone, like Postgres
    assert "mc ready local" in " ".join(argv(minio["healthcheck"]["test"]))
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    assert init["restart"] == "no"
    script = " ".join(argv(init["command"]))
    assert "mc mb --ignore-existing local/stt" in script
    assert "http://minio:9000" in script
    # The bucket made is the one the services store in, with MinIO's own credentials.
    root = environment(minio)
    for name in (*S3_APIS, *S3_WORKERS):
        env = environment(services[name])
        assert env["STT_STORAGE_URL"].startswith("s3://stt/"), name
        assert env["AWS_ACCESS_KEY_ID"] == root["MINIO_ROOT_USER"], name
        assert env["AWS_SECRET_ACCESS_KEY"] == root["MINIO_ROOT_PASSWORD"], name


def test_s3_profile_shares_no_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    """The multi-host layout: API and workers have Postgres, Redis and the bucket in common,
    and no volume; each waits for the bucket."""
    mounts: dict[str, set[str]] = {}
    for name in (*S3_APIS, *S3_WORKERS):
        service = services[name]
        assert service["profiles"] == ["s3"], name
        assert service["depends_on"]["minio-init"]["condition"] == (
            "service_completed_successfully"
        ), name
        volumes = {v.partition(":")[0] for v in service.get("volumes", [])}
        assert "audio" not in volumes, name
        assert volumes <= set(compose["volumes"]), name
        mounts[name] = volumes
    assert mounts["api-s3"] == set()
    for name, volumes in mounts.items():
        others = set().union(*(v for other, v in mounts.items() if other != name))
        assert not volumes & others, name


def test_build_files_exist(services: dict[str, dict[str, Any]]) -> None:
    """The image builds from a context and Dockerfile that exist, at a stage the Dockerfile
    defines; everything the Dockerfile copies exists and is not ignored."""
    for name in [name for name in APP_SERVICES if "build" in services[name]]:
        build = services[name]["build"]
        if isinstance(build, str):
            build = {"context": build}
        context = (COMPOSE.parent / build.get("context", ".")).resolve()
        assert context.is_dir(), name
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), name
        stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile.read_text(), re.M | re.I)
        if "target" in build:
            assert interpolate(build["target"]) in stages, name
            assert "runtime" in stages, name  # the smaller choice STT_IMAGE_TARGET offers
        ignored = _dockerignore(context)
        for source in _copied(dockerfile):
            assert (context / source).exists(), source
            assert source.rstrip("/") not in ignored, source


def _copied(dockerfile: Path) -> list[str]:
    """Sources of COPY instructions that copy from the build context."""
    sources: list[str] = []
    for line in dockerfile.read_text().splitlines():
        parts = line.split()
        if not parts or parts[0].upper() != "COPY":
            continue
        args = [p for p in parts[1:] if not p.startswith("--")]
        if any(p.startswith("--from") for p in parts[1:]):
            continue
        sources.extend(args[:-1])
    return sources


def _dockerignore(context: Path) -> set[str]:
    path = context / ".dockerignore"
    if not path.exists():
        return set()
    lines = (line.strip() for line in path.read_text().splitlines())
    return {line.rstrip("/") for line in lines if line and not line.startswith("#")}


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert '"uv==0.13.8"' in text
    assert "uv sync --frozen --no-dev" in text
    assert "/app/.venv/bin" in text
    for stage in re.split(r"^FROM\s", text, flags=re.M)[1:]:
        users = re.findall(r"^USER\s+(\S+)", stage, re.M)
        assert users and users[-1] not in ("root", "0"), stage[:60]  # every stage ends non-root
    assert re.search(r"^EXPOSE 8000\b", text, re.M)
    # Its own health check (compose gives workers theirs): the API's liveness, no curl needed.
    [check] = re.findall(r"^HEALTHCHECK\b.*?(?<!\\)$", text, re.M | re.S)
    assert "/health/live" in check and "curl" not in check
    assert re.split(r"^FROM\s", text, flags=re.M)[-1].startswith("runtime AS gpu")
    ignored = _dockerignore(ROOT)
    assert {".venv", "data", ".git"} <= ignored


PROFILE_SETS = ((), ("cpu",), ("s3",), ("cpu", "s3"))


def _works(command: list[str]) -> bool:
    if shutil.which(command[0]) is None:
        return False
    try:
        done = subprocess.run([*command, "version"], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _compose_command() -> list[str] | None:
    """`docker compose` (v2) where it works, else Debian's `docker-compose` (v1), else None."""
    for command in (["docker", "compose"], ["docker-compose"]):
        if _works(command):
            return command
    return None


COMPOSE_COMMAND = _compose_command()


@pytest.mark.skipif(
    COMPOSE_COMMAND is None,
    reason="neither `docker compose` nor `docker-compose` works here "
    "(Debian: apt-get install docker-compose)",
)
@pytest.mark.parametrize("profiles", PROFILE_SETS, ids=lambda p: "+".join(p) or "default")
def test_docker_compose_config(profiles: tuple[str, ...]) -> None:
    """Compose itself validates the file with every profile, and starts the right services."""
    assert COMPOSE_COMMAND is not None
    env = {**os.environ, "STT_API_KEY": "sk-stt-compose-check"}
    flags = [part for name in profiles for part in ("--profile", name)]
    base = [*COMPOSE_COMMAND, "-f", str(COMPOSE), *flags]
    for extra in (["config", "-q"], ["config", "--services"]):
        done = subprocess.run(
            [*base, *extra],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    # (v1 lists every service whatever the profiles; these have none, so always start.)
    assert {"postgres", "redis", "migrate", "api", WEBHOOK_WORKER} <= set(done.stdout.split())


# --- the wiring the deployment relies on ------------------------------------------------------


def test_interactive_queue_before_batch() -> None:
    assert TRANSCRIPTION_QUEUES == (INTERACTIVE_QUEUE, BATCH_QUEUE)
    assert set(ALL_QUEUES) == {WEBHOOK_QUEUE, INTERACTIVE_QUEUE, BATCH_QUEUE}


def test_webhooks_have_a_queue_of_their_own() -> None:
    """No transcription worker consumes webhook deliveries; webhook workers consume only them."""
    assert WEBHOOK_QUEUES == (WEBHOOK_QUEUE,)
    assert WEBHOOK_QUEUE not in TRANSCRIPTION_QUEUES


@pytest.fixture
def own_shared_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Celery registers `@app.task` tasks for every app finalized later in the process (shared
    tasks); keep the worker apps made in a test from reaching the apps of other tests."""
    finalizers = set(celery._state._on_app_finalizers)  # type: ignore[attr-defined]
    monkeypatch.setattr(celery._state, "_on_app_finalizers", finalizers)


def _celery_args(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict[str, str]
) -> list[str]:
    """The arguments `python -m worker <argv>` would start Celery with."""
    for name in list(os.environ):
        if name.startswith("STT_") or name in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STT_DATA_DIR", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # main() connects a worker_ready handler; keep it off the process-wide signal.
    monkeypatch.setattr(worker_ready, "receivers", [])
    captured: list[list[str]] = []

    def fake_worker_main(self: Celery, argv: list[str] | None = None) -> None:
        captured.append(list(argv or []))

    monkeypatch.setattr(Celery, "worker_main", fake_worker_main)
    worker_main.main(argv)
    [args] = captured
    assert args[0] == "worker"
    return args


@pytest.mark.usefixtures("own_shared_tasks")
def test_worker_consumes_the_transcription_queues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m worker` starts Celery on exactly TRANSCRIPTION_QUEUES, interactive first."""
    args = _celery_args(
        tmp_path, monkeypatch, ["--hostname", "w1@test"], {"STT_WORKER_CONCURRENCY": "3"}
    )
    queues = args[args.index("--queues") + 1]
    assert queues == ",".join(TRANSCRIPTION_QUEUES)
    order = queues.split(",")
    assert order.index(INTERACTIVE_QUEUE) < order.index(BATCH_QUEUE)
    assert WEBHOOK_QUEUE not in order
    assert args[args.index("--concurrency") + 1] == "3"
    assert "--pool" not in args  # prefork: a model per process
    assert args[-2:] == ["--hostname", "w1@test"]  # extra arguments pass through
    assert len(worker_ready.receivers) == 1  # the reconciler starts with it


@pytest.mark.usefixtures("own_shared_tasks")
def test_webhook_worker_consumes_only_webhooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m worker --webhooks`: the webhook queue alone, on threads, no reconciler."""
    args = _celery_args(tmp_path, monkeypatch, ["--webhooks"], {"STT_WEBHOOK_CONCURRENCY": "7"})
    assert args[args.index("--queues") + 1] == ",".join(WEBHOOK_QUEUES)
    assert args[args.index("--pool") + 1] == "threads"
    assert args[args.index("--concurrency") + 1] == "7"
    assert "--webhooks" not in args  # not a Celery option
    assert not worker_ready.receivers


def test_enqueue_sends_by_task_name(tmp_path: Path) -> None:
    app = make_celery(load_settings({"STT_DATA_DIR": str(tmp_path)}))
    with mock.patch.object(app, "send_task") as send_task:
        enqueue(app, "job-1", INTERACTIVE_QUEUE)
        enqueue(app, "job-2", BATCH_QUEUE)
        enqueue_webhook(app, "job-3", attempt=2)
    calls = [(c.args[0], c.kwargs["args"], c.kwargs["queue"]) for c in send_task.call_args_list]
    assert calls == [
        (TRANSCRIBE_TASK, ["job-1"], INTERACTIVE_QUEUE),
        (TRANSCRIBE_TASK, ["job-2"], BATCH_QUEUE),
        (WEBHOOK_TASK, ["job-3", 2], WEBHOOK_QUEUE),
    ]


def test_enqueue_reaches_the_named_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the real (filesystem) broker: one message, on the queue given, naming the task."""
    monkeypatch.chdir(tmp_path)  # kombu's filesystem transport writes ./control
    settings = load_settings({"STT_DATA_DIR": str(tmp_path / "data")})
    app = make_celery(settings)
    try:
        enqueue(app, "job-1", INTERACTIVE_QUEUE)
    finally:
        app.close()
    [message] = list(settings.storage.broker_dir.glob("*.msg"))
    assert message.name.partition(".")[2] == f"{INTERACTIVE_QUEUE}.msg"
    payload = json.loads(message.read_text())
    assert payload["headers"]["task"] == TRANSCRIBE_TASK
    args, kwargs, _ = json.loads(base64.b64decode(payload["body"]))
    assert (args, kwargs) == (["job-1"], {})


@pytest.mark.usefixtures("own_shared_tasks")
def test_worker_registers_its_tasks(tmp_path: Path) -> None:
    app = create_worker_app(load_settings({"STT_DATA_DIR": str(tmp_path)}))
    assert {TRANSCRIBE_TASK, WEBHOOK_TASK, RECONCILE_TASK} <= set(app.tasks)
    for name in (TRANSCRIBE_TASK, WEBHOOK_TASK, RECONCILE_TASK):
        assert app.tasks[name].app is app


@pytest.mark.usefixtures("own_shared_tasks")
def test_two_worker_apps_in_one_process(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DuplicateTaskNameWarning)
        for name in ("a", "b"):
            app = create_worker_app(load_settings({"STT_DATA_DIR": str(tmp_path / name)}))
            assert TRANSCRIBE_TASK in app.tasks
