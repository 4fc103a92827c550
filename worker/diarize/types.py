"""The values the diarization engine takes and returns, and the interface every backend meets."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating[Any]]


@dataclass(frozen=True)
class Span:
    """A stretch of audio in seconds (a VAD speech span, a window, a turn's extent)."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Turn:
    """One speaker talking from `start` to `end` (seconds)."""

    start: float
    end: float
    speaker: str


@dataclass(frozen=True)
class Hints:
    """What the caller knows: bounds on the number of speakers, and named voices.

    `known` maps a name to a reference embedding (see `Diarizer.reference_embedding`).
    """

    min_speakers: int | None = None
    max_speakers: int | None = None
    known: dict[str, FloatArray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lo, hi = self.min_speakers, self.max_speakers
        if lo is not None and lo < 1:
            raise ValueError("min_speakers is at least 1")
        if hi is not None and hi < 1:
            raise ValueError("max_speakers is at least 1")
        if lo is not None and hi is not None and lo > hi:
            raise ValueError("min_speakers exceeds max_speakers")


@dataclass(frozen=True)
class WindowEmbeddings:
    """Embeddings of speech windows: what a chunk worker sends to the global merge.

    `regions[i]` is the stretch of time (in the file's own seconds) that row i of `vectors`
    speaks for; regions do not overlap. Serialisable with `to_dict` / `from_dict` (JSON-ready:
    the vectors as base64 float16, about 700 bytes a window, 3 MB per hour of speech).
    """

    regions: list[Span]
    vectors: FloatArray  # (len(regions), dim), L2-normalised rows

    def shifted(self, offset_s: float) -> WindowEmbeddings:
        """The same windows with times moved by `offset_s` (a chunk's start in the file)."""
        moved = [Span(r.start + offset_s, r.end + offset_s) for r in self.regions]
        return WindowEmbeddings(moved, self.vectors)

    def to_dict(self) -> dict[str, Any]:
        packed = np.ascontiguousarray(self.vectors, dtype="<f2").tobytes()
        return {
            "regions": [[round(r.start, 3), round(r.end, 3)] for r in self.regions],
            "dim": int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0,
            "vectors_f16": base64.b64encode(packed).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowEmbeddings:
        regions = [Span(float(a), float(b)) for a, b in data["regions"]]
        raw = np.frombuffer(base64.b64decode(data["vectors_f16"]), dtype="<f2")
        vectors = raw.astype(np.float32).reshape(len(regions), int(data["dim"]))
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return cls(regions, vectors / np.maximum(norms, 1e-12))

    @classmethod
    def concat(cls, parts: list[WindowEmbeddings]) -> WindowEmbeddings:
        regions = [r for p in parts for r in p.regions]
        dims = [p.vectors.shape[1] for p in parts if len(p.regions)]
        dim = dims[0] if dims else 0
        vectors = (
            np.concatenate([p.vectors for p in parts if len(p.regions)])
            if dims
            else np.zeros((0, dim), np.float32)
        )
        return cls(regions, vectors)


class Diarizer(Protocol):
    """Who spoke when. Every backend (the bundled encoder, pyannote) meets this."""

    name: str

    def diarize(self, audio: FloatArray, speech: list[Span], hints: Hints) -> list[Turn]:
        """Speaker turns of 16 kHz mono float32 `audio`, whose speech lies in `speech`."""
        ...

    def reference_embedding(self, audio: FloatArray) -> FloatArray:
        """The voice print of a 2-10 s reference clip, for `Hints.known`.

        Raises `core.errors.InvalidSpeakerReference` when the clip is too short or silent.
        """
        ...


class EmbeddingDiarizer(Diarizer, Protocol):
    """A backend that can split the work: embed chunks apart, cluster the whole file once."""

    def embed(self, audio: FloatArray, speech: list[Span]) -> WindowEmbeddings:
        """Embeddings of the speech windows of one stretch of audio (times relative to it)."""
        ...

    def cluster(self, windows: WindowEmbeddings, hints: Hints) -> list[Turn]:
        """Turns over all windows at once: one label per voice across every chunk."""
        ...
