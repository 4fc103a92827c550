"""`stt transcribe`'s pieces that need no server (the command itself: tests/e2e)."""

from __future__ import annotations

import argparse
from pathlib import Path

import httpx
import pytest

from api.transcribe_cli import (
    JobBook,
    Options,
    audio_files,
    idempotency_key,
    server_message,
    tsv,
)


def opts(**kw: object) -> Options:
    base: dict[str, object] = {
        "url": "http://127.0.0.1:1",
        "key": "k",
        "formats": ("txt",),
        "output_dir": Path("."),
        "model": "ink-whisper",
        "language": None,
        "task": "transcribe",
    }
    return Options(**{**base, **kw})  # type: ignore[arg-type]


def test_tsv_is_whispers() -> None:
    body = {"segments": [{"start": 0.0, "end": 1.234, "text": " Hello\n world. "}]}
    assert tsv(body) == "start\tend\ttext\n0\t1234\tHello world.\n"
    assert tsv({}) == "start\tend\ttext\n"


def test_folders_are_searched_for_audio(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    for name in ("a/x.mp3", "a/y.WAV", "a/notes.txt", "z.flac"):
        (tmp_path / name).write_bytes(b"")
    found, missing = audio_files([str(tmp_path / "a"), str(tmp_path / "z.flac"), "nope.wav"])
    assert [p.name for p in found] == ["x.mp3", "y.WAV", "z.flac"]
    assert missing == ["nope.wav"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error_code": "x", "title": "t", "message": "cartesia says"}, "cartesia says"),
        ({"error": {"message": "openai says", "type": "t"}}, "openai says"),
        ("<html>gateway</html>", "HTTP 502 Bad Gateway"),
    ],
)
def test_server_message_in_either_shape(body: object, expected: str) -> None:
    if isinstance(body, str):
        response = httpx.Response(502, text=body)
    else:
        response = httpx.Response(400, json=body)
    assert server_message(response) == expected


def test_idempotency_key_follows_the_file_and_the_options(tmp_path: Path) -> None:
    f = tmp_path / "a.wav"
    f.write_bytes(b"one")
    key = idempotency_key(f, opts())
    assert key == idempotency_key(f, opts(output_dir=tmp_path, formats=("srt",)))
    assert key != idempotency_key(f, opts(language="de"))
    assert key != idempotency_key(f, opts(task="translate"))
    f.write_bytes(b"two")
    assert key != idempotency_key(f, opts())
    assert len(key) <= 200  # the server's limit


def test_translation_goes_to_openais_path_without_language() -> None:
    o = opts(task="translate", language="de")
    assert o.submit_path == "/v1/audio/translations" and "language" not in o.form()
    assert opts(language="de").form() == {"model": "ink-whisper", "language": "de"}


def test_job_book_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / ".stt-jobs.json"
    JobBook(path).put("k1", "job1")
    assert JobBook(path).get("k1") == "job1"
    path.write_text("{not json")
    assert JobBook(path).get("k1") is None


def test_the_subcommand_is_registered(capsys: pytest.CaptureFixture[str]) -> None:
    from api.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["transcribe", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--output_format",
        "--output_dir",
        "--language",
        "--model",
        "--task",
        "--url",
        "--api-key",
        "--concurrency",
    ):
        assert flag in out


def test_concurrency_below_one_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from api.transcribe_cli import run

    args = argparse.Namespace(
        url=None,
        api_key="k",
        concurrency=0,
        output_format="all",
        output_dir=str(tmp_path),
        model="m",
        language=None,
        task="transcribe",
        paths=[str(tmp_path)],
    )
    assert run(args) == 2
    assert capsys.readouterr().err == "stt transcribe: --concurrency must be at least 1\n"
