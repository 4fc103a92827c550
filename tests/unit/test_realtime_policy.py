"""The streaming policy (LocalAgreement-2, finals at pauses and sentence ends, VAD gating)
and the realtime contract's messages, with a scripted decoder standing in for Whisper."""

from __future__ import annotations

import numpy as np

from core.audio import SAMPLE_RATE, Audio
from core.realtime import Checkpoint, SessionError, SessionSpec, error_event, transcript_event
from worker.realtime.agreement import Policy, StreamState, Word
from worker.realtime.session import _after

SPEECH = np.full(SAMPLE_RATE, 0.1, dtype=np.float32)


def words(*spec: tuple[str, float, float]) -> list[Word]:
    return [Word(f" {t}", s, e) for t, s, e in spec]


class Script:
    """Returns the next scripted hypothesis on each decode; records the calls."""

    def __init__(self, *hypotheses: list[Word]) -> None:
        self.hypotheses = list(hypotheses)
        self.calls: list[tuple[int, str]] = []

    def __call__(self, audio: Audio, prompt: str) -> list[Word]:
        self.calls.append((len(audio), prompt))
        return self.hypotheses.pop(0) if self.hypotheses else []


def all_speech(audio: Audio) -> list[tuple[float, float]]:
    return [(0.0, len(audio) / SAMPLE_RATE)]


def no_speech(audio: Audio) -> list[tuple[float, float]]:
    return []


def test_words_are_committed_once_two_decodes_agree() -> None:
    script = Script(
        words(("hello", 0.1, 0.5), ("wold", 0.6, 0.9)),
        words(("hello", 0.1, 0.5), ("world", 0.6, 0.9), ("again", 1.2, 1.6)),
    )
    state = StreamState(script, all_speech)
    state.append(SPEECH)
    first = state.step()
    assert [r.text for r in first] == ["hello wold"] and not first[0].is_final
    assert state.committed == []  # one decode alone commits nothing
    state.append(SPEECH)
    second = state.step()
    assert [w.text for w in state.committed] == [" hello"]  # the agreed prefix only
    assert second[-1].text == "hello world again" and not second[-1].is_final


def test_a_pause_makes_everything_final_and_empties_the_window() -> None:
    script = Script(
        words(("ask", 0.1, 0.4), ("not", 0.5, 0.8)),
        words(("ask", 0.1, 0.4), ("not.", 0.5, 0.8)),
    )
    speech_then_pause = lambda audio: [(0.0, 0.9)]  # noqa: E731 (a stand-in VAD)
    state = StreamState(script, speech_then_pause, max_silence_s=1.0)
    state.append(SPEECH)
    state.step()  # 0.1 s of silence after the speech: not yet a pause
    state.append(SPEECH)
    results = state.step()  # 1.1 s of silence: a pause
    assert [(r.text, r.is_final) for r in results] == [("ask not.", True)]
    assert results[0].trimmed_to_s == 2.0 and len(state.window) == 0
    assert state.finals == 1


def test_finals_are_deltas_that_concatenate() -> None:
    script = Script(words(("one.", 0.1, 0.4)), words(("two.", 0.1, 0.4)))
    state = StreamState(script, all_speech)
    state.append(SPEECH)
    first = state.flush()
    state.append(SPEECH)
    second = state.flush()
    assert first[0].text == "one." and second[0].text == " two."
    assert "".join(r.text for r in first + second) == "one. two."
    assert second[0].words[0].start == 1.1  # times are the session's, not the window's


def test_silence_is_never_decoded_and_is_dropped() -> None:
    script = Script()
    state = StreamState(script, no_speech)
    for _ in range(5):
        state.append(SPEECH)
        assert state.step() == []
    assert script.calls == []
    assert len(state.window) <= Policy().keep_silence_s * SAMPLE_RATE
    assert state.window_start == 4.0


def test_quieter_than_min_volume_is_silence() -> None:
    script = Script(words(("x", 0.0, 0.5)))
    state = StreamState(script, all_speech, min_volume=0.5)
    state.append(SPEECH)  # RMS 0.1
    assert state.step() == [] and script.calls == []


def test_long_speech_is_finalised_at_a_committed_sentence_end() -> None:
    said = words(("first.", 0.2, 0.8), ("second", 1.0, 1.5))
    script = Script(*[said] * 10)
    state = StreamState(script, all_speech, policy=Policy(trim_after_s=3.0))
    results = []
    for _ in range(4):
        state.append(SPEECH)
        results += state.step()
    finals = [r for r in results if r.is_final]
    assert [f.text for f in finals] == ["first."]
    assert state.window_start == 0.8  # trimmed at the final's end
    assert [w.text for w in state.committed] == [" second"]


def test_words_repeated_at_the_window_join_are_not_committed_twice() -> None:
    state = StreamState(Script(), all_speech)
    state.committed = words(("a", 0.0, 0.3), ("b", 0.4, 0.7))
    fresh = state._fresh(words(("b", 0.75, 0.9), ("c", 1.0, 1.2)), state.committed)
    assert [w.text for w in fresh] == [" c"]


def test_no_prompt_from_earlier_text() -> None:
    """Whisper drops words that repeat its prompt, so the text already final is not one."""
    script = Script(words(("one.", 0.1, 0.4)), words(("two", 0.1, 0.4)))
    state = StreamState(script, all_speech, prompt="earlier text.")
    state.append(SPEECH)
    state.flush()
    state.append(SPEECH)
    state.step()
    assert [prompt for _, prompt in script.calls] == ["", ""]
    assert state.prompt.endswith("one.")  # still kept (and checkpointed) as context


def test_resuming_drops_audio_before_the_checkpoint() -> None:
    state = StreamState(Script(), all_speech, start_s=5.0)
    state.append(SPEECH)
    state.drop_before(5.25)
    assert state.window_start == 5.25 and len(state.window) == SAMPLE_RATE * 3 // 4


def test_contract_messages_round_trip_and_match_cartesia() -> None:
    spec = SessionSpec("sid", "bundled:tiny.en", "en", "pcm_s16le", 16000, 0.0, 1.0)
    assert SessionSpec.from_json(spec.to_json()) == spec
    cp = Checkpoint("1-0", 1.5, 2.0, "text", 3, "2-1")
    assert Checkpoint.from_json(cp.to_json()) == cp and Checkpoint.from_json(None) == Checkpoint()
    event = transcript_event(
        "sid", text="hi", is_final=True, duration=1.23456, language="en", words=[("hi", 0, 1)]
    )
    assert event == {
        "type": "transcript",
        "request_id": "sid",
        "is_final": True,
        "text": "hi",
        "duration": 1.235,
        "language": "en",
        "words": [{"word": "hi", "start": 0, "end": 1}],
    }
    error = error_event(None, SessionError(400, "invalid_request", "Invalid request", "bad"))
    assert error["type"] == "error" and error["status_code"] == 400


def test_stream_ids_compare_in_order() -> None:
    assert _after("10-0", "9-5") and _after("9-6", "9-5") and not _after("9-5", "9-5")
    assert _after("1-0", "0")
