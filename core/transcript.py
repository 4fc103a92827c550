"""The transcript every response is rendered from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    probability: float = 0.0
    speaker: str | None = None
    """Who said it, when the job was diarized."""


@dataclass(frozen=True)
class SpeakerSegment:
    """Consecutive words of one speaker (the `speakers` list, diarized_json's segments)."""

    start: float
    end: float
    text: str
    speaker: str


@dataclass(frozen=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0
    temperature: float = 0.0
    tokens: list[int] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    duration: float
    segments: list[Segment] = field(default_factory=list)
    language_probability: float = 0.0
    dropped_segments: int = 0
    """Segments the hallucination guard removed (invented on silence or noise)."""
    speakers: list[SpeakerSegment] | None = None
    """Who spoke when, for a diarized job (None: not diarized)."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.speakers is None:
            del data["speakers"]
        for segment in data["segments"]:
            for word in segment["words"]:
                if word["speaker"] is None:
                    del word["speaker"]
        return data

    @property
    def diarized(self) -> bool:
        return self.speakers is not None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transcript:
        segments = [
            Segment(**{**s, "words": [Word(**w) for w in s.get("words", [])]})
            for s in data.get("segments", [])
        ]
        return cls(
            text=data["text"],
            language=data["language"],
            duration=data["duration"],
            segments=segments,
            language_probability=data.get("language_probability", 0.0),
            dropped_segments=int(data.get("dropped_segments", 0)),
            speakers=(
                None
                if data.get("speakers") is None
                else [SpeakerSegment(**sp) for sp in data["speakers"]]
            ),
        )

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]

    def response(self, request_id: str, *, words: bool) -> dict[str, Any]:
        """The body both families return for `json` (Cartesia's batch STT shape)."""
        body: dict[str, Any] = {
            "type": "transcript",
            "request_id": request_id,
            "text": self.text,
            "language": self.language,
            "duration": self.duration,
        }
        if words or self.diarized:
            body["words"] = [self._word(w) for w in self.words]
        if self.speakers is not None:
            body["speakers"] = [asdict(sp) for sp in self.speakers]
        return body

    def _word(self, w: Word) -> dict[str, Any]:
        out: dict[str, Any] = {"word": w.word, "start": w.start, "end": w.end}
        if self.diarized:
            out["speaker"] = w.speaker
        return out
