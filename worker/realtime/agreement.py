"""Streaming decode policy: a growing window, LocalAgreement-2, VAD gating, trims at finals.

After each new step of audio the whole (untrimmed) window is decoded. Words that two
consecutive decodes agree on (their common prefix) are committed; the rest is tentative.
Interim results show committed + tentative text since the last final. A final is made
- at a pause (no speech for `max_silence_s` at the end of the window): the whole window
  is decoded once more and everything in it becomes final;
- during long speech, at the end of the last committed sentence once the window is longer
  than `trim_after_s` (or at the last committed word once it nears Whisper's 30 s);
- on `finalize`, from the whole window.
The window is then trimmed at the final's end. Where the window holds no speech (Silero
VAD, or quieter than `min_volume`) nothing is decoded, so CPU goes only to speech.

Pure logic: the decoder and the speech finder are passed in (tests give fakes).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from core.audio import SAMPLE_RATE, Audio


@dataclass(frozen=True)
class Word:
    text: str
    """As Whisper writes it, with its leading space."""
    start: float
    end: float

    @property
    def key(self) -> str:
        return re.sub(r"[^\w']", "", self.text.lower())

    def shifted(self, offset: float) -> Word:
        return Word(self.text, round(self.start + offset, 3), round(self.end + offset, 3))


Decoder = Callable[[Audio, str], list[Word]]
"""Decode a window (16 kHz) with a prompt; words with times from the window's start."""
SpeechFinder = Callable[[Audio], list[tuple[float, float]]]
"""Speech spans of a window, in seconds from its start."""


@dataclass(frozen=True)
class Result:
    """One transcript to send: the text since the last final."""

    text: str
    is_final: bool
    words: list[Word]
    start_s: float
    end_s: float
    trimmed_to_s: float | None = None
    """For a final: the audio time the window now starts at (the checkpoint)."""


@dataclass
class Policy:
    min_step_s: float = 1.0
    trim_after_s: float = 8.0
    max_window_s: float = 24.0
    keep_silence_s: float = 1.0
    """Silence kept at the window's head when silence is dropped (speech may be starting)."""


_SENTENCE_END = (".", "?", "!")


@dataclass
class StreamState:
    """One session's decoding state (16 kHz float audio in, transcripts out)."""

    decode: Decoder
    find_speech: SpeechFinder
    max_silence_s: float = 1.0
    min_volume: float = 0.0
    start_s: float = 0.0
    prompt: str = ""
    finals: int = 0
    policy: Policy = field(default_factory=Policy)

    def __post_init__(self) -> None:
        self.window: Audio = np.zeros(0, dtype=np.float32)
        self.window_start = self.start_s
        self.final_end = self.start_s
        self.committed: list[Word] = []
        self.tentative: list[Word] = []
        self.decoded_to = self.start_s
        self._last_interim = ""

    @property
    def end_s(self) -> float:
        return self.window_start + len(self.window) / SAMPLE_RATE

    def append(self, audio: Audio) -> None:
        self.window = np.concatenate([self.window, audio]) if len(self.window) else audio

    def drop_before(self, t: float) -> None:
        """Forget audio before `t` (a resumed session replays from an entry's start)."""
        cut = round((t - self.window_start) * SAMPLE_RATE)
        if cut > 0:
            self.window = self.window[cut:]
            self.window_start = t

    def ready(self) -> bool:
        return self.end_s - self.decoded_to >= self.policy.min_step_s

    # -- steps -------------------------------------------------------------------------

    def step(self) -> list[Result]:
        """Decode the window after new audio; the transcripts it gives (maybe none)."""
        self.decoded_to = self.end_s
        spans = self._speech()
        if not spans:
            if not self.committed and not self.tentative:
                self._drop_silence()
            return []
        silence_tail = len(self.window) / SAMPLE_RATE - spans[-1][1]
        if silence_tail >= self.max_silence_s:
            return self.flush()
        self._agree(self._decode_window())
        out: list[Result] = []
        final = self._final_at_sentence_end()
        if final is not None:
            out.append(final)
        interim = self._interim()
        if interim is not None:
            out.append(interim)
        return out

    def flush(self) -> list[Result]:
        """Everything heard so far as one final (on `finalize`, at a pause, at the end)."""
        self.decoded_to = self.end_s
        words = list(self.committed)
        if self._speech():
            words += self._fresh(self._decode_window(), words)
        end = self.end_s
        start = self.final_end
        self.committed, self.tentative = [], []
        self.window = np.zeros(0, dtype=np.float32)
        self.window_start = end
        self._last_interim = ""
        if not words:
            self.final_end = end
            return []
        return [self._final(words, start, end)]

    # -- internals ---------------------------------------------------------------------

    def _speech(self) -> list[tuple[float, float]]:
        if not len(self.window):
            return []
        if self.min_volume > 0 and float(np.sqrt(np.mean(self.window**2))) < self.min_volume:
            return []
        return self.find_speech(self.window)

    def _drop_silence(self) -> None:
        keep = int(self.policy.keep_silence_s * SAMPLE_RATE)
        if len(self.window) > keep:
            self.window_start = self.end_s - keep / SAMPLE_RATE
            self.window = self.window[-keep:]
            self.final_end = max(self.final_end, self.window_start)

    def _decode_window(self) -> list[Word]:
        # No prompt from the text already heard: given one, Whisper drops words that repeat
        # it (JFK's "ask what you can do for" right after "... can do for you" vanished).
        # The window itself (not trimmed before a final) is the context.
        return [w.shifted(self.window_start) for w in self.decode(self.window, "")]

    def _fresh(self, words: list[Word], committed: list[Word]) -> list[Word]:
        """The decoded words past what is committed (whisper_streaming's insert rule)."""
        last_end = committed[-1].end if committed else self.final_end
        fresh = [w for w in words if w.start > last_end - 0.1]
        if fresh and committed and abs(fresh[0].start - last_end) < 1.0:
            for n in range(min(len(committed), len(fresh), 5), 0, -1):
                if [w.key for w in committed[-n:]] == [w.key for w in fresh[:n]]:
                    fresh = fresh[n:]
                    break
        return fresh

    def _agree(self, words: list[Word]) -> None:
        fresh = self._fresh(words, self.committed)
        agreed = 0
        while (
            agreed < len(fresh)
            and agreed < len(self.tentative)
            and fresh[agreed].key == self.tentative[agreed].key
        ):
            agreed += 1
        self.committed += fresh[:agreed]
        self.tentative = fresh[agreed:]

    def _final_at_sentence_end(self) -> Result | None:
        length = self.end_s - self.window_start
        if length < self.policy.trim_after_s or not self.committed:
            return None
        cut = None
        for i in range(len(self.committed) - 1, -1, -1):
            if self.committed[i].text.rstrip().endswith(_SENTENCE_END):
                cut = i
                break
        if cut is None and length >= self.policy.max_window_s:
            cut = len(self.committed) - 1
        if cut is None:
            return None
        words, self.committed = self.committed[: cut + 1], self.committed[cut + 1 :]
        end = words[-1].end
        start = self.final_end
        self.drop_before(max(end, self.window_start))
        self._last_interim = ""
        return self._final(words, start, end)

    def _final(self, words: list[Word], start: float, end: float) -> Result:
        text = self._delta(words)
        self.prompt = (self.prompt + text)[-400:]
        self.finals += 1
        self.final_end = end
        return Result(text, True, words, start, end, trimmed_to_s=self.window_start)

    def _interim(self) -> Result | None:
        words = self.committed + self.tentative
        text = self._delta(words)
        if not text.strip() or text == self._last_interim:
            return None
        self._last_interim = text
        return Result(text, False, words, self.final_end, self.end_s)

    def _delta(self, words: list[Word]) -> str:
        text = "".join(w.text for w in words)
        return text.lstrip() if self.finals == 0 else " " + text.lstrip()
