"""`bench.realtime_client.pcm16`: what the server decodes is the clip, to half a step."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.realtime_client import pcm16
from core.audio import SAMPLE_RATE, RawFormat, decode, raw_to_float


def test_pcm16_round_trips_speech_to_half_a_step(corpus: Path) -> None:
    audio = decode(corpus / "en_jfk_inaugural.flac")
    back = raw_to_float(pcm16(audio), RawFormat("pcm_s16le", SAMPLE_RATE))
    inside = np.abs(audio) < 32767 / 32768
    assert len(back) == len(audio)
    assert float(np.max(np.abs(back - audio)[inside])) <= 0.5 / 32768 + 1e-9


def test_pcm16_clips_at_full_scale() -> None:
    back = raw_to_float(
        pcm16(np.array([-1.5, -1.0, 1.0, 1.5], np.float32)), RawFormat("pcm_s16le", SAMPLE_RATE)
    )
    assert back.tolist() == [-1.0, -1.0, 32767 / 32768, 32767 / 32768]
