"""Backend selection, and the Diarizer interface on every backend present.

The pyannote tests run where pyannote.audio is installed and STT_PYANNOTE_PIPELINE names a
local pipeline directory; everywhere else they are skipped (it needs torch, never installed
by this project).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.conversations import stitch
from bench.diarization import der
from core.errors import ConfigError, DiarizationUnavailable
from worker.diarize.engine import BundledDiarizer
from worker.diarize.pyannote_backend import PyannoteDiarizer, pyannote_installed
from worker.diarize.select import diarization_config, make_diarizer
from worker.diarize.types import Diarizer, Hints
from worker.diarize.windows import speech_spans

PIPELINE_DIR = os.environ.get("STT_PYANNOTE_PIPELINE", "")
HAVE_PYANNOTE = pyannote_installed() and bool(PIPELINE_DIR) and Path(PIPELINE_DIR).is_dir()
needs_pyannote = pytest.mark.skipif(
    not HAVE_PYANNOTE, reason="pyannote.audio or its local pipeline (STT_PYANNOTE_PIPELINE) absent"
)


def test_bundled_is_the_default() -> None:
    config = diarization_config({})
    assert config.backend == "bundled"
    assert isinstance(make_diarizer(config), BundledDiarizer)


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="one of"):
        diarization_config({"STT_DIARIZATION": "magic"})
    with pytest.raises(ConfigError, match="STT_PYANNOTE_PIPELINE"):
        diarization_config({"STT_DIARIZATION": "pyannote"})
    with pytest.raises(ConfigError, match="integer"):
        diarization_config({"STT_DIARIZATION_THREADS": "two"})
    with pytest.raises(ConfigError, match="at least 1"):
        diarization_config({"STT_DIARIZATION_THREADS": "0"})


def test_the_token_is_not_in_the_config_repr() -> None:
    config = diarization_config(
        {"STT_DIARIZATION": "pyannote", "STT_PYANNOTE_PIPELINE": "x", "STT_PYANNOTE_TOKEN": "hf_s"}
    )
    assert config.pyannote_token == "hf_s"
    assert "hf_s" not in repr(config)


def test_off_means_a_clear_400() -> None:
    with pytest.raises(DiarizationUnavailable, match="not enabled") as caught:
        make_diarizer(diarization_config({"STT_DIARIZATION": "off"}))
    assert (caught.value.status, caught.value.code) == (400, "diarization_unavailable")


@pytest.mark.skipif(pyannote_installed(), reason="pyannote.audio is installed here")
def test_pyannote_without_the_package_is_unavailable(tmp_path: Path) -> None:
    diarizer = make_diarizer(
        diarization_config({"STT_DIARIZATION": "pyannote", "STT_PYANNOTE_PIPELINE": str(tmp_path)})
    )
    assert isinstance(diarizer, PyannoteDiarizer)
    with pytest.raises(DiarizationUnavailable, match=r"pyannote\.audio"):
        diarizer.pipeline()


def _backends() -> list[object]:
    params: list[object] = [pytest.param("bundled", id="bundled")]
    params.append(pytest.param("pyannote", id="pyannote", marks=needs_pyannote))
    return params


@pytest.mark.parametrize("backend", _backends())
def test_every_backend_diarizes_a_stitched_conversation(backend: str) -> None:
    env = {"STT_DIARIZATION": backend, "STT_PYANNOTE_PIPELINE": PIPELINE_DIR or "unset"}
    diarizer: Diarizer = make_diarizer(diarization_config(env))
    conv = stitch(["ljspeech", "sense"], turns_each=3, seed=11)
    turns = diarizer.diarize(conv.audio, speech_spans(conv.audio), Hints())
    assert len({t.speaker for t in turns}) == 2
    assert der(conv.turns, turns, 0.25, conv.duration)["der"] < 0.15
    limited = diarizer.diarize(conv.audio, speech_spans(conv.audio), Hints(max_speakers=1))
    assert {t.speaker for t in limited} == {"A"}
