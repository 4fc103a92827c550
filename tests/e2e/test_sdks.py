"""The official OpenAI and Cartesia SDKs, and curl, against a live server and worker."""

from __future__ import annotations

import json
import subprocess

import pytest
from cartesia import Cartesia
from openai import OpenAI

from tests.support import Clip, LiveService, clip, error_rate

pytestmark = pytest.mark.e2e

# Several containers and languages. The allowed error is the same model's error on the clip in
# the corpus baseline (language forced, beam 5) plus 10 points or two words, whichever is more:
# we detect the language and run VAD, which may cost a word or two on a short clip, while a
# broken pipeline (wrong audio, lost segments, wrong language) fails by far more.
MARGIN = 0.10
CLIPS = [
    "en_jfk_inaugural.flac",
    "en_librispeech_1272-128104-0000.wav",
    "en_ljspeech_LJ001-0014.mp3",
    "es_fleurs_002.ogg",
    "fr_cheetah_test_fr.wav",
    "es_mls_13697_11991_000000.opus",
    "fr_readalongs_ej-fra.m4a",
]


def check_transcript(body: dict[str, object], c: Clip, *, words: bool) -> None:
    text = str(body["text"])
    margin = max(MARGIN, 2 / max(len(c.reference.split()), 1))
    assert error_rate(c.reference, text, c.language) <= c.baseline_error + margin, text
    assert body["language"] == c.language
    assert abs(float(body["duration"]) - c.duration) <= 0.1  # type: ignore[arg-type]
    if not words:
        return
    ws = body["words"]
    assert isinstance(ws, list) and ws
    previous_start = 0.0
    for w in ws:
        assert w["word"] == w["word"].strip() and w["word"]
        assert 0.0 <= w["start"] <= w["end"] <= c.duration + 0.05
        assert w["start"] >= previous_start
        previous_start = w["start"]


@pytest.mark.parametrize("name", CLIPS)
def test_openai_sdk_v1(service: LiveService, name: str) -> None:
    c = clip(name)
    client = OpenAI(base_url=f"{service.url}/v1", api_key=service.key)
    with c.path.open("rb") as f:
        result = client.audio.transcriptions.create(
            model="whisper-1", file=f, timestamp_granularities=["word"]
        )
    body = result.model_dump()
    check_transcript(body, c, words=True)


def test_openai_sdk_without_v1(service: LiveService) -> None:
    c = clip("en_librispeech_2412-153948-0000.flac")
    client = OpenAI(base_url=service.url, api_key=service.key)
    with c.path.open("rb") as f:
        result = client.audio.transcriptions.create(model="whisper-1", file=f, language="en")
    body = result.model_dump()
    check_transcript(body, c, words=False)
    assert "words" not in body or body["words"] is None


@pytest.mark.parametrize(
    "name", ["en_jfk_inaugural.flac", "de_fleurs_002.ogg", "it_cheetah_test_it.wav"]
)
def test_cartesia_sdk(service: LiveService, name: str) -> None:
    c = clip(name)
    client = Cartesia(base_url=service.url, api_key=service.key)
    with c.path.open("rb") as f:
        result = client.stt.transcribe(
            file=f, model="ink-whisper", timestamp_granularities=["word"]
        )
    body = result.model_dump()
    assert body["type"] == "transcript" and body["request_id"]
    check_transcript(body, c, words=True)


def test_cartesia_sdk_raw_pcm(service: LiveService, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Headerless PCM with `encoding` and `sample_rate`, as Cartesia's docs send it."""
    from core.audio import decode

    c = clip("en_librispeech_2830-3980-0043.wav")
    samples = decode(c.path)
    raw = tmp_path / "audio.pcm"
    raw.write_bytes((samples * 32767).astype("<i2").tobytes())
    client = Cartesia(base_url=service.url, api_key=service.key)
    with raw.open("rb") as f:
        result = client.stt.transcribe(
            file=f,
            model="ink-whisper-2025-06-04",
            encoding="pcm_s16le",
            sample_rate=16000,
            language="en",
        )
    check_transcript(result.model_dump(), c, words=False)


def test_curl_as_in_cartesias_docs(service: LiveService) -> None:
    c = clip("en_librispeech_4507-16021-0012.wav")
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-X",
            "POST",
            f"{service.url}/stt",
            "-H",
            f"X-API-Key: {service.key}",
            "-H",
            "Cartesia-Version: 2025-04-16",
            "-F",
            f"file=@{c.path}",
            "-F",
            "model=ink-whisper",
            "-F",
            "language=en",
            "-F",
            "timestamp_granularities[]=word",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    body = json.loads(out.stdout)
    check_transcript(body, c, words=True)


def test_curl_openai_style(service: LiveService) -> None:
    c = clip("en_librivox_sense_and_sensibility_0880.wav")
    out = subprocess.run(
        [
            "curl",
            "-sS",
            f"{service.url}/v1/audio/transcriptions",
            "-H",
            f"Authorization: Bearer {service.key}",
            "-F",
            f"file=@{c.path}",
            "-F",
            "model=whisper-1",
            "-F",
            "timestamp_granularities=word",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    check_transcript(json.loads(out.stdout), c, words=True)
