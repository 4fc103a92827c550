"""`python -m bench [--quick] [--only NAMES] [--pairs N] [--peer-url URL] [--out PATH]`:
measure, print, write JSON.

Starts its own services on loopback (the embedded default in data directories of its own,
and a Postgres database and a Redis database number of its own), runs the figures one after
another, stops what it started and drops the database. Every service-against-baseline
figure is the median of paired, interleaved ratios (the order alternating); the load
average is recorded with each figure. `--only engine` also stores the batching choice for
this machine where the worker reads it (`--batching-file`, default
`$STT_DATA_DIR/batching.json`). `--peer-url` puts another OpenAI-compatible server beside
ours (the short call and the long file).
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
from bench.peer import Server
from bench.suite import (
    FULL,
    QUICK,
    api_figures,
    engine_and_short_calls,
    engine_choice,
    pool_scaling,
    run_peer,
    short_call_only,
)
from bench.support import ROOT
from core.settings import load_settings
from worker.batching import choices_path

PARTS = (
    "engine",
    "overhead",
    "short",
    "pool",
    "api",
    "peer",
    "quality",
    "realtime",
    "diarization",
)
DEFAULT = ("engine", "overhead", "pool", "api", "quality", "realtime", "diarization")
"""What runs without --only (and "peer" with --peer-url)."""


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
    lines = [
        f"batched vs sequential, {choice['audio_s']} s of speech, {choice['threads']} threads, "
        f"median of {choice['rounds']} interleaved round(s)"
    ]
    for spec, m in choice["models"].items():
        runs = ", ".join(
            f"batch {b}: {r['seconds']} s (RTF {r['rtf']}, WER {r['wer']:.3f})"
            for b, r in m["runs"].items()
        )
        lines.append(f"  {spec}: {runs}; rule picks {m['rule_picks']}")
    lines.append(f"  stored for this machine in {choice['stored_in']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (a few minutes)")
    parser.add_argument("--only", default="", help=f"comma-separated: {PARTS}")
    parser.add_argument(
        "--pairs", type=int, default=0, help="paired runs per ratio (default: 5; 2 with --quick)"
    )
    parser.add_argument("--peer-url", default="", help="an OpenAI-compatible base URL")
    parser.add_argument("--peer-key", default=None, help="the peer's API key (Bearer)")
    parser.add_argument("--peer-model", default="whisper-1", help="the peer's model field")
    parser.add_argument(
        "--batching-file",
        type=Path,
        default=None,
        help="where the engine part stores its choice (default: $STT_DATA_DIR/batching.json; "
        "with --quick, a temporary file)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args(argv)
    named = {p.strip() for p in args.only.split(",") if p.strip()}
    only = named or set(DEFAULT) | ({"peer"} if args.peer_url else set())
    if only - set(PARTS):
        parser.error(f"--only takes {', '.join(PARTS)}")
    if "peer" in only and not args.peer_url:
        parser.error("the peer figures need --peer-url")
    base = QUICK if args.quick else FULL
    cfg = type(base)(**{**base.__dict__, "pairs": args.pairs or base.pairs})
    # What this machine's workers read; a quick run's rough measurement goes elsewhere.
    stored = choices_path(load_settings().storage.data_dir)
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
    results["parts_done"] = []

    def done(part: str) -> None:
        """Each part's figures are written as soon as it ends (a long run stopped midway
        keeps what it measured)."""
        results["parts_done"].append(part)
        write_json(args.out, results)
        if figures:
            print(table(figures), flush=True)

    try:
        with postgres_database() as db, redis_database() as redis_url:
            embedded = Services(folder / "embedded", batching=stored)
            pg = Services(folder / "pg", db, redis_url, batching=stored)
            audio = build_audio(folder, cfg.long_s, "long.wav")
            results["audio"] = {"long_s": round(audio[2], 1), "built_from": "../shared/corpus"}
            unchunked: dict[str, Any] = {}
            if "engine" in only and cfg.engine_audio_s:
                print("batched vs sequential ...", flush=True)
                quick_store = folder / "quick" / stored.name if args.quick else stored
                results["engine_choice"] = engine_choice(
                    folder,
                    embedded.data_dir / "models",
                    cfg.engine_audio_s,
                    args.batching_file or quick_store,
                    cfg.engine_rounds,
                )
                print(engine_table(results["engine_choice"]), flush=True)
                done("engine")
            if "overhead" in only:
                print("figures 1 and 3: long file, short calls (paired) ...", flush=True)
                found, unchunked, _ = engine_and_short_calls(embedded, pg, cfg, audio)
                figures += found
                done("overhead")
            if "short" in only and "overhead" not in only:
                print("figure 3 alone: the short call, embedded default (paired) ...", flush=True)
                figures += short_call_only(embedded, cfg)
                done("short")
            if "pool" in only:
                print("figure 2: pool scaling on the same cores (paired) ...", flush=True)
                found, _ = pool_scaling(embedded, folder, cfg, audio, unchunked)
                figures += found
                done("pool")
            if "api" in only:
                print("figures 4 and 5: poll CPU, API under load, upload memory ...", flush=True)
                figures += api_figures(embedded, pg, folder, cfg, {})
                done("api")
            if "peer" in only:
                print(f"figure 6: beside {args.peer_url} (paired) ...", flush=True)
                theirs = Server(args.peer_url, args.peer_key, args.peer_model)
                figures += run_peer(embedded, cfg, audio, theirs)
                done("peer")
            if "quality" in only:
                from bench import quality  # the worker's engine, in this process

                print("figure 7: quality, service against the bare library ...", flush=True)
                result = quality.quality(embedded.data_dir / "models", 1 if args.quick else None)
                figures.append(quality.figure_of(result))
                done("quality")
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
