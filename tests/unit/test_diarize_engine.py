"""The bundled diarizer on conversations stitched from real voices with known turns."""

from __future__ import annotations

import base64
import io
import wave
from pathlib import Path

import numpy as np
import pytest

from bench.conversations import Conversation, stitch
from bench.diarization import der
from core.audio import decode
from core.errors import InvalidRequest, InvalidSpeakerReference
from worker.diarize.cluster import cluster
from worker.diarize.engine import BundledDiarizer
from worker.diarize.known import (
    check_known_speakers,
    data_url_bytes,
    decode_reference,
    letters,
    name_clusters,
)
from worker.diarize.types import Hints, Span, WindowEmbeddings
from worker.diarize.windows import plan_windows, spans_from_words, speech_spans

DER_BOUND = 0.10  # with the customary 0.25 s collar; measured about 0.03 (docs/diarization.md)


@pytest.fixture(scope="module")
def diarizer() -> BundledDiarizer:
    return BundledDiarizer()


@pytest.fixture(scope="module")
def conversation() -> Conversation:
    return stitch(["ljspeech", "sense", "ls1995"], turns_each=3, seed=5)


@pytest.fixture(scope="module")
def windows(diarizer: BundledDiarizer, conversation: Conversation) -> WindowEmbeddings:
    return diarizer.embed(conversation.audio, speech_spans(conversation.audio))


def test_three_voices_give_three_speakers_and_low_der(
    diarizer: BundledDiarizer, conversation: Conversation, windows: WindowEmbeddings
) -> None:
    turns = diarizer.cluster(windows, Hints())
    assert diarizer.speakers(turns) == ["A", "B", "C"]
    assert der(conversation.turns, turns, 0.25, conversation.duration)["der"] < DER_BOUND


def test_hints_bound_the_speaker_count(
    diarizer: BundledDiarizer, windows: WindowEmbeddings
) -> None:
    assert len(diarizer.speakers(diarizer.cluster(windows, Hints(max_speakers=2)))) == 2
    assert len(diarizer.speakers(diarizer.cluster(windows, Hints(min_speakers=4)))) == 4
    fixed = Hints(min_speakers=1, max_speakers=1)
    assert diarizer.speakers(diarizer.cluster(windows, fixed)) == ["A"]


def test_bad_hints_are_refused() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        Hints(min_speakers=3, max_speakers=2)
    with pytest.raises(ValueError, match="at least 1"):
        Hints(max_speakers=0)


def test_chunks_embedded_apart_keep_one_label_per_voice(
    diarizer: BundledDiarizer, conversation: Conversation
) -> None:
    # Cut in the silence after the fourth turn, as the chunk planner cuts at a pause.
    cut_s = (conversation.turns[3][1] + conversation.turns[4][0]) / 2
    cut = round(cut_s * 16000)
    parts = []
    for offset, audio in ((0.0, conversation.audio[:cut]), (cut_s, conversation.audio[cut:])):
        # Each chunk worker sends its embeddings as JSON, in its own time, shifted at merge.
        sent = diarizer.embed(audio, speech_spans(audio)).to_dict()
        parts.append(WindowEmbeddings.from_dict(sent).shifted(offset))
    turns = diarizer.cluster(WindowEmbeddings.concat(parts), Hints())
    assert len(diarizer.speakers(turns)) == 3
    assert der(conversation.turns, turns, 0.25, conversation.duration)["der"] < DER_BOUND


def test_long_files_cluster_a_sample_then_join_the_rest(
    conversation: Conversation, windows: WindowEmbeddings
) -> None:
    # What an hour of windows does (> MAX_TREE), at a size a unit test affords.
    whole = cluster(windows.vectors, Hints())
    sampled = cluster(windows.vectors, Hints(), max_tree=len(windows.vectors) // 2)
    assert sampled.max() == whole.max() == 2
    assert (sampled == whole).mean() > 0.95


def test_known_speakers_are_named(
    diarizer: BundledDiarizer, conversation: Conversation, windows: WindowEmbeddings, corpus: Path
) -> None:
    linda = diarizer.reference_embedding(decode(corpus / "en_ljspeech_LJ001-0016.wav"))
    john = diarizer.reference_embedding(decode(corpus / "en_jfk_inaugural.flac")[: 16000 * 9])
    turns = diarizer.cluster(windows, Hints(known={"Linda": linda, "John": john}))
    names = diarizer.speakers(turns)
    assert sorted(names) == ["A", "B", "Linda"]  # John is not in the conversation
    linda_turns = [(t.start, t.end) for t in turns if t.speaker == "Linda"]
    lj_turns = [(s, e) for s, e, v in conversation.turns if v == "ljspeech"]
    covered = sum(max(0.0, min(e, te) - max(s, ts)) for s, e in lj_turns for ts, te in linda_turns)
    assert covered > 0.8 * sum(e - s for s, e in lj_turns)


@pytest.mark.parametrize(
    ("name", "speakers"),
    [
        # Picovoice/leopard's diarization test tags its words 1, then 2, then 3.
        ("en_multispeaker_diarization_test.wav", ["A", "B", "C"]),
        # One AMI headset channel: its wearer introducing herself.
        ("en_ami_ES2011a_headset0_40-46s.wav", ["A"]),
    ],
)
def test_real_multi_speaker_clips(
    diarizer: BundledDiarizer, corpus: Path, name: str, speakers: list[str]
) -> None:
    audio = decode(corpus / name)
    turns = diarizer.diarize(audio, speech_spans(audio), Hints())
    assert [t.speaker for t in turns] == speakers  # one turn each, in the source's order


def test_labels_skip_known_names_and_run_past_z() -> None:
    assert [letters(k) for k in (0, 1, 25, 26, 27)] == ["A", "B", "Z", "AA", "AB"]
    centres = np.eye(3, dtype=np.float32)
    known = {"A": np.array([0, 1, 0], np.float32)}
    assert name_clusters(centres, known) == ["B", "A", "C"]


def _wav_bytes(audio: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def test_reference_errors_are_invalid_speaker_reference(
    diarizer: BundledDiarizer, corpus: Path
) -> None:
    speech = decode(corpus / "en_ljspeech_LJ001-0016.wav")
    with pytest.raises(InvalidSpeakerReference, match="not decodable") as caught:
        decode_reference(b"definitely not audio")
    assert isinstance(caught.value, InvalidRequest)
    assert (caught.value.status, caught.value.code) == (400, "invalid_speaker_reference")
    assert caught.value.param == "known_speaker_references"
    with pytest.raises(InvalidSpeakerReference, match="2-10 s"):
        decode_reference(_wav_bytes(speech[:8000]))  # half a second
    with pytest.raises(InvalidSpeakerReference, match="2-10 s"):
        diarizer.reference_embedding(np.tile(speech, 3))  # 15 s
    with pytest.raises(InvalidSpeakerReference, match="speech"):
        diarizer.reference_embedding(np.zeros(16000 * 3, np.float32))  # silence
    with pytest.raises(InvalidSpeakerReference, match="base64 data URL"):
        data_url_bytes("https://example.invalid/voice.wav")
    with pytest.raises(InvalidSpeakerReference, match="does not decode"):
        data_url_bytes("data:audio/wav;base64,@@@")


def test_known_speaker_lists_are_checked() -> None:
    check_known_speakers(["Ann", "Bob"], ["data:a", "data:b"])
    with pytest.raises(InvalidSpeakerReference, match="2 known_speaker_names but 1"):
        check_known_speakers(["Ann", "Bob"], ["data:a"])
    with pytest.raises(InvalidSpeakerReference, match="at most 4"):
        check_known_speakers(list("abcde"), ["x"] * 5)
    with pytest.raises(InvalidSpeakerReference, match="distinct"):
        check_known_speakers(["Ann", "Ann"], ["x", "y"])


def test_a_data_url_reference_decodes(corpus: Path) -> None:
    raw = (corpus / "en_ljspeech_LJ001-0016.wav").read_bytes()
    url = "data:audio/wav;base64," + base64.b64encode(raw).decode()
    audio = decode_reference(data_url_bytes(url))
    assert 5.0 < len(audio) / 16000 < 5.5


def test_windows_tile_speech_without_overlap() -> None:
    plan = plan_windows([Span(0.1, 0.2), Span(1.0, 2.0), Span(3.0, 7.0)], duration=8.0)
    assert plan.regions[0] == Span(1.0, 2.0)  # the 0.1 s click gets no window
    assert all(round(w.duration, 6) == 1.6 for w in plan.windows)
    assert all(
        a.end <= b.start + 1e-9 for a, b in zip(plan.regions, plan.regions[1:], strict=False)
    )
    assert sum(r.duration for r in plan.regions) == pytest.approx(5.0)
    assert spans_from_words([(0.0, 0.4), (0.5, 0.9), (2.0, 2.3)]) == [
        Span(0.0, 0.9),
        Span(2.0, 2.3),
    ]


def test_clustering_degenerate_inputs() -> None:
    assert cluster(np.zeros((0, 256), np.float32), Hints()).tolist() == []
    one = np.ones((1, 4), np.float32) / 2
    assert cluster(one, Hints(min_speakers=2)).tolist() == [0]


def test_no_speech_gives_no_turns(diarizer: BundledDiarizer) -> None:
    silence = np.zeros(16000 * 2, np.float32)
    assert diarizer.diarize(silence, speech_spans(silence), Hints()) == []
