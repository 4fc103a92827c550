"""The worker's model encodes the first window once when it detects the language (plain
faster-whisper encodes it twice), and its transcript is still the library's own, word for
word and time for time. Real bundled model, real speech longer than one 30 s window."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faster_whisper import WhisperModel

from core.audio import decode
from tests.support import long_audio
from worker.bundled_models import resolve_model_path
from worker.engine import (
    EngineConfig,
    ReusingWhisperModel,
    TranscribeOptions,
    load_model,
    transcribe,
)

SPEECH = [
    "en_jfk_inaugural.flac",
    "en_ljspeech_LJ001-0001.wav",
    "en_ljspeech_LJ001-0003.flac",
    "en_ljspeech_LJ001-0005.mp3",
]
"""About 40 s with the gaps: two Whisper windows."""
CONFIG = EngineConfig(cpu_threads=2)
OPTIONS: dict[str, Any] = {
    "beam_size": 5,
    "vad_filter": True,
    "temperature": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
}


class CountingWhisperModel(WhisperModel):  # type: ignore[misc]  # faster-whisper is untyped
    """The library's model as it is, counting its encoder passes."""

    encodes = 0

    def encode(self, features: np.ndarray) -> Any:
        self.encodes += 1
        return super().encode(features)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    path, _ = long_audio(Path(tmp_path_factory.mktemp("speech")) / "speech.wav", SPEECH)
    samples = decode(path)
    assert len(samples) / 16000 > 35
    return samples


@pytest.fixture(scope="module")
def worker_model(cache: Path) -> ReusingWhisperModel:
    model = load_model("bundled:base", CONFIG, cache)
    assert isinstance(model, ReusingWhisperModel)
    return model


@pytest.fixture(scope="module")
def library_model(cache: Path) -> CountingWhisperModel:
    path = resolve_model_path("bundled:base", cache)
    return CountingWhisperModel(path, device="cpu", compute_type="int8", cpu_threads=2)


def test_same_transcript_one_encoder_pass_fewer(
    worker_model: ReusingWhisperModel, library_model: CountingWhisperModel, audio: np.ndarray
) -> None:
    segments, info = library_model.transcribe(audio, **OPTIONS)
    expected = [(round(s.start, 3), round(s.end, 3), s.text.strip()) for s in segments]
    before = worker_model.encodes

    t = transcribe(worker_model, audio, TranscribeOptions(), CONFIG)

    assert [(s.start, s.end, s.text) for s in t.segments] == expected
    assert t.language == info.language == "en"
    assert library_model.encodes >= 3  # detection, then two windows
    assert worker_model.encodes - before == library_model.encodes - 1


def test_no_second_encoding_to_spare_when_the_language_is_given(
    worker_model: ReusingWhisperModel, library_model: CountingWhisperModel, audio: np.ndarray
) -> None:
    library_model.encodes = 0
    segments, _ = library_model.transcribe(audio, language="en", **OPTIONS)
    expected = [s.text.strip() for s in segments]
    before = worker_model.encodes

    t = transcribe(worker_model, audio, TranscribeOptions(language="en"), CONFIG)

    assert [s.text for s in t.segments] == expected
    assert worker_model.encodes - before == library_model.encodes
