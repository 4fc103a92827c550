"""Batched or sequential decoding: the default per model and device, the override, and
the batched pipeline really used (on the bundled tiny.en model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from faster_whisper import BatchedInferencePipeline

from core.audio import decode
from core.queues import make_celery
from core.settings import load_settings
from tests.support import clip, error_rate
from worker import engine
from worker.batching import MEASURED, batch_size_for, default_batch_size
from worker.context import WorkerContext


def test_measured_models_use_their_measured_batch() -> None:
    for (spec, device), batch in MEASURED.items():
        assert default_batch_size(spec, device) == batch


def test_unmeasured_models_are_sequential_on_cpu_and_batched_on_gpu() -> None:
    assert default_batch_size("large-v3", "cpu") == 0
    assert default_batch_size("large-v3", "cuda") > 0


def test_the_setting_overrides_the_table() -> None:
    assert batch_size_for(None, "bundled:base", "cpu") == default_batch_size("bundled:base", "cpu")
    assert batch_size_for(0, "bundled:tiny.en", "cpu") == 0
    assert batch_size_for(4, "bundled:base", "cpu") == 4


def test_the_worker_gives_each_model_its_batch(tmp_path: Path) -> None:
    settings = load_settings({"STT_DATA_DIR": str(tmp_path), "STT_DEVICE": "cpu"})
    ctx = WorkerContext(settings, make_celery(settings))
    for spec in ("bundled:tiny.en", "bundled:base"):
        assert ctx.engine_config_for(spec).batch_size == default_batch_size(spec, "cpu")
    forced = load_settings({"STT_DATA_DIR": str(tmp_path), "STT_BATCH_SIZE": "3"})
    assert WorkerContext(forced, make_celery(forced)).engine_config_for("x").batch_size == 3


@pytest.mark.parametrize("batch", [0, 8])
def test_both_ways_transcribe(
    corpus: Path, tmp_path: Path, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    used: list[int] = []
    real = BatchedInferencePipeline.transcribe

    def spy(self: BatchedInferencePipeline, *args: object, **kwargs: object) -> object:
        used.append(int(kwargs["batch_size"]))  # type: ignore[call-overload]
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(BatchedInferencePipeline, "transcribe", spy)
    config = engine.EngineConfig(device="cpu", compute_type="int8", cpu_threads=2, batch_size=batch)
    model = engine.load_model("bundled:tiny.en", config, tmp_path)
    c = clip("en_jfk_inaugural.flac")
    out = engine.transcribe(model, decode(c.path), engine.TranscribeOptions(), config)
    assert error_rate(c.reference, out.text, "en") <= 0.1
    assert used == ([batch] if batch else [])
