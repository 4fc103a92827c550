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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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
        if words:
            body["words"] = [{"word": w.word, "start": w.start, "end": w.end} for w in self.words]
        return body
