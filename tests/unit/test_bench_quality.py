"""`make bench`'s quality figure: it fails when any language scores worse than the bare
library, and a quick run takes a clip of each language."""

from __future__ import annotations

from typing import Any

from bench.quality import _chosen, figure_of
from bench.support import clips


def _result(service: float, bare: float, worse: list[str]) -> dict[str, Any]:
    return {
        "all": {"clips": 2, "service": service, "bare": bare},
        "languages": {},
        "languages_worse": worse,
        "load_average_after": [0.0, 0.0, 0.0],
    }


def test_the_figure_fails_when_a_language_is_worse() -> None:
    assert figure_of(_result(0.1, 0.1, []))["pass"] is True
    failing = figure_of(_result(0.1, 0.09, ["en"]))
    assert failing["pass"] is False and failing["value"] == 1
    assert "2 clips" in failing["title"]


def test_a_quick_run_takes_one_clip_per_language() -> None:
    languages = {clip.language for clip in clips().values()}
    quick = _chosen(1)
    assert sorted(clip.language for _, clip in quick) == sorted(languages)
    assert len(_chosen(None)) == len(clips())
