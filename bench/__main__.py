"""`python -m bench [--quick] [--only NAMES] [--out PATH]`: measure, print, write JSON.

Starts its own services on loopback (a Postgres database and a Redis database number of
its own, a data directory under /tmp), runs the figures one after another, stops what it
started and drops the database. Timings are only as quiet as the machine: the load average
is recorded with each figure.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import (
    Services,
    build_audio,
    command,
    machine,
    postgres_database,
    redis_database,
    write_json,
)
from bench.suite import (
    FULL,
    QUICK,
    api_figures,
    engine_and_short_calls,
    engine_choice,
    pool_scaling,
)
from bench.support import ROOT

PARTS = ("engine", "overhead", "pool", "api", "realtime", "diarization")


def table(figures: list[dict[str, Any]]) -> str:
    rows = [("figure", "measured", "target", "")]
    for f in figures:
        verdict = "pass" if f["pass"] else "FAIL"
        rows.append((f["title"], f"{f['value']:g} {f['unit']}", f["target"], verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def engine_table(choice: dict[str, Any]) -> str:
    lines = [f"batched vs sequential, {choice['audio_s']} s of speech, {choice['threads']} threads"]
    for spec, m in choice["models"].items():
        runs = ", ".join(
            f"batch {b}: {r['seconds']} s (RTF {r['rtf']}, WER {r['wer']:.3f})"
            for b, r in m["runs"].items()
        )
        lines.append(
            f"  {spec}: {runs}; rule picks {m['rule_picks']}, default is {m['configured_default']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (a few minutes)")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated: {PARTS}")
    parser.add_argument("--repeat", type=int, default=1, help="long-file runs for figure 1")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args(argv)
    only = {p.strip() for p in args.only.split(",") if p.strip()}
    if only - set(PARTS):
        parser.error(f"--only takes {', '.join(PARTS)}")
    base = QUICK if args.quick else FULL
    cfg = type(base)(**{**base.__dict__, "repeat": max(1, args.repeat)})
    started = time.monotonic()
    results: dict[str, Any] = {
        "command": command(),
        "mode": cfg.mode,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": cfg.__dict__,
        "figures": [],
    }
    print(
        f"bench ({cfg.mode}) on {results['machine']['cpu']}, "
        f"{results['machine']['cores']} cores; load {results['machine']['load_average_at_start']}",
        flush=True,
    )
    folder = Path(tempfile.mkdtemp(prefix="stt-bench-"))
    figures: list[dict[str, Any]] = results["figures"]
    try:
        with postgres_database() as db, redis_database() as redis_url:
            services = Services(folder / "data", db, redis_url)
            services.data_dir.mkdir(parents=True)
            long_path, reference, seconds = build_audio(folder, cfg.long_s, "long.wav")
            results["audio"] = {"long_s": round(seconds, 1), "built_from": "../shared/corpus"}
            ids: list[str] = []
            unchunked: dict[str, Any] | None = None
            if "engine" in only and cfg.engine_audio_s:
                print("batched vs sequential ...", flush=True)
                results["engine_choice"] = engine_choice(
                    folder, services.data_dir / "models", cfg.engine_audio_s
                )
                print(engine_table(results["engine_choice"]), flush=True)
            if "overhead" in only:
                print("figures 1 and 3: engine overhead, short calls ...", flush=True)
                found, unchunked, more = engine_and_short_calls(
                    services, cfg, long_path, reference, seconds
                )
                figures += found
                ids += more
            if "pool" in only:
                print("figure 2: pool scaling ...", flush=True)
                found, more = pool_scaling(
                    services, cfg, long_path, reference, unchunked or {}, seconds
                )
                figures += found if unchunked else found[:1]
                ids += more
            if "api" in only:
                print("figures 4 and 5: API under load, upload memory ...", flush=True)
                figures += api_figures(services, cfg, ids)
            if "realtime" in only:  # its own services: python -m bench.realtime alone
                from bench.realtime import measure

                print("realtime: latency, WER, sessions per worker ...", flush=True)
                models = ("tiny.en",) if args.quick else ("tiny.en", "base")
                results["realtime"] = [measure(m, 3, 4, 3.0) for m in models]
            if "diarization" in only:
                print("diarization: DER, speaker count, cost ...", flush=True)
                from bench import diarization  # imports the worker's engine only when asked

                results["diarization"] = diarization.run(quick=args.quick)
                figures += results["diarization"]["figures"]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    write_json(args.out, results)
    print()
    print(table(figures))
    print(f"\n{len(figures)} figures in {results['elapsed_s']:.0f} s; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
