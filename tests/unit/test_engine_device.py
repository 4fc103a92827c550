"""Device and compute type: `auto` means CUDA with float16 when a GPU is visible, else CPU
with int8; explicit settings are kept. (No GPU here: the CUDA count is stood in for.)"""

from __future__ import annotations

import pytest

from worker import engine


@pytest.mark.parametrize(
    ("gpus", "device", "compute", "expected"),
    [
        (0, "auto", "auto", ("cpu", "int8")),
        (1, "auto", "auto", ("cuda", "float16")),
        (2, "auto", "int8_float16", ("cuda", "int8_float16")),
        (1, "cpu", "auto", ("cpu", "int8")),
        (0, "cuda", "auto", ("cuda", "float16")),
        (0, "cpu", "float32", ("cpu", "float32")),
    ],
)
def test_resolve_device(
    monkeypatch: pytest.MonkeyPatch,
    gpus: int,
    device: str,
    compute: str,
    expected: tuple[str, str],
) -> None:
    monkeypatch.setattr("worker.engine.ctranslate2.get_cuda_device_count", lambda: gpus)
    assert engine.resolve_device(device, compute) == expected
