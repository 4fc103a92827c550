"""The production backend: pyannote.audio's pipeline, behind the same `Diarizer` interface.

pyannote.audio needs torch, so it is never a dependency of this project: install it into the
worker's environment where wanted (`uv pip install pyannote.audio`). It is imported on first
use only. The pipeline comes from a local directory (holding its `config.yaml`) or, with a
Hugging Face token, from the hub by name; nothing here downloads by default.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import DiarizationUnavailable, InvalidSpeakerReference
from worker.diarize.known import check_reference_length, name_clusters
from worker.diarize.mel import SAMPLE_RATE
from worker.diarize.types import FloatArray, Hints, Span, Turn

MATCH_THRESHOLD = 0.6
"""Cosine similarity for a known-speaker match on pyannote's embeddings (not yet measured)."""


def pyannote_installed() -> bool:
    try:
        return importlib.util.find_spec("pyannote.audio") is not None
    except ModuleNotFoundError:
        return False


def _load_pipeline(source: str, token: str | None) -> Any:
    if not pyannote_installed():
        raise DiarizationUnavailable(
            "the pyannote diarization backend needs pyannote.audio installed in the worker"
        )
    audio = importlib.import_module("pyannote.audio")
    local = Path(source)
    target = str(local / "config.yaml") if local.is_dir() else source
    if not local.exists() and token is None:
        raise DiarizationUnavailable(
            f"pyannote pipeline {source!r} is not a local directory and no token is configured"
        )
    try:
        pipeline = audio.Pipeline.from_pretrained(target, token=token)
    except TypeError:  # pyannote.audio 3.x names the argument differently
        pipeline = audio.Pipeline.from_pretrained(target, use_auth_token=token)
    if pipeline is None:
        raise DiarizationUnavailable(f"pyannote pipeline {source!r} could not be loaded")
    return pipeline


def _split_output(output: Any) -> tuple[Any, Any]:
    """(annotation, embeddings or None) across pyannote.audio 3.x and 4.x return shapes."""
    if isinstance(output, tuple):
        return output[0], output[1]
    if hasattr(output, "speaker_diarization"):
        return output.speaker_diarization, getattr(output, "speaker_embeddings", None)
    return output, None


@dataclass
class PyannoteDiarizer:
    """pyannote.audio's speaker-diarization pipeline (torch; GPU when the worker has one)."""

    source: str
    token: str | None = None
    match_threshold: float = MATCH_THRESHOLD
    name: str = "pyannote"
    _pipeline: Any = field(default=None, repr=False)

    def pipeline(self) -> Any:
        if self._pipeline is None:
            self._pipeline = _load_pipeline(self.source, self.token)
        return self._pipeline

    def _waveform(self, audio: FloatArray) -> dict[str, Any]:
        torch = importlib.import_module("torch")
        tensor = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        return {"waveform": tensor, "sample_rate": SAMPLE_RATE}

    def diarize(self, audio: FloatArray, speech: list[Span], hints: Hints) -> list[Turn]:
        """pyannote finds speech itself; `speech` is not needed by this backend."""
        kwargs: dict[str, Any] = {}
        if hints.min_speakers is not None:
            kwargs["min_speakers"] = hints.min_speakers
        if hints.max_speakers is not None:
            kwargs["max_speakers"] = hints.max_speakers
        if hints.known:
            kwargs["return_embeddings"] = True
        annotation, embeddings = _split_output(self.pipeline()(self._waveform(audio), **kwargs))
        tracks = sorted(
            (float(seg.start), float(seg.end), str(label))
            for seg, _, label in annotation.itertracks(yield_label=True)
        )
        order = list(dict.fromkeys(label for _, _, label in tracks))
        centres = np.zeros((len(order), 1), np.float32)
        if hints.known and embeddings is not None:
            by_label = dict(zip(annotation.labels(), np.asarray(embeddings), strict=False))
            rows = [by_label[label] for label in order]
            centres = np.stack([r / max(float(np.linalg.norm(r)), 1e-12) for r in rows])
        known = hints.known if hints.known and embeddings is not None else {}
        names = dict(zip(order, name_clusters(centres, known, self.match_threshold), strict=True))
        return [Turn(start, end, names[label]) for start, end, label in tracks]

    def reference_embedding(self, audio: FloatArray) -> FloatArray:
        check_reference_length(audio)
        if float(np.sqrt(np.mean(np.square(audio)))) < 1e-4:
            raise InvalidSpeakerReference(
                "a speaker reference holds no speech", param="known_speaker_references"
            )
        model = getattr(self.pipeline(), "_embedding", None)
        if model is None:
            raise DiarizationUnavailable("this pyannote pipeline exposes no embedding model")
        batch = self._waveform(audio)["waveform"][None]
        vector = np.asarray(model(batch), dtype=np.float32).reshape(-1)
        return vector / max(float(np.linalg.norm(vector)), 1e-12)
