"""Subtitle cues: long segments split at word timestamps within the layout's limits."""

from __future__ import annotations

import io
import random

import pysrt
import pytest
import webvtt

from api import render
from api.render import Cue, SubtitleLayout, cues, wrap
from core.errors import ConfigError
from core.settings import load_settings
from core.transcript import Segment, Transcript, Word

LAYOUT = SubtitleLayout()
JFK = (
    "And so, my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)


def timed(text: str, start: float = 0.0, step: float = 0.45, gap: float = 0.05) -> Segment:
    """A segment whose words last `step - gap` seconds each, as Whisper would time them."""
    words, t = [], start
    for w in text.split():
        words.append(Word(w, round(t, 3), round(t + step - gap, 3)))
        t += step
    return Segment(0, start, round(t - gap, 3), text, words=words)


def one(segment: Segment, layout: SubtitleLayout = LAYOUT) -> list[Cue]:
    return cues(Transcript(segment.text, "en", segment.end, [segment]), layout)


def check(result: list[Cue], segment: Segment, layout: SubtitleLayout = LAYOUT) -> None:
    """Every limit holds (a single word may overrun), times run forward inside the segment,
    and the cues hold the segment's text, nothing lost or repeated."""
    previous_end = segment.start
    for cue in result:
        assert segment.start <= cue.start <= cue.end <= segment.end + 1e-9
        assert cue.start >= previous_end
        previous_end = cue.end
        assert 1 <= len(cue.lines) <= layout.max_lines, cue
        single_word = len(cue.text.split()) == 1
        assert all(
            len(line) <= layout.max_line_chars or len(line.split()) == 1 for line in cue.lines
        ), cue
        assert cue.end - cue.start <= layout.max_cue_s + 0.5 or single_word, cue
    assert " ".join(c.text.replace("\n", " ") for c in result) == " ".join(segment.text.split())


def test_short_segment_is_one_cue() -> None:
    s = Segment(0, 1.0, 3.5, "Hello world.")
    assert one(s) == [Cue(1.0, 3.5, ("Hello world.",))]


def test_two_lines_when_longer_than_one() -> None:
    s = timed("ask not what your country can do for you, ask what you can do", step=0.4)
    (cue,) = one(s)
    assert cue.lines == ("ask not what your country can", "do for you, ask what you can do")


def test_long_segment_is_split_at_words() -> None:
    s = timed(JFK)
    result = one(s)
    check(result, s)
    assert len(result) >= 2
    assert result[0].start == s.start and result[-1].end == s.end
    # Cue times come from the words: the second cue starts when its first word does.
    first_word = result[1].text.split()[0]
    assert result[1].start == next(w.start for w in s.words if w.word == first_word)


def test_cues_end_at_clause_ends_where_they_can() -> None:
    s = timed(JFK, step=0.3)
    result = one(s, SubtitleLayout(max_line_chars=42, max_lines=2, max_cue_s=60))
    check(result, s, SubtitleLayout(42, 2, 60))
    assert result[0].text.replace("\n", " ").endswith("for you,")


def test_split_cues_follow_the_words_not_the_segment_edges() -> None:
    """Whisper's segment may begin well before its first word: a split cue still lasts
    no longer than the limit, and appears when its words are spoken."""
    words = timed(JFK, start=2.0).words
    s = Segment(0, 0.0, words[-1].end + 1.0, JFK, words=words)
    result = one(s)
    check(result, s)
    assert result[0].start == 2.0 and result[-1].end == words[-1].end
    assert all(c.end - c.start <= LAYOUT.max_cue_s for c in result)


def test_slow_speech_is_split_by_duration() -> None:
    s = timed("one two three four five six seven eight", step=2.0)
    result = one(s)
    check(result, s)
    assert len(result) >= 3
    assert all(c.end - c.start <= 6.0 for c in result)


def test_without_word_timestamps_times_are_interpolated() -> None:
    s = Segment(0, 10.0, 30.0, JFK + " " + JFK)
    result = one(s)
    check(result, s)
    assert len(result) >= 4
    assert result[0].start == 10.0 and result[-1].end == 30.0


def test_words_not_found_in_the_text_fall_back_to_interpolation() -> None:
    s = Segment(0, 0.0, 20.0, JFK, words=[Word("zzz", 0.0, 1.0)])
    check(one(s), s)


def test_text_without_spaces_is_cut_between_characters() -> None:
    zh = "我们今天在这里讨论一个非常重要的问题就是如何让语音识别系统更加准确地识别中文语音内容"
    s = Segment(0, 0.0, 12.0, zh)
    layout = SubtitleLayout(max_line_chars=16, max_lines=2, max_cue_s=6.0)
    result = one(s, layout)
    assert "".join(c.text.replace("\n", "") for c in result) == zh
    assert all(len(line) <= 16 for c in result for line in c.lines)
    assert all(c.end - c.start <= 6.0 for c in result)


def test_chinese_words_keep_their_spacing() -> None:
    zh = "今天天气很好我们去公园散步吧然后一起吃晚饭"
    words = [Word(zh[i : i + 2], i * 0.5, i * 0.5 + 0.9) for i in range(0, len(zh), 2)]
    s = Segment(0, 0.0, words[-1].end, zh, words=words)
    result = one(s, SubtitleLayout(max_line_chars=8, max_lines=1, max_cue_s=100))
    assert "".join(c.text for c in result) == zh
    assert all(len(c.text) <= 8 for c in result)


def test_empty_segments_make_no_cue() -> None:
    t = Transcript("x", "en", 5.0, [Segment(0, 0, 1, "  "), Segment(1, 1, 2, "x")])
    assert [c.text for c in cues(t)] == ["x"]


@pytest.mark.parametrize("seed", range(20))
def test_random_segments_keep_every_limit(seed: int) -> None:
    rng = random.Random(seed)
    vocabulary = ["a", "the", "speech", "recognition", "is,", "hard.", "Really?", "x" * 50]
    text = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(1, 80)))
    s = timed(text, start=rng.uniform(0, 100), step=rng.uniform(0.1, 1.5))
    layout = SubtitleLayout(rng.randint(10, 50), rng.randint(1, 3), rng.uniform(1.0, 8.0))
    check(one(s, layout), s, layout)


def test_wrap_balances_lines() -> None:
    assert wrap("a b", 42) == ["a b"]
    assert wrap("", 42) == []
    lines = wrap("The quick brown fox jumps over the lazy dog again", 42)
    assert len(lines) == 2 and abs(len(lines[0]) - len(lines[1])) <= 6
    unspaced = wrap("语音识别" * 10, 16)
    assert len(unspaced) == 3 and "".join(unspaced) == "语音识别" * 10
    assert all(len(line) <= 16 for line in unspaced)
    assert wrap("unbreakable" * 5, 20) == ["unbreakable" * 5]
    # A word longer than a line is never cut.
    assert wrap("a " + "x" * 30 + " b", 10) == ["a", "x" * 30, "b"]


def test_vtt_escapes_markup() -> None:
    t = Transcript("a", "en", 1.0, [Segment(0, 0.0, 1.0, "Fish & chips <3 -> yum")])
    assert "Fish &amp; chips &lt;3 -&gt; yum" in render.vtt(t)


def test_srt_and_vtt_parse_back() -> None:
    s1 = timed(JFK)
    s2 = timed("Thank you all very much.", start=s1.end + 1.0)
    s2 = Segment(1, s2.start, s2.end, s2.text, words=s2.words)
    t = Transcript(JFK, "en", s2.end, [s1, s2])
    expected = cues(t)
    parsed = pysrt.from_string(render.srt(t))
    assert [item.index for item in parsed] == list(range(1, len(expected) + 1))
    assert [item.text for item in parsed] == [c.text for c in expected]
    assert [item.start.ordinal for item in parsed] == [round(c.start * 1000) for c in expected]
    captions = webvtt.from_buffer(io.StringIO(render.vtt(t))).captions
    assert [c.text for c in captions] == [c.text for c in expected]
    assert [c.start for c in captions] == [render.clock(c.start, ".") for c in expected]
    assert [c.end for c in captions] == [render.clock(c.end, ".") for c in expected]


def test_layout_from_settings() -> None:
    s = load_settings(
        {
            "STT_SUBTITLE_MAX_LINE_CHARS": "32",
            "STT_SUBTITLE_MAX_LINES": "1",
            "STT_SUBTITLE_MAX_CUE_S": "4.5",
        }
    )
    assert SubtitleLayout.of(s) == SubtitleLayout(32, 1, 4.5)
    assert SubtitleLayout.of(load_settings({})) == SubtitleLayout(42, 2, 6.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STT_SUBTITLE_MAX_LINE_CHARS", "0"),
        ("STT_SUBTITLE_MAX_LINES", "-1"),
        ("STT_SUBTITLE_MAX_CUE_S", "nan"),
        ("STT_SUBTITLE_MAX_CUE_S", "soon"),
    ],
)
def test_bad_layout_settings(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})
