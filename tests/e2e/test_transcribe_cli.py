"""`stt transcribe`, the real command, against a live server and worker on loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pysrt
import pytest
import webvtt

from core.db import make_engine, session_factory, transaction
from core.keys import hash_key
from core.models import ApiKey
from tests.support import ROOT, LiveService, clip, error_rate, free_port

pytestmark = pytest.mark.e2e

EN = "en_jfk_inaugural.flac"
DE = "de_cheetah_test_de.wav"
LONG = "de_librivox_aeneas_de.mp3"
CLI_KEY = "sk-stt-cli-tenant-0123456789"


@pytest.fixture(scope="module")
def cli_key(session_pg_url: str) -> str:
    with transaction(session_factory(make_engine(session_pg_url))) as session:
        session.add(
            ApiKey(tenant="cli", name="cli", key_hash=hash_key(CLI_KEY), prefix=CLI_KEY[:11])
        )
    return CLI_KEY


def command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "api.cli", "transcribe", *map(str, args)]


def environment(service: LiveService, key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STT_")}
    return {**env, "STT_URL": service.url, "STT_API_KEY": key}


def stt(
    env: dict[str, str], *args: str | Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args), env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def uploads(service: LiveService) -> int:
    """POSTs to /stt/jobs the server has answered, from its own metrics."""
    text = httpx.get(f"{service.url}/metrics").text
    return sum(
        int(float(m))
        for m in re.findall(
            r'^stt_http_requests_total\{[^}]*method="POST"[^}]*route="/stt/jobs"[^}]*\} (\S+)',
            text,
            re.M,
        )
    )


def test_two_files_every_format_quiet_off_a_terminal(
    service: LiveService, cli_key: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = stt(
        environment(service, cli_key),
        clip(EN).path,
        clip(DE).path,
        "--output_dir",
        out,
        "--concurrency",
        "2",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""  # quiet when not on a terminal
    for name in (EN, DE):
        c = clip(name)
        stem = Path(name).stem
        assert (
            error_rate(c.reference, (out / f"{stem}.txt").read_text(), c.language)
            <= c.baseline_error + 0.15
        )
        subs = pysrt.open(str(out / f"{stem}.srt"))
        assert (
            error_rate(c.reference, " ".join(s.text for s in subs), c.language)
            <= c.baseline_error + 0.15
        )
        captions = webvtt.read(str(out / f"{stem}.vtt"))
        assert (
            error_rate(c.reference, " ".join(x.text for x in captions.captions), c.language)
            <= c.baseline_error + 0.15
        )
        rows = (out / f"{stem}.tsv").read_text().splitlines()
        assert rows[0] == "start\tend\ttext" and len(rows) > 1
        for row in rows[1:]:
            start, end, text = row.split("\t")
            assert 0 <= int(start) <= int(end) and text
        verbose = json.loads((out / f"{stem}.json").read_text())
        assert verbose["segments"] and verbose["words"] and verbose["task"] == "transcribe"


def test_one_format_language_and_translation(
    service: LiveService, cli_key: str, tmp_path: Path
) -> None:
    env = environment(service, cli_key)
    result = stt(
        env,
        clip(DE).path,
        "-o",
        tmp_path,
        "--output_format",
        "json",
        "--task",
        "translate",
        "--model",
        "whisper-1",
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "de_cheetah_test_de.json"
    ]
    body = json.loads((tmp_path / "de_cheetah_test_de.json").read_text())
    assert body["task"] == "translate" and body["language"] == "english"
    srt = stt(env, clip(EN).path, "-o", tmp_path, "-f", "srt", "--language", "en")
    assert srt.returncode == 0, srt.stderr
    assert pysrt.open(str(tmp_path / "en_jfk_inaugural.srt"))


def test_a_failed_file_is_named_and_the_others_go_on(
    service: LiveService, cli_key: str, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.mp3"
    notes.write_text("not audio at all\n" * 100)
    out = tmp_path / "out"
    result = stt(
        environment(service, cli_key),
        notes,
        tmp_path / "missing.wav",
        clip(EN).path,
        "-o",
        out,
        "-f",
        "txt",
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith(f"{notes}: ") and "decod" in line for line in lines), lines
    assert any("missing.wav: no such file or folder" in line for line in lines), lines
    assert "Traceback" not in result.stderr
    assert (out / "en_jfk_inaugural.txt").read_text().strip()
    assert not (out / "notes.txt").exists()


def test_a_wrong_key_is_one_line(service: LiveService, tmp_path: Path) -> None:
    result = stt(environment(service, "sk-stt-wrong-key"), clip(EN).path, "-o", tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "stt transcribe: the server refused the API key: the API key is not valid"
    ]


def test_an_unreachable_server_is_one_line(cli_key: str, tmp_path: Path) -> None:
    env = {**os.environ, "STT_API_KEY": cli_key}
    url = f"http://127.0.0.1:{free_port()}"
    result = stt(env, clip(EN).path, "--url", url, "-o", tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"stt transcribe: cannot reach the server at {url}"
    )


def test_no_key_is_one_line(service: LiveService, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STT_")}
    result = stt(env, clip(EN).path, "--url", service.url, "-o", tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "stt transcribe: no API key: pass --api-key or set STT_API_KEY"
    ]


def test_an_interrupted_run_resumes_without_uploading_again(
    service: LiveService, cli_key: str, tmp_path: Path
) -> None:
    env = environment(service, cli_key)
    book = tmp_path / ".stt-jobs.json"
    proc = subprocess.Popen(
        command(clip(LONG).path, "-o", tmp_path, "-f", "txt"),
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not book.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert book.exists(), "the job book was never written"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted; run it again to resume" in err and "Traceback" not in err
    (job_id,) = json.loads(book.read_text()).values()
    assert not (tmp_path / "de_librivox_aeneas_de.txt").exists()

    before = uploads(service)
    again = stt(env, clip(LONG).path, "-o", tmp_path, "-f", "txt")
    assert again.returncode == 0, again.stderr
    assert uploads(service) == before, "the rerun uploaded the file again"
    text = (tmp_path / "de_librivox_aeneas_de.txt").read_text()
    assert error_rate(clip(LONG).reference, text, "de") <= 0.35

    # Without the job book (another output folder) the Idempotency-Key finds the same job.
    elsewhere = stt(env, clip(LONG).path, "-o", tmp_path / "other", "-f", "txt")
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert json.loads((tmp_path / "other" / ".stt-jobs.json").read_text()) == {
        **json.loads(book.read_text())
    }
    assert (tmp_path / "other" / "de_librivox_aeneas_de.txt").read_text() == text
    listed = httpx.get(
        f"{service.url}/stt/jobs", params={"limit": 100}, headers=service.headers(cli_key)
    ).json()["data"]
    assert [j["id"] for j in listed].count(job_id) == 1
