"""The figures: the service against the bare library on a long file and on a short call
(paired, interleaved ratios), pool scaling on the same cores (with the chunked-vs-unchunked
WER check), the API's CPU per poll and its latency under 200 pollers on both backends,
upload memory, batched vs sequential decoding (stored for the worker), and a peer server."""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import peer, polls
from bench.bare import BareLibrary, bare_transcribe
from bench.harness import (
    KEY,
    Services,
    build_audio,
    headers,
    run_job,
    transcribe_sync,
)
from bench.idle import tree_cpu_seconds
from bench.load import api_under_load, upload_memory
from bench.pairs import paired
from bench.support import ROOT, LiveService, clip, error_rate
from core.settings import usable_cores
from worker.batching import batch_size_for, choices_path, write_choices
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
    pairs: int
    """Paired, interleaved runs for every service-vs-baseline ratio (figures 1, 3, peer)."""
    pool_pairs: int
    load_seconds: float
    upload_bytes: int
    engine_audio_s: float
    """Audio for batched-vs-sequential; 0 skips it."""
    engine_rounds: int
    poll_rounds: int
    polls: int
    """Polls per round of the CPU-per-poll figures."""


FULL = Config("full", 600.0, 120.0, 75.0, 5, 2, 20.0, 1024**3, 180.0, 2, 5, 300)
QUICK = Config("quick", 150.0, 60.0, 35.0, 2, 1, 8.0, 256 * 1024**2, 30.0, 1, 2, 100)


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


BARE = (
    "faster-whisper in a process of its own (bench/bare.py), the model loaded once, the "
    "service's options (int8, beam 5, VAD, temperature fallback) and threads"
)


def service_batch(services: Services) -> int:
    """The batch size the service's worker chooses for MODEL (its data directory's stored
    measurement, else the fallback): the bare library runs with the same."""
    return batch_size_for(None, MODEL, "cpu", choices_path(services.data_dir))


CPU_NOTE = (
    "CPU seconds each side's process tree used per run (the service's: API, worker and "
    "webhook worker): more CPU is more work; the same CPU over a longer wall time is the "
    "machine giving that side less of itself"
)


class CpuCount:
    """The CPU seconds a process tree uses over each call of a timed function."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seconds: list[float] = []

    def around(self, run: Callable[[], float]) -> Callable[[], float]:
        def counted() -> float:
            before = tree_cpu_seconds(self.pid)
            elapsed = run()
            self.seconds.append(round(tree_cpu_seconds(self.pid) - before, 2))
            return elapsed

        return counted


def short_call_figure(
    svc: LiveService, backend: Services, bare: BareLibrary, batch: int, pairs: int, tag: str
) -> tuple[dict[str, Any], list[str]]:
    """Figure 3 on one backend: the 11 s clip through `POST /stt` against the bare library
    (a process of its own), `pairs` paired interleaved runs after two warm-ups of each."""
    short = clip(SHORT).path
    ids: list[str] = []

    def service() -> float:
        elapsed, body = transcribe_sync(svc, short)
        ids.append(body["request_id"])
        return elapsed

    for _ in range(2):  # warm both: model loaded, caches filled
        service()
        bare.transcribe(short, batch)
    bare_cpu, service_cpu = CpuCount(bare.proc.pid), CpuCount(svc.proc.pid)
    timing = paired(
        bare_cpu.around(lambda: bare.transcribe(short, batch)[0]),
        service_cpu.around(service),
        pairs,
    )
    target = 1.05
    fig = figure(
        f"short_call_{tag}",
        f"3. short synchronous call (11 s clip), service / bare, {backend.backend}",
        timing.median,
        "x",
        f"<= {target:.2f}",
        timing.median <= target,
        backend=backend.backend,
        model=MODEL,
        threads=threads(),
        batch_size=batch,
        bare=BARE,
        **timing.summary("bare", "service", "ms", 1000),
        bare_cpu_s=bare_cpu.seconds,
        service_cpu_s=service_cpu.seconds,
        cpu_note=CPU_NOTE,
    )
    return fig, ids


def long_file_figure(
    svc: LiveService,
    backend: Services,
    bare_library: BareLibrary,
    batch: int,
    pairs: int,
    audio: tuple[Path, str, float],
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Figure 1: the long file through `POST /stt` against the bare library, paired and
    interleaved. Returns the figure, the service's (unchunked) run for the WER check, ids."""
    path, reference, seconds = audio
    texts = {"service": "", "bare": ""}
    ids: list[str] = []

    def service() -> float:
        elapsed, body = transcribe_sync(svc, path)
        texts["service"] = body["text"]
        ids.append(body["request_id"])
        return elapsed

    def bare() -> float:
        elapsed, texts["bare"] = bare_library.transcribe(path, batch)
        return elapsed

    bare_cpu, service_cpu = CpuCount(bare_library.proc.pid), CpuCount(svc.proc.pid)
    timing = paired(bare_cpu.around(bare), service_cpu.around(service), pairs)
    target = 1.03
    service_wer = error_rate(reference, texts["service"], "en")
    fig = figure(
        "engine_overhead",
        f"1. engine overhead: service end to end / bare faster-whisper, "
        f"{seconds / 60:.1f}-min file",
        timing.median,
        "x",
        f"<= {target:.2f}",
        timing.median <= target,
        backend=backend.backend,
        audio_s=round(seconds, 1),
        model=MODEL,
        threads=threads(),
        batch_size=batch,
        bare=BARE,
        **timing.summary("bare", "service"),
        bare_cpu_s=bare_cpu.seconds,
        service_cpu_s=service_cpu.seconds,
        cpu_note=CPU_NOTE,
        service_wer=round(service_wer, 4),
        bare_wer=round(error_rate(reference, texts["bare"], "en"), 4),
    )
    return fig, {"text": texts["service"], "wer": service_wer}, ids


@contextmanager
def beside_bare(
    services: Services, models: Services | None = None
) -> Iterator[tuple[BareLibrary, LiveService]]:
    """The bare library in a process of its own and one worker of `services`, each with
    `threads()` threads: the two sides of figures 1 and 3 (the model from `models`' data
    directory, default `services`')."""
    model_path = resolve_model_path(MODEL, (models or services).data_dir / "models")
    with (
        BareLibrary(str(model_path), threads()) as bare,
        services.run(1, STT_CPU_THREADS=str(threads())) as svc,
    ):
        yield bare, svc


def engine_and_short_calls(
    embedded: Services,
    pg: Services,
    cfg: Config,
    audio: tuple[Path, str, float],
) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    """Figures 1 and 3: one worker with `threads()` threads against the library in a process
    of its own with as many; the short call on the embedded default and on Postgres + Redis,
    the long file on the embedded default. Returns the figures, the unchunked run, job ids."""
    figures: list[dict[str, Any]] = []
    ids: list[str] = []
    with beside_bare(embedded) as (bare, svc):
        batch = service_batch(embedded)
        fig, more = short_call_figure(svc, embedded, bare, batch, cfg.pairs, "embedded")
        figures.append(fig)
        ids += more
        fig, unchunked, more = long_file_figure(svc, embedded, bare, batch, cfg.pairs, audio)
        figures.insert(0, fig)
        ids += more
    with beside_bare(pg, embedded) as (bare, svc):
        fig, more = short_call_figure(svc, pg, bare, service_batch(pg), cfg.pairs, "pg")
        figures.append(fig)
        ids += more
    return figures, unchunked, ids


def short_call_only(embedded: Services, cfg: Config) -> list[dict[str, Any]]:
    """Figure 3 on the embedded default alone (a couple of minutes): `--only short`."""
    with beside_bare(embedded) as (bare, svc):
        batch = service_batch(embedded)
        fig, _ = short_call_figure(svc, embedded, bare, batch, cfg.pairs, "embedded")
    return [fig]


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


def cpu_parallelism(iterations: int = 30_000_000, parts: int = 2) -> float:
    """A control for figure 2: the wall time of a fixed CPU-bound job split over `parts`
    processes, over one process doing all of it. 1/parts on idle cores; nearer 1.0 the
    more of the CPU other work takes (the best pool scaling the machine allows now)."""

    def wall(count: int) -> float:
        code = _SPIN.format(iterations // count)
        started = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]
        for proc in procs:
            proc.wait()
        return time.perf_counter() - started

    return round(wall(parts) / wall(1), 3)


def _warm(svc: Any, workers: int) -> list[str]:
    """Enough short calls at once that every worker loads its model."""
    ids: list[str] = []

    def call() -> None:
        ids.append(transcribe_sync(svc, clip(TINY_JOB).path)[1]["request_id"])

    for _ in range(2):
        callers = [threading.Thread(target=call) for _ in range(2 * workers)]
        for t in callers:
            t.start()
        for t in callers:
            t.join()
    return ids


def pool_width() -> int:
    """Figure 2's pool: this many one-thread workers against one worker with as many
    threads (the cores this process may use, 2 to 4)."""
    return max(2, min(threads(), 4))


def gpu_estimate(chunks: int) -> dict[str, Any]:
    """What figure 2 would be with each worker on its own GPU: chunks spread across devices
    that share nothing, so wall time ~ the busiest device's share of the chunks."""
    return {
        "note": "an estimate, not measured here (no GPU was lent): with N workers each on "
        "its own GPU the chunks spread across devices that share no compute, so the wall "
        "time of N workers over one is about ceil(chunks / N) / chunks, plus planning and "
        "merging (under 2 s for a 10-minute file); per-chunk times are equal only roughly",
        "chunks": chunks,
        "n_gpus_over_one": {
            str(n): round(math.ceil(chunks / n) / chunks, 3) for n in (1, 2, 4, 8) if chunks
        },
    }


def pool_scaling(
    base: Services,
    folder: Path,
    cfg: Config,
    audio: tuple[Path, str, float],
    unchunked: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[str]]:
    """Figure 2 and the WER check: the long file, chunked, on `pool_width()` one-thread
    workers against one worker with `pool_width()` threads, the same cores; both services
    (embedded default, each its own data directory) up at once, runs paired and
    interleaved; the pool's WER against figure 1's unchunked run."""
    path, reference, seconds = audio
    width = pool_width()
    chunking = {
        "STT_CHUNK_THRESHOLD_S": str(cfg.pool_threshold_s),
        "STT_CHUNK_TARGET_S": str(cfg.pool_target_s),
    }
    runs: dict[str, list[dict[str, Any]]] = {"one": [], "pool": []}
    ids: list[str] = []
    control = cpu_parallelism(parts=width)
    one = Services(folder / "pool-one", batching=base.batching)
    pool = Services(folder / "pool-many", batching=base.batching)
    with (
        one.run(1, STT_CPU_THREADS=str(width), **chunking) as single,
        pool.run(width, STT_CPU_THREADS="1", **chunking) as many,
    ):
        ids += _warm(single, 1) + _warm(many, width)

        def run(name: str, svc: LiveService, services: Services) -> float:
            elapsed, job = run_job(svc, path)
            ids.append(job["id"])
            runs[name].append(
                {
                    "seconds": round(elapsed, 2),
                    "wer": round(error_rate(reference, job["result"]["text"], "en"), 4),
                    **_chunks(services.database_url, job["id"]),
                }
            )
            return elapsed

        timing = paired(
            lambda: run("one", single, one), lambda: run("pool", many, pool), cfg.pool_pairs
        )
    control_after = cpu_parallelism(parts=width)
    chunks = runs["pool"][-1]["chunks"]
    figures = [
        figure(
            "pool_scaling",
            f"2. pool scaling: wall time {width} workers x 1 thread / 1 worker x {width} "
            f"threads, {seconds / 60:.1f}-min file, chunked",
            timing.median,
            "x",
            "<= 1.00",
            timing.median <= 1.0,
            model=MODEL,
            backend=one.backend,
            settings={**chunking, "workers x STT_CPU_THREADS": [f"1x{width}", f"{width}x1"]},
            **timing.summary(f"1x{width}", f"{width}x1"),
            one_worker=runs["one"],
            pool=runs["pool"],
            cpu_parallelism_control=control,
            cpu_parallelism_control_after=control_after,
            control_note=f"a CPU-bound job split over {width} processes over one process: "
            f"{1 / width:g} on idle cores; the best a pool can do beside the machine's load",
            on_gpus=gpu_estimate(chunks),
        )
    ]
    if unchunked:
        chunked_wer = runs["pool"][-1]["wer"]
        delta = chunked_wer - round(unchunked["wer"], 4)
        figures.append(
            figure(
                "chunked_wer",
                f"   WER chunked ({width} workers) - WER unchunked (figure 1's run), same audio",
                delta * 100,
                "points",
                "<= 1.0",
                delta <= 0.01,
                chunked_wer=chunked_wer,
                unchunked_wer=round(unchunked["wer"], 4),
                one_worker_chunked_wer=runs["one"][-1]["wer"],
            )
        )
    return figures, ids


POLL_TARGETS = {"running": 1.5, "finished": 1.0, "finished_304": 1.0}


def poll_cpu_figures(
    services: Services, folder: Path, cfg: Config, tag: str
) -> list[dict[str, Any]]:
    """The API's CPU per status poll (`bench.polls`): a running job, a finished job with a
    10-minute file's transcript, and the same with `If-None-Match` (a 304)."""
    with polls.serve(ROOT, folder / f"polls-{tag}", services.database, services.redis_url) as s:
        costs = polls.measure([s], cfg.poll_rounds, cfg.polls)[str(ROOT)]
    out = []
    for kind, target in POLL_TARGETS.items():
        value = costs[kind]["median_ms"]
        out.append(
            figure(
                f"poll_cpu_{kind}_{tag}",
                f"4a. API CPU per poll, {kind.replace('_', ' ')} job, {services.backend}",
                value,
                "ms",
                f"<= {target}",
                value <= target,
                backend=services.backend,
                rounds=cfg.poll_rounds,
                polls_per_round=cfg.polls,
                **costs[kind],
                how="one API process, no worker; its CPU over the polls on one keep-alive "
                "connection (python -m bench.polls); median of the rounds",
            )
        )
    return out


def _queued_jobs(api: LiveService, ids: list[str], count: int = 10) -> list[str]:
    ids = list(ids)
    while len(ids) < count:  # something to poll even when run alone (these stay queued)
        with clip(TINY_JOB).path.open("rb") as handle:
            r = httpx.post(
                f"{api.url}/stt/jobs",
                headers=headers(),
                files={"file": ("short.wav", handle)},
                data={"model": "ink-whisper"},
                timeout=60,
            )
        ids.append(r.json()["id"])
    return ids


def api_load_figure(services: Services, cfg: Config, ids: list[str], tag: str) -> dict[str, Any]:
    """200 pollers at 1/s on the API alone (no worker), an API process per core
    (STT_API_WORKERS=auto); the same with 50 submitters beside them, in the details."""
    with services.run(0, STT_LOG_LEVEL="WARNING", STT_API_WORKERS="auto") as api:
        ids = _queued_jobs(api, ids)
        short = clip(TINY_JOB).path
        alone = api_under_load(
            api.url, api.proc.pid, ids, short, seconds=cfg.load_seconds, submitters=0
        )
        mixed = api_under_load(api.url, api.proc.pid, ids, short, seconds=cfg.load_seconds)
    p = alone["polls"]
    return figure(
        f"api_load_{tag}",
        f"4b. API under load: p99 of 200 pollers at 1/s, {services.backend}",
        p["p99_ms"],
        "ms",
        "< 100, 0 errors",
        p["p99_ms"] < 100 and p["errors"] == 0,
        backend=services.backend,
        **alone,
        with_50_submitters={
            "polls": mixed["polls"],
            "submits": mixed["submits"],
            "api_cpu_cores": mixed["api_cpu_cores"],
        },
    )


def api_figures(
    embedded: Services, pg: Services, folder: Path, cfg: Config, poll_ids: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """Figure 4 (CPU per poll, pollers' p99) on both backends and figure 5 (upload memory)."""
    figures: list[dict[str, Any]] = []
    for services, tag in ((embedded, "embedded"), (pg, "pg")):
        figures += poll_cpu_figures(services, folder, cfg, tag)
        figures.append(api_load_figure(services, cfg, poll_ids.get(tag, []), tag))
    # Memory is per API process: one of them, so that the pid read is the one receiving.
    with pg.run(0, STT_LOG_LEVEL="WARNING", STT_API_WORKERS="1") as api:
        upload = upload_memory(api.url, api.proc.pid, cfg.upload_bytes)
    gib = cfg.upload_bytes / 1024**3
    figures.append(
        figure(
            "upload_memory",
            f"5. upload memory: API RSS growth while receiving {gib:g} GiB",
            upload["growth_mb"],
            "MB",
            "< 100",
            upload["growth_mb"] < 100 and upload["status"] == 202,
            **upload,
        )
    )
    return figures


def peer_figures(
    ours: peer.Server,
    theirs: peer.Server,
    short: Path,
    long: tuple[Path, str, float],
    pairs: int,
) -> list[dict[str, Any]]:
    """The short call and the long file on our OpenAI-compatible path against a peer's,
    paired and interleaved after a warm-up call each: ratio ours / peer."""
    for server in (ours, theirs):
        server.transcribe(short)
    out = []
    for name, path, reference, label in (
        ("peer_short", short, None, f"short call ({short.name})"),
        ("peer_long", long[0], long[1], f"{long[2] / 60:.1f}-min file"),
    ):
        timing, details = peer.compare(ours, theirs, path, pairs, reference)
        out.append(
            figure(
                name,
                f"6. beside a peer: {label}, ours / {theirs.url}",
                timing.median,
                "x",
                "<= 1.00",
                timing.median <= 1.0,
                ours_url=ours.url,
                **details,
            )
        )
    return out


def run_peer(
    embedded: Services, cfg: Config, audio: tuple[Path, str, float], theirs: peer.Server
) -> list[dict[str, Any]]:
    """`--peer-url`: our embedded default (one worker, `threads()` threads) beside the peer."""
    with embedded.run(1, STT_CPU_THREADS=str(threads())) as svc:
        ours = peer.Server(f"{svc.url}/v1", KEY, "whisper-1")
        return peer_figures(ours, theirs, clip(SHORT).path, audio, cfg.pairs)


BATCHES = (0, 8, 16)
"""Sequential, and faster-whisper's batched pipeline with batches of 8 and 16."""


def engine_choice(
    folder: Path, cache_dir: Path, seconds: float, store: Path, rounds: int = 1
) -> dict[str, Any]:
    """Sequential against batched (8, 16) per bundled model, on CPU with `threads()` threads,
    `rounds` interleaved rounds: median time and WER; the rule picks the fastest whose WER is
    within a point of sequential, and the picks are written to `store` with this machine's
    fingerprint (the worker reads it)."""
    path, reference, length = build_audio(folder, seconds, "engine.wav")
    out: dict[str, Any] = {
        "audio_s": round(length, 1),
        "threads": threads(),
        "rounds": rounds,
        "models": {},
    }
    for spec in ("bundled:tiny.en", "bundled:base"):
        model = bare_model(cache_dir, spec=spec)
        bare_transcribe(model, clip(SHORT).path, 0, language="en")  # warm
        times: dict[int, list[float]] = {b: [] for b in BATCHES}
        wers: dict[int, float] = {}
        for n in range(rounds):  # interleaved, the order rotating: drift falls on all three
            for batch in BATCHES[n % 3 :] + BATCHES[: n % 3]:
                elapsed, text = bare_transcribe(model, path, batch, language="en")
                times[batch].append(elapsed)
                wers[batch] = error_rate(reference, text, "en")
        rows: dict[int, dict[str, Any]] = {
            b: {
                "seconds": round(statistics.median(times[b]), 2),
                "runs_s": [round(t, 2) for t in times[b]],
                "rtf": round(statistics.median(times[b]) / length, 4),
                "wer": round(wers[b], 4),
            }
            for b in BATCHES
        }
        fit = [b for b in BATCHES if wers[b] <= wers[0] + 0.01]
        chosen = min(fit, key=lambda b: statistics.median(times[b]))
        out["models"][spec] = {"runs": {str(b): r for b, r in rows.items()}, "rule_picks": chosen}
        del model
    write_choices(
        store,
        "cpu",
        {spec: m["rule_picks"] for spec, m in out["models"].items()},
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        rule="the fastest of sequential, batch 8, batch 16 whose WER is within a point of "
        "sequential",
        audio_s=out["audio_s"],
        threads=out["threads"],
        runs={spec: m["runs"] for spec, m in out["models"].items()},
        load_average=[round(x, 2) for x in os.getloadavg()],
    )
    out["stored_in"] = str(store)
    return out
