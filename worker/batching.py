"""Batched or sequential decoding, chosen per model by measuring this machine.

faster-whisper's `BatchedInferencePipeline` cuts the audio at the VAD's pauses into pieces
of up to 30 s and decodes several at once; `WhisperModel.transcribe` decodes 30 s windows
one after another, each conditioned on the text before it. Which is faster depends on the
model and the hardware, and batching also changes the text (no conditioning on earlier
windows, no timestamp tokens), so the choice comes from measuring both speed and word error
rate: `python -m bench --only engine` measures sequential against batched (8, 16) for each
bundled model and writes the fastest whose WER is within a point of sequential to
`<data_dir>/batching.json`, with the fingerprint of the machine it measured (CPU model,
usable cores, CTranslate2 version, device).

The worker uses a choice only when that fingerprint is the machine it runs on. Otherwise
(no file, an unreadable one, another machine, a model not measured) the fallback holds:
sequential on CPU, batches of 8 on CUDA. `STT_BATCH_SIZE` overrides every choice.
"""

from __future__ import annotations

import contextlib
import json
import platform
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from core.settings import usable_cores

FILE_NAME = "batching.json"
"""The bench's choice, in the data directory."""

GPU_DEFAULT = 8
"""On CUDA, without a measurement for this machine: batches of 8, the batch faster-whisper's
own benchmark reports (several times faster than sequential on a GPU)."""


def choices_path(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _ctranslate2_version() -> str:
    try:
        return version("ctranslate2")
    except PackageNotFoundError:
        return "none"


@cache
def fingerprint(device: str) -> dict[str, Any]:
    """What a measurement depends on: the CPU, the cores this process may use, CTranslate2
    and the device (`cpu` or `cuda`)."""
    return {
        "cpu": cpu_model(),
        "usable_cores": usable_cores(),
        "ctranslate2": _ctranslate2_version(),
        "device": device,
    }


def write_choices(path: Path, device: str, choices: dict[str, int], **details: Any) -> None:
    """Store the measured batch size per model spec (0: sequential) for this machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"fingerprint": fingerprint(device), "choices": choices, **details}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n")
    tmp.replace(path)


def measured_choices(path: Path | None, device: str) -> dict[str, int]:
    """The choices in `path` when they were measured on this machine, else none."""
    if path is None:
        return {}
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(body, dict) or body.get("fingerprint") != fingerprint(device):
        return {}
    choices = body.get("choices")
    if not isinstance(choices, dict):
        return {}
    return {
        str(spec): batch
        for spec, batch in choices.items()
        if isinstance(batch, int) and not isinstance(batch, bool) and batch >= 0
    }


def default_batch_size(model_spec: str, device: str, choices_file: Path | None = None) -> int:
    """The batch size for a model on a device (`cpu` or `cuda`); 0 means sequential."""
    measured = measured_choices(choices_file, device)
    if model_spec in measured:
        return measured[model_spec]
    return GPU_DEFAULT if device == "cuda" else 0


def batch_size_for(
    configured: int | None, model_spec: str, device: str, choices_file: Path | None = None
) -> int:
    """`STT_BATCH_SIZE` when set, else this machine's measured choice, else the fallback."""
    if configured is not None:
        return configured
    return default_batch_size(model_spec, device, choices_file)
