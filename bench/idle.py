"""`python -m bench.idle [--seconds N] [--poll S ...]`: the CPU an idle embedded-default
worker burns (the filesystem broker's polling), per polling interval, measured side by side.

Each worker gets its own data directory (SQLite, filesystem broker); after it says it is
ready, its whole process tree's CPU time is read over the same `seconds`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants still alive."""
    total = 0.0
    pending = [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pending.extend(int(c) for c in children)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def idle_worker_cpu(polls: list[float], seconds: float) -> dict[str, float]:
    """CPU cores (fraction) each idle worker used, by broker polling interval."""
    with tempfile.TemporaryDirectory(prefix="stt-idle-") as tmp:
        procs: dict[float, tuple[subprocess.Popen[bytes], Path]] = {}
        try:
            for poll in polls:
                data = Path(tmp, f"poll-{poll:g}")
                data.mkdir()
                log = data / "worker.log"
                env = {
                    **{k: v for k, v in os.environ.items() if not k.startswith("STT_")},
                    "STT_DATA_DIR": str(data),
                    "STT_BROKER_POLL_S": str(poll),
                    "STT_LOG_LEVEL": "INFO",
                }
                env.pop("DATABASE_URL", None)
                env.pop("REDIS_URL", None)
                with log.open("wb") as out:
                    procs[poll] = (
                        subprocess.Popen(
                            [sys.executable, "-m", "worker"],
                            cwd=data,
                            env=env,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        ),
                        log,
                    )
            deadline = time.monotonic() + 180
            while not all(" ready." in log.read_text() for _, log in procs.values()):
                if time.monotonic() > deadline:
                    raise RuntimeError("the idle workers did not become ready")
                time.sleep(0.2)
            time.sleep(2.0)  # let start-up work (the reconciler's first sweep) settle
            before = {poll: tree_cpu_seconds(p.pid) for poll, (p, _) in procs.items()}
            time.sleep(seconds)
            return {
                f"{poll:g}": round((tree_cpu_seconds(p.pid) - before[poll]) / seconds, 4)
                for poll, (p, _) in procs.items()
            }
        finally:
            for proc, _ in procs.values():
                proc.terminate()
            for proc, _ in procs.values():
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--poll", type=float, action="append", default=None)
    args = parser.parse_args(argv)
    polls = args.poll or [1.0, 0.05]
    load = os.getloadavg()[0]
    cores = idle_worker_cpu(polls, args.seconds)
    print(json.dumps({"idle_cpu_cores_by_poll_s": cores, "seconds": args.seconds, "load": load}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
