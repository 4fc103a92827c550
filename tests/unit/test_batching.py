"""Batched or sequential decoding: the bench's stored choice used only on the machine that
measured it, the fallback otherwise, the override, and the batched pipeline really used (on
the bundled tiny.en model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from faster_whisper import BatchedInferencePipeline

from core.audio import decode
from core.queues import make_celery
from core.settings import load_settings
from tests.support import clip, error_rate
from worker import engine
from worker.batching import (
    batch_size_for,
    choices_path,
    default_batch_size,
    fingerprint,
    measured_choices,
    write_choices,
)
from worker.context import WorkerContext


def test_a_choice_measured_on_this_machine_is_used(tmp_path: Path) -> None:
    path = choices_path(tmp_path)
    write_choices(path, "cpu", {"bundled:tiny.en": 16, "bundled:base": 0})
    assert json.loads(path.read_text())["fingerprint"] == fingerprint("cpu")
    assert default_batch_size("bundled:tiny.en", "cpu", path) == 16
    assert default_batch_size("bundled:base", "cpu", path) == 0
    # a model the bench did not measure, and the same file read for another device
    assert default_batch_size("large-v3", "cpu", path) == 0
    assert default_batch_size("bundled:tiny.en", "cuda", path) == 8


@pytest.mark.parametrize("field", ["cpu", "usable_cores", "ctranslate2", "device"])
def test_a_choice_from_another_machine_is_ignored(tmp_path: Path, field: str) -> None:
    path = choices_path(tmp_path)
    write_choices(path, "cpu", {"bundled:tiny.en": 16})
    body = json.loads(path.read_text())
    body["fingerprint"][field] = 999 if field == "usable_cores" else "elsewhere"
    path.write_text(json.dumps(body))
    assert measured_choices(path, "cpu") == {}
    assert default_batch_size("bundled:tiny.en", "cpu", path) == 0


@pytest.mark.parametrize(
    "content", [None, "", "{not json", "[]", '{"fingerprint": {}}', '{"choices": {"a": 8}}']
)
def test_a_missing_or_corrupt_file_falls_back(tmp_path: Path, content: str | None) -> None:
    path = choices_path(tmp_path)
    if content is not None:
        path.write_text(content)
    assert measured_choices(path, "cpu") == {}
    assert default_batch_size("bundled:tiny.en", "cpu", path) == 0
    assert default_batch_size("bundled:tiny.en", "cuda", path) == 8


def test_invalid_entries_are_skipped(tmp_path: Path) -> None:
    path = choices_path(tmp_path)
    write_choices(path, "cpu", {"a": 8})
    body = json.loads(path.read_text())
    body["choices"] = {"a": 8, "b": -1, "c": "8", "d": True}
    path.write_text(json.dumps(body))
    assert measured_choices(path, "cpu") == {"a": 8}


def test_without_a_measurement_cpu_is_sequential_and_gpu_batched() -> None:
    assert default_batch_size("large-v3", "cpu") == 0
    assert default_batch_size("large-v3", "cuda") > 0


def test_the_setting_overrides_the_measurement(tmp_path: Path) -> None:
    path = choices_path(tmp_path)
    write_choices(path, "cpu", {"bundled:base": 16})
    assert batch_size_for(None, "bundled:base", "cpu", path) == 16
    assert batch_size_for(0, "bundled:base", "cpu", path) == 0
    assert batch_size_for(4, "bundled:base", "cpu", path) == 4


def test_the_worker_reads_the_choice_in_its_data_dir(tmp_path: Path) -> None:
    settings = load_settings({"STT_DATA_DIR": str(tmp_path), "STT_DEVICE": "cpu"})
    ctx = WorkerContext(settings, make_celery(settings))
    assert ctx.engine_config_for("bundled:tiny.en").batch_size == 0
    write_choices(choices_path(tmp_path), "cpu", {"bundled:tiny.en": 16})
    assert ctx.engine_config_for("bundled:tiny.en").batch_size == 16
    assert ctx.engine_config_for("bundled:base").batch_size == 0
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
