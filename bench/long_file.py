"""`python -m bench.long_file [--pairs N] [--seconds S] [--embedded] [--engine]`: a long file
through the service end to end against the bare library, as paired, interleaved ratios.

The file is joined corpus English (`build_audio`), under the chunk threshold so it runs
whole. One `stt serve --workers 1` (Postgres + Redis of its own, or the embedded default
with `--embedded`) and `WhisperModel.transcribe` in this process run the same model, threads
(the usable cores) and options (`bench.suite.bare_transcribe`); each pair runs both, the
order alternating, and its ratio is service / bare. Besides the wall times it records the
CPU each side used (this process's for the bare library; the service's whole process tree)
and where the service's time went: upload to queued, queued to started, started to
completed (the worker: decode, transcribe, store), completed to answered. `--engine` adds a
third run per pair: the worker's own `engine.transcribe` in this process on `core.audio`'s
decode, which tells the engine's share of a gap from the service's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.bare import bare_transcribe
from bench.harness import (
    Services,
    build_audio,
    headers,
    machine,
    median,
    postgres_database,
    redis_database,
    transcribe_sync,
    write_json,
)
from bench.idle import tree_cpu_seconds
from bench.suite import MODEL, bare_model, threads
from bench.support import LiveService, error_rate, start_service, stop_service_proc

TARGET = 1.03
"""Issue 14's target for the 10-minute file: service / bare, paired median."""


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _stamp(value: str | None) -> float:
    if not value:
        return float("nan")
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def service_run(svc: LiveService, path: Path) -> dict[str, Any]:
    """One synchronous `POST /stt` of the file: wall and CPU time, and its stages."""
    cpu_before = tree_cpu_seconds(svc.proc.pid)
    sent = time.time()
    elapsed, body = transcribe_sync(svc, path)
    answered = sent + elapsed
    cpu = tree_cpu_seconds(svc.proc.pid) - cpu_before
    job = httpx.get(
        f"{svc.url}/stt/jobs/{body['request_id']}", headers=headers(), timeout=30
    ).json()
    created, started = _stamp(job.get("created_at")), _stamp(job.get("started_at"))
    completed = _stamp(job.get("completed_at"))
    return {
        "seconds": elapsed,
        "cpu_s": cpu,
        "text": body["text"],
        "stages_s": {
            "upload_to_queued": created - sent,
            "queued_to_started": started - created,
            "worker": completed - started,
            "completed_to_answered": answered - completed,
        },
    }


def bare_run(model: Any, path: Path) -> dict[str, Any]:
    cpu_before = _cpu_self()
    seconds, text = bare_transcribe(model, path, 0)
    return {"seconds": seconds, "cpu_s": _cpu_self() - cpu_before, "text": text}


def engine_run(model: Any, path: Path) -> dict[str, Any]:
    """The worker's decode and `engine.transcribe`, in this process, on the bare model."""
    from core.audio import decode
    from core.jobspec import JobOptions
    from worker.engine import EngineConfig, transcribe, transcribe_options

    cpu_before = _cpu_self()
    started = time.perf_counter()
    audio = decode(path)
    transcript = transcribe(
        model, audio, transcribe_options(JobOptions(), None), EngineConfig(cpu_threads=threads())
    )
    return {
        "seconds": time.perf_counter() - started,
        "cpu_s": _cpu_self() - cpu_before,
        "text": transcript.text,
    }


@contextlib.contextmanager
def service(folder: Path, embedded: bool) -> Iterator[LiveService]:
    """`stt serve --workers 1` with the bench's key, `threads()` threads, warm."""
    if embedded:
        env = {
            **Services(folder, "", "").env(STT_CPU_THREADS=str(threads())),
        }
        env.pop("DATABASE_URL")
        env.pop("REDIS_URL")
        svc = start_service(folder / "data", env, workers=1)
        try:
            _wait_ready(svc)
            yield svc
        finally:
            stop_service_proc(svc.proc)
        return
    with postgres_database() as database_url, redis_database() as redis_url:
        services = Services(folder / "data", database_url, redis_url)
        with services.run(1, STT_CPU_THREADS=str(threads())) as svc:
            yield svc


def _wait_ready(svc: LiveService, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while " ready." not in svc.log():
        if svc.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not become ready:\n{svc.log()[-3000:]}")
        time.sleep(0.2)


def measure(pairs: int, seconds: float, embedded: bool, engine: bool) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="stt-long-file-"))
    where = machine()  # the load average as the measurement starts
    try:
        path, reference, audio_s = build_audio(folder, seconds, "long.wav")
        model = bare_model(folder / "data" / "models")
        rounds: list[dict[str, Any]] = []
        with service(folder, embedded) as svc:
            warm = folder / "warm.wav"
            build_audio(folder, 20.0, warm.name)
            service_run(svc, warm)  # the worker's model loaded, caches filled
            bare_run(model, warm)
            for index in range(pairs):
                order = ["bare", "service"] if index % 2 == 0 else ["service", "bare"]
                if engine:
                    order.append("engine")
                runs: dict[str, dict[str, Any]] = {}
                for side in order:
                    if side == "bare":
                        runs[side] = bare_run(model, path)
                    elif side == "service":
                        runs[side] = service_run(svc, path)
                    else:
                        runs[side] = engine_run(model, path)
                row = _row(index, order, runs, reference)
                rounds.append(row)
                print(_line(row), flush=True)
        return _summary(rounds, audio_s, embedded, pairs, where)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _row(
    index: int, order: list[str], runs: dict[str, dict[str, Any]], reference: str
) -> dict[str, Any]:
    bare, svc = runs["bare"], runs["service"]
    row: dict[str, Any] = {
        "pair": index,
        "order": order,
        "ratio": svc["seconds"] / bare["seconds"],
        "cpu_ratio": svc["cpu_s"] / bare["cpu_s"],
        "load_average": round(os.getloadavg()[0], 2),
    }
    for side, run in runs.items():
        row[side] = {
            "seconds": round(run["seconds"], 2),
            "cpu_s": round(run["cpu_s"], 2),
            "wer": round(error_rate(reference, run["text"], "en"), 4),
        }
    row["service"]["stages_s"] = {k: round(v, 3) for k, v in svc["stages_s"].items()}
    if "engine" in runs:
        row["engine_ratio"] = runs["engine"]["seconds"] / bare["seconds"]
    return row


def _line(row: dict[str, Any]) -> str:
    stages = ", ".join(f"{k} {v:.2f}" for k, v in row["service"]["stages_s"].items())
    engine = f", engine/bare {row['engine_ratio']:.3f}" if "engine_ratio" in row else ""
    return (
        f"pair {row['pair']} ({' → '.join(row['order'])}): service {row['service']['seconds']} s,"
        f" bare {row['bare']['seconds']} s, ratio {row['ratio']:.3f}{engine},"
        f" CPU ratio {row['cpu_ratio']:.3f}; service stages: {stages}; load {row['load_average']}"
    )


def _summary(
    rounds: list[dict[str, Any]],
    audio_s: float,
    embedded: bool,
    pairs: int,
    where: dict[str, Any],
) -> dict[str, Any]:
    ratios = [r["ratio"] for r in rounds]
    cpu = [r["cpu_ratio"] for r in rounds]
    out: dict[str, Any] = {
        "figure": "long file: service end to end / bare faster-whisper, paired median",
        "audio_s": round(audio_s, 1),
        "model": MODEL,
        "threads": threads(),
        "setup": "embedded (SQLite, filesystem broker)" if embedded else "Postgres + Redis",
        "pairs": pairs,
        "ratio_median": round(median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "cpu_ratio_median": round(median(cpu), 3),
        "target": f"<= {TARGET}",
        "pass": median(ratios) <= TARGET,
        "service_wer": [r["service"]["wer"] for r in rounds],
        "bare_wer": [r["bare"]["wer"] for r in rounds],
        "rounds": rounds,
        "machine": where,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    engine = [r["engine_ratio"] for r in rounds if "engine_ratio" in r]
    if engine:
        out["engine_ratio_median"] = round(median(engine), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=5, help="paired runs (default 5)")
    parser.add_argument("--seconds", type=float, default=600.0, help="audio length (600)")
    parser.add_argument("--embedded", action="store_true", help="SQLite + filesystem broker")
    parser.add_argument("--engine", action="store_true", help="also the engine in-process")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    result = measure(args.pairs, args.seconds, args.embedded, args.engine)
    print(
        f"{result['audio_s']} s, {result['setup']}, {args.pairs} pairs: service / bare "
        f"{result['ratio_median']} (min {result['ratio_min']}, max {result['ratio_max']}), "
        f"CPU {result['cpu_ratio_median']}; target {result['target']}: "
        f"{'met' if result['pass'] else 'not met'}"
    )
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
