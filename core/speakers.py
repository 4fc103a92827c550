"""The diarization contract both processes share: known-speaker references and hints.

The API checks a request's references here before the job is queued (so a job never fails
half-labelled on a reference that cannot be read); the worker's engine (worker/diarize) uses
the same checks on what the job carries.
"""

from __future__ import annotations

import base64
import binascii
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.audio import SAMPLE_RATE, Audio, decode
from core.errors import InvalidRequest, InvalidSpeakerReference, UnsupportedMedia

MAX_KNOWN = 4
MIN_REFERENCE_S = 1.8
MAX_REFERENCE_S = 10.5
"""The contract's 2-10 s, with a little slack for codec padding."""
MAX_REFERENCE_FIELD_BYTES = 2 * 1024 * 1024
"""A reference's data URL: 10 s of 48 kHz 16-bit stereo WAV is 1.9 MB, base64 2.6 MB; the
contract's realistic clip (a few seconds of compressed or 16 kHz audio) is 100-400 KB."""
MAX_REFERENCE_BYTES = 1536 * 1024
"""A reference clip's decoded-from bytes (what the data URL holds)."""
REFERENCES = "known_speaker_references"
NAMES = "known_speaker_names"
MAX_SPEAKERS = 32

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+/-]*)(?:;[\w.+-]+=[\w.+-]+)*(?P<b64>;base64)?,")


@dataclass(frozen=True)
class KnownSpeaker:
    """A name and the bytes of its reference clip (an audio file)."""

    name: str
    audio: bytes


def data_url_bytes(url: str, param: str = REFERENCES) -> bytes:
    """The bytes of a `data:audio/...;base64,...` URL (the OpenAI contract's reference form)."""
    match = _DATA_URL.match(url.strip())
    if match is None or not match.group("b64"):
        raise InvalidSpeakerReference("a speaker reference must be a base64 data URL", param=param)
    try:
        data = base64.b64decode(url.strip()[match.end() :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSpeakerReference(
            "a speaker reference's base64 does not decode", param=param
        ) from exc
    if not data:
        raise InvalidSpeakerReference("a speaker reference is empty", param=param)
    if len(data) > MAX_REFERENCE_BYTES:
        raise InvalidSpeakerReference(
            f"a speaker reference is larger than {MAX_REFERENCE_BYTES} bytes", param=param
        )
    return data


def check_known_speakers(names: list[str], references: list[str]) -> None:
    """The contract's pairing: as many names as references, at most MAX_KNOWN, names distinct."""
    if len(names) != len(references):
        raise InvalidSpeakerReference(
            f"{len(names)} known_speaker_names but {len(references)} references",
            param=REFERENCES,
        )
    if len(names) > MAX_KNOWN:
        raise InvalidSpeakerReference(
            f"at most {MAX_KNOWN} known speakers, got {len(names)}", param=NAMES
        )
    if len(set(names)) != len(names) or not all(n.strip() for n in names):
        raise InvalidSpeakerReference(
            "known_speaker_names must be distinct and non-empty", param=NAMES
        )


def check_reference_length(audio: Audio, param: str = REFERENCES) -> None:
    seconds = len(audio) / SAMPLE_RATE
    if not MIN_REFERENCE_S <= seconds <= MAX_REFERENCE_S:
        raise InvalidSpeakerReference(
            f"a speaker reference must be 2-10 s of audio, this one is {seconds:.1f} s",
            param=param,
        )


def decode_reference(data: bytes, param: str = REFERENCES) -> Audio:
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


def speaker_bound(raw: str | None, param: str) -> int | None:
    """A `min_speakers` / `max_speakers` hint: a whole number from 1 to MAX_SPEAKERS."""
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise InvalidRequest(f"{param} must be a whole number", param=param) from exc
    if not 1 <= value <= MAX_SPEAKERS:
        raise InvalidRequest(f"{param} must be between 1 and {MAX_SPEAKERS}", param=param)
    return value


def check_bounds(lo: int | None, hi: int | None) -> None:
    if lo is not None and hi is not None and lo > hi:
        raise InvalidRequest("min_speakers exceeds max_speakers", param="min_speakers")
