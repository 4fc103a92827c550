"""The hallucination guard (`worker.engine`) and the transcription options a job asks for."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from core.jobspec import JobOptions
from core.transcript import Segment, Transcript
from worker.engine import (
    EngineConfig,
    GuardConfig,
    TranscribeOptions,
    hallucination,
    speech_spans,
    text_compression_ratio,
    transcribe,
    transcribe_options,
)

GUARD = GuardConfig()


def seg(
    start: float = 0.0,
    end: float = 2.0,
    *,
    no_speech: float = 0.01,
    logprob: float = -0.3,
    ratio: float = 1.4,
    text: str = "Hello.",
) -> Segment:
    return Segment(
        id=0,
        start=start,
        end=end,
        text=text,
        avg_logprob=logprob,
        compression_ratio=ratio,
        no_speech_prob=no_speech,
    )


@pytest.mark.parametrize(
    ("segment", "reason"),
    [
        (seg(), None),
        # Whisper's own rule: silence is likely AND the text is improbable.
        (seg(no_speech=0.9, logprob=-1.2), "no speech"),
        (seg(no_speech=0.9, logprob=-0.5), None),  # confident text despite the no-speech prob
        (seg(no_speech=0.5, logprob=-1.5), None),  # improbable, but speech was heard
        (seg(no_speech=0.61, logprob=-1.01), "no speech"),
        (seg(no_speech=0.6, logprob=-1.5), None),  # thresholds are exclusive, as in Whisper
        (seg(text=" Thank you for watching." * 4), "repetitive"),
        (seg(text=" la" * 40), "repetitive"),
        # The window's ratio is not the segment's: really repeated speech is kept.
        (
            seg(ratio=2.48, text=" And so my fellow Americans, ask not what your country can do"),
            None,
        ),
        (seg(text=""), None),
    ],
)
def test_rules(segment: Segment, reason: str | None) -> None:
    assert hallucination(segment, GUARD, None) == reason


def test_repetition_is_measured_as_whisper_does() -> None:
    assert text_compression_ratio("") == 0.0
    assert text_compression_ratio("he was not an ill disposed young man, not at all") < 1.2
    assert text_compression_ratio(" la" * 40) > 8


def test_really_repeated_speech_is_kept() -> None:
    """JFK's sentence played twelve times: faster-whisper reports the window ratio 2.48 for
    every segment, yet each segment is one plain sentence."""
    sentence = " And so my fellow Americans ask not what your country can do for you,"
    assert hallucination(seg(ratio=2.48, text=sentence), GUARD, None) is None


def test_vad_spans() -> None:
    speech = [(1.0, 3.0), (10.0, 12.0)]
    assert hallucination(seg(0.0, 1.5), GUARD, speech) is None
    assert hallucination(seg(2.5, 11.0), GUARD, speech) is None
    assert hallucination(seg(4.0, 9.5), GUARD, speech) == "outside speech"
    assert hallucination(seg(3.0, 10.0), GUARD, speech) == "outside speech"  # touching only
    assert hallucination(seg(4.0, 9.5), GUARD, []) == "outside speech"


def test_segments_past_the_end_of_the_audio() -> None:
    """Whisper looping in the padding of its last window: seen on a LibriVox sonnet, whose
    53.3 s ended in "thy own bud-barriest thy foe, to thy own…" timed 51.9 to 61.9 s."""
    looped = seg(
        51.94,
        61.94,
        no_speech=0.89,
        logprob=-0.44,
        ratio=2.11,
        text=" thine own bud-barriest thy foe, to thy own bud-barriest thy foe,"
        " to thy own bud-barriest thy foe,",
    )
    assert hallucination(looped, GUARD, None) is None  # Whisper's own rules let it through
    assert hallucination(looped, GUARD, None, duration=53.27) == "past the end"
    assert hallucination(seg(50.0, 54.2), GUARD, None, duration=53.27) is None  # within 1 s


def test_disabled_guard_keeps_everything() -> None:
    off = GuardConfig(enabled=False)
    assert hallucination(seg(no_speech=0.99, logprob=-3, text=" la" * 40), off, []) is None


def test_thresholds_are_settings() -> None:
    strict = GuardConfig(no_speech_threshold=0.2, logprob_threshold=-0.2)
    assert hallucination(seg(no_speech=0.3, logprob=-0.3), strict, None) == "no speech"


def test_speech_spans_of_silence_is_empty() -> None:
    assert speech_spans(np.zeros(16000 * 3, dtype=np.float32)) == []


# --- the engine loop, with a stand-in for the model -------------------------------------


@dataclass
class FakeSegment:
    start: float
    end: float
    text: str
    avg_logprob: float = -0.2
    compression_ratio: float = 1.3
    no_speech_prob: float = 0.01
    temperature: float = 0.0
    tokens: list[int] = field(default_factory=lambda: [1, 2])
    words: list[Any] | None = None


@dataclass
class FakeInfo:
    language: str = "en"
    language_probability: float = 0.99


class FakeModel:
    def __init__(self, segments: list[FakeSegment]) -> None:
        self.segments = segments
        self.kwargs: dict[str, Any] = {}

    def transcribe(self, audio: Any, **kwargs: Any) -> tuple[Any, FakeInfo]:
        self.kwargs = kwargs
        return iter(self.segments), FakeInfo()


def run(segments: list[FakeSegment], config: EngineConfig | None = None) -> tuple[Transcript, Any]:
    model = FakeModel(segments)
    progress: list[tuple[float, str]] = []
    audio = np.zeros(16000 * 10, dtype=np.float32)
    t = transcribe(
        model,  # type: ignore[arg-type]
        audio,
        TranscribeOptions(),
        config or EngineConfig(),
        on_progress=lambda done, text: progress.append((done, text)),
    )
    return t, (model, progress)


def test_invented_segments_are_dropped_and_counted() -> None:
    t, (model, progress) = run(
        [
            FakeSegment(0.0, 2.0, " Hello there."),
            FakeSegment(2.0, 4.0, " Thank you.", no_speech_prob=0.95, avg_logprob=-1.3),
            FakeSegment(4.0, 6.0, " la" * 30, compression_ratio=3.1),
            FakeSegment(6.0, 8.0, " Goodbye."),
            FakeSegment(8.0, 14.0, " Thanks for watching!"),  # the audio lasts 10 s
        ]
    )
    assert t.text == "Hello there. Goodbye."
    assert [s.text for s in t.segments] == ["Hello there.", "Goodbye."]
    assert [s.id for s in t.segments] == [0, 1]  # numbered as OpenAI numbers them
    assert t.dropped_segments == 3
    assert Transcript.from_dict(t.to_dict()).dropped_segments == 3
    # Progress moves on over dropped segments, and their text never appears.
    assert progress == [
        (2.0, "Hello there."),
        (4.0, "Hello there."),
        (6.0, "Hello there."),
        (8.0, "Hello there. Goodbye."),
        (10.0, "Hello there. Goodbye."),
    ]
    # Whisper's own window-level checks use the same thresholds.
    assert model.kwargs["no_speech_threshold"] == 0.6
    assert model.kwargs["log_prob_threshold"] == -1.0
    assert model.kwargs["compression_ratio_threshold"] == 2.4


def test_only_invented_segments_give_empty_text() -> None:
    t, _ = run([FakeSegment(0.0, 5.0, " Thank you.", no_speech_prob=0.9, avg_logprob=-1.5)])
    assert (t.text, t.segments, t.dropped_segments) == ("", [], 1)


def test_without_the_vad_filter_the_guard_runs_vad_itself() -> None:
    """All-zero audio has no speech, so every segment falls outside it."""
    t, (model, _) = run(
        [FakeSegment(0.0, 3.0, " You.")], EngineConfig(vad_filter=False, guard=GuardConfig())
    )
    assert model.kwargs["vad_filter"] is False
    assert (t.text, t.dropped_segments) == ("", 1)


def test_guard_off() -> None:
    t, _ = run(
        [FakeSegment(0.0, 3.0, " You.", no_speech_prob=0.99, avg_logprob=-2.0)],
        EngineConfig(vad_filter=False, guard=GuardConfig(enabled=False)),
    )
    assert (t.text, t.dropped_segments) == ("You.", 0)


def test_old_results_have_no_count() -> None:
    t = Transcript.from_dict({"text": "", "language": "en", "duration": 1.0})
    assert t.dropped_segments == 0


# --- options -------------------------------------------------------------------------------


def options_of(**options: Any) -> TranscribeOptions:
    """What the engine is asked for a job stored with these options."""
    return transcribe_options(JobOptions.from_dict(options), None)


LADDER = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@pytest.mark.parametrize(
    ("temperature", "expected"),
    [(None, LADDER), (0, LADDER), (0.0, LADDER), (0.4, (0.4,)), (1.0, (1.0,))],
)
def test_temperature(temperature: float | None, expected: tuple[float, ...]) -> None:
    """OpenAI: at 0 (the default) the temperature is raised step by step when the output
    fails the log-probability or compression checks; another value is used as it is."""
    options = {} if temperature is None else {"temperature": temperature}
    assert options_of(**options).temperature == expected


def test_task_prompt_and_words() -> None:
    opts = options_of(task="translate", prompt="Glossary: Kubernetes.", word_timestamps=True)
    assert opts.task == "translate"
    assert opts.initial_prompt == "Glossary: Kubernetes."
    assert opts.word_timestamps is True
    plain = options_of()
    assert (plain.task, plain.initial_prompt, plain.word_timestamps) == ("transcribe", None, False)


def test_guard_settings_reach_the_engine() -> None:
    from celery import Celery

    from core.settings import load_settings
    from worker.context import WorkerContext

    settings = load_settings(
        {
            "STT_HALLUCINATION_GUARD": "false",
            "STT_NO_SPEECH_THRESHOLD": "0.7",
            "STT_LOGPROB_THRESHOLD": "-0.8",
            "STT_COMPRESSION_RATIO_THRESHOLD": "2.2",
        }
    )
    guard = WorkerContext(settings, Celery()).engine_config.guard
    assert guard == GuardConfig(
        enabled=False,
        no_speech_threshold=0.7,
        logprob_threshold=-0.8,
        compression_ratio_threshold=2.2,
    )
    assert WorkerContext(load_settings({}), Celery()).engine_config.guard == GuardConfig()
