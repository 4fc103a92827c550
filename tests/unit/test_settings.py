"""`core.settings.load_settings`: defaults, parsing, and refusal of bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import DEFAULT_MODEL, load_settings
from core.storage import PART_SIZE, S3Storage, make_storage


def test_defaults_use_sqlite_and_filesystem_broker(tmp_path: Path) -> None:
    s = load_settings({"STT_DATA_DIR": str(tmp_path)})
    assert s.storage.data_dir == tmp_path.resolve()
    assert s.database.url == f"sqlite:///{tmp_path.resolve() / 'stt.db'}"
    assert s.broker.url == "filesystem://"
    assert s.broker.embedded
    assert s.broker.redis_url is None
    assert s.api.key is None
    assert s.api.auth_disabled is False
    assert s.engine.vad_filter is True
    assert s.engine.default_model == DEFAULT_MODEL
    assert (s.api.host, s.api.port) == ("127.0.0.1", 8000)
    assert s.limits.max_upload_bytes == 2 * 1024**3
    assert s.logs.level == "INFO"
    assert s.storage.audio_dir == s.storage.data_dir / "audio"
    assert s.storage.model_cache_dir == s.storage.data_dir / "models"
    assert s.storage.broker_dir == s.storage.data_dir / "broker"


def test_relative_data_dir_is_resolved() -> None:
    s = load_settings({})
    assert s.storage.data_dir.is_absolute()
    assert s.storage.data_dir.name == "data"


def test_redis_url_becomes_the_broker(tmp_path: Path) -> None:
    s = load_settings({"STT_DATA_DIR": str(tmp_path), "REDIS_URL": "redis://h:6379/3"})
    assert s.broker.redis_url == "redis://h:6379/3"
    assert s.broker.url == "redis://h:6379/3"
    assert not s.broker.embedded


def test_explicit_broker_and_database_win(tmp_path: Path) -> None:
    s = load_settings(
        {
            "STT_DATA_DIR": str(tmp_path),
            "REDIS_URL": "redis://h/1",
            "STT_BROKER_URL": "redis://other/2",
            "DATABASE_URL": "postgresql://u@db/stt",
        }
    )
    assert s.broker.url == "redis://other/2"
    assert s.broker.redis_url == "redis://h/1"
    assert s.database.url == "postgresql://u@db/stt"


def test_empty_redis_url_means_none(tmp_path: Path) -> None:
    s = load_settings({"STT_DATA_DIR": str(tmp_path), "REDIS_URL": ""})
    assert s.broker.redis_url is None
    assert s.broker.url == "filesystem://"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        (" YES ", True),
        ("On", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("OFF", False),
        ("", False),
    ],
)
def test_booleans(raw: str, expected: bool) -> None:
    s = load_settings({"STT_AUTH_DISABLED": raw, "STT_VAD_FILTER": raw})
    assert s.api.auth_disabled is expected
    assert s.engine.vad_filter is expected


@pytest.mark.parametrize("raw", ["maybe", "2", "y e s"])
def test_bad_boolean_raises(raw: str) -> None:
    with pytest.raises(ConfigError, match="STT_VAD_FILTER"):
        load_settings({"STT_VAD_FILTER": raw})


def test_numbers_are_parsed() -> None:
    s = load_settings(
        {
            "PORT": "9001",
            "STT_CPU_THREADS": "4",
            "STT_BEAM_SIZE": "1",
            "STT_MAX_UPLOAD_BYTES": "1000",
            "STT_MAX_AUDIO_SECONDS": "1.5",
            "STT_SYNC_TIMEOUT_S": "30",
            "STT_WORKER_HEARTBEAT_S": "0.5",
            "STT_MAX_ATTEMPTS": "7",
            "STT_LOG_LEVEL": "debug",
        }
    )
    assert s.api.port == 9001
    assert s.engine.cpu_threads == 4
    assert s.engine.beam_size == 1
    assert s.limits.max_upload_bytes == 1000
    assert isinstance(s.limits.max_upload_bytes, int)
    assert s.limits.max_audio_seconds == 1.5
    assert s.limits.sync_timeout_s == 30.0
    assert s.workers.heartbeat_s == 0.5
    assert s.workers.max_attempts == 7
    assert s.logs.level == "DEBUG"


def test_blank_number_uses_default() -> None:
    assert load_settings({"PORT": "  "}).api.port == 8000


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("PORT", "http"),
        ("STT_MAX_UPLOAD_BYTES", "1.5"),
        ("STT_MAX_AUDIO_SECONDS", "ten"),
        ("STT_BEAM_SIZE", "5x"),
    ],
)
def test_bad_number_raises(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: raw})


def test_model_aliases_are_parsed_and_merged() -> None:
    s = load_settings({"STT_MODEL_ALIASES": '{"large": "large-v3", "whisper-1": "small"}'})
    assert s.engine.model_aliases == {"large": "large-v3", "whisper-1": "small"}
    aliases = s.engine.aliases()
    assert aliases["large"] == "large-v3"
    assert aliases["whisper-1"] == "small"
    assert aliases["ink-whisper"] == "default"


def test_builtin_aliases() -> None:
    aliases = load_settings({}).engine.aliases()
    for name in ("ink-whisper", "ink-whisper-2025-06-04", "whisper-1"):
        assert aliases[name] == "default"


@pytest.mark.parametrize(
    "raw",
    ["{not json", '["a", "b"]', '"x"', '{"a": 1}', '{"a": null}', '{"a": ["b"]}'],
)
def test_bad_model_aliases_raise(raw: str) -> None:
    with pytest.raises(ConfigError, match="STT_MODEL_ALIASES"):
        load_settings({"STT_MODEL_ALIASES": raw})


def test_empty_model_aliases_is_none() -> None:
    assert load_settings({"STT_MODEL_ALIASES": ""}).engine.model_aliases == {}


def test_storage_defaults_to_the_local_audio_dir(tmp_path: Path) -> None:
    s = load_settings({"STT_DATA_DIR": str(tmp_path)})
    assert s.storage.url is None
    assert s.storage.scratch_dir == s.storage.data_dir / "scratch"
    assert s.storage.s3_endpoint_url is None and s.storage.s3_region is None


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("s3://stt/audio", "s3://stt/audio"),
        ("s3://stt/audio/", "s3://stt/audio"),
        ("s3://my.bucket-1", "s3://my.bucket-1"),
        ("s3://stt/a/b", "s3://stt/a/b"),
        ("file:///srv/audio/", "file:///srv/audio"),
        ("", None),
    ],
)
def test_storage_url(tmp_path: Path, raw: str, normalised: str | None) -> None:
    s = load_settings({"STT_DATA_DIR": str(tmp_path), "STT_STORAGE_URL": raw})
    assert s.storage.url == normalised


@pytest.mark.parametrize(
    "raw",
    [
        "s3://",
        "s3://Bad_Bucket/x",
        "s3://b/x",
        "s3://stt/../x",
        "s3://stt/a//b",
        "s3://stt/x?versionId=1",
        "file://relative/dir",
        "gs://stt/audio",
        "/srv/audio",
    ],
)
def test_unusable_storage_urls_are_refused(tmp_path: Path, raw: str) -> None:
    with pytest.raises(ConfigError, match="STT_STORAGE_URL"):
        load_settings({"STT_DATA_DIR": str(tmp_path), "STT_STORAGE_URL": raw})


def test_s3_endpoint_region_and_scratch(tmp_path: Path) -> None:
    base = {"STT_DATA_DIR": str(tmp_path), "STT_STORAGE_URL": "s3://stt/audio"}
    s = load_settings(
        {**base, "AWS_ENDPOINT_URL": "http://aws-wide:9000", "AWS_DEFAULT_REGION": "eu-west-1"}
    )
    assert (s.storage.s3_endpoint_url, s.storage.s3_region) == ("http://aws-wide:9000", "eu-west-1")
    s = load_settings(
        {
            **base,
            "AWS_ENDPOINT_URL": "http://aws-wide:9000",
            "STT_S3_ENDPOINT_URL": "http://minio:9000",
            "AWS_REGION": "auto",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "STT_SCRATCH_DIR": str(tmp_path / "fast-disk"),
        }
    )
    assert (s.storage.s3_endpoint_url, s.storage.s3_region) == ("http://minio:9000", "auto")
    assert s.storage.scratch_dir == (tmp_path / "fast-disk").resolve()


def test_s3_parts_grow_with_the_upload_limit(tmp_path: Path) -> None:
    base = {"STT_DATA_DIR": str(tmp_path), "STT_STORAGE_URL": "s3://stt/audio"}
    storage = make_storage(load_settings(base))
    assert isinstance(storage, S3Storage)
    assert (storage.bucket, storage.prefix, storage.part_size) == ("stt", "audio", PART_SIZE)
    huge = make_storage(load_settings({**base, "STT_MAX_UPLOAD_BYTES": str(200 * 1024**3)}))
    assert isinstance(huge, S3Storage)
    assert huge.part_size * 10_000 >= 200 * 1024**3


def test_limits_default_to_two_gigabytes_and_ten_hours() -> None:
    s = load_settings({})
    assert s.limits.max_upload_bytes == 2 * 1024**3
    assert s.limits.max_audio_seconds == 10 * 3600


def test_chunking_defaults_and_overrides() -> None:
    s = load_settings({})
    assert (s.chunks.threshold_s, s.chunks.target_s) == (600.0, 300.0)
    s = load_settings({"STT_CHUNK_THRESHOLD_S": "60", "STT_CHUNK_TARGET_S": "40"})
    assert (s.chunks.threshold_s, s.chunks.target_s) == (60.0, 40.0)


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"STT_CHUNK_TARGET_S": "5"}, "STT_CHUNK_TARGET_S"),
        ({"STT_CHUNK_THRESHOLD_S": "100", "STT_CHUNK_TARGET_S": "300"}, "STT_CHUNK_THRESHOLD_S"),
        ({"STT_CHUNK_THRESHOLD_S": "soon"}, "STT_CHUNK_THRESHOLD_S"),
    ],
)
def test_bad_chunking_raises(env: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_settings(env)


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, None), ("", None), ("auto", None), ("0", 0), ("16", 16)]
)
def test_batch_size_is_auto_or_a_number(raw: str | None, expected: int | None) -> None:
    env = {} if raw is None else {"STT_BATCH_SIZE": raw}
    assert load_settings(env).engine.batch_size == expected


@pytest.mark.parametrize("raw", ["-1", "many"])
def test_bad_batch_size_raises(raw: str) -> None:
    with pytest.raises(ConfigError, match="STT_BATCH_SIZE"):
        load_settings({"STT_BATCH_SIZE": raw})
