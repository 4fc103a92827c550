"""`python -m bench --peer-url`'s code path against our own live service on loopback as the
"peer": paired, interleaved calls on the OpenAI-compatible path, figures in the bench's shape."""

from __future__ import annotations

import pytest

from bench import peer
from bench.suite import peer_figures
from tests.support import LiveService, clip

pytestmark = pytest.mark.e2e

CLIP = "en_librispeech_2830-3980-0043.wav"


def test_a_peer_is_timed_beside_us_paired_and_interleaved(service: LiveService) -> None:
    c = clip(CLIP)
    ours = peer.Server(f"{service.url}/v1", service.key, "whisper-1")
    theirs = peer.Server(f"{service.url}/v1", service.key, "whisper-1")
    timing, details = peer.compare(ours, theirs, c.path, 2, c.reference)
    assert timing.order == ["baseline", "measured", "measured", "baseline"]
    assert len(timing.ratios) == 2 and all(r > 0 for r in timing.ratios)
    assert details["pairs"] == 2 and details["ratio_of"] == "ours / peer"
    assert details["ours_wer"] <= 0.2 and details["peer_wer"] == details["ours_wer"]

    figures = peer_figures(ours, theirs, c.path, (c.path, c.reference, c.duration), 1)
    assert [f["name"] for f in figures] == ["peer_short", "peer_long"]
    assert all(f["details"]["pairs"] == 1 and f["value"] > 0 for f in figures)
    assert figures[1]["details"]["peer_wer"] <= 0.2


def test_a_peer_that_refuses_is_reported(service: LiveService) -> None:
    wrong = peer.Server(f"{service.url}/v1", "sk-stt-not-a-key", "whisper-1")
    with pytest.raises(RuntimeError, match="401"):
        wrong.transcribe(clip(CLIP).path)
