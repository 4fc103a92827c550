"""A corpus of broken and hostile requests against a live server: each gets a 4xx JSON error
in its family's shape (or, where the input is odd but valid, a normal answer), the service
stays up, and no job or audio is left half-made."""

from __future__ import annotations

import io
import os
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import func, select

from core.db import make_engine, session_factory
from core.models import Job
from tests.support import LiveService, clip

pytestmark = pytest.mark.e2e

BOUNDARY = "hostile-boundary-7f3a"


def multipart(parts: list[tuple[str, bytes, str | None]], boundary: str = BOUNDARY) -> bytes:
    """A body built by hand: (name, value, filename) per part."""
    out = io.BytesIO()
    for name, value, filename in parts:
        out.write(f"--{boundary}\r\n".encode())
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out.write(f"Content-Disposition: {disposition}\r\n\r\n".encode())
        out.write(value + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue()


def wav_bytes(samples: np.ndarray, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def corpus_bytes(name: str) -> bytes:
    return clip(name).path.read_bytes()


def truncated(name: str, keep: float = 0.02) -> bytes:
    data = corpus_bytes(name)
    return data[: max(64, int(len(data) * keep))]


def corrupted(name: str) -> bytes:
    """The header kept, the rest replaced by noise."""
    data = bytearray(corpus_bytes(name))
    rng = np.random.default_rng(7)
    data[64:] = rng.integers(0, 256, len(data) - 64, dtype=np.uint8).tobytes()
    return bytes(data)


@dataclass
class Case:
    name: str
    statuses: tuple[int, ...]
    body: Callable[[], bytes] | None = None
    file: Callable[[], bytes] | None = None
    fields: dict[str, str] = field(default_factory=lambda: {"model": "ink-whisper"})
    path: str = "/stt"
    content_type: str | None = None
    filename: str = "audio.bin"


def long_silence_flac(tmp: Path) -> bytes:
    """A small FLAC that decodes to 11 hours of silence: over the duration limit."""
    import av

    out = tmp / "silence.flac"
    with av.open(str(out), "w") as container:
        stream = container.add_stream("flac", rate=8000)
        stream.layout = "mono"
        block = np.zeros((1, 8000 * 60), dtype=np.int16)
        for _ in range(11 * 60):
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
            frame.sample_rate = 8000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.read_bytes()


CONTAINERS = [
    "en_jfk_inaugural.flac",
    "en_ljspeech_LJ001-0005.mp3",
    "en_fleurs_000.ogg",
    "es_mls_13697_11991_000000.opus",
    "fr_readalongs_ej-fra.m4a",
    "fr_speech_recognition_french.aiff",
    "en_timit_LDC93S1.wav",
]
BAD = (400, 413, 415)

PCM = ("wav", "aiff")
"""Uncompressed audio has no structure to break: a cut-off file is a shorter recording and
noise in place of samples is noise. Both are transcribed (to empty text), not refused."""


def _expect(name: str) -> tuple[int, ...]:
    return (200, 415) if name.rsplit(".", 1)[1] in PCM else (415,)


CASES: list[Case] = [
    *[
        Case(f"truncated {n.rsplit('.', 1)[1]}", _expect(n), file=partial(truncated, n))
        for n in CONTAINERS
    ],
    *[
        Case(f"corrupt {n.rsplit('.', 1)[1]}", _expect(n), file=partial(corrupted, n))
        for n in CONTAINERS
    ],
    Case("random bytes", (415,), file=lambda: os.urandom(50_000)),
    Case("zero-length file", (400,), file=lambda: b""),
    Case("wav with no samples", (415,), file=lambda: wav_bytes(np.zeros(0))),
    Case("wav claiming 1 Hz", BAD, file=lambda: wav_bytes(np.zeros(64), rate=1)),
    Case(
        "raw pcm at 1 Hz",
        (400,),
        file=lambda: b"\x00" * 3200,
        path="/stt?encoding=pcm_s16le&sample_rate=1",
    ),
    Case(
        "raw pcm at 10 GHz",
        (400,),
        file=lambda: b"\x00" * 3200,
        path="/stt?encoding=pcm_s16le&sample_rate=10000000000",
    ),
    Case(
        "raw pcm without a rate",
        (400,),
        file=lambda: b"\x00" * 3200,
        path="/stt?encoding=pcm_s16le",
    ),
    Case(
        "json body",
        (400,),
        body=lambda: b'{"model": "ink-whisper"}',
        content_type="application/json",
    ),
    Case(
        "urlencoded body",
        (400,),
        body=lambda: b"model=ink-whisper",
        content_type="application/x-www-form-urlencoded",
    ),
    Case("text/plain body", (400,), body=lambda: b"hello", content_type="text/plain"),
    Case(
        "multipart without boundary",
        (400,),
        body=lambda: b"--x\r\n",
        content_type="multipart/form-data",
    ),
    Case(
        "multipart with no closing boundary",
        (400,),
        body=lambda: multipart([("model", b"ink-whisper", None)])[:-20],
    ),
    Case("multipart garbage", (400,), body=lambda: os.urandom(4096)),
    Case(
        "part without a name",
        (400,),
        body=lambda: (
            f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nx\r\n"
            f"--{BOUNDARY}--\r\n".encode()
        ),
    ),
    Case(
        "huge form field",
        (400,),
        file=lambda: corpus_bytes("en_jfk_inaugural.flac"),
        fields={"model": "ink-whisper", "prompt": "x" * 200_000},
    ),
    Case(
        "huge part header",
        (400,),
        body=lambda: (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n'
            f"X-Junk: {'y' * 20_000}\r\n\r\nink-whisper\r\n--{BOUNDARY}--\r\n"
        ).encode(),
    ),
    Case(
        "too many parts",
        (400,),
        body=lambda: multipart([(f"f{i}", b"v", None) for i in range(100)]),
    ),
    Case("unknown fields and no file", (400,), fields={"model": "ink-whisper", "foo": "bar"}),
    Case(
        "path traversal filename",
        (415,),
        file=lambda: os.urandom(2048),
        filename="../../../../etc/passwd",
    ),
    Case(
        "invalid utf-8 field",
        (400,),
        body=lambda: multipart(
            [
                ("model", b"\xff\xfe\xfd", None),
                ("file", corpus_bytes("en_timit_LDC93S1.wav"), "a.wav"),
            ]
        ),
    ),
    Case(
        "duplicated model field",
        (400,),
        body=lambda: multipart(
            [
                ("model", b"ink-whisper", None),
                ("model", b"whisper-1", None),
                ("file", corpus_bytes("en_timit_LDC93S1.wav"), "a.wav"),
            ]
        ),
    ),
    Case(
        "two files",
        (400,),
        body=lambda: multipart(
            [("model", b"ink-whisper", None), ("file", b"abc", "a.wav"), ("file", b"def", "b.wav")]
        ),
    ),
    Case(
        "unknown model",
        (400,),
        file=lambda: corpus_bytes("en_timit_LDC93S1.wav"),
        fields={"model": "gpt-9"},
    ),
    Case(
        "bad language",
        (400,),
        file=lambda: corpus_bytes("en_timit_LDC93S1.wav"),
        fields={"model": "ink-whisper", "language": "../../x"},
    ),
    Case(
        "nan temperature",
        (400,),
        file=lambda: corpus_bytes("en_timit_LDC93S1.wav"),
        fields={"model": "whisper-1", "temperature": "nan"},
        path="/v1/audio/transcriptions",
    ),
    Case(
        "openai: random bytes",
        (415,),
        file=lambda: os.urandom(10_000),
        fields={"model": "whisper-1"},
        path="/v1/audio/transcriptions",
    ),
    Case(
        "openai: malformed multipart",
        (400,),
        body=lambda: os.urandom(1000),
        path="/audio/transcriptions",
    ),
    Case(
        "jobs: corrupt mp3",
        (415,),
        file=lambda: corrupted("en_ljspeech_LJ001-0005.mp3"),
        path="/stt/jobs",
    ),
]


def job_count(url: str) -> int:
    with session_factory(make_engine(url))() as session:
        return int(session.execute(select(func.count()).select_from(Job)).scalar_one())


def audio_files(service: LiveService) -> list[Path]:
    return [p for p in (service.data_dir / "audio").rglob("*") if p.is_file()]


def send(service: LiveService, case: Case) -> httpx.Response:
    headers = service.headers()
    if case.body is not None:
        headers["Content-Type"] = case.content_type or f"multipart/form-data; boundary={BOUNDARY}"
        return httpx.post(
            f"{service.url}{case.path}", content=case.body(), headers=headers, timeout=60
        )
    files = {"file": (case.filename, case.file())} if case.file is not None else None
    return httpx.post(
        f"{service.url}{case.path}", data=case.fields, files=files, headers=headers, timeout=60
    )


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_request(service: LiveService, session_pg_url: str, case: Case) -> None:
    before = job_count(session_pg_url)
    response = send(service, case)
    assert response.status_code in case.statuses, response.text
    body = response.json()
    if response.status_code == 200:
        assert body["text"] == "", "noise or a fragment must not become a phantom sentence"
        return
    if case.path.startswith("/stt"):
        assert set(body) == {"error_code", "title", "message", "request_id"}
    else:
        assert set(body["error"]) == {"message", "type", "param", "code"}
    assert httpx.get(f"{service.url}/health/live").status_code == 200
    assert job_count(session_pg_url) == before, "a refused request left a job behind"
    assert not audio_files(service), "a refused request left audio behind"


def test_a_tiny_file_that_decodes_to_hours_is_refused(service: LiveService, tmp_path: Path) -> None:
    data = long_silence_flac(tmp_path)
    assert len(data) < 10_000_000  # 11 h of 8 kHz audio would be 633 MB as PCM
    r = httpx.post(
        f"{service.url}/stt",
        headers=service.headers(),
        files={"file": ("s.flac", data)},
        data={"model": "ink-whisper"},
        timeout=60,
    )
    assert r.status_code == 413 and "limit" in r.json()["message"]


def test_silence_is_valid_audio_with_empty_text(service: LiveService) -> None:
    r = httpx.post(
        f"{service.url}/v1/audio/transcriptions",
        headers=service.headers(),
        files={"file": ("s.wav", wav_bytes(np.zeros(16000 * 5)))},
        data={"model": "whisper-1"},
        timeout=120,
    )
    assert r.status_code == 200
    assert r.json()["text"] == ""


def test_unknown_fields_are_ignored(service: LiveService) -> None:
    """OpenAI's SDKs may send fields we do not know; they do not break a request."""
    r = httpx.post(
        f"{service.url}/v1/audio/transcriptions",
        headers=service.headers(),
        files={"file": ("a.wav", corpus_bytes("en_timit_LDC93S1.wav"))},
        data={"model": "whisper-1", "chunking_strategy": "auto", "include[]": "x"},
        timeout=120,
    )
    assert r.status_code == 200 and r.json()["text"]
