"""The hallucination guard on the real model: Whisper invents words on silence it is made to
hear (VAD off), and the guard removes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from faster_whisper import WhisperModel

from worker.engine import EngineConfig, GuardConfig, TranscribeOptions, load_model, transcribe

SILENCE = np.zeros(16000 * 2, dtype=np.float32)
NO_VAD = EngineConfig(cpu_threads=2, vad_filter=False)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> WhisperModel:
    cache = Path(tmp_path_factory.mktemp("models"))
    return load_model("bundled:base", NO_VAD, cache)


def test_whisper_invents_words_on_silence(model: WhisperModel) -> None:
    """Why the guard exists: without VAD or guard, two seconds of silence become text."""
    unguarded = EngineConfig(cpu_threads=2, vad_filter=False, guard=GuardConfig(enabled=False))
    t = transcribe(model, SILENCE, TranscribeOptions(language="en"), unguarded)
    assert t.text.strip() and t.dropped_segments == 0


def test_the_guard_drops_them(model: WhisperModel) -> None:
    t = transcribe(model, SILENCE, TranscribeOptions(language="en"), NO_VAD)
    assert (t.text, t.segments) == ("", [])
    assert t.dropped_segments >= 1
