"""The two realtime backends, paired: `python -m bench.realtime_backends [--pairs 4]`.

A client sends a clip (twice JFK's inaugural line, 22 s) as fast as the socket takes it,
so the server's backpressure paces it; the figure is the seconds from the first frame to
`done`, on the local streaming worker (no Redis, the embedded default) and on the Redis
pool (one streaming worker), in interleaved pairs with the order alternating, as the median
of the paired ratios (the machine is shared: the load average is recorded beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import KEY, machine, median, postgres_database, redis_database, write_json
from bench.realtime_client import stream, ws_url
from bench.support import ROOT, LiveService, clip, error_rate, start_service, stop_service_proc
from core.audio import SAMPLE_RATE, decode

RESULTS = ROOT / "bench" / "realtime_backends.json"
CLIP = "en_jfk_inaugural.flac"
ENV = {
    "STT_DEFAULT_MODEL": "bundled:tiny.en",
    "STT_API_KEY": KEY,
    "STT_RATE_LIMIT_PER_MINUTE": "0",
    "STT_RT_EMBEDDED_WORKERS": "1",
    "STT_RT_MAX_BUFFER_S": "4",
}


def _wait_streaming(svc: LiveService, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while "is taking sessions" not in svc.log():
        if time.monotonic() > deadline or svc.proc.poll() is not None:
            raise RuntimeError(f"no streaming worker:\n{svc.log()[-3000:]}")
        time.sleep(0.2)


def _fast_session(
    svc: LiveService, audio: np.ndarray[Any, Any], reference: str
) -> dict[str, float]:
    url = ws_url(svc.url, model="ink-whisper", encoding="pcm_s16le", sample_rate=SAMPLE_RATE)
    started = time.monotonic()
    got = asyncio.run(stream(url, audio, headers=svc.headers(KEY), speed=1000.0))
    if got.of_type("error") or not got.of_type("done"):
        raise RuntimeError(f"the session failed: {got.events[-3:]}")
    return {
        "seconds": time.monotonic() - started,
        "wer": error_rate(reference, got.final_text, "en"),
    }


def measure(pairs: int) -> dict[str, Any]:
    audio = np.concatenate([decode(clip(CLIP).path)] * 2)
    reference = f"{clip(CLIP).reference} {clip(CLIP).reference}"
    with (
        tempfile.TemporaryDirectory() as tmp,
        postgres_database() as pg,
        redis_database() as redis_url,
    ):
        local = start_service(Path(tmp) / "local", ENV, workers=0)
        pool = start_service(
            Path(tmp) / "redis", {**ENV, "DATABASE_URL": pg, "REDIS_URL": redis_url}, workers=0
        )
        try:
            for svc in (local, pool):
                _wait_streaming(svc)
                _fast_session(svc, audio, reference)  # warm: the model's first decode
            rows: list[dict[str, Any]] = []
            for i in range(pairs):
                order = [("local", local), ("redis", pool)]
                row: dict[str, Any] = {
                    name: _fast_session(svc, audio, reference)
                    for name, svc in order[:: 1 - 2 * (i % 2)]
                }
                row["load_1m"] = round(os.getloadavg()[0], 2)
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            stop_service_proc(local.proc)
            stop_service_proc(pool.proc)
    return {
        "audio_s": round(len(audio) / SAMPLE_RATE, 1),
        "local_s_median": round(median([r["local"]["seconds"] for r in rows]), 2),
        "redis_s_median": round(median([r["redis"]["seconds"] for r in rows]), 2),
        "local_over_redis_median_ratio": round(
            median([r["local"]["seconds"] / r["redis"]["seconds"] for r in rows]), 3
        ),
        "wer_max": round(max(max(r["local"]["wer"], r["redis"]["wer"]) for r in rows), 4),
        "pairs": rows,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.realtime_backends", description=__doc__)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    figures = measure(args.pairs)
    result = {
        "machine": machine(),
        "command": " ".join(["python", "-m", "bench.realtime_backends", *(argv or sys.argv[1:])]),
        "figures": figures,
    }
    write_json(args.out, result)
    print(json.dumps({k: v for k, v in figures.items() if k != "pairs"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
