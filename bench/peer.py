"""Another OpenAI-compatible server beside ours: `python -m bench --peer-url URL [--peer-key
K] [--peer-model M]` times the short call and the long file on both, paired and interleaved
(`POST {URL}/audio/transcriptions`, multipart, a `model` field), ours through the same path
of our own API, and scores both transcripts."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.pairs import Paired, paired
from bench.support import error_rate


@dataclass(frozen=True)
class Server:
    """An OpenAI-compatible base URL (ending where `/audio/transcriptions` is appended)."""

    url: str
    key: str | None
    model: str

    def transcribe(self, path: Path, timeout: float = 3600.0) -> tuple[float, str]:
        """POST the file and wait for its text: (seconds from upload to answer, text)."""
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        with path.open("rb") as handle:
            started = time.perf_counter()
            r = httpx.post(
                f"{self.url.rstrip('/')}/audio/transcriptions",
                headers=headers,
                files={"file": (path.name, handle)},
                data={"model": self.model, "response_format": "json"},
                timeout=timeout,
            )
            elapsed = time.perf_counter() - started
        if r.status_code != 200:
            raise RuntimeError(f"{self.url}: {r.status_code} {r.text[:300]}")
        return elapsed, str(r.json().get("text", ""))


def compare(
    ours: Server, peer: Server, path: Path, pairs: int, reference: str | None = None
) -> tuple[Paired, dict[str, Any]]:
    """Both servers on one file, `pairs` interleaved pairs (the peer is the baseline): the
    pairs and the details (ratio ours/peer, each side's last text's WER when `reference`)."""
    texts: dict[str, str] = {}

    def run(name: str, server: Server) -> float:
        elapsed, texts[name] = server.transcribe(path)
        return elapsed

    timing = paired(lambda: run("peer", peer), lambda: run("ours", ours), pairs)
    details: dict[str, Any] = {
        "file": path.name,
        "peer_url": peer.url,
        "peer_model": peer.model,
        **timing.summary("peer", "ours"),
    }
    if reference is not None:
        for name, text in texts.items():
            details[f"{name}_wer"] = round(error_rate(reference, text, "en"), 4)
    return timing, details
