"""The worker's diarization stage: speakers onto a transcript, a chunked file embedded in parts
and clustered once (real voices, the bundled encoder), and the job options that carry it."""

from __future__ import annotations

import pytest

from bench.conversations import Conversation, stitch
from core.jobspec import JobOptions
from core.speakers import KnownSpeaker
from core.transcript import Segment, Transcript, Word
from worker.diarization import embed_chunk, label, label_merged
from worker.diarize.engine import BundledDiarizer
from worker.diarize.types import Hints, Turn

RATE = 16000


def test_label_puts_a_speaker_on_every_word_and_groups_turns() -> None:
    words = [Word(" a", 0.0, 0.5), Word(" b", 0.5, 1.0), Word(" c", 2.0, 2.5)]
    t = Transcript(" a b c", "en", 3.0, [Segment(0, 0.0, 2.5, " a b c", words=words)])
    labelled = label(t, [Turn(0.0, 1.1, "A"), Turn(1.9, 2.6, "B")])
    assert [w.speaker for w in labelled.words] == ["A", "A", "B"]
    assert labelled.speakers is not None
    assert [(s.speaker, s.text, s.start, s.end) for s in labelled.speakers] == [
        ("A", "a b", 0.0, 1.0),
        ("B", "c", 2.0, 2.5),
    ]
    assert Transcript.from_dict(labelled.to_dict()) == labelled


def test_options_carry_diarization_and_old_rows_read_the_same() -> None:
    options = JobOptions(
        diarize=True, min_speakers=2, max_speakers=4, known_speakers=(KnownSpeaker("Ann", b"RIFF"),)
    )
    assert JobOptions.from_dict(options.to_dict()) == options
    assert JobOptions.from_dict({"word_timestamps": True}) == JobOptions(word_timestamps=True)
    assert "diarize" not in JobOptions().to_dict()


@pytest.fixture(scope="module")
def conversation() -> Conversation:
    return stitch(["ljspeech", "ls1995", "sense"], 3, seed=11)


def test_chunks_embedded_apart_then_clustered_once_keep_one_label_per_voice(
    conversation: Conversation,
) -> None:
    diarizer = BundledDiarizer()
    audio, duration = conversation.audio, conversation.duration
    cut = duration / 2
    pad = 0.5
    # Two chunks with seam pads, as the chunked pipeline decodes them.
    first = embed_chunk(diarizer, audio[: int((cut + pad) * RATE)], 0.0, 0.0, cut)
    second_start = cut - pad
    second = embed_chunk(
        diarizer, audio[int(second_start * RATE) :], second_start, cut, float("inf")
    )
    ends = [r[1] for r in first["regions"]]
    starts = [r[0] for r in second["regions"]]
    assert max((a + b) / 2 for a, b in first["regions"]) < cut
    assert min((a + b) / 2 for a, b in second["regions"]) >= cut
    assert ends and starts
    words = [
        Word(f" w{i}", a + 0.2, min(b, a + 0.8)) for i, (a, b, _) in enumerate(conversation.turns)
    ]
    t = Transcript("", "en", duration, [Segment(0, 0.0, duration, "", words=words)])
    labelled = label_merged(diarizer, t, [first, second], Hints())
    truth = [v for _, _, v in conversation.turns]
    got = [w.speaker for w in labelled.words]
    mapping = dict(zip(got, truth, strict=True))
    assert len(set(got)) == 3
    assert [mapping[g] for g in got] == truth
