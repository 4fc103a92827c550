"""Streaming decode policy: VAD-bounded utterances, each made final by one batch decode.

The window holds the audio since the last final. Every `check_s` of new audio Silero VAD
looks at it (cheap); Whisper runs only where there is speech:
- interims: once at least `interim_step_s` of new speech arrived, a cheap decode of the
  window (greedy, no timestamps, short encoder input). Words two consecutive interim
  decodes agree on are kept as a stable prefix (LocalAgreement-2) that later interims
  keep; the rest is tentative. An interim shows stable + tentative since the last final.
- finals: the utterance is decoded once with the batch path's options (beam 5, word
  timestamps), so a final says what batch transcription of that audio says. A final is
  made at a pause (no speech for `max_silence_s` at the window's end), on `finalize`,
  past `cut_after_s` at the window's last inner pause (a VAD gap: no word is cut), and at
  `max_window_s` (no pause at all) at the last word ending a second before the window's
  end, a sentence end if there is one. The window is then trimmed at the final's end.
Silence (no VAD speech, or quieter than `min_volume`) is never decoded and is dropped.

Pure logic: the decoder and the speech finder are passed in (tests give fakes).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Protocol

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
        return _key(self.text)

    def shifted(self, offset: float) -> Word:
        return Word(self.text, round(self.start + offset, 3), round(self.end + offset, 3))


def _key(text: str) -> str:
    return re.sub(r"[^\w']", "", text.lower())


class Decoder(Protocol):
    def final(self, audio: Audio) -> list[Word]:
        """The words of an utterance (16 kHz), times from its start, as batch decodes it."""
        ...

    def interim(self, audio: Audio) -> list[str]:
        """A cheap guess at the words of a window, each with its leading space."""
        ...


SpeechFinder = Callable[[Audio], list[tuple[float, float]]]
"""Speech spans of a window, in seconds from its start."""


@dataclass(frozen=True)
class Result:
    """One transcript to send: the text since the last final."""

    text: str
    is_final: bool
    words: list[Word]
    """Timed words (finals only: interims come from a decode without timestamps)."""
    start_s: float
    end_s: float
    trimmed_to_s: float | None = None
    """For a final: the audio time the window now starts at (the checkpoint)."""


@dataclass
class Policy:
    check_s: float = 0.5
    """New audio between two looks (VAD) at the window."""
    interim_step_s: float = 1.0
    """New speech needed before another interim decode."""
    cut_after_s: float = 20.0
    """A window this long is made final up to its last inner pause. Long, so a final is
    decoded with as much context as batch's 30 s window gives (at 8 s, tiny.en's finals
    were 1.1 WER points off batch over 27 corpus clips offline; at 20 s, 0.0)."""
    min_final_s: float = 2.0
    """An inner pause this close to the window's start is not cut at."""
    max_window_s: float = 28.0
    """A window this long with no pause is made final up to a word a second before its end
    (under Whisper's 30 s input, so the decode is one window)."""
    keep_silence_s: float = 1.0
    """Silence kept at the window's head when silence is dropped (speech may be starting)."""


_SENTENCE_END = (".", "?", "!")
_FORCED_TAIL_S = 1.0
"""What a forced final leaves undecided at the window's end (its last word may be cut)."""


@dataclass
class StreamState:
    """One session's decoding state (16 kHz float audio in, transcripts out)."""

    decode: Decoder
    find_speech: SpeechFinder
    max_silence_s: float = 1.0
    min_volume: float = 0.0
    start_s: float = 0.0
    prompt: str = ""
    """The final text so far (its tail; checkpointed with the session)."""
    finals: int = 0
    policy: Policy = field(default_factory=Policy)

    def __post_init__(self) -> None:
        self.window: Audio = np.zeros(0, dtype=np.float32)
        self.window_start = self.start_s
        self.final_end = self.start_s
        self.decoded_to = self.start_s
        """Audio time up to which the window has been looked at."""
        self.stable: list[str] = []
        self.tentative: list[str] = []
        self.interim_to = 0.0
        """Window time up to which the last interim decode heard (0: none since the final)."""
        self._last_interim = ""

    @property
    def end_s(self) -> float:
        return self.window_start + len(self.window) / SAMPLE_RATE

    @property
    def length_s(self) -> float:
        return len(self.window) / SAMPLE_RATE

    def append(self, audio: Audio) -> None:
        self.window = np.concatenate([self.window, audio]) if len(self.window) else audio

    def drop_before(self, t: float) -> None:
        """Forget audio before `t` (a resumed session replays from an entry's start)."""
        cut = round((t - self.window_start) * SAMPLE_RATE)
        if cut > 0:
            self.window = self.window[cut:]
            self.window_start = t
            self.interim_to = max(0.0, self.interim_to - cut / SAMPLE_RATE)

    def ready(self) -> bool:
        return self.end_s - self.decoded_to >= self.policy.check_s

    # -- steps -------------------------------------------------------------------------

    def step(self) -> list[Result]:
        """Look at the window after new audio; the transcripts that gives (maybe none)."""
        self.decoded_to = self.end_s
        spans = self._speech()
        if not spans:
            if self._last_interim and self.length_s >= self.max_silence_s:
                return self.flush()  # VAD lost what it heard: let the batch decode judge
            if not self._last_interim:
                self._drop_silence()
            return []
        if self.length_s - spans[-1][1] >= self.max_silence_s:
            return self.flush()
        out: list[Result] = []
        final = self._final_at_pause(spans) or self._forced_final()
        if final is not None:
            out.append(final)
            spans = self._speech()
        interim = self._interim(spans) if spans else None
        if interim is not None:
            out.append(interim)
        return out

    def flush(self) -> list[Result]:
        """Everything heard so far as one final (on `finalize`, at a pause, at the end)."""
        self.decoded_to = self.end_s
        heard = bool(self._last_interim) or bool(self._speech())
        words = self._decode_final(self.window) if heard else []
        end = self.end_s
        return self._cut(words, end, end)

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

    def _decode_final(self, audio: Audio) -> list[Word]:
        # No prompt from the text already final: given one, Whisper drops words that repeat
        # it (JFK's "ask what you can do for" right after "... can do for you" vanished).
        return [w.shifted(self.window_start) for w in self.decode.final(audio)]

    def _final_at_pause(self, spans: list[tuple[float, float]]) -> Result | None:
        """Past `cut_after_s`, a final up to the middle of the window's last inner pause."""
        if self.length_s < self.policy.cut_after_s or len(spans) < 2:
            return None
        gaps = [(a[1] + b[0]) / 2 for a, b in pairwise(spans)]
        cuts = [g for g in gaps if g >= self.policy.min_final_s]
        if not cuts:
            return None
        cut = round(cuts[-1] * SAMPLE_RATE)
        words = self._decode_final(self.window[:cut])
        at = self.window_start + cut / SAMPLE_RATE
        made = self._cut(words, at, at)  # no words (noise): trimmed all the same
        return made[0] if made else None

    def _forced_final(self) -> Result | None:
        """No pause for `max_window_s`: final up to the last sentence end (or word) that
        ends a second before the window does; the rest waits in the window."""
        if self.length_s < self.policy.max_window_s:
            return None
        words = self._decode_final(self.window)
        settled = [w for w in words if w.end <= self.end_s - _FORCED_TAIL_S]
        if not settled:
            return None
        ends = [i for i, w in enumerate(settled) if w.text.rstrip().endswith(_SENTENCE_END)]
        last = ends[-1] if ends else len(settled) - 1
        kept = settled[: last + 1]
        following = words[last + 1].start if last + 1 < len(words) else kept[-1].end
        at = max(kept[-1].end, min(following, self.end_s - _FORCED_TAIL_S))
        return self._cut(kept, kept[-1].end, at)[0]

    def _cut(self, words: list[Word], end: float, trim_to: float) -> list[Result]:
        """`words` (up to `end`) as a final; the window then starts at `trim_to`."""
        start = self.final_end
        self.drop_before(min(trim_to, self.end_s))
        self.stable, self.tentative = [], []
        self.interim_to = 0.0
        self._last_interim = ""
        self.final_end = end
        if not words:
            return []
        text = self._delta(words)
        self.prompt = (self.prompt + text)[-400:]
        self.finals += 1
        return [Result(text, True, words, start, end, trimmed_to_s=self.window_start)]

    def _interim(self, spans: list[tuple[float, float]]) -> Result | None:
        new_speech = sum(max(0.0, e - max(s, self.interim_to)) for s, e in spans)
        if new_speech < self.policy.interim_step_s:
            return None
        self.interim_to = self.length_s
        self._agree(self.decode.interim(self.window))
        text = self._delta_text("".join(self.stable + self.tentative))
        if not text.strip() or text == self._last_interim:
            return None
        self._last_interim = text
        return Result(text, False, [], self.final_end, self.end_s)

    def _agree(self, heard: list[str]) -> None:
        """LocalAgreement-2: the words past the stable prefix that this decode and the
        last one agree on join it; the rest is tentative."""
        fresh = heard[len(self.stable) :]
        agreed = 0
        while (
            agreed < len(fresh)
            and agreed < len(self.tentative)
            and _key(fresh[agreed]) == _key(self.tentative[agreed])
        ):
            agreed += 1
        self.stable += fresh[:agreed]
        self.tentative = fresh[agreed:]

    def _delta(self, words: list[Word]) -> str:
        return self._delta_text("".join(w.text for w in words))

    def _delta_text(self, text: str) -> str:
        return text.lstrip() if self.finals == 0 else " " + text.lstrip()
