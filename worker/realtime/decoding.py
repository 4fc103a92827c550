"""faster-whisper and Silero VAD as the streaming policy's decoder and speech finder."""

from __future__ import annotations

from typing import Any

from faster_whisper.vad import VadOptions, get_speech_timestamps

from core.audio import SAMPLE_RATE, Audio
from worker.realtime.agreement import Decoder, Word

VAD = VadOptions(min_silence_duration_ms=300, speech_pad_ms=100)
"""Tighter than faster-whisper's batch defaults (2 s of silence, 400 ms pads): the policy
needs to see a pause of `max_silence_duration_secs` at the window's end."""


def find_speech(audio: Audio) -> list[tuple[float, float]]:
    """Where Silero VAD hears speech in a window, in seconds from its start."""
    return [
        (c["start"] / SAMPLE_RATE, c["end"] / SAMPLE_RATE)
        for c in get_speech_timestamps(audio, VAD)
    ]


def whisper_decoder(model: Any, language: str | None, beam_size: int) -> Decoder:
    """Decode a window with word timestamps; segments Whisper itself marks as no speech
    (high no-speech probability and low confidence) are left out."""

    def decode(audio: Audio, prompt: str) -> list[Word]:
        segments, _ = model.transcribe(
            audio,
            language=language,
            beam_size=beam_size,
            word_timestamps=True,
            condition_on_previous_text=False,
            initial_prompt=prompt or None,
            vad_filter=False,
            temperature=0.0,
        )
        words: list[Word] = []
        for seg in segments:
            if seg.no_speech_prob > 0.6 and seg.avg_logprob < -1.0:
                continue
            words += [Word(w.word, float(w.start), float(w.end)) for w in seg.words or []]
        return words

    return decode
