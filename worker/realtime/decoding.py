"""faster-whisper and Silero VAD as the streaming policy's decoder and speech finder.

Two decodes of different cost:
- `final`: the batch path itself (`worker.engine.transcribe`: beam 5, the VAD filter, the
  temperature fallback, the hallucination guard, word timestamps), once per utterance, so
  a final says what a batch transcription of that audio says;
- `interim`: greedy, no timestamps, and the encoder run over the audio plus a little
  silence instead of Whisper's full 30 s (CTranslate2 takes shorter inputs; the encoder is
  most of a decode's cost). Whisper was trained on 30 s inputs and may loop on a short
  one, so the output is capped at a length the audio can hold and a tail repeating what
  came before is cut. Good enough to show, never made final.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_ctranslate2_storage
from faster_whisper.vad import VadOptions, get_speech_timestamps

from core.audio import SAMPLE_RATE, Audio
from worker.engine import EngineConfig, TranscribeOptions, transcribe
from worker.realtime.agreement import Word

VAD = VadOptions(min_silence_duration_ms=300, speech_pad_ms=100)
"""Tighter than faster-whisper's batch defaults (2 s of silence, 400 ms pads): the policy
needs to see a pause of `max_silence_duration_secs` at the window's end."""

INTERIM_PAD_S = 3.0
"""Silence after the audio in an interim's encoder input (less makes Whisper loop)."""
INTERIM_MIN_S = 5.0
TOKENS_PER_S = 8
"""An upper bound on speech's token rate: the cap on an interim's length."""


def find_speech(audio: Audio) -> list[tuple[float, float]]:
    """Where Silero VAD hears speech in a window, in seconds from its start."""
    return [
        (c["start"] / SAMPLE_RATE, c["end"] / SAMPLE_RATE)
        for c in get_speech_timestamps(audio, VAD)
    ]


def cut_loop(words: list[str]) -> list[str]:
    """`words` without a tail that repeats the words just before it (a decoding loop):
    a run of period p that goes on for p + 2 words or more (5 at least) is cut after its
    first turn."""
    keys = [_key(w) for w in words]
    n = len(keys)
    for p in range(2, n // 2 + 1):
        run = 0
        for i in range(n - 1, p - 1, -1):
            if keys[i] != keys[i - p]:
                break
            run += 1
        if run >= max(p, 3) + 2:
            return words[: n - run]
    return words


def _key(word: str) -> str:
    return "".join(c for c in word.lower() if c.isalnum() or c == "'")


class WhisperDecoder:
    """The policy's `Decoder` over a loaded faster-whisper model."""

    def __init__(
        self,
        model: Any,
        language: str | None,
        interim_beam: int = 1,
        config: EngineConfig | None = None,
    ) -> None:
        self.model = model
        self.language = language
        self.interim_beam = interim_beam
        self.config = config or EngineConfig()
        """The batch path's settings (beam 5, VAD filter, guard by default)."""
        self._tokenizer: Tokenizer | None = None if language is None else self._make(language)

    def _make(self, language: str | None) -> Tokenizer:
        multilingual = bool(self.model.model.is_multilingual)
        return Tokenizer(
            self.model.hf_tokenizer,
            multilingual,
            task="transcribe" if multilingual else None,
            language=language if multilingual else None,
        )

    def final(self, audio: Audio) -> list[Word]:
        transcript = transcribe(
            self.model,
            audio,
            TranscribeOptions(language=self.language, word_timestamps=True),
            self.config,
        )
        return [
            Word(" " + w.word, w.start, w.end) for seg in transcript.segments for w in seg.words
        ]

    def interim(self, audio: Audio) -> list[str]:
        seconds = len(audio) / SAMPLE_RATE
        span = min(30.0, max(INTERIM_MIN_S, math.ceil(seconds + INTERIM_PAD_S)))
        samples = int(span * SAMPLE_RATE)
        padded = np.pad(audio, (0, max(0, samples - len(audio))))[:samples]
        features = self.model.feature_extractor(padded, padding=0)[:, : int(span * 100)]
        encoded = self.model.model.encode(
            get_ctranslate2_storage(np.ascontiguousarray(features[None])), to_cpu=False
        )
        tokenizer = self._tokenizer or self._detect(encoded)
        result = self.model.model.generate(
            encoded,
            [[*tokenizer.sot_sequence, tokenizer.no_timestamps]],
            beam_size=self.interim_beam,
            max_length=min(224, int(seconds * TOKENS_PER_S) + 8),
            return_no_speech_prob=True,
        )[0]
        if result.no_speech_prob > 0.6:
            return []
        text = tokenizer.decode(result.sequences_ids[0])
        return cut_loop([" " + w for w in text.split()])

    def _detect(self, encoded: Any) -> Tokenizer:
        """The language of a session that named none, from its first interim (kept)."""
        if not self.model.model.is_multilingual:
            self._tokenizer = self._make(None)
            return self._tokenizer
        best = self.model.model.detect_language(encoded)[0][0][0]
        self._tokenizer = self._make(best[2:-2])
        return self._tokenizer


def whisper_decoder(
    model: Any, language: str | None, beam_size: int = 1, config: EngineConfig | None = None
) -> WhisperDecoder:
    """Interims greedy (`beam_size`), finals with the batch path's `config`."""
    return WhisperDecoder(model, language, interim_beam=beam_size, config=config)
