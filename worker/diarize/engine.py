"""The bundled diarizer: resemblyzer's encoder on VAD speech windows, clustered.

`embed` (per chunk, anywhere in the pool) and `cluster` (once, over every chunk's windows) are
separate so a long file keeps one label per voice: chunk workers send `WindowEmbeddings`,
shifted to file time, and the merge clusters their concatenation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import InvalidSpeakerReference
from worker.diarize.cluster import THRESHOLD, centroids, cluster
from worker.diarize.embedder import VoiceEncoder, shared_encoder
from worker.diarize.known import (
    MATCH_THRESHOLD,
    MIN_REFERENCE_SPEECH_S,
    check_reference_length,
    name_clusters,
)
from worker.diarize.mel import SAMPLE_RATE
from worker.diarize.types import FloatArray, Hints, Span, Turn, WindowEmbeddings
from worker.diarize.windows import STEP_S, plan_windows, speech_spans

JOIN_GAP_S = 0.5
"""Consecutive regions of one speaker closer than this become one turn."""


def turns_from_labels(regions: list[Span], names: list[str]) -> list[Turn]:
    """Time-ordered turns, neighbouring regions of one speaker joined."""
    turns: list[Turn] = []
    for region, name in sorted(zip(regions, names, strict=True), key=lambda p: p[0].start):
        last = turns[-1] if turns else None
        if last and last.speaker == name and region.start - last.end <= JOIN_GAP_S:
            turns[-1] = Turn(last.start, max(last.end, region.end), name)
        else:
            turns.append(Turn(region.start, region.end, name))
    return turns


@dataclass
class BundledDiarizer:
    """Offline diarization with the encoder weights bundled in the resemblyzer wheel."""

    threshold: float = THRESHOLD
    match_threshold: float = MATCH_THRESHOLD
    step_s: float = STEP_S
    threads: int = 2
    name: str = "bundled"
    encoder: VoiceEncoder | None = None

    def _encoder(self) -> VoiceEncoder:
        if self.encoder is None:
            self.encoder = shared_encoder(self.threads)
        return self.encoder

    def embed(self, audio: FloatArray, speech: list[Span]) -> WindowEmbeddings:
        plan = plan_windows(speech, len(audio) / SAMPLE_RATE, self.step_s)
        vectors = self._encoder().embed_windows(audio, plan.windows)
        return WindowEmbeddings(plan.regions, vectors)

    def cluster(self, windows: WindowEmbeddings, hints: Hints) -> list[Turn]:
        if not windows.regions:
            return []
        labels = cluster(windows.vectors, hints, self.threshold)
        names = name_clusters(centroids(windows.vectors, labels), hints.known, self.match_threshold)
        return turns_from_labels(windows.regions, [names[k] for k in labels.tolist()])

    def diarize(self, audio: FloatArray, speech: list[Span], hints: Hints) -> list[Turn]:
        return self.cluster(self.embed(audio, speech), hints)

    def speakers(self, turns: list[Turn]) -> list[str]:
        """Distinct labels in order of first appearance."""
        return list(dict.fromkeys(t.speaker for t in turns))

    def reference_embedding(self, audio: FloatArray) -> FloatArray:
        check_reference_length(audio)
        speech = speech_spans(audio)
        voiced = sum(s.duration for s in speech)
        if voiced < MIN_REFERENCE_SPEECH_S:
            raise InvalidSpeakerReference(
                f"a speaker reference needs at least {MIN_REFERENCE_SPEECH_S:g} s of speech, "
                f"this one has {voiced:.1f} s",
                param="known_speaker_references",
            )
        clip = np.concatenate(
            [audio[round(s.start * SAMPLE_RATE) : round(s.end * SAMPLE_RATE)] for s in speech]
        )
        return self._encoder().embed_utterance(clip)
