"""The bare faster-whisper library, in a process of its own: the baseline of figures 1 and 3.

Run apart from the bench (its own process and session, as the service's worker is), so that
neither side shares a process, an allocator or a scheduler group with the code that times
it. `python -m bench.bare MODEL_PATH THREADS` loads the model once, then answers one JSON
request per line on stdin (`{"path", "batch", "options"}`) with `{"seconds", "text"}`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def load(path: str, threads: int) -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=threads)


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


class BareLibrary:
    """The library in a subprocess (a session of its own), the model loaded once."""

    def __init__(self, model_path: str, threads: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bare", model_path, str(threads)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        if self._read() != {"ready": True}:
            raise RuntimeError("the bare library did not start")

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the bare library exited ({self.proc.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def transcribe(self, path: Path, batch: int, **options: Any) -> tuple[float, str]:
        """(seconds from request to answer, text); the pipe's cost is a millisecond."""
        assert self.proc.stdin is not None
        started = time.perf_counter()
        request = {"path": str(path), "batch": batch, "options": options}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer = self._read()
        return time.perf_counter() - started, str(answer["text"])

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)

    def __enter__(self) -> BareLibrary:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def main(argv: list[str]) -> int:
    model = load(argv[0], int(argv[1]))
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        seconds, text = bare_transcribe(
            model, request["path"], int(request["batch"]), **request["options"]
        )
        print(json.dumps({"seconds": seconds, "text": text}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
