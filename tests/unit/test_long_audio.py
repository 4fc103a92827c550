"""Reading one window of a file, and planning a three-hour file, in bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from core.audio import SAMPLE_RATE, RawFormat, _seeked_frames, decode, read_window
from tests.longaudio import write_flac
from tests.support import ROOT, clip

SR = SAMPLE_RATE
FORMATS = [
    "en_librispeech_2412-153948-0000.flac",  # 16 kHz flac
    "en_jfk_inaugural.flac",  # 44.1 kHz stereo flac
    "en_librivox_shakespeare_sonnet001.mp3",
    "en_fleurs_000.ogg",
    "es_mls_13697_11991_000000.opus",
    "fr_readalongs_ej-fra.m4a",
    "en_spontaneous_acoustic_corpus.wav",
]


@pytest.mark.parametrize("name", FORMATS)
def test_a_window_is_the_same_samples_as_the_whole_decode(corpus: Path, name: str) -> None:
    path = clip(name).path
    whole = decode(path)
    seconds = len(whole) / SR
    for start in (seconds * 0.1, seconds * 0.55):
        end = min(start + 3.0, seconds)
        window = read_window(path, start, end)
        first = round(start * SR)
        expected = whole[first : first + len(window)]
        assert len(window) == round(end * SR) - first
        # Same timeline: no shift matches better than none. Resampled sources differ by less
        # than a sample (the resampler's phase where decoding began), so not bit for bit.
        shifts = {
            lag: np.corrcoef(window[2:-2], whole[first + 2 + lag : first + len(window) - 2 + lag])[
                0, 1
            ]
            for lag in (-2, -1, 0, 1, 2)
        }
        assert max(shifts, key=lambda lag: shifts[lag]) == 0, (name, start, shifts)
        assert shifts[0] > 0.95, (name, start, shifts)
        if "librispeech" in name or "spontaneous" in name:  # 16 kHz: no resampling at all
            assert np.array_equal(window, expected)


def test_a_window_past_the_end_is_cut_short(corpus: Path) -> None:
    path = clip("en_jfk_inaugural.flac").path
    assert len(read_window(path, 10.0, 20.0)) == round(1.0 * SR)
    assert len(read_window(path, 12.0, 20.0)) == 0


def test_a_window_of_raw_pcm(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    samples = (rng.normal(0, 0.2, 20 * SR) * 32767).astype("<i2")
    path = tmp_path / "raw.pcm"
    path.write_bytes(samples.tobytes())
    fmt = RawFormat("pcm_s16le", SR)
    whole = decode(path, fmt)
    window = read_window(path, 7.25, 9.5, fmt)
    assert np.array_equal(window, whole[round(7.25 * SR) : round(9.5 * SR)])
    # Another rate: resampled, on the same timeline.
    fmt8 = RawFormat("pcm_s16le", 8000)
    whole8 = decode(path, fmt8)
    window8 = read_window(path, 12.0, 15.0, fmt8)
    assert np.corrcoef(window8, whole8[12 * SR : 15 * SR])[0, 1] > 0.99


CLIPS = [
    (1000.0, "en_jfk_inaugural.flac"),
    (5000.0, "en_librivox_shakespeare_sonnet001.mp3"),
    (10700.0, "en_fleurs_000.ogg"),
]


@pytest.fixture(scope="module")
def three_hours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three hours of 16 kHz FLAC: silence with three corpus clips in it (2 MB, 3 s to make)."""
    inserts = [(at, decode(clip(name).path)) for at, name in CLIPS]
    return write_flac(tmp_path_factory.mktemp("long") / "3h.flac", 3 * 3600.0, inserts)


MEASURE = """
import json, sys
from pathlib import Path
import numpy as np
from core.audio import iter_decoded, probe_duration, read_window
from worker.chunk_plan import plan_chunks, silero_speech

def kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)

def peak_growth(work):
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # resets VmHWM (the peak RSS) to the present RSS
    before = kb("VmRSS")
    value = work()
    return value, (kb("VmHWM") - before) / 1024

path = Path(sys.argv[1])
silero_speech(np.zeros(16000, np.float32))  # the VAD model is loaded before measuring
plan, plan_mb = peak_growth(lambda: plan_chunks(iter_decoded(path), probe_duration(path), 300))
last = plan.spans[-1]
window, window_mb = peak_growth(lambda: read_window(path, last.start_s, last.end_s))
print(json.dumps({
    "spans": [[s.start_s, s.end_s] for s in plan.spans],
    "duration": plan.duration,
    "forced": plan.forced,
    "plan_mb": plan_mb,
    "window_mb": window_mb,
    "window_samples": len(window),
    "window_clip_at": int(np.flatnonzero(np.abs(window) > 0.01)[0]),
    "clip_at": int(np.flatnonzero(np.abs(read_window(Path(sys.argv[2]), 0, 60)) > 0.01)[0]),
}))
"""


def test_planning_three_hours_and_reading_a_chunk_stay_bounded(three_hours: Path) -> None:
    """In a fresh process: the peak RSS grows by far less than the 691 MB the decoded file
    would take, while planning it whole and while reading its last chunk."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(three_hours), str(clip(CLIPS[-1][1]).path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["duration"] == 3 * 3600.0
    assert len(out["spans"]) == 36 and out["forced"] == 0
    assert out["spans"][0][0] == 0 and out["spans"][-1][1] == 3 * 3600.0
    for (_, end), (start, _) in zip(out["spans"], out["spans"][1:], strict=False):
        assert end == start
    for at, name in CLIPS:  # no cut goes through the speech
        length = clip(name).duration
        assert not any(at - 0.2 < start < at + length + 0.2 for start, _ in out["spans"])
    assert out["plan_mb"] < 100, out
    assert out["window_mb"] < 100, out
    last_start = out["spans"][-1][0]
    assert out["window_samples"] == round((3 * 3600.0 - last_start) * SR)
    # The clip at 10700 s is where it should be in the window (to a few milliseconds).
    expected = (10700.0 - last_start) * SR + out["clip_at"]
    assert abs(out["window_clip_at"] - expected) <= 2


def test_a_late_window_is_reached_by_seeking(three_hours: Path) -> None:
    with av.open(str(three_hours)) as container:
        seeked = _seeked_frames(container, container.streams.audio[0], 10000.0)
        assert seeked is not None, "the FLAC file should be read by seeking, not from its start"
        first, _ = seeked
        assert 10000.0 - 2.0 < first <= 10000.0
    window = read_window(three_hours, 10699.0, 10712.0)
    expected = decode(clip("en_fleurs_000.ogg").path)[: 11 * SR]
    got = window[SR : SR + len(expected)]
    assert np.abs(got - np.clip(expected, -1, 1)).max() < 2 / 32767
