"""Known speakers: reference clips become voice prints, and matching clusters take their names.

Clusters are matched one-to-one to references by cosine similarity of their centroid to the
reference's embedding (the Hungarian assignment, scipy), and a match counts only above
`threshold`; every other cluster is labelled `A`, `B`, … in order of first appearance.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from core.speakers import (
    MAX_KNOWN,
    MAX_REFERENCE_S,
    MIN_REFERENCE_S,
    check_known_speakers,
    check_reference_length,
    data_url_bytes,
    decode_reference,
)
from worker.diarize.types import FloatArray

__all__ = [
    "MATCH_THRESHOLD",
    "MAX_KNOWN",
    "MAX_REFERENCE_S",
    "MIN_REFERENCE_S",
    "MIN_REFERENCE_SPEECH_S",
    "check_known_speakers",
    "check_reference_length",
    "data_url_bytes",
    "decode_reference",
    "letters",
    "name_clusters",
]

MIN_REFERENCE_SPEECH_S = 1.0
MATCH_THRESHOLD = 0.75
"""Cosine similarity of a cluster's centroid to a reference above which they are one voice."""


def letters(n: int) -> str:
    """The n-th anonymous label: A … Z, then AA, AB, …"""
    label = ""
    n += 1
    while n:
        n, rem = divmod(n - 1, 26)
        label = chr(ord("A") + rem) + label
    return label


def name_clusters(
    centres: FloatArray,
    known: dict[str, FloatArray],
    threshold: float = MATCH_THRESHOLD,
) -> list[str]:
    """A name per cluster (row of `centres`, in first-appearance order)."""
    names: list[str | None] = [None] * len(centres)
    if known and len(centres):
        refs = list(known)
        prints = np.stack([known[r] / np.linalg.norm(known[r]) for r in refs])
        similarity = centres @ prints.T
        rows, cols = linear_sum_assignment(-similarity)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            if similarity[r, c] >= threshold:
                names[r] = refs[c]
    taken = {n for n in names if n is not None}
    anonymous = (
        label for k in range(len(centres) + len(taken)) if (label := letters(k)) not in taken
    )
    return [n if n is not None else next(anonymous) for n in names]
