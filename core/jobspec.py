"""What the API asks of the worker for one job (`jobs.options`): the whole contract.

The API builds a `JobOptions` and stores `to_dict()`; the worker reads `from_dict()`.
Keys left at their default are not stored, so rows written before this type read the same.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from typing import Any

from core.audio import RawFormat
from core.speakers import KnownSpeaker


@dataclass(frozen=True)
class ChunkPlan:
    """What planning a long job decided for all of its chunks."""

    language: str
    language_probability: float
    chunks: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "language": self.language,
            "language_probability": self.language_probability,
            "chunks": self.chunks,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChunkPlan:
        return cls(
            language=str(data.get("language") or ""),
            language_probability=float(data.get("language_probability", 1.0)),
            chunks=int(data.get("chunks", 0)),
        )


@dataclass(frozen=True)
class JobOptions:
    """How to transcribe, how to answer, and (once planned) how the job was cut."""

    word_timestamps: bool = False
    task: str = "transcribe"
    stream: bool = False
    prompt: str | None = None
    temperature: float | None = None
    raw: RawFormat | None = None
    """Headerless PCM's format; None for a file with a header."""
    granularities: tuple[str, ...] | None = None
    response_format: str | None = None
    chunked: ChunkPlan | None = None
    """Set by the worker that cut the job into chunks."""
    filename: str | None = None
    """The uploaded file's name, which names the transcript's downloads."""
    diarize: bool = False
    """Label who spoke when (speakers on words, `speakers` segments)."""
    min_speakers: int | None = None
    max_speakers: int | None = None
    known_speakers: tuple[KnownSpeaker, ...] = ()
    """Named reference clips (at most 4 of 2-10 s, checked by the API; base64 in the row)."""

    def with_chunk_plan(self, plan: ChunkPlan) -> JobOptions:
        return replace(self, chunked=plan)

    @property
    def words(self) -> bool:
        """Whether the caller asked for word timestamps in the response."""
        return "word" in (self.granularities or ())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"word_timestamps": self.word_timestamps}
        if self.task != "transcribe":
            out["task"] = self.task
        if self.stream:
            out["stream"] = True
        if self.prompt:
            out["prompt"] = self.prompt
        if self.temperature is not None:
            out["temperature"] = self.temperature
        if self.raw is not None:
            out["raw"] = {"encoding": self.raw.encoding, "sample_rate": self.raw.sample_rate}
        if self.granularities is not None:
            out["granularities"] = list(self.granularities)
        if self.response_format is not None:
            out["response_format"] = self.response_format
        if self.chunked is not None:
            out["chunked"] = self.chunked.to_dict()
        if self.filename is not None:
            out["filename"] = self.filename
        if self.diarize:
            out["diarize"] = True
        if self.min_speakers is not None:
            out["min_speakers"] = self.min_speakers
        if self.max_speakers is not None:
            out["max_speakers"] = self.max_speakers
        if self.known_speakers:
            out["known_speakers"] = [
                {"name": k.name, "audio": base64.b64encode(k.audio).decode("ascii")}
                for k in self.known_speakers
            ]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> JobOptions:
        data = data or {}
        raw = data.get("raw")
        temperature = data.get("temperature")
        granularities = data.get("granularities")
        chunked = data.get("chunked")
        return cls(
            word_timestamps=bool(data.get("word_timestamps", False)),
            task=str(data.get("task") or "transcribe"),
            stream=bool(data.get("stream", False)),
            prompt=data.get("prompt") or None,
            temperature=None if temperature is None else float(temperature),
            raw=RawFormat(raw["encoding"], int(raw["sample_rate"])) if raw else None,
            granularities=None if granularities is None else tuple(granularities),
            response_format=data.get("response_format"),
            chunked=ChunkPlan.from_dict(chunked) if chunked else None,
            filename=data.get("filename"),
            diarize=bool(data.get("diarize", False)),
            min_speakers=_optional_int(data.get("min_speakers")),
            max_speakers=_optional_int(data.get("max_speakers")),
            known_speakers=tuple(
                KnownSpeaker(str(k["name"]), base64.b64decode(k["audio"]))
                for k in data.get("known_speakers") or ()
            ),
        )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
