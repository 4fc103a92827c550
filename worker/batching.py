"""Batched or sequential decoding, chosen per model and device by measurement.

faster-whisper's `BatchedInferencePipeline` cuts the audio at the VAD's pauses into pieces
of up to 30 s and decodes several at once; `WhisperModel.transcribe` decodes 30 s windows
one after another, each conditioned on the text before it. Which is faster depends on the
model and the hardware, and batching also changes the text (no conditioning on earlier
windows, no timestamp tokens), so the default is chosen by measuring both speed and word
error rate (`python -m bench --only engine` measures them; README "Performance" has the
figures). `STT_BATCH_SIZE` overrides the choice for every model.
"""

from __future__ import annotations

MEASURED: dict[tuple[str, str], int] = {
    # bench, 2-core x86 VM, int8, beam 5, 167 s of joined corpus English (README, Performance):
    # tiny.en batched (8) ran about 1.2-1.5x faster than sequential with lower WER.
    ("bundled:tiny.en", "cpu"): 8,
    # base batched (8) was faster here, but lost a whole sentence at a window start
    # (WER 0.195 against 0.113): not worth it; sequential.
    ("bundled:base", "cpu"): 0,
}
"""(model spec, device) -> batch size (0: sequential), from measurements on this project."""

GPU_DEFAULT = 8
"""On CUDA, models not measured here batch by 8, the batch faster-whisper's own benchmark
reports (several times faster than sequential on a GPU); not measured in this project."""


def default_batch_size(model_spec: str, device: str) -> int:
    """The batch size for a model on a device (`cpu` or `cuda`); 0 means sequential."""
    if (model_spec, device) in MEASURED:
        return MEASURED[(model_spec, device)]
    return GPU_DEFAULT if device == "cuda" else 0


def batch_size_for(configured: int | None, model_spec: str, device: str) -> int:
    """`STT_BATCH_SIZE` when set, else the measured default for this model and device."""
    return default_batch_size(model_spec, device) if configured is None else configured
