"""The diarization stage of a job: who spoke when, put on the transcript's words.

Whole files: `hints_for` (before transcription, so a bad reference fails the job before any
work), then `diarize_whole` after it. Chunked files: each chunk's worker `embed_chunk`s its own
speech (the windows go into its stored result), and the merge `label_merged`s the whole file
once, clustering every chunk's windows together: one label per voice over the whole file.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, TypeGuard

from core.audio import Audio
from core.jobspec import JobOptions
from core.transcript import SpeakerSegment, Transcript
from worker.diarize.assign import assign_words, speaker_segments
from worker.diarize.known import decode_reference
from worker.diarize.types import Diarizer, EmbeddingDiarizer, Hints, Turn, WindowEmbeddings
from worker.diarize.windows import speech_spans

log = logging.getLogger("stt.diarize")

TRANSCRIBE_SHARE = 0.9
"""A diarized whole job's progress: transcription is this share, diarization the rest."""
WINDOWS_KEY = "speaker_windows"
"""Where a chunk's stored result keeps its window embeddings (file time)."""


def hints_for(diarizer: Diarizer, options: JobOptions) -> Hints:
    """The job's hints, known speakers' voice prints included (raises
    `InvalidSpeakerReference` for a reference with too little speech)."""
    known = {
        k.name: diarizer.reference_embedding(decode_reference(k.audio))
        for k in options.known_speakers
    }
    return Hints(options.min_speakers, options.max_speakers, known)


def label(transcript: Transcript, turns: list[Turn]) -> Transcript:
    """The transcript with a speaker on every word and its `speakers` segments."""
    words = transcript.words
    speakers = assign_words(words, turns)
    segments = []
    at = 0
    for segment in transcript.segments:
        named = [replace(w, speaker=speakers[at + i]) for i, w in enumerate(segment.words)]
        at += len(segment.words)
        segments.append(replace(segment, words=named))
    runs = [
        SpeakerSegment(round(s.start, 3), round(s.end, 3), s.text, s.speaker)
        for s in speaker_segments(words, speakers)
    ]
    return replace(transcript, segments=segments, speakers=runs)


def diarize_whole(
    diarizer: Diarizer, audio: Audio, transcript: Transcript, hints: Hints
) -> Transcript:
    turns = diarizer.diarize(audio, speech_spans(audio), hints)
    return label(transcript, turns)


def embeds(diarizer: Diarizer) -> TypeGuard[EmbeddingDiarizer]:
    """Whether the backend can embed chunks apart and cluster them together."""
    return hasattr(diarizer, "embed") and hasattr(diarizer, "cluster")


def embed_chunk(
    diarizer: EmbeddingDiarizer, audio: Audio, window_start: float, lo: float, hi: float
) -> dict[str, Any]:
    """A chunk's speech windows in file time, only those whose middle lies in [lo, hi) (the
    chunk's own span: the seam pads belong to its neighbours), ready to store."""
    local = diarizer.embed(audio, speech_spans(audio)).shifted(window_start)
    keep = [i for i, r in enumerate(local.regions) if lo <= (r.start + r.end) / 2 < hi]
    return WindowEmbeddings([local.regions[i] for i in keep], local.vectors[keep]).to_dict()


def label_merged(
    diarizer: EmbeddingDiarizer, merged: Transcript, windows: list[dict[str, Any]], hints: Hints
) -> Transcript:
    """The merged transcript labelled from every chunk's windows, clustered once."""
    parts = [WindowEmbeddings.from_dict(w) for w in windows]
    turns = diarizer.cluster(WindowEmbeddings.concat(parts), hints)
    log.info("diarized %d windows into %d turns", sum(len(p.regions) for p in parts), len(turns))
    return label(merged, turns)
