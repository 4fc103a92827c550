"""`stt serve` with nothing configured: SQLite, the filesystem broker, a first key in a file."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from tests.support import (
    LiveService,
    clip,
    error_rate,
    start_service,
    stop_service_proc,
    wait_for_worker,
    wait_until,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    svc = start_service(tmp_path_factory.mktemp("embedded"), {})
    wait_for_worker(svc)
    yield svc
    stop_service_proc(svc.proc)


def test_first_key_is_created_in_a_private_file_and_stored_hashed(embedded: LiveService) -> None:
    assert embedded.key and embedded.key.startswith("sk-stt-")
    key_file = embedded.data_dir / "first-api-key.txt"
    assert key_file.read_text().strip() == embedded.key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # stdout is not a terminal here (a container's log): the key is not printed, its file is
    assert embedded.key not in embedded.log() and str(key_file) in embedded.log()
    db = Path(embedded.data_dir / "stt.db").read_bytes()
    assert embedded.key.encode() not in db


def test_requests_without_the_key_are_refused(embedded: LiveService) -> None:
    r = httpx.post(
        f"{embedded.url}/v1/audio/transcriptions", files={"file": b"x"}, data={"model": "whisper-1"}
    )
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key"


def test_transcribes_on_the_embedded_default(embedded: LiveService) -> None:
    c = clip("pt_cheetah_test_pt.wav")
    client = OpenAI(base_url=f"{embedded.url}/v1", api_key=embedded.key)
    with c.path.open("rb") as f:
        body = client.audio.transcriptions.create(model="whisper-1", file=f).model_dump()
    assert body["language"] == "pt"
    assert error_rate(c.reference, body["text"], "pt") <= 0.15
    assert (embedded.data_dir / "stt.db").exists()
    assert (embedded.data_dir / "broker").is_dir()


def test_streams_without_redis(embedded: LiveService) -> None:
    """With no Redis the stream reads the job's text from the database: the same events."""
    c = clip("en_librispeech_1272-128104-0000.wav")
    client = OpenAI(base_url=f"{embedded.url}/v1", api_key=embedded.key)
    with c.path.open("rb") as f:
        events = list(
            client.audio.transcriptions.create(
                model="whisper-1", file=f, language="en", stream=True
            )
        )
    *deltas, done = events
    assert done.type == "transcript.text.done" and deltas
    assert "".join(d.delta for d in deltas) == done.text  # type: ignore[union-attr]
    assert error_rate(c.reference, done.text, "en") <= 0.15  # type: ignore[union-attr]


def test_realtime_works_without_redis(embedded: LiveService) -> None:
    """No Redis: `stt serve` runs the local streaming worker beside the API, and
    `/stt/websocket` is served (the full checks are in test_realtime_local.py)."""
    import asyncio

    import numpy as np

    from bench.realtime_client import stream, ws_url

    wait_until(lambda: "is taking sessions" in embedded.log(), 120, "the streaming worker")
    url = ws_url(embedded.url, model="ink-whisper", encoding="pcm_s16le", sample_rate=16000)
    got = asyncio.run(stream(url, np.zeros(16000, np.float32), headers=embedded.headers()))
    assert [e["type"] for e in got.events][-2:] == ["flush_done", "done"], got.events
    assert got.close_code == 1000


def test_second_start_does_not_print_a_new_key(embedded: LiveService) -> None:
    """The key exists in the database now, so a restart on the same data dir makes none."""
    second = start_service(embedded.data_dir, {}, workers=0, log_name="second.log")
    try:
        assert "sk-stt-" not in second.log()
    finally:
        stop_service_proc(second.proc)
