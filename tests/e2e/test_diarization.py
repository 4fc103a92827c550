"""Who spoke when, live: conversations stitched from real corpus voices, the bundled Whisper
model and the bundled speaker encoder, through the OpenAI SDK, `/stt`, and a chunked job."""

from __future__ import annotations

import base64
import io
import wave
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openai import OpenAI
from openai.types.audio import TranscriptionDiarized
from sqlalchemy import func, select

from bench.conversations import Conversation, stitch, voice_audio
from core.db import make_engine, session_factory
from core.models import JobChunk
from tests.conftest import SERVICE_ENV
from tests.e2e.jobs_client import submit, wait_ended
from tests.support import LiveService, start_service, stop_service_proc

pytestmark = pytest.mark.e2e

VOICES = ["ljspeech", "ls1995", "sense"]


def wav_bytes(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def write(conversation: Conversation, path: Path) -> Path:
    path.write_bytes(wav_bytes(conversation.audio))
    return path


def voice_at(conversation: Conversation, t: float) -> str | None:
    return next((v for a, b, v in conversation.turns if a - 0.3 <= t <= b + 0.3), None)


def labels_match_voices(conversation: Conversation, words: list[dict[str, Any]]) -> dict[str, str]:
    """Each label's voice (by majority of its words); checks one label per voice, and that
    nearly every word's label is its voice's."""
    pairs = [
        (w["speaker"], v)
        for w in words
        if (v := voice_at(conversation, (w["start"] + w["end"]) / 2)) is not None
    ]
    majority = {
        label: Counter(v for lab, v in pairs if lab == label).most_common(1)[0][0]
        for label in {lab for lab, _ in pairs}
    }
    assert sorted(majority.values()) == sorted(conversation.voices), majority
    agree = sum(majority[lab] == v for lab, v in pairs) / len(pairs)
    assert agree >= 0.9, (agree, majority)
    return majority


@pytest.fixture(scope="module")
def conversation() -> Conversation:
    return stitch(VOICES, 3, seed=3)


def test_openai_sdk_diarized_json_with_a_known_speaker(
    service: LiveService, conversation: Conversation, tmp_path: Path
) -> None:
    audio = write(conversation, tmp_path / "talk.wav")
    # A different stretch of LJ Speech's reader than the conversation's turns start with.
    reference = wav_bytes(voice_audio("ljspeech")[-6 * 16000 :])
    client = OpenAI(base_url=f"{service.url}/v1", api_key=service.key, timeout=300)
    with audio.open("rb") as f:
        result = client.audio.transcriptions.create(
            model="gpt-4o-transcribe-diarize",
            file=f,
            response_format="diarized_json",
            chunking_strategy="auto",
            known_speaker_names=["Linda"],
            known_speaker_references=[
                "data:audio/wav;base64," + base64.b64encode(reference).decode()
            ],
        )
    assert isinstance(result, TranscriptionDiarized)
    speakers = {s.speaker for s in result.segments}
    assert len(speakers) == len(VOICES), speakers
    assert "Linda" in speakers
    linda = [s for s in result.segments if s.speaker == "Linda"]
    assert all(voice_at(conversation, (s.start + s.end) / 2) == "ljspeech" for s in linda)


def test_stt_diarize_puts_speakers_on_words(
    service: LiveService, conversation: Conversation, tmp_path: Path
) -> None:
    audio = write(conversation, tmp_path / "talk.wav")
    response = submit(service, audio, data={"diarize": "true"}, url="/stt")
    assert response.status_code == 200, response.text
    body = response.json()
    labels = labels_match_voices(conversation, body["words"])
    assert set(labels) <= {"A", "B", "C"}
    assert {s["speaker"] for s in body["speakers"]} == set(labels)


@pytest.fixture
def chunking(tmp_path: Path, pg_url: str, redis_url: str) -> Iterator[LiveService]:
    env = {
        "DATABASE_URL": pg_url,
        "REDIS_URL": redis_url,
        **SERVICE_ENV,
        "STT_CHUNK_THRESHOLD_S": "40",
        "STT_CHUNK_TARGET_S": "35",
    }
    svc = start_service(tmp_path / "api", env)
    yield svc
    stop_service_proc(svc.proc)


@pytest.mark.timeout(600)
def test_a_chunked_job_keeps_one_label_per_speaker(
    chunking: LiveService, tmp_path: Path, pg_url: str
) -> None:
    long = stitch(["ls2412", "sense"], 9, seed=5)  # about 70 s: two or three chunks
    assert long.duration > 60
    audio = write(long, tmp_path / "long.wav")
    job = submit(chunking, audio, data={"diarize": "true"}).json()
    body = wait_ended(chunking, job["id"], timeout=500)
    assert body["status"] == "succeeded", body["error"]
    with session_factory(make_engine(pg_url))() as session:
        chunks = session.execute(
            select(func.count()).select_from(JobChunk).where(JobChunk.job_id == job["id"])
        ).scalar_one()
    assert chunks >= 2, "the job was cut into chunks"
    labels_match_voices(long, body["result"]["words"])
