"""Diarization figures: DER and speaker count on stitched conversations, and its cost.

`python -m bench.diarization [--quick] [--out PATH]` prints a table and writes JSON. The
figures: diarization error rate (pyannote.metrics, with the customary 0.25 s collar and also
without), whether the number of speakers found is exact, on conversations stitched from real
corpus voices (tests/conversations.py) and on the corpus' real multi-speaker clips; and the time
diarization adds per audio minute, as a ratio to transcribing the same audio alone
(faster-whisper base, int8 on CPU, the same threads).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate

from bench.conversations import Conversation, stitch
from bench.support import ROOT, corpus_dir
from core.audio import decode
from worker.diarize.engine import BundledDiarizer
from worker.diarize.types import Hints, Turn
from worker.diarize.windows import speech_spans

THREADS = 2
TARGET_DER = 0.10
TARGET_OVERHEAD = 0.25


@dataclass(frozen=True)
class Case:
    name: str
    voices: list[str]
    turns_each: int
    seed: int


FULL = [
    Case("2 voices", ["ljspeech", "sense"], 6, 1),
    Case("3 voices", ["ljspeech", "sense", "ls1995"], 4, 2),
    Case("4 voices", ["ljspeech", "sense", "ls2412", "ls61"], 3, 3),
    Case("5 voices", ["ljspeech", "sense", "ls1995", "ls2412", "ls1272"], 2, 4),
]
QUICK = FULL[1:2]
NOISY = [Case("4 voices, one a 1961 broadcast (JFK)", ["ljspeech", "sense", "ls2412", "jfk"], 3, 3)]
"""Reported, not in the clean-speech mean: JFK's crowd-noise pauses count as speech there."""


def annotation(turns: list[tuple[float, float, str]]) -> Annotation:
    ann = Annotation()
    for start, end, label in turns:
        ann[Segment(start, end)] = label
    return ann


def der(
    reference: list[tuple[float, float, str]],
    hypothesis: list[Turn],
    collar: float,
    duration: float,
) -> dict[str, float]:
    """DER and its parts (pyannote.metrics), over the whole recording."""
    metric = DiarizationErrorRate(collar=collar, skip_overlap=False)
    hyp = annotation([(t.start, t.end, t.speaker) for t in hypothesis])
    uem = Timeline([Segment(0.0, duration)])
    parts = metric(annotation(reference), hyp, uem=uem, detailed=True)
    total = parts["total"] or 1.0
    return {
        "der": round(float(parts["diarization error rate"]), 4),
        "missed": round(parts["missed detection"] / total, 4),
        "false_alarm": round(parts["false alarm"] / total, 4),
        "confusion": round(parts["confusion"] / total, 4),
    }


def diarize_case(diarizer: BundledDiarizer, conv: Conversation, hints: Hints) -> dict[str, Any]:
    started = time.perf_counter()
    speech = speech_spans(conv.audio)
    turns = diarizer.diarize(conv.audio, speech, hints)
    seconds = time.perf_counter() - started
    found = len({t.speaker for t in turns})
    return {
        "audio_s": round(conv.duration, 2),
        "speakers_true": len(conv.voices),
        "speakers_found": found,
        "count_exact": found == len(conv.voices),
        "collar_0.25": der(conv.turns, turns, 0.25, conv.duration),
        "no_collar": der(conv.turns, turns, 0.0, conv.duration),
        "diarize_s": round(seconds, 3),
    }


def transcribe_seconds(audio: Any, threads: int) -> float:
    """faster-whisper base (bundled), int8 on CPU, word timestamps on: transcription alone."""
    from faster_whisper import WhisperModel

    from worker.bundled_models import resolve_model_path

    cache = Path(os.environ.get("STT_DATA_DIR") or ROOT / "data") / "models"
    path = resolve_model_path("bundled:base", cache)
    model = WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=threads)
    started = time.perf_counter()
    segments, _ = model.transcribe(audio, language="en", word_timestamps=True, beam_size=5)
    list(segments)
    return time.perf_counter() - started


def overhead(conv: Conversation, diarizer: BundledDiarizer, threads: int) -> dict[str, Any]:
    """Time diarization adds, as a share of transcribing the same audio (best of two runs)."""
    diarizer.diarize(conv.audio, speech_spans(conv.audio), Hints())  # warm (load, first run)
    diar = []
    for _ in range(2):
        started = time.perf_counter()
        diarizer.diarize(conv.audio, speech_spans(conv.audio), Hints())
        diar.append(time.perf_counter() - started)
    trans = [transcribe_seconds(conv.audio, threads) for _ in range(2)]
    minutes = conv.duration / 60
    return {
        "audio_s": round(conv.duration, 2),
        "threads": threads,
        "diarize_s_per_audio_min": round(min(diar) / minutes, 3),
        "transcribe_s_per_audio_min": round(min(trans) / minutes, 3),
        "ratio": round(min(diar) / min(trans), 4),
    }


REAL_CLIPS = {
    # Picovoice/leopard resources/.test/test_data.json diarization_tests: words tagged 1, 2, 3.
    "en_multispeaker_diarization_test.wav": 3,
    # lhotse's AMI fixture: headset 0's own supervisions, the wearer introducing herself.
    "en_ami_ES2011a_headset0_40-46s.wav": 1,
}


def real_clips(diarizer: BundledDiarizer) -> dict[str, Any]:
    """The corpus' real multi-speaker clips: speakers found against the count their source gives
    (neither ships turn times, so no DER)."""
    out: dict[str, Any] = {}
    for name, expected in REAL_CLIPS.items():
        path = corpus_dir() / name
        if not path.exists():
            continue
        audio = decode(path)
        turns = diarizer.diarize(audio, speech_spans(audio), Hints())
        out[name] = {
            "audio_s": round(len(audio) / 16000, 2),
            "speakers_true": expected,
            "speakers_found": len({t.speaker for t in turns}),
            "turns": [[round(t.start, 2), round(t.end, 2), t.speaker] for t in turns],
        }
    return out


def run(quick: bool = False, threads: int = THREADS) -> dict[str, Any]:
    """Every diarization figure, as one JSON-ready dict."""
    diarizer = BundledDiarizer(threads=threads)
    cases = QUICK if quick else FULL
    stitched = {
        c.name: diarize_case(diarizer, stitch(c.voices, c.turns_each, c.seed), Hints())
        for c in cases
    }
    ders = [r["collar_0.25"]["der"] for r in stitched.values()]
    noisy = {
        c.name: diarize_case(diarizer, stitch(c.voices, c.turns_each, c.seed), Hints())
        for c in ([] if quick else NOISY)
    }
    cost_conv = stitch(FULL[1].voices, 4 if quick else 8, seed=7)
    cost = overhead(cost_conv, diarizer, threads)
    mean_der = sum(ders) / len(ders)
    exact = sum(r["count_exact"] for r in stitched.values())
    real = real_clips(diarizer)
    real_exact = sum(r["speakers_found"] == r["speakers_true"] for r in real.values())
    return {
        "stitched": stitched,
        "stitched_noisy": noisy,
        "real_clips": real,
        "cost": cost,
        "figures": [
            {
                "title": "diarization DER, stitched clean speech (0.25 s collar, mean)",
                "value": round(mean_der * 100, 2),
                "unit": "%",
                "target": f"< {TARGET_DER * 100:g} %",
                "pass": mean_der < TARGET_DER,
            },
            {
                "title": "diarization speaker count exact",
                "value": exact,
                "unit": f"of {len(stitched)}",
                "target": "all",
                "pass": exact == len(stitched),
            },
            {
                "title": "diarization speaker count exact, real corpus clips",
                "value": real_exact,
                "unit": f"of {len(real)}",
                "target": "all",
                "pass": real_exact == len(real),
            },
            {
                "title": "diarization time / transcription time",
                "value": round(cost["ratio"] * 100, 1),
                "unit": "%",
                "target": f"< {TARGET_OVERHEAD * 100:g} %",
                "pass": cost["ratio"] < TARGET_OVERHEAD,
            },
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.diarization", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one conversation, shorter cost run")
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "diarization.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    results = run(args.quick, args.threads)
    for f in results["figures"]:
        verdict = "pass" if f["pass"] else "FAIL"
        print(f"{f['title']}: {f['value']:g} {f['unit']} (target {f['target']}) {verdict}")
    for name, r in {**results["stitched"], **results["stitched_noisy"]}.items():
        print(
            f"  {name}: {r['audio_s']} s, speakers {r['speakers_found']}/{r['speakers_true']}, "
            f"DER {r['collar_0.25']['der']:.3f} (no collar {r['no_collar']['der']:.3f})"
        )
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
