"""The figures: engine overhead, pool scaling (with the chunked-vs-unchunked WER check),
short synchronous calls, the API under load, upload memory, and batched vs sequential."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.harness import (
    Services,
    build_audio,
    headers,
    median,
    run_job,
    transcribe_sync,
)
from bench.load import api_under_load, upload_memory
from bench.support import clip, error_rate
from core.settings import usable_cores
from worker.batching import MEASURED, default_batch_size
from worker.bundled_models import resolve_model_path

MODEL = "bundled:base"
"""The service's default model: what the end-to-end figures run."""
SHORT = "en_jfk_inaugural.flac"
"""11 s: the short synchronous call."""
TINY_JOB = "en_librispeech_2830-3980-0043.wav"
"""2 s: what the load test's submitters send, and the warm-up."""


def threads() -> int:
    """CTranslate2 threads for one worker, and for the bare library: the cores this process
    may use (its affinity mask), as the service's own default."""
    return usable_cores()


@dataclass(frozen=True)
class Config:
    mode: str
    long_s: float
    """The long file: 10 minutes (under the default chunk threshold, so run whole)."""
    pool_threshold_s: float
    pool_target_s: float
    short_runs: int
    load_seconds: float
    upload_bytes: int
    engine_audio_s: float
    """Audio for batched-vs-sequential; 0 skips it."""
    repeat: int = 1


FULL = Config("full", 600.0, 120.0, 75.0, 10, 20.0, 1024**3, 180.0)
QUICK = Config("quick", 150.0, 60.0, 35.0, 3, 8.0, 256 * 1024**2, 0.0)


def figure(
    name: str, title: str, value: float, unit: str, target: str, ok: bool, **details: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "title": title,
        "value": round(value, 3),
        "unit": unit,
        "target": target,
        "pass": bool(ok),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "details": details,
    }


def bare_model(cache_dir: Path, cpu_threads: int | None = None, spec: str = MODEL) -> Any:
    from faster_whisper import WhisperModel

    path = resolve_model_path(spec, cache_dir)
    count = cpu_threads or threads()
    return WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=count)


def bare_transcribe(model: Any, path: Path | str, batch: int, **options: Any) -> tuple[float, str]:
    """faster-whisper itself, with the service's options: (seconds, text)."""
    from faster_whisper import BatchedInferencePipeline

    runner = BatchedInferencePipeline(model) if batch > 0 else model
    extra = {"batch_size": batch} if batch > 0 else {}
    started = time.perf_counter()
    segments, _ = runner.transcribe(
        str(path),
        beam_size=5,
        vad_filter=True,
        temperature=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        **extra,
        **options,
    )
    text = "".join(s.text for s in segments).strip()
    return time.perf_counter() - started, text


def engine_and_short_calls(
    services: Services, cfg: Config, long_path: Path, reference: str, seconds: float
) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    """Figures 1 and 3 on one service (one worker, `threads()` threads) against the library in
    this process. Returns the figures, the unchunked run (for the WER check), job ids."""
    batch = default_batch_size(MODEL, "cpu")
    model = bare_model(services.data_dir / "models")
    short = clip(SHORT).path
    ids: list[str] = []
    with services.run(1, STT_CPU_THREADS=str(threads())) as svc:
        for _ in range(2):  # warm both: model loaded, caches filled
            _, body = transcribe_sync(svc, short)
            ids.append(body["request_id"])
            bare_transcribe(model, short, batch)
        service_short, bare_short = [], []
        for _ in range(cfg.short_runs):
            elapsed, body = transcribe_sync(svc, short)
            service_short.append(elapsed)
            ids.append(body["request_id"])
            bare_short.append(bare_transcribe(model, short, batch)[0])
        service_long, bare_long = [], []
        service_text = bare_text = ""
        for _ in range(cfg.repeat):
            elapsed, bare_text = bare_transcribe(model, long_path, batch)
            bare_long.append(elapsed)
            elapsed, body = transcribe_sync(svc, long_path)
            service_long.append(elapsed)
            service_text = body["text"]
            ids.append(body["request_id"])
    ratio = median(service_long) / median(bare_long)
    overhead_ms = (median(service_short) - median(bare_short)) * 1000
    minutes = f"{seconds / 60:.1f}-min"
    figures = [
        figure(
            "engine_overhead",
            f"1. engine overhead: service end to end / bare faster-whisper, {minutes} file",
            ratio,
            "x",
            "<= 1.10",
            ratio <= 1.10,
            audio_s=round(seconds, 1),
            model=MODEL,
            threads=threads(),
            batch_size=batch,
            service_s=[round(x, 2) for x in service_long],
            bare_s=[round(x, 2) for x in bare_long],
            service_wer=round(error_rate(reference, service_text, "en"), 4),
            bare_wer=round(error_rate(reference, bare_text, "en"), 4),
        ),
        figure(
            "short_call_overhead",
            "3. short synchronous call (11 s clip): service median - bare median",
            overhead_ms,
            "ms",
            "< 150",
            overhead_ms < 150,
            runs=cfg.short_runs,
            service_median_ms=round(median(service_short) * 1000, 1),
            bare_median_ms=round(median(bare_short) * 1000, 1),
            service_ms=[round(x * 1000, 1) for x in service_short],
            bare_ms=[round(x * 1000, 1) for x in bare_short],
        ),
    ]
    unchunked = {"text": service_text, "wer": error_rate(reference, service_text, "en")}
    return figures, unchunked, ids


def _chunks(database_url: str, job_id: str) -> dict[str, Any]:
    from sqlalchemy import select

    from core.db import make_engine, session_factory
    from core.models import JobChunk

    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            rows = session.execute(
                select(JobChunk.start_s, JobChunk.end_s, JobChunk.worker, JobChunk.attempts)
                .where(JobChunk.job_id == job_id)
                .order_by(JobChunk.index)
            ).all()
    finally:
        engine.dispose()
    per_worker: dict[str, int] = {}
    for r in rows:
        per_worker[str(r.worker)] = per_worker.get(str(r.worker), 0) + 1
    return {
        "chunks": len(rows),
        "chunk_s": [round(r.end_s - r.start_s, 1) for r in rows],
        "workers": len(per_worker),
        "chunks_per_worker": sorted(per_worker.values(), reverse=True),
    }


_SPIN = "n = 0\nfor i in range({}):\n    n += i"


def cpu_parallelism(iterations: int = 30_000_000) -> float:
    """A control for figure 2: the wall time of a fixed CPU-bound job split over two
    processes, over one process doing all of it. 0.5 on two idle cores; nearer 1.0 the
    more of the CPU other work takes (the best pool scaling the machine allows now)."""

    def wall(parts: int) -> float:
        code = _SPIN.format(iterations // parts)
        started = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(parts)]
        for proc in procs:
            proc.wait()
        return time.perf_counter() - started

    return round(wall(2) / wall(1), 3)


def _warm(svc: Any, workers: int) -> list[str]:
    """Enough short calls at once that every worker loads its model."""
    ids: list[str] = []

    def call() -> None:
        ids.append(transcribe_sync(svc, clip(TINY_JOB).path)[1]["request_id"])

    for _ in range(2):
        threads = [threading.Thread(target=call) for _ in range(2 * workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return ids


def pool_scaling(
    services: Services,
    cfg: Config,
    long_path: Path,
    reference: str,
    unchunked: dict[str, Any],
    seconds: float,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Figure 2 and the WER check: the long file, chunked, on one worker and on two (one
    thread each); the two-worker result's WER against the unchunked run's."""
    runs: dict[int, dict[str, Any]] = {}
    ids: list[str] = []
    control = cpu_parallelism()
    for workers in (1, 2):
        with services.run(
            workers,
            STT_CPU_THREADS="1",
            STT_CHUNK_THRESHOLD_S=str(cfg.pool_threshold_s),
            STT_CHUNK_TARGET_S=str(cfg.pool_target_s),
        ) as svc:
            ids += _warm(svc, workers)
            elapsed, job = run_job(svc, long_path)
            ids.append(job["id"])
            text = job["result"]["text"]
            runs[workers] = {
                "seconds": round(elapsed, 2),
                "wer": round(error_rate(reference, text, "en"), 4),
                **_chunks(services.database_url, job["id"]),
            }
    ratio = runs[2]["seconds"] / runs[1]["seconds"]
    chunked_wer = runs[2]["wer"]
    delta = chunked_wer - round(unchunked.get("wer", 0.0), 4)
    settings = {
        "STT_CPU_THREADS": 1,
        "STT_CHUNK_THRESHOLD_S": cfg.pool_threshold_s,
        "STT_CHUNK_TARGET_S": cfg.pool_target_s,
    }
    return [
        figure(
            "pool_scaling",
            f"2. pool scaling: wall time two workers / one worker, {seconds / 60:.1f}-min file",
            ratio,
            "x",
            "<= 0.65",
            ratio <= 0.65,
            model=MODEL,
            settings=settings,
            one_worker=runs[1],
            two_workers=runs[2],
            cpu_parallelism_control=control,
            cpu_parallelism_control_after=cpu_parallelism(),
        ),
        figure(
            "chunked_wer",
            "   WER chunked (two workers) - WER unchunked (figure 1's run), same audio",
            delta * 100,
            "points",
            "<= 1.0",
            delta <= 0.01,
            chunked_wer=chunked_wer,
            unchunked_wer=round(unchunked["wer"], 4),
            one_worker_chunked_wer=runs[1]["wer"],
        ),
    ], ids


def api_figures(services: Services, cfg: Config, poll_ids: list[str]) -> list[dict[str, Any]]:
    """Figures 4 and 5 on the API alone (no worker: its CPU is the API's); figure 4 with an
    API process per core (STT_API_WORKERS=auto)."""
    with services.run(0, STT_LOG_LEVEL="WARNING", STT_API_WORKERS="auto") as api:
        ids = list(poll_ids)
        while len(ids) < 10:  # something to poll even when run alone (these stay queued)
            with clip(TINY_JOB).path.open("rb") as handle:
                r = httpx.post(
                    f"{api.url}/stt/jobs",
                    headers=headers(),
                    files={"file": ("short.wav", handle)},
                    data={"model": "ink-whisper"},
                    timeout=60,
                )
            ids.append(r.json()["id"])
        load = api_under_load(
            api.url, api.proc.pid, ids, clip(TINY_JOB).path, seconds=cfg.load_seconds
        )
        # The same pollers with nobody submitting: how much of the latency is the uploads'.
        polls_only = api_under_load(
            api.url, api.proc.pid, ids, clip(TINY_JOB).path, seconds=cfg.load_seconds, submitters=0
        )
    # Memory is per API process: one of them, so that the pid read is the one receiving.
    with services.run(0, STT_LOG_LEVEL="WARNING", STT_API_WORKERS="1") as api:
        upload = upload_memory(api.url, api.proc.pid, cfg.upload_bytes)
    polls, submits = load["polls"], load["submits"]
    errors = polls["errors"] + submits["errors"]
    gib = cfg.upload_bytes / 1024**3
    return [
        figure(
            "api_load",
            "4. API under load: p99 of status polls (200 pollers + 50 submitters)",
            polls["p99_ms"],
            "ms",
            "< 100, 0 errors",
            polls["p99_ms"] < 100 and errors == 0,
            **load,
            polls_only={
                "polls": polls_only["polls"],
                "api_cpu_cores": polls_only["api_cpu_cores"],
            },
        ),
        figure(
            "upload_memory",
            f"5. upload memory: API RSS growth while receiving {gib:g} GiB",
            upload["growth_mb"],
            "MB",
            "< 100",
            upload["growth_mb"] < 100 and upload["status"] == 202,
            **upload,
        ),
    ]


def engine_choice(folder: Path, cache_dir: Path, seconds: float) -> dict[str, Any]:
    """Sequential against batched (8, 16) per bundled model, on CPU with `threads()` threads:
    time and WER; the rule picks the fastest whose WER is within a point of sequential."""
    path, reference, length = build_audio(folder, seconds, "engine.wav")
    out: dict[str, Any] = {"audio_s": round(length, 1), "threads": threads(), "models": {}}
    for spec in ("bundled:tiny.en", "bundled:base"):
        model = bare_model(cache_dir, spec=spec)
        bare_transcribe(model, clip(SHORT).path, 0, language="en")  # warm
        rows = {}
        for batch in (0, 8, 16):
            elapsed, text = bare_transcribe(model, path, batch, language="en")
            rows[batch] = {
                "seconds": round(elapsed, 2),
                "rtf": round(elapsed / length, 4),
                "wer": round(error_rate(reference, text, "en"), 4),
            }
        fit = [b for b in rows if rows[b]["wer"] <= rows[0]["wer"] + 0.01]
        chosen = min(fit, key=lambda b: rows[b]["seconds"])
        out["models"][spec] = {
            "runs": {str(b): r for b, r in rows.items()},
            "rule_picks": chosen,
            "configured_default": MEASURED.get((spec, "cpu"), 0),
        }
        del model
    return out
