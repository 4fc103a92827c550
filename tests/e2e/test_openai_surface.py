"""OpenAI's whole transcription surface through the official Python SDK, against the live
server: every response_format and timestamp granularity, prompt and temperature,
translations, models, streaming; subtitles parsed back; silence and noise."""

from __future__ import annotations

import io
import json
import math
import re
import time
import wave
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pysrt
import pytest
import webvtt
from openai import APIError, BadRequestError, NotFoundError, OpenAI
from openai.types import Model
from openai.types.audio import (
    Transcription,
    TranscriptionSegment,
    TranscriptionTextDeltaEvent,
    TranscriptionTextDoneEvent,
    TranscriptionVerbose,
    TranscriptionWord,
    Translation,
    TranslationVerbose,
)

from api.render import SubtitleLayout
from tests.e2e.jobs_client import get
from tests.support import LiveService, clip, error_rate

pytestmark = pytest.mark.e2e

EN = "en_librivox_sense_and_sensibility_0880.wav"  # 3 s: "he was not an ill disposed young man"
FR = "fr_cheetah_test_fr.wav"  # 5 s: "Les deux autres sont situés au bord de la mer jaune."
JFK = "en_jfk_inaugural.flac"  # 11 s, one 10 s Whisper segment: more than one cue
LONG = "en_librivox_shakespeare_sonnet003.mp3"  # 52 s: two 30 s windows, 14 segments
LAYOUT = SubtitleLayout()
SEGMENT_FIELDS = set(TranscriptionSegment.model_fields)


@pytest.fixture(scope="module")
def client(service: LiveService) -> OpenAI:
    return OpenAI(base_url=f"{service.url}/v1", api_key=service.key, max_retries=0)


def transcribe(client: OpenAI, name: str, **params: Any) -> Any:
    """`language` is given unless a test says otherwise: detecting it costs a second pass."""
    params.setdefault("language", clip(name).language)
    with clip(name).path.open("rb") as f:
        return client.audio.transcriptions.create(model="whisper-1", file=f, **params)


def close_enough(text: str, name: str) -> None:
    c = clip(name)
    assert error_rate(c.reference, text, c.language) <= c.baseline_error + 0.15, text


# --- every format and granularity ---------------------------------------------------------

VERBOSE = [None, ["segment"], ["word"], ["word", "segment"]]


@pytest.mark.parametrize("granularities", VERBOSE, ids=lambda g: "+".join(g or ["default"]))
def test_verbose_json(client: OpenAI, granularities: list[str] | None) -> None:
    extra = {"timestamp_granularities": granularities} if granularities else {}
    result = transcribe(client, EN, response_format="verbose_json", **extra)
    assert isinstance(result, TranscriptionVerbose)
    close_enough(result.text, EN)
    assert result.language == "english"
    assert abs(result.duration - clip(EN).duration) < 0.1
    assert result.model_dump()["task"] == "transcribe"
    assert result.usage is not None and result.usage.seconds == math.ceil(result.duration)
    want_segments = not granularities or "segment" in granularities
    want_words = granularities is not None and "word" in granularities
    assert (result.segments is not None) == want_segments
    assert (result.words is not None) == want_words
    if want_segments:
        assert result.segments
        for i, s in enumerate(result.segments):
            assert isinstance(s, TranscriptionSegment)
            assert s.model_fields_set == SEGMENT_FIELDS  # all ten, none missing
            assert s.id == i and 0 <= s.start <= s.end <= result.duration + 0.05
            assert s.tokens and s.text.strip() and 0.0 <= s.no_speech_prob <= 1.0
        assert " ".join(s.text.strip() for s in result.segments) == result.text
    if want_words:
        assert result.words
        for w in result.words:
            assert isinstance(w, TranscriptionWord)
            assert w.word == w.word.strip() and 0 <= w.start <= w.end <= result.duration + 0.05
        assert "".join(w.word for w in result.words) == result.text.replace(" ", "")


def test_json_text_srt_vtt(client: OpenAI) -> None:
    body = transcribe(client, EN)
    assert isinstance(body, Transcription)
    close_enough(body.text, EN)
    text = transcribe(client, EN, response_format="text")
    assert isinstance(text, str) and text == body.text + "\n"
    srt = transcribe(client, EN, response_format="srt")
    assert isinstance(srt, str)
    (cue,) = pysrt.from_string(srt)
    assert cue.index == 1 and cue.text == body.text
    vtt = transcribe(client, EN, response_format="vtt")
    assert isinstance(vtt, str) and vtt.startswith("WEBVTT\n\n")
    (caption,) = webvtt.from_buffer(io.StringIO(vtt)).captions
    assert caption.text == body.text


def test_prompt_and_temperature(client: OpenAI) -> None:
    result = transcribe(
        client, EN, language="en", prompt="A reading from Sense and Sensibility.", temperature=0.3
    )
    close_enough(result.text, EN)
    verbose = transcribe(client, EN, response_format="verbose_json", temperature=0.3)
    assert verbose.segments and {s.temperature for s in verbose.segments} == {0.3}
    with pytest.raises(BadRequestError) as info:
        transcribe(client, EN, temperature=1.5)
    assert info.value.param == "temperature"  # type: ignore[attr-defined]


# --- subtitles ----------------------------------------------------------------------------

CLOCK = re.compile(r"^(\d{2}):(\d{2}):(\d{2})[,.](\d{3}) --> (\d{2}):(\d{2}):(\d{2})[,.](\d{3})$")


def seconds(groups: tuple[str, ...]) -> float:
    h, m, s, ms = map(int, groups)
    return h * 3600 + m * 60 + s + ms / 1000


def check_cues(starts: list[float], ends: list[float], texts: list[str]) -> None:
    """Cues in order, inside the audio, within the layout, and together the whole text."""
    assert len(texts) >= 2, "the 10 s segment should be cut into readable cues"
    assert starts == sorted(starts) and all(e >= s for s, e in zip(starts, ends, strict=True))
    assert all(ends[i] <= starts[i + 1] for i in range(len(starts) - 1))
    assert ends[-1] <= clip(JFK).duration + 0.05
    for start, end, text in zip(starts, ends, texts, strict=True):
        lines = text.split("\n")
        assert 1 <= len(lines) <= LAYOUT.max_lines
        assert all(0 < len(line) <= LAYOUT.max_line_chars for line in lines), lines
        assert end - start <= LAYOUT.max_cue_s
    close_enough(" ".join(t.replace("\n", " ") for t in texts), JFK)


def test_srt_golden(client: OpenAI) -> None:
    raw = transcribe(client, JFK, response_format="srt")
    blocks = raw.split("\n\n")
    assert blocks[-1] == "" and all(blocks[:-1])  # each cue ends with a blank line
    for number, block in enumerate(blocks[:-1], start=1):
        index, times, *_ = block.split("\n")
        assert index == str(number)
        assert CLOCK.match(times), times
    parsed = pysrt.from_string(raw)
    assert [c.index for c in parsed] == list(range(1, len(parsed) + 1))
    check_cues(
        [c.start.ordinal / 1000 for c in parsed],
        [c.end.ordinal / 1000 for c in parsed],
        [c.text for c in parsed],
    )


def test_vtt_golden(client: OpenAI) -> None:
    raw = transcribe(client, JFK, response_format="vtt")
    assert raw.startswith("WEBVTT\n\n")
    for block in raw.split("\n\n")[1:-1]:
        assert CLOCK.match(block.split("\n")[0]), block
    captions = webvtt.from_buffer(io.StringIO(raw)).captions
    check_cues(
        [seconds(CLOCK.match(f"{c.start} --> {c.end}").groups()[:4]) for c in captions],  # type: ignore[union-attr]
        [seconds(CLOCK.match(f"{c.start} --> {c.end}").groups()[4:]) for c in captions],  # type: ignore[union-attr]
        [c.text for c in captions],
    )


# --- translations -------------------------------------------------------------------------

FRENCH_WORDS = {"les", "deux", "autres", "sont", "situés", "au", "bord", "de", "la", "mer"}


def assert_english(text: str) -> None:
    words = set(re.findall(r"[\w']+", text.lower()))
    assert words & {"the", "two", "others", "other", "are", "located", "edge", "sea"}, text
    assert len(words & FRENCH_WORDS) <= 1, text


def test_translation_to_english(client: OpenAI) -> None:
    with clip(FR).path.open("rb") as f:
        result = client.audio.translations.create(model="whisper-1", file=f)
    assert isinstance(result, Translation)
    assert_english(result.text)
    with clip(FR).path.open("rb") as f:
        verbose = client.audio.translations.create(
            model="whisper-1", file=f, response_format="verbose_json"
        )
    assert isinstance(verbose, TranslationVerbose)
    assert verbose.language == "english" and verbose.model_dump()["task"] == "translate"
    assert verbose.segments and " ".join(s.text.strip() for s in verbose.segments) == verbose.text
    assert_english(verbose.text)


def test_translation_as_text_and_srt_without_v1(service: LiveService) -> None:
    client = OpenAI(base_url=service.url, api_key=service.key, max_retries=0)
    with clip(FR).path.open("rb") as f:
        text = client.audio.translations.create(model="whisper-1", file=f, response_format="text")
    assert isinstance(text, str) and text.endswith("\n")
    assert_english(text)
    with clip(FR).path.open("rb") as f:
        srt = client.audio.translations.create(model="whisper-1", file=f, response_format="srt")
    assert_english(" ".join(c.text for c in pysrt.from_string(srt)))


# --- models -------------------------------------------------------------------------------


def test_models(client: OpenAI) -> None:
    models = list(client.models.list())
    assert all(isinstance(m, Model) and m.object == "model" for m in models)
    assert {"whisper-1", "ink-whisper", "ink-whisper-2025-06-04"} <= {m.id for m in models}
    model = client.models.retrieve("whisper-1")
    assert model.id == "whisper-1" and model.owned_by and model.created > 0
    with pytest.raises(NotFoundError) as info:
        client.models.retrieve("gpt-4o-transcribe")
    assert info.value.code == "model_not_found"  # type: ignore[attr-defined]


# --- streaming ----------------------------------------------------------------------------


def completed_at(service: LiveService, job_id: str) -> float:
    body = get(service, job_id).json()
    assert body["status"] == "succeeded", body
    return datetime.fromisoformat(body["completed_at"].replace("Z", "+00:00")).timestamp()


def test_streaming_with_the_sdk(service: LiveService, client: OpenAI) -> None:
    """Deltas arrive while the job runs, one per recognised segment, and join to the text."""
    with clip(LONG).path.open("rb") as f:
        stream = client.audio.transcriptions.create(
            model="whisper-1", file=f, language="en", stream=True
        )
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        job_id = stream.response.headers["x-request-id"]
        events: list[tuple[float, Any]] = [(time.time(), e) for e in stream]
    *deltas, (_, done) = events
    assert isinstance(done, TranscriptionTextDoneEvent) and done.type == "transcript.text.done"
    assert len(deltas) >= 3
    assert all(isinstance(e, TranscriptionTextDeltaEvent) for _, e in deltas)
    assert "".join(e.delta for _, e in deltas) == done.text
    close_enough(done.text, LONG)
    first_delta = deltas[0][0]
    assert first_delta < completed_at(service, job_id) - 1.0, "deltas should precede the end"
    assert done.text == get(service, job_id).json()["result"]["text"]


def test_streaming_framing_and_the_cartesia_path(service: LiveService) -> None:
    """The raw bytes: `data:` lines of JSON and blank lines, as OpenAI sends them; /stt
    streams the same events."""
    with (
        clip(EN).path.open("rb") as f,
        httpx.stream(
            "POST",
            f"{service.url}/stt",
            headers={"X-API-Key": service.key or ""},
            files={"file": (EN, f)},
            data={"model": "ink-whisper", "stream": "true"},
            timeout=120,
        ) as r,
    ):
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-cache"
        raw = "".join(r.iter_text())
    frames = [frame for frame in raw.split("\n\n") if frame and not frame.startswith(":")]
    assert raw.endswith("\n\n")
    assert all(frame.startswith("data: {") and "\n" not in frame for frame in frames)
    assert frames[-1].startswith('data: {"type":"transcript.text.done"')
    events = [json.loads(frame.removeprefix("data: ")) for frame in frames]
    assert "".join(e["delta"] for e in events[:-1]) == events[-1]["text"]
    close_enough(events[-1]["text"], EN)


def test_streaming_error_before_the_stream_is_a_plain_error(client: OpenAI) -> None:
    with pytest.raises(BadRequestError), clip(EN).path.open("rb") as f:
        client.audio.transcriptions.create(model="nope", file=f, stream=True)


def test_a_job_that_ends_badly_raises_in_the_sdk(service: LiveService, client: OpenAI) -> None:
    """Once the stream has begun, a failure is an error event, which the SDK raises: here
    the job is cancelled (through the job API) while it runs."""
    with clip(LONG).path.open("rb") as f:
        stream = client.audio.transcriptions.create(model="whisper-1", file=f, stream=True)
        job_id = stream.response.headers["x-request-id"]
        r = httpx.delete(f"{service.url}/stt/jobs/{job_id}", headers=service.headers())
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        with pytest.raises(APIError, match="cancelled"):
            list(stream)


# --- silence and noise --------------------------------------------------------------------


def write_wav(path: Path, samples: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise: white noise shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    k = np.arange(len(spectrum))
    k[0] = 1
    x = np.fft.irfft(spectrum / np.sqrt(k), n)
    peak: float = np.abs(x).max()
    return x / peak


@pytest.fixture(scope="module")
def non_speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    rng = np.random.default_rng(6)
    n = 16000 * 4
    base = tmp_path_factory.mktemp("non_speech")
    return {
        "silence": write_wav(base / "silence.wav", np.zeros(n)),
        "white": write_wav(base / "white.wav", 0.2 * rng.standard_normal(n)),
        "pink": write_wav(base / "pink.wav", 0.6 * pink(n, rng)),
    }


@pytest.mark.parametrize("kind", ["silence", "white", "pink"])
def test_silence_and_noise_give_empty_text(
    service: LiveService, client: OpenAI, non_speech: dict[str, Path], kind: str
) -> None:
    with non_speech[kind].open("rb") as f:
        result = client.audio.transcriptions.create(
            model="whisper-1", file=f, response_format="verbose_json"
        )
    assert result.text == "" and result.segments == []
    with non_speech[kind].open("rb") as f:
        r = httpx.post(
            f"{service.url}/stt",
            headers=service.headers(),
            files={"file": (f"{kind}.wav", f)},
            data={"model": "ink-whisper", "language": "en"},
            timeout=120,
        )
    assert r.status_code == 200 and r.json()["text"] == ""
