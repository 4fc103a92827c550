"""The diarization backend a setting names.

Proposed settings (read by `diarization_config`, at call time; to move into core/settings.py
as a `diarization` group once the settings restructure lands):

    STT_DIARIZATION          bundled (default) | pyannote | off
    STT_PYANNOTE_PIPELINE    a local pipeline directory, or a hub name used with the token
    STT_PYANNOTE_TOKEN       a Hugging Face token (optional; never logged)
    STT_DIARIZATION_THREADS  CPU threads for the bundled encoder (default 2)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from core.errors import ConfigError, DiarizationUnavailable
from worker.diarize.engine import BundledDiarizer
from worker.diarize.pyannote_backend import PyannoteDiarizer
from worker.diarize.types import Diarizer

BACKENDS = ("bundled", "pyannote", "off")


@dataclass(frozen=True)
class DiarizationConfig:
    backend: str = "bundled"
    pyannote_pipeline: str | None = None
    pyannote_token: str | None = field(default=None, repr=False)
    threads: int = 2


def diarization_config(env: Mapping[str, str] | None = None) -> DiarizationConfig:
    env = os.environ if env is None else env
    backend = (env.get("STT_DIARIZATION") or "bundled").strip().lower()
    if backend not in BACKENDS:
        raise ConfigError(f"STT_DIARIZATION must be one of {', '.join(BACKENDS)}, got {backend!r}")
    pipeline = env.get("STT_PYANNOTE_PIPELINE") or None
    if backend == "pyannote" and pipeline is None:
        raise ConfigError("STT_DIARIZATION=pyannote needs STT_PYANNOTE_PIPELINE")
    raw_threads = env.get("STT_DIARIZATION_THREADS") or "2"
    try:
        threads = int(raw_threads)
    except ValueError as exc:
        raise ConfigError(
            f"STT_DIARIZATION_THREADS must be an integer, got {raw_threads!r}"
        ) from exc
    if threads < 1:
        raise ConfigError("STT_DIARIZATION_THREADS must be at least 1")
    return DiarizationConfig(backend, pipeline, env.get("STT_PYANNOTE_TOKEN") or None, threads)


def make_diarizer(config: DiarizationConfig) -> Diarizer:
    """The configured backend; `DiarizationUnavailable` (a 400) when diarization is off."""
    if config.backend == "off":
        raise DiarizationUnavailable("speaker diarization is not enabled on this server")
    if config.backend == "pyannote":
        assert config.pyannote_pipeline is not None
        return PyannoteDiarizer(config.pyannote_pipeline, config.pyannote_token)
    return BundledDiarizer(threads=config.threads)
