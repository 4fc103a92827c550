"""What the bench and the test suite share, kept here so that the bench imports nothing
from tests/ (tests/support.py re-exports these): the corpus and its baseline, the error rate
scored as the baseline file is, and `stt serve` on loopback."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import httpx
import jiwer

ROOT = Path(__file__).resolve().parent.parent
"""The project's root (the bench runs `stt serve` from it)."""


def corpus_dir() -> Path:
    """`../shared/corpus` beside the project, or STT_CORPUS_DIR."""
    return Path(os.environ.get("STT_CORPUS_DIR") or ROOT.parent / "shared" / "corpus")


@dataclass(frozen=True)
class Clip:
    file: str
    language: str
    reference: str
    duration: float
    baseline_error: float
    """faster-whisper base (CPU int8, beam 5) error rate on this clip, from the corpus."""

    @property
    def path(self) -> Path:
        return corpus_dir() / self.file


@cache
def clips() -> dict[str, Clip]:
    base = corpus_dir()
    baseline = {
        row["file"]: float(row["error_rate"])
        for row in map(json.loads, (base / "baseline_faster-whisper-base_cpu_int8.jsonl").open())
    }
    out = {}
    for row in map(json.loads, (base / "manifest.jsonl").open()):
        out[row["file"]] = Clip(
            row["file"],
            row["language"],
            row["reference"],
            float(row["duration_s"]),
            baseline.get(row["file"], 1.0),
        )
    return out


def clip(name: str) -> Clip:
    return clips()[name]


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[^\w\s']|_", " ", text)
    return " ".join(text.split())


def error_rate(reference: str, hypothesis: str, language: str) -> float:
    """WER, or CER for languages written without spaces (as the corpus baseline does)."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    if language in ("zh", "ja"):
        return float(jiwer.cer(ref.replace(" ", ""), hyp.replace(" ", "")))
    return float(jiwer.wer(ref, hyp))


_handed = itertools.count(1)
"""Where the next search starts: past the last port handed out, which may not be bound yet."""


def free_port() -> int:
    """A free loopback port: within STT_BENCH_PORTS ("LOW-HIGH") when set, else any."""
    low, _, high = os.environ.get("STT_BENCH_PORTS", "0-0").partition("-")
    span = range(int(low), int(high or low) + 1)
    start = next(_handed)
    for at in range(len(span)):
        port = span[(start + at) % len(span)]
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError(f"no free port in STT_BENCH_PORTS={low}-{high}")


@dataclass
class LiveService:
    """`stt serve` running in a subprocess on loopback."""

    url: str
    key: str | None
    proc: subprocess.Popen[str]
    data_dir: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}


def start_service(
    data_dir: Path,
    env: Mapping[str, str],
    workers: int = 1,
    timeout: float = 90.0,
    log_name: str = "service.log",
    python: str = sys.executable,
) -> LiveService:
    """`stt serve` from `python`'s environment (default: this one) on a free loopback port."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / log_name
    full_env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("STT_", "DATABASE_URL", "REDIS_URL"))
        },
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "STT_DATA_DIR": str(data_dir),
        "STT_LOG_LEVEL": "INFO",
        "STT_CPU_THREADS": "2",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    handle = log_path.open("w")
    proc = subprocess.Popen(
        [python, "-m", "api.cli", "serve", "--workers", str(workers)],
        cwd=ROOT,
        env=full_env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        stop_service_proc(proc)
        raise RuntimeError(f"service did not start:\n{log_path.read_text()}")
    key = env.get("STT_API_KEY")
    if key is None:
        first = data_dir / "first-api-key.txt"  # where `stt serve` writes a key it made
        text = first.read_text() if first.exists() else log_path.read_text()
        match = re.search(r"sk-stt-[A-Za-z0-9_-]+", text)
        key = match.group(0) if match else None
    return LiveService(url, key, proc, data_dir, log_path)


def stop_service_proc(proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def long_audio(path: Path, names: list[str], repeat: int = 1) -> tuple[Path, str]:
    """Corpus clips joined into one 16 kHz WAV; returns it and the joined references."""
    import wave

    import numpy as np

    from core.audio import decode

    parts = [(decode(clip(n).path), clip(n).reference) for n in names] * repeat
    gap = np.zeros(8000, dtype=np.float32)  # half a second between clips
    audio = np.concatenate([x for samples, _ in parts for x in (samples, gap)])
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return path, " ".join(ref for _, ref in parts)
