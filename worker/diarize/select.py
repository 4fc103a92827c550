"""The diarization backend a setting names (`settings.diarization`, core/settings.py)."""

from __future__ import annotations

from collections.abc import Mapping

from core.errors import DiarizationUnavailable
from core.settings import DiarizationSettings, load_settings
from worker.diarize.engine import BundledDiarizer
from worker.diarize.pyannote_backend import PyannoteDiarizer
from worker.diarize.types import Diarizer

BACKENDS = ("bundled", "pyannote", "off")

DiarizationConfig = DiarizationSettings
"""The settings group is the backend's configuration."""


def diarization_config(env: Mapping[str, str] | None = None) -> DiarizationConfig:
    """The diarization settings of `env` (default: the process environment)."""
    return load_settings(env).diarization


def make_diarizer(config: DiarizationConfig) -> Diarizer:
    """The configured backend; `DiarizationUnavailable` (a 400) when diarization is off."""
    if config.backend == "off":
        raise DiarizationUnavailable("speaker diarization is not enabled on this server")
    if config.backend == "pyannote":
        assert config.pyannote_pipeline is not None
        return PyannoteDiarizer(config.pyannote_pipeline, config.pyannote_token)
    return BundledDiarizer(threads=config.threads)
