"""`python -m bench.quality [--out PATH]`: the quality figure — per language, the mean error
of the service's transcription path against the bare library's on every corpus clip, with
the language given, scored as the corpus baseline file is (WER; CER for zh and ja).

"Service" is what a worker runs: the service's decoder (`core.audio.decode`) and
`worker.engine.transcribe` with the default options and hallucination guard; "bare" is
faster-whisper's `WhisperModel.transcribe` on the file with the same model, threads and
decode options. The HTTP layer does not touch the text, so it is left out.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict
from pathlib import Path
from statistics import mean
from typing import Any

from bench.support import ROOT, Clip, clips, error_rate
from core.audio import decode
from core.settings import usable_cores

WORSE_BY = 0.05
"""A clip counts as worse when the service's error exceeds the bare library's by this much."""


def quality(cache_dir: Path, per_language: int | None = None) -> dict[str, Any]:
    """Every corpus clip (or the first `per_language` of each language, by name)."""
    from faster_whisper import WhisperModel

    from worker.bundled_models import resolve_model_path
    from worker.engine import EngineConfig, TranscribeOptions, transcribe

    threads = usable_cores()
    model = WhisperModel(
        resolve_model_path("bundled:base", cache_dir),
        device="cpu",
        compute_type="int8",
        cpu_threads=threads,
    )
    config = EngineConfig(device="cpu", compute_type="int8", cpu_threads=threads)
    by_language: dict[str, list[tuple[float, float]]] = defaultdict(list)
    worse: list[dict[str, Any]] = []
    for name, clip in _chosen(per_language):
        segments, _ = model.transcribe(
            str(clip.path),
            language=clip.language,
            beam_size=config.beam_size,
            vad_filter=config.vad_filter,
            temperature=list(TranscribeOptions().temperature),
        )
        bare = error_rate(clip.reference, "".join(s.text for s in segments), clip.language)
        ours = transcribe(
            model, decode(clip.path), TranscribeOptions(language=clip.language), config
        )
        service = error_rate(clip.reference, ours.text, clip.language)
        by_language[clip.language].append((service, bare))
        if service > bare + WORSE_BY:
            worse.append({"clip": name, "service": round(service, 3), "bare": round(bare, 3)})
    languages = {
        lang: {
            "clips": len(pairs),
            "service": round(mean(s for s, _ in pairs), 4),
            "bare": round(mean(b for _, b in pairs), 4),
        }
        for lang, pairs in sorted(by_language.items())
    }
    every = [p for pairs in by_language.values() for p in pairs]
    return {
        "threads": threads,
        "all": {
            "clips": len(every),
            "service": round(mean(s for s, _ in every), 4),
            "bare": round(mean(b for _, b in every), 4),
        },
        "languages": languages,
        "languages_worse": sorted(
            lang for lang, v in languages.items() if v["service"] > v["bare"] + 1e-9
        ),
        "clips_worse_by_5_points": worse,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def _chosen(per_language: int | None) -> list[tuple[str, Clip]]:
    taken: dict[str, int] = defaultdict(int)
    out = []
    for name, clip in sorted(clips().items()):
        if per_language is None or taken[clip.language] < per_language:
            taken[clip.language] += 1
            out.append((name, clip))
    return out


def figure_of(result: dict[str, Any]) -> dict[str, Any]:
    """`make bench`'s quality figure: how many languages the service scores worse in."""
    worse = result["languages_worse"]
    every = result["all"]
    return {
        "name": "quality",
        "title": (
            f"7. quality: languages where the service's mean error exceeds the bare library's "
            f"({every['clips']} clips; all: {every['service']:.4f} vs {every['bare']:.4f})"
        ),
        "value": len(worse),
        "unit": "languages",
        "target": "0",
        "pass": not worse,
        "load_average_after": result["load_average_after"],
        "details": result,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__)
    parser.add_argument("--models", type=Path, default=ROOT / "data" / "models")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--per-language", type=int, default=None, help="clips per language")
    args = parser.parse_args(argv)
    result = quality(args.models, args.per_language)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
