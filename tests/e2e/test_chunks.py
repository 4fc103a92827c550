"""Long audio shared by the worker pool: a chunked job on two workers, merged on the exact
timeline with the accuracy of an unchunked run; a chunk whose worker is killed is retried."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from difflib import SequenceMatcher
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.audio import decode
from core.db import make_engine, session_factory
from core.models import JobChunk
from tests.conftest import SERVICE_ENV
from tests.e2e.jobs_client import get, submit, wait_ended
from tests.support import (
    LiveService,
    error_rate,
    kill_group,
    long_audio,
    normalise,
    start_service,
    start_worker,
    stop_service_proc,
)

pytestmark = pytest.mark.e2e

CHUNKING = {
    **SERVICE_ENV,
    "STT_CHUNK_THRESHOLD_S": "60",
    "STT_CHUNK_TARGET_S": "40",
    "STT_STALE_AFTER_S": "4",
    "STT_CPU_THREADS": "1",  # two workers, one thread each, on a two-core machine
}
SPEECH = [
    "en_librivox_shakespeare_sonnet001.mp3",
    "en_jfk_inaugural.flac",
    "en_fleurs_000.ogg",
    "en_ljspeech_LJ001-0001.wav",
    "en_spontaneous_acoustic_corpus.wav",
    "en_librivox_shakespeare_sonnet002.mp3",
]
"""About 2 min 47 s of English speech, cut in four chunks of about 42 s. (A chunk of 30 s or
less is one decoding window of Whisper's, which may end early and drop the rest of it; the
default target, 300 s, is ten windows, as a whole file is.)"""


@pytest.fixture
def pool(
    tmp_path: Path, pg_url: str, redis_url: str
) -> Iterator[tuple[LiveService, dict[str, str], list[subprocess.Popen[bytes]]]]:
    """The API alone; the test starts (and may kill) its workers into the list."""
    env = {"DATABASE_URL": pg_url, "REDIS_URL": redis_url, **CHUNKING}
    svc = start_service(tmp_path / "api", env, workers=0)
    workers: list[subprocess.Popen[bytes]] = []
    yield svc, {**env, "STT_DATA_DIR": str(svc.data_dir)}, workers
    for proc in workers:
        kill_group(proc)
    stop_service_proc(svc.proc)


def chunks_of(pg_url: str, job_id: str) -> list[JobChunk]:
    with session_factory(make_engine(pg_url))() as session:
        return list(
            session.execute(
                select(JobChunk).where(JobChunk.job_id == job_id).order_by(JobChunk.index)
            ).scalars()
        )


def unchunked(path: Path, data_dir: Path) -> dict[str, Any]:
    """The same audio, model and options through the engine in one piece."""
    from worker.engine import EngineConfig, TranscribeOptions, load_model, transcribe

    config = EngineConfig(device="cpu", compute_type="int8", cpu_threads=1)  # as the workers
    model = load_model("bundled:base", config, data_dir / "models")
    return transcribe(
        model, decode(path), TranscribeOptions(word_timestamps=True), config
    ).to_dict()


@pytest.mark.timeout(600)
def test_a_long_job_is_shared_by_two_workers_and_merged_exactly(
    pool: tuple[LiveService, dict[str, str], list[subprocess.Popen[bytes]]],
    pg_url: str,
    tmp_path: Path,
) -> None:
    service, env, workers = pool
    audio, reference = long_audio(tmp_path / "speech.wav", SPEECH)
    duration = len(decode(audio)) / 16000
    workers += [start_worker(env, tmp_path / f"worker{i}.log") for i in (1, 2)]
    job_id = submit(service, audio, data={"timestamp_granularities[]": "word"}).json()["id"]
    progress: list[float] = []
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        body = get(service, job_id).json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            break
        if body["status"] == "running":
            progress.append(body["progress"])
        time.sleep(0.5)
    assert body["status"] == "succeeded", body["error"]
    assert progress == sorted(progress) and len(set(progress)) >= 3, progress
    result = body["result"]
    assert result["language"] == "en", "detected once, before the chunks ran"
    assert abs(result["duration"] - duration) < 0.01

    chunks = chunks_of(pg_url, job_id)
    assert len(chunks) == round(duration / 40)
    assert all(c.status == "succeeded" and c.attempts == 1 for c in chunks)
    assert len({c.worker for c in chunks}) == 2, "both workers took chunks"
    assert chunks[0].start_s == 0 and abs(chunks[-1].end_s - duration) < 0.01

    words = result["words"]
    starts = [w["start"] for w in words]
    assert starts == sorted(starts) and starts[0] >= 0 and words[-1]["end"] <= duration + 0.01
    for seam in (c.start_s for c in chunks[1:]):
        near = [w for w in words if abs(w["start"] - seam) < 3]
        for a, b in pairwise(near):
            repeated = normalise(a["word"]) == normalise(b["word"])
            assert not (repeated and b["start"] < a["end"]), (seam, a, b)

    whole = unchunked(audio, service.data_dir)
    chunked_wer = error_rate(reference, result["text"], "en")
    whole_wer = error_rate(reference, whole["text"], "en")
    # Cut points change which 30 s windows Whisper sees, so the two runs differ by a few words
    # either way; since decoding goes through 16-bit samples (as faster-whisper's own), this
    # audio gives 0.088 chunked against 0.076 whole. Two points bound "merged exactly": a seam
    # that dropped or doubled a sentence costs more than that.
    assert chunked_wer <= whole_wer + 0.02, (chunked_wer, whole_wer)
    # Exact absolute times: the words both runs heard (aligned in order) start together,
    # give or take the model's own jitter.
    mine = [(normalise(w["word"]), w["start"]) for w in words]
    theirs = [(normalise(w["word"]), w["start"]) for s in whole["segments"] for w in s["words"]]
    matcher = SequenceMatcher(None, [w for w, _ in mine], [w for w, _ in theirs], autojunk=False)
    pairs = [
        (mine[block.a + k][1], theirs[block.b + k][1])
        for block in matcher.get_matching_blocks()
        for k in range(block.size)
    ]
    assert len(pairs) > 0.8 * len(theirs)
    offsets = sorted(abs(a - b) for a, b in pairs)
    assert offsets[len(offsets) // 2] < 0.1 and offsets[int(len(offsets) * 0.95)] < 0.5


@pytest.mark.timeout(600)
def test_a_chunk_whose_worker_is_killed_is_retried_and_the_job_succeeds_once(
    pool: tuple[LiveService, dict[str, str], list[subprocess.Popen[bytes]]],
    pg_url: str,
    tmp_path: Path,
) -> None:
    service, env, workers = pool
    audio, reference = long_audio(tmp_path / "speech.wav", SPEECH[:4])
    first = start_worker(env, tmp_path / "worker1.log")
    workers.append(first)
    job_id = submit(service, audio, data={"language": "en"}).json()["id"]
    deadline = time.monotonic() + 180
    running: list[JobChunk] = []
    while time.monotonic() < deadline and not running:
        running = [c for c in chunks_of(pg_url, job_id) if c.status == "running"]
        time.sleep(0.2)
    assert running, "no chunk started"
    killed = running[0].index
    kill_group(first)  # kill -9 mid-chunk: its heartbeat stops
    workers.append(start_worker(env, tmp_path / "worker2.log"))
    done = wait_ended(service, job_id, timeout=300)
    assert done["status"] == "succeeded", done["error"]
    chunks = chunks_of(pg_url, job_id)
    assert all(c.status == "succeeded" for c in chunks)
    assert chunks[killed].attempts == 2, "the lost chunk ran again"
    assert all(c.attempts == 1 for c in chunks if c.index != killed)
    log = (tmp_path / "worker2.log").read_text()
    assert f"chunk {job_id}:{killed}: worker stopped beating; requeued" in log
    second = chunks[killed].worker
    ran = re.findall(r"stt\.transcribe_chunk\[[^\]]+\] succeeded in", log)
    assert len(ran) == sum(c.worker == second for c in chunks), "each chunk is stored once"
    assert error_rate(reference, done["result"]["text"], "en") <= 0.25
