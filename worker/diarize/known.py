"""Known speakers: reference clips become voice prints, and matching clusters take their names.

Clusters are matched one-to-one to references by cosine similarity of their centroid to the
reference's embedding (the Hungarian assignment, scipy), and a match counts only above
`threshold`; every other cluster is labelled `A`, `B`, … in order of first appearance.
"""

from __future__ import annotations

import base64
import binascii
import re
import tempfile
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from core.audio import decode
from core.errors import InvalidSpeakerReference, UnsupportedMedia
from worker.diarize.mel import SAMPLE_RATE
from worker.diarize.types import FloatArray

MIN_REFERENCE_S = 1.8
MAX_REFERENCE_S = 10.5
"""The contract's 2-10 s, with a little slack for codec padding."""
MIN_REFERENCE_SPEECH_S = 1.0
MATCH_THRESHOLD = 0.75
"""Cosine similarity of a cluster's centroid to a reference above which they are one voice."""
MAX_KNOWN = 4

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+/-]*)(?:;[\w.+-]+=[\w.+-]+)*(?P<b64>;base64)?,")


def letters(n: int) -> str:
    """The n-th anonymous label: A … Z, then AA, AB, …"""
    label = ""
    n += 1
    while n:
        n, rem = divmod(n - 1, 26)
        label = chr(ord("A") + rem) + label
    return label


def data_url_bytes(url: str, param: str = "known_speaker_references") -> bytes:
    """The bytes of a `data:audio/...;base64,...` URL (the OpenAI contract's reference form)."""
    match = _DATA_URL.match(url)
    if match is None or not match.group("b64"):
        raise InvalidSpeakerReference("a speaker reference must be a base64 data URL", param=param)
    try:
        return base64.b64decode(url[match.end() :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSpeakerReference(
            "a speaker reference's base64 does not decode", param=param
        ) from exc


def decode_reference(data: bytes, param: str = "known_speaker_references") -> FloatArray:
    """A reference clip's audio as 16 kHz float32, checked for length."""
    with tempfile.NamedTemporaryFile(suffix=".ref") as f:
        f.write(data)
        f.flush()
        try:
            audio = decode(Path(f.name))
        except UnsupportedMedia as exc:
            raise InvalidSpeakerReference(
                f"a speaker reference is not decodable audio: {exc.message}", param=param
            ) from exc
    check_reference_length(audio, param)
    return audio


def check_known_speakers(names: list[str], references: list[str]) -> None:
    """The contract's pairing: as many names as references, at most MAX_KNOWN, names distinct."""
    if len(names) != len(references):
        raise InvalidSpeakerReference(
            f"{len(names)} known_speaker_names but {len(references)} references",
            param="known_speaker_references",
        )
    if len(names) > MAX_KNOWN:
        raise InvalidSpeakerReference(
            f"at most {MAX_KNOWN} known speakers, got {len(names)}", param="known_speaker_names"
        )
    if len(set(names)) != len(names) or not all(n.strip() for n in names):
        raise InvalidSpeakerReference(
            "known_speaker_names must be distinct and non-empty", param="known_speaker_names"
        )


def check_reference_length(audio: FloatArray, param: str = "known_speaker_references") -> None:
    seconds = len(audio) / SAMPLE_RATE
    if not MIN_REFERENCE_S <= seconds <= MAX_REFERENCE_S:
        raise InvalidSpeakerReference(
            f"a speaker reference must be 2-10 s of audio, this one is {seconds:.1f} s",
            param=param,
        )


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
