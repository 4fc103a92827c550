"""faster-whisper: one model per process and options, segments turned into a Transcript."""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel
from faster_whisper.vad import VadOptions, get_speech_timestamps

from core.audio import SAMPLE_RATE, Audio
from core.jobspec import JobOptions
from core.transcript import Segment, Transcript, Word
from worker.bundled_models import resolve_model_path

log = logging.getLogger("stt.engine")


@dataclass(frozen=True)
class GuardConfig:
    """When a segment is taken for one Whisper invented (on silence, noise or a loop).

    The first two thresholds are Whisper's own (`no_speech_threshold`, `logprob_threshold`,
    `compression_ratio_threshold` in its transcribe); they also drive the temperature
    fallback, and here they judge every segment that comes out, not only whole windows."""

    enabled: bool = True
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    past_end_s: float = 1.0
    """A segment ending this far past the end of the audio was decoded from the padding
    of Whisper's last 30 s window, not from speech."""


@dataclass(frozen=True)
class EngineConfig:
    device: str = "auto"
    compute_type: str = "auto"
    cpu_threads: int = 0
    beam_size: int = 5
    vad_filter: bool = True
    guard: GuardConfig = field(default_factory=GuardConfig)
    batch_size: int = 0
    """> 0: faster-whisper's BatchedInferencePipeline with this batch (needs the VAD)."""


@dataclass(frozen=True)
class TranscribeOptions:
    language: str | None = None
    word_timestamps: bool = False
    task: str = "transcribe"
    initial_prompt: str | None = None
    temperature: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    extra: dict[str, Any] = field(default_factory=dict)


def transcribe_options(job: JobOptions, language: str | None) -> TranscribeOptions:
    """What the job asked for, as the engine takes it: a temperature of 0 (or none) keeps
    the fallback ladder; any other is used alone."""
    fixed = job.temperature
    return TranscribeOptions(
        language=language,
        word_timestamps=job.word_timestamps,
        task=job.task,
        initial_prompt=job.prompt,
        temperature=(fixed,) if fixed else TranscribeOptions().temperature,
    )


class Cancelled(Exception):
    """The job was cancelled while it ran."""


def resolve_device(device: str, compute_type: str) -> tuple[str, str]:
    """`auto` means CUDA when a GPU is visible; compute type int8 on CPU, float16 on GPU."""
    if device == "auto":
        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


class ReusingWhisperModel(WhisperModel):  # type: ignore[misc]  # faster-whisper is untyped
    """`WhisperModel` that encodes a window once when it is asked for the same one twice in a
    row. Without a language, `transcribe` encodes the first 30 s to detect it, then encodes
    them again to decode them (it never hands the first encoding on): on a long file that is
    one encoder pass in 20 more than the text needs. The answer is the same encoding of the
    same features, so the transcript does not change.

    The last window is kept per thread (a model may serve several) until `forget`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last = threading.local()
        self.encodes = 0
        """Encoder passes run (not those answered from the last one): for tests."""

    def encode(self, features: np.ndarray) -> ctranslate2.StorageView:
        last: tuple[np.ndarray, ctranslate2.StorageView] | None = getattr(self._last, "pair", None)
        if last is not None and np.array_equal(last[0], features):
            return last[1]
        output = super().encode(features)
        self.encodes += 1
        self._last.pair = (np.array(features, copy=True), output)
        return output

    def forget(self) -> None:
        """Drop this thread's last window (after a file: it is never asked for again)."""
        self._last.pair = None


_load_lock = threading.Lock()


@lru_cache(maxsize=4)
def _load(path: str, device: str, compute_type: str, cpu_threads: int) -> WhisperModel:
    return ReusingWhisperModel(
        path, device=device, compute_type=compute_type, cpu_threads=cpu_threads
    )


def load_model(spec: str, config: EngineConfig, cache_dir: Path) -> WhisperModel:
    """The model for `spec`, loaded once per process and kept."""
    device, compute_type = resolve_device(config.device, config.compute_type)
    with _load_lock:
        return _load(resolve_model_path(spec, cache_dir), device, compute_type, config.cpu_threads)


def is_multilingual(model: WhisperModel) -> bool:
    return bool(model.model.is_multilingual)


ProgressCallback = Callable[[float, str], None]
"""Called after each kept segment with the seconds of audio done and the text so far."""

Span = tuple[float, float]


def speech_spans(audio: Audio) -> list[Span]:
    """Where Silero VAD hears speech, in seconds."""
    return [
        (c["start"] / SAMPLE_RATE, c["end"] / SAMPLE_RATE)
        for c in get_speech_timestamps(audio, VadOptions())
    ]


def text_compression_ratio(text: str) -> float:
    """How well `text` compresses (zlib), as Whisper measures repetition."""
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


def hallucination(
    segment: Segment,
    guard: GuardConfig,
    speech: Sequence[Span] | None,
    duration: float | None = None,
) -> str | None:
    """Why `segment` looks invented, or None to keep it. `speech` (VAD spans) is checked
    only when given: with the VAD filter on, Whisper never hears the non-speech anyway.

    Repetition is judged on the segment's own text: the `compression_ratio` faster-whisper
    reports is its whole window's, which is high for speech that is really repeated (a
    refrain, a clip played twice) and was kept by Whisper after its temperature ladder."""
    if not guard.enabled:
        return None
    if (
        segment.no_speech_prob > guard.no_speech_threshold
        and segment.avg_logprob < guard.logprob_threshold
    ):
        return "no speech"
    if text_compression_ratio(segment.text) > guard.compression_ratio_threshold:
        return "repetitive"
    if duration is not None and segment.end > duration + guard.past_end_s:
        return "past the end"
    if speech is not None and not any(
        start < segment.end and segment.start < end for start, end in speech
    ):
        return "outside speech"
    return None


def transcribe(
    model: WhisperModel,
    audio: Audio,
    options: TranscribeOptions,
    config: EngineConfig,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Transcript:
    """Run the model over the audio; the lazy segment generator is consumed exactly once."""
    try:
        return _transcribe(model, audio, options, config, on_progress, should_stop)
    finally:
        if isinstance(model, ReusingWhisperModel):
            model.forget()


def _transcribe(
    model: WhisperModel,
    audio: Audio,
    options: TranscribeOptions,
    config: EngineConfig,
    on_progress: ProgressCallback | None,
    should_stop: Callable[[], bool] | None,
) -> Transcript:
    duration = len(audio) / SAMPLE_RATE
    guard = config.guard
    speech = speech_spans(audio) if guard.enabled and not config.vad_filter else None
    batched = config.batch_size > 0 and config.vad_filter
    runner: Any = BatchedInferencePipeline(model) if batched else model
    extra = {"batch_size": config.batch_size} if batched else {}
    segments_iter, info = runner.transcribe(
        audio,
        language=options.language,
        task=options.task,
        beam_size=config.beam_size,
        vad_filter=config.vad_filter,
        word_timestamps=options.word_timestamps,
        initial_prompt=options.initial_prompt,
        temperature=list(options.temperature),
        no_speech_threshold=guard.no_speech_threshold,
        log_prob_threshold=guard.logprob_threshold,
        compression_ratio_threshold=guard.compression_ratio_threshold,
        **extra,
        **options.extra,
    )
    segments: list[Segment] = []
    texts: list[str] = []
    dropped = 0
    for seg in segments_iter:
        if should_stop is not None and should_stop():
            raise Cancelled
        words = [
            Word(
                word=w.word.strip(),
                start=_sec(w.start),
                end=_sec(w.end),
                probability=round(float(w.probability), 4),
            )
            for w in (seg.words or [])
            if w.word.strip()
        ]
        segment = Segment(
            id=len(segments),
            start=_sec(seg.start),
            end=_sec(seg.end),
            text=seg.text.strip(),
            avg_logprob=float(seg.avg_logprob),
            compression_ratio=float(seg.compression_ratio),
            no_speech_prob=float(seg.no_speech_prob),
            temperature=float(seg.temperature or 0.0),
            tokens=[int(t) for t in seg.tokens],
            words=words,
        )
        reason = hallucination(segment, guard, speech, duration)
        if reason is None:
            segments.append(segment)
            texts.append(seg.text)
        else:
            dropped += 1
            log.info(
                "dropped segment %.2f-%.2f s (%s): %r", segment.start, segment.end, reason, seg.text
            )
        if on_progress is not None:
            on_progress(min(float(seg.end), duration), "".join(texts).strip())
    return Transcript(
        text="".join(texts).strip(),
        language=info.language,
        duration=round(duration, 3),
        segments=segments,
        language_probability=round(float(info.language_probability), 4),
        dropped_segments=dropped,
    )


def _sec(value: float) -> float:
    return round(float(value), 3)
