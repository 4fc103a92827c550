"""Realtime figures: `python -m bench.realtime [--models tiny.en,base] [--clips N]`.

For each model, against a live service (API, one batch worker for the reference, one
streaming worker) on loopback:
- latency from the end of a spoken word (its end in the batch transcript's word
  timestamps) to its first appearance in an interim and to its final, median and p95 over
  corpus clips streamed at real time;
- the final text's WER against the batch transcript of the same clip;
- how many sessions streamed at once one worker keeps up with (every session's last final
  within `--slack` seconds of its audio's end);
- the streaming worker's CPU seconds per second of audio.
The machine's load average is recorded beside the figures: it is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import (
    KEY,
    Services,
    machine,
    median,
    percentile,
    postgres_database,
    redis_database,
    transcribe_sync,
    write_json,
)
from bench.realtime_client import Received, stream, ws_url
from bench.support import ROOT, clips, error_rate, normalise
from core.audio import SAMPLE_RATE, decode

RESULTS = ROOT / "bench" / "realtime.json"


def _clips(count: int) -> list[str]:
    english = [c for c in clips().values() if c.language == "en" and 5 <= c.duration <= 15]
    return [c.file for c in english[:count]]


def _word_latencies(
    batch_words: list[dict[str, Any]], got: Received
) -> tuple[list[float], list[float]]:
    """For each batch word i: when the stream first showed i+1 words (interim or final,
    counting the finals before) and when the finals did, minus the word's end."""
    first: list[float] = []
    final: list[float] = []
    finals_words = 0
    seen: list[tuple[float, int, bool]] = []
    for t, e in zip(got.times, got.events, strict=True):
        if e.get("type") != "transcript":
            continue
        n = len(normalise(str(e["text"])).split())
        seen.append((t, finals_words + n, bool(e["is_final"])))
        if e["is_final"]:
            finals_words += n
    for i, w in enumerate(batch_words):
        end = float(w["end"])
        shown = next((t for t, n, _ in seen if n > i), None)
        done = next((t for t, n, is_final in seen if is_final and n > i), None)
        if shown is not None:
            first.append(shown - end)
        if done is not None:
            final.append(done - end)
    return first, final


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _streaming_pid(svc_log: str) -> int | None:
    match = re.search(r"streaming worker \S+:(\d+) is taking sessions", svc_log)
    return int(match.group(1)) if match else None


def measure(model: str, clip_count: int, max_sessions: int, slack: float) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        postgres_database() as pg,
        redis_database() as redis_url,
    ):
        services = Services(Path(tmp), pg, redis_url)
        extra = {
            "STT_DEFAULT_MODEL": f"bundled:{model}",
            "STT_RT_EMBEDDED_WORKERS": "1",
            "STT_RT_WORKER_SESSIONS": str(max_sessions),
            "STT_RT_SESSIONS_PER_KEY": str(max_sessions + 1),
        }
        with services.run(1, **extra) as svc:
            deadline = time.monotonic() + 120
            while "is taking sessions" not in svc.log() and time.monotonic() < deadline:
                time.sleep(0.2)
            pid = _streaming_pid(svc.log())
            url = ws_url(
                svc.url, model="ink-whisper", encoding="pcm_s16le", sample_rate=SAMPLE_RATE
            )
            auth = {"Authorization": f"Bearer {KEY}"}
            first_all: list[float] = []
            final_all: list[float] = []
            wers: list[float] = []
            audio_s = cpu_s = 0.0
            for name in _clips(clip_count):
                path = clips()[name].path
                _, batch = transcribe_sync(svc, path, **{"timestamp_granularities[]": "word"})
                audio = decode(path)
                before = _cpu_s(pid) if pid else 0.0
                got = asyncio.run(stream(url, audio, headers=auth))
                cpu_s += (_cpu_s(pid) if pid else 0.0) - before
                audio_s += len(audio) / SAMPLE_RATE
                first, final = _word_latencies(batch.get("words") or [], got)
                first_all += first
                final_all += final
                wers.append(error_rate(str(batch["text"]), got.final_text, "en"))
            capacity = 0
            for n in range(1, max_sessions + 1):
                if not _sustains(url, auth, n, slack):
                    break
                capacity = n
    return {
        "model": model,
        "clips": clip_count,
        "first_interim_latency_s": {
            "median": round(median(first_all), 2) if first_all else None,
            "p95": round(percentile(first_all, 95), 2),
        },
        "final_latency_s": {
            "median": round(median(final_all), 2) if final_all else None,
            "p95": round(percentile(final_all, 95), 2),
        },
        "final_wer_vs_batch": round(sum(wers) / len(wers), 4) if wers else None,
        "sessions_sustained": capacity,
        "cpu_s_per_audio_s": round(cpu_s / audio_s, 3) if audio_s else None,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _sustains(url: str, auth: dict[str, str], sessions: int, slack: float) -> bool:
    """`sessions` streams of one clip at once, at real time: all finished within `slack`."""
    name = _clips(1)[0]
    audio = decode(clips()[name].path)
    end = len(audio) / SAMPLE_RATE

    async def all_at_once() -> list[Received]:
        return list(
            await asyncio.gather(*(stream(url, audio, headers=auth) for _ in range(sessions)))
        )

    results = asyncio.run(all_at_once())
    for got in results:
        finals = [t for t, e in zip(got.times, got.events, strict=True) if e.get("is_final")]
        if not finals or finals[-1] - end > slack or got.of_type("error"):
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.realtime", description=__doc__)
    parser.add_argument("--models", default="tiny.en,base")
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--max-sessions", type=int, default=4)
    parser.add_argument("--slack", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    figures = [
        measure(m, args.clips, args.max_sessions, args.slack) for m in args.models.split(",")
    ]
    result = {
        "machine": machine(),
        "command": " ".join(["python", "-m", "bench.realtime", *(argv or sys.argv[1:])]),
        "figures": figures,
    }
    write_json(args.out, result)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
