"""The official OpenAI Node SDK (npm `openai`, locked in tests/node) against the live server.

`tests/node/openai_surface.mjs` makes the calls with the SDK, changed in nothing but base URL
and key, and prints what the SDK returned; the assertions are here. The SDK is installed
with `npm ci` into tests/node/node_modules (git-ignored) the first time, or when the lock
file names another version.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pysrt
import pytest
import webvtt

from tests.support import ROOT, LiveService, clip, error_rate

pytestmark = pytest.mark.e2e

NODE_DIR = ROOT / "tests" / "node"
EN = "en_librivox_sense_and_sensibility_0880.wav"
FR = "fr_cheetah_test_fr.wav"
SEGMENT_FIELDS = {
    "id",
    "seek",
    "start",
    "end",
    "text",
    "tokens",
    "temperature",
    "avg_logprob",
    "compression_ratio",
    "no_speech_prob",
}


def _installed_version() -> str | None:
    manifest = NODE_DIR / "node_modules" / "openai" / "package.json"
    if not manifest.exists():
        return None
    return str(json.loads(manifest.read_text())["version"])


def _locked_version() -> str:
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    return str(lock["packages"]["node_modules/openai"]["version"])


@pytest.fixture(scope="session")
def node_sdk() -> str:
    """The `node` to run the script with, once the locked SDK is installed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("the Node SDK test needs node and npm on the PATH")
    major = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    if int(major.stdout.strip().lstrip("v").split(".")[0]) < 20:
        pytest.skip(f"the OpenAI Node SDK needs Node 20 or later; found {major.stdout.strip()}")
    if _installed_version() != _locked_version():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            check=True,
            timeout=300,
        )
    return node


@pytest.fixture(scope="module")
def results(service: LiveService, node_sdk: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "STT_URL": service.url,
        "STT_KEY": service.key or "",
        "STT_CLIP_EN": str(clip(EN).path),
        "STT_CLIP_FR": str(clip(FR).path),
        "STT_CLIP_STREAM": str(clip(EN).path),
    }
    out = subprocess.run(
        [node_sdk, str(NODE_DIR / "openai_surface.mjs")],
        cwd=NODE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    body: dict[str, Any] = json.loads(out.stdout)
    return body


def close_enough(text: str, name: str = EN) -> None:
    c = clip(name)
    assert error_rate(c.reference, text, c.language) <= c.baseline_error + 0.15, text


def by_format(results: dict[str, Any], fmt: str, granularities: list[str] | None = None) -> Any:
    (entry,) = [
        t
        for t in results["transcriptions"]
        if t["format"] == fmt and t["granularities"] == granularities
    ]
    return entry


def test_json_and_text_formats(results: dict[str, Any]) -> None:
    body = by_format(results, "json")
    assert body["kind"] == "object"
    close_enough(body["result"]["text"])
    text = by_format(results, "text")
    assert text["kind"] == "string" and text["result"] == body["result"]["text"] + "\n"


def test_subtitles_parse(results: dict[str, Any]) -> None:
    srt = by_format(results, "srt")
    assert srt["kind"] == "string"
    cues = pysrt.from_string(srt["result"])
    assert [c.index for c in cues] == list(range(1, len(cues) + 1)) and cues
    close_enough(" ".join(c.text for c in cues))
    vtt = by_format(results, "vtt")
    captions = webvtt.from_buffer(io.StringIO(vtt["result"])).captions
    assert [c.text for c in captions] == [c.text for c in cues]


@pytest.mark.parametrize("granularities", [None, ["segment"], ["word"], ["word", "segment"]])
def test_verbose_json(results: dict[str, Any], granularities: list[str] | None) -> None:
    entry = by_format(results, "verbose_json", granularities)
    body = entry["result"]
    assert entry["kind"] == "object"
    assert body["task"] == "transcribe" and body["language"] == "english"
    assert abs(body["duration"] - clip(EN).duration) < 0.1
    close_enough(body["text"])
    assert ("segments" in body) == (not granularities or "segment" in granularities)
    assert ("words" in body) == bool(granularities and "word" in granularities)
    for segment in body.get("segments", []):
        assert set(segment) == SEGMENT_FIELDS
    for word in body.get("words", []):
        assert set(word) == {"word", "start", "end"} and word["start"] <= word["end"]


def test_prompt_and_temperature(results: dict[str, Any]) -> None:
    close_enough(results["options"]["text"])


def test_translations(results: dict[str, Any]) -> None:
    kinds = {t["format"]: t for t in results["translations"]}
    assert kinds["json"]["kind"] == "object" and kinds["text"]["kind"] == "string"
    verbose = kinds["verbose_json"]["result"]
    assert verbose["task"] == "translate" and verbose["language"] == "english"
    for text in (kinds["json"]["result"]["text"], kinds["text"]["result"], verbose["text"]):
        words = set(text.lower().replace(".", " ").replace(",", " ").split())
        assert words & {"the", "two", "other", "others", "located", "edge", "sea"}, text
        assert not words & {"les", "deux", "autres", "sont", "mer"}, text


def test_models(results: dict[str, Any]) -> None:
    ids = {m["id"] for m in results["models"]}
    assert {"whisper-1", "ink-whisper"} <= ids
    assert all(m["object"] == "model" and isinstance(m["created"], int) for m in results["models"])
    assert results["model"]["id"] == "whisper-1"
    assert results["unknown_model"] == {
        "not_found": True,
        "status": 404,
        "code": "model_not_found",
        "param": "model",
    }


def test_stream(results: dict[str, Any]) -> None:
    events = results["stream"]
    *deltas, done = events
    assert done["type"] == "transcript.text.done"
    assert deltas and all(e["type"] == "transcript.text.delta" for e in deltas)
    assert "".join(e["delta"] for e in deltas) == done["text"]
    close_enough(done["text"])


def test_lock_file_pins_the_sdk() -> None:
    package = json.loads((NODE_DIR / "package.json").read_text())
    assert package["dependencies"]["openai"] == _locked_version()
    assert (ROOT / ".gitignore").read_text().count("/tests/node/node_modules/") == 1
    assert Path(NODE_DIR / "openai_surface.mjs").exists()
