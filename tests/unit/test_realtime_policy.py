"""The streaming policy (cheap interims with LocalAgreement-2, one batch decode per final,
VAD gating) with a scripted decoder, then with tiny.en on real speech; and the realtime
contract's messages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.audio import SAMPLE_RATE, Audio, decode
from core.realtime import Checkpoint, SessionError, SessionSpec, error_event, transcript_event
from tests.support import clip, error_rate
from worker.engine import EngineConfig, TranscribeOptions, load_model, transcribe
from worker.realtime.agreement import Policy, Result, StreamState, Word
from worker.realtime.decoding import WhisperDecoder, cut_loop, find_speech, whisper_decoder
from worker.realtime.session import _after

SPEECH = np.full(SAMPLE_RATE // 2, 0.1, dtype=np.float32)
"""Half a second: the policy looks at the window every `check_s` (0.5 s)."""


def words(*spec: tuple[str, float, float]) -> list[Word]:
    return [Word(f" {t}", s, e) for t, s, e in spec]


class Script:
    """Scripted interim guesses and finals; records the audio each decode was given."""

    def __init__(self, interims: list[str] | None = None, finals: list[list[Word]] | None = None):
        self.interims = list(interims or [])
        self.finals = list(finals or [])
        self.interim_calls: list[int] = []
        self.final_calls: list[int] = []

    def interim(self, audio: Audio) -> list[str]:
        self.interim_calls.append(len(audio))
        text = self.interims.pop(0) if self.interims else ""
        return [f" {w}" for w in text.split()]

    def final(self, audio: Audio) -> list[Word]:
        self.final_calls.append(len(audio))
        return self.finals.pop(0) if self.finals else []


def all_speech(audio: Audio) -> list[tuple[float, float]]:
    return [(0.0, len(audio) / SAMPLE_RATE)]


def no_speech(audio: Audio) -> list[tuple[float, float]]:
    return []


def feed(state: StreamState, seconds: float) -> list[list[Result]]:
    """Half-second chunks, a step after each when ready; the results of each step."""
    out: list[list[Result]] = []
    for _ in range(round(seconds * 2)):
        state.append(SPEECH)
        if state.ready():
            out.append(list(state.step()))
    return out


def test_interims_keep_the_words_two_decodes_agree_on() -> None:
    script = Script(interims=["hello wold", "hello world again", "hello world, again now"])
    state = StreamState(script, all_speech)
    feed(state, 1.0)
    assert state.stable == [] and state._last_interim == "hello wold"  # one decode: none
    feed(state, 1.0)
    assert state.stable == [" hello"]  # the agreed prefix only
    assert state._last_interim == "hello world again"
    feed(state, 1.0)
    assert state.stable == [" hello", " world,", " again"]  # agreed again: joins it
    assert state._last_interim == "hello world, again now"
    assert script.final_calls == []  # interims never decode a final


def test_an_interim_waits_for_enough_new_speech() -> None:
    script = Script(interims=["one", "one two"])
    state = StreamState(script, all_speech, policy=Policy(interim_step_s=1.0))
    results = feed(state, 0.5)
    assert results == [[]] and script.interim_calls == []  # 0.5 s of speech: no decode
    results = feed(state, 0.5)
    assert len(script.interim_calls) == 1 and results[-1][0].text == "one"
    feed(state, 0.5)
    assert len(script.interim_calls) == 1  # 0.5 s more: still the one decode
    feed(state, 0.5)
    assert len(script.interim_calls) == 2


def test_silence_costs_no_decode_and_is_dropped() -> None:
    script = Script()
    state = StreamState(script, no_speech)
    assert all(r == [] for r in feed(state, 5.0))
    assert script.interim_calls == [] and script.final_calls == []
    assert len(state.window) <= Policy().keep_silence_s * SAMPLE_RATE
    assert state.window_start == 4.0
    assert state.flush() == [] and script.final_calls == []


def test_quieter_than_min_volume_is_silence() -> None:
    script = Script(interims=["x"])
    state = StreamState(script, all_speech, min_volume=0.5)
    feed(state, 2.0)  # RMS 0.1
    assert script.interim_calls == [] and script.final_calls == []


def test_a_pause_makes_the_utterance_final_in_one_decode() -> None:
    script = Script(
        interims=["ask nut", "ask not"],
        finals=[words(("Ask", 0.1, 0.4), ("not.", 0.5, 0.8))],
    )
    speech_then_pause = lambda audio: [(0.0, 0.9)]  # noqa: E731 (a stand-in VAD)
    state = StreamState(script, speech_then_pause, max_silence_s=1.0)
    feed(state, 1.5)  # 0.6 s of silence after the speech: not yet a pause
    assert script.final_calls == []
    results = feed(state, 0.5)[-1]  # 1.1 s of silence: a pause
    assert [(r.text, r.is_final) for r in results] == [("Ask not.", True)]
    assert script.final_calls == [2 * SAMPLE_RATE]  # once, over the whole utterance
    final = results[0]
    assert final.trimmed_to_s == 2.0 and len(state.window) == 0
    assert state.finals == 1 and state.stable == [] and state.tentative == []


def test_finals_are_deltas_that_concatenate() -> None:
    script = Script(finals=[words(("one.", 0.1, 0.4)), words(("two.", 0.1, 0.4))])
    state = StreamState(script, all_speech)
    state.append(SPEECH)
    first = state.flush()
    state.append(SPEECH)
    second = state.flush()
    assert first[0].text == "one." and second[0].text == " two."
    assert "".join(r.text for r in first + second) == "one. two."
    assert second[0].words[0].start == 0.6  # times are the session's, not the window's


def test_long_speech_is_made_final_at_its_last_inner_pause() -> None:
    def two_phrases(audio: Audio) -> list[tuple[float, float]]:
        length = len(audio) / SAMPLE_RATE
        return [(0.0, 2.9), (3.3, length)] if length > 3.3 else [(0.0, min(length, 2.9))]

    script = Script(finals=[words(("first", 0.2, 1.0), ("phrase", 1.2, 2.8))])
    state = StreamState(script, two_phrases, policy=Policy(cut_after_s=4.0))
    results = [r for step in feed(state, 4.0) for r in step]
    finals = [r for r in results if r.is_final]
    assert [f.text for f in finals] == ["first phrase"]
    assert script.final_calls == [int(3.1 * SAMPLE_RATE)]  # the audio up to the pause only
    assert state.window_start == pytest.approx(3.1)  # trimmed in the pause: no word cut


def test_by_default_a_clip_long_utterance_is_decoded_whole() -> None:
    """A final keeps the context batch has: no cut at an inner pause within 15 s."""

    def two_phrases(audio: Audio) -> list[tuple[float, float]]:
        length = len(audio) / SAMPLE_RATE
        return [(0.0, 5.9), (6.3, length)] if length > 6.3 else [(0.0, min(length, 5.9))]

    script = Script(finals=[words(("whole", 0.2, 14.5))])
    state = StreamState(script, two_phrases)
    assert not [r for step in feed(state, 15.0) for r in step if r.is_final]
    assert [r.text for r in state.flush()] == ["whole"]
    assert script.final_calls == [15 * SAMPLE_RATE]


def test_speech_without_a_pause_is_cut_at_a_settled_sentence_end() -> None:
    said = words(("one", 0.2, 0.8), ("two.", 1.0, 1.5), ("three", 1.7, 2.5), ("fo", 2.8, 3.0))
    script = Script(finals=[said])
    state = StreamState(script, all_speech, policy=Policy(cut_after_s=2.0, max_window_s=3.0))
    results = [r for step in feed(state, 3.0) for r in step]
    finals = [r for r in results if r.is_final]
    assert [f.text for f in finals] == ["one two."]
    assert state.window_start == 1.7  # the next word's start: it is decoded again later


def test_the_final_text_is_kept_as_context() -> None:
    script = Script(finals=[words(("one.", 0.1, 0.4))])
    state = StreamState(script, all_speech, prompt="earlier text.", finals=1)
    state.append(SPEECH)
    state.flush()
    assert state.prompt == "earlier text. one."  # kept (and checkpointed) as context


def test_resuming_drops_audio_before_the_checkpoint() -> None:
    state = StreamState(Script(), all_speech, start_s=5.0)
    state.append(np.zeros(SAMPLE_RATE, dtype=np.float32))
    state.drop_before(5.25)
    assert state.window_start == 5.25 and len(state.window) == SAMPLE_RATE * 3 // 4


def test_a_decoding_loop_is_cut() -> None:
    looped = " And so my fellow Americans asked, and so my fellow Americans asked, and so"
    assert "".join(cut_loop(looped.split(" ")[1:])) == "AndsomyfellowAmericansasked,"
    said = "ask not what your country can do for you ask what you can do for your country"
    assert cut_loop(said.split()) == said.split()  # a phrase said twice is no loop


# -- with tiny.en on real speech --------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    yield load_model("bundled:tiny.en", EngineConfig(), Path(tmp_path_factory.mktemp("m")))


class Counting(WhisperDecoder):
    def __init__(self, model: object) -> None:
        super().__init__(model, "en")
        self.finals: list[Audio] = []
        self.interims = 0

    def final(self, audio: Audio) -> list[Word]:
        self.finals.append(audio)
        return super().final(audio)

    def interim(self, audio: Audio) -> list[str]:
        self.interims += 1
        return super().interim(audio)


def stream(state: StreamState, audio: Audio) -> list[Result]:
    out: list[Result] = []
    for start in range(0, len(audio), SAMPLE_RATE // 10):
        state.append(audio[start : start + SAMPLE_RATE // 10])
        if state.ready():
            out += state.step()
    return out


def test_a_final_is_what_batch_transcription_of_the_utterance_says(tiny: object) -> None:
    jfk = decode(clip("en_jfk_inaugural.flac").path)
    pause = np.zeros(2 * SAMPLE_RATE, dtype=np.float32)
    decoder = Counting(tiny)
    state = StreamState(decoder, find_speech, policy=Policy(cut_after_s=60.0))
    results = stream(state, np.concatenate([jfk, pause]))
    finals = [r for r in results if r.is_final]
    interims = [r for r in results if not r.is_final]
    assert len(finals) == 1 and len(decoder.finals) == 1  # the utterance, decoded once
    utterance = decoder.finals[0]
    assert len(utterance) >= len(jfk)  # all of it, up to the pause
    batch = transcribe(
        tiny, utterance, TranscribeOptions(language="en", word_timestamps=True), EngineConfig()
    )
    assert finals[0].text == batch.text
    assert interims and decoder.interims <= len(jfk) / SAMPLE_RATE  # at most one a second
    reference = clip("en_jfk_inaugural.flac").reference
    assert error_rate(reference, interims[-1].text, "en") <= 0.25
    before = (len(decoder.finals), decoder.interims)
    stream(state, np.zeros(5 * SAMPLE_RATE, dtype=np.float32))  # silence after it
    assert (len(decoder.finals), decoder.interims) == before  # costs no decode


def test_the_interim_decode_hears_real_speech(tiny: object) -> None:
    jfk = decode(clip("en_jfk_inaugural.flac").path)
    decoder = whisper_decoder(tiny, "en")
    heard = "".join(decoder.interim(jfk[: 7 * SAMPLE_RATE]))
    said = "and so my fellow americans ask not what your country can do for"
    assert error_rate(said, heard, "en") <= 0.2
    assert decoder.interim(np.zeros(3 * SAMPLE_RATE, dtype=np.float32)) == []


# -- the contract's messages -------------------------------------------------------------------


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
