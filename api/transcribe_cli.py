"""`stt transcribe FILE_OR_DIR...`: files to transcripts through a server's job API.

Flags follow OpenAI's `whisper` command (`--output_format`, `--output_dir`, `--task`…);
`talk.mp3` becomes `D/talk.txt`, `D/talk.srt`… Several files run in parallel. An
interrupted run is resumed: the job ids are kept in `D/.stt-jobs.json`, and every upload
carries an Idempotency-Key made from the file and the options, so the server hands back
the job it already has instead of starting another."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
from tqdm import tqdm

FORMATS = ("txt", "vtt", "srt", "tsv", "json")
SERVER_FORMATS = {"txt": "text", "vtt": "vtt", "srt": "srt", "json": "verbose_json"}
"""The server's response_format for each output; tsv is cut from verbose_json here."""
AUDIO_SUFFIXES = frozenset(
    [
        ".aac",
        ".flac",
        ".m4a",
        ".mp3",
        ".mp4",
        ".mpeg",
        ".mpga",
        ".oga",
        ".ogg",
        ".opus",
        ".wav",
        ".webm",
        ".wma",
        ".mkv",
        ".mov",
    ]
)
STATE_FILE = ".stt-jobs.json"
DEFAULT_URL = "http://127.0.0.1:8000"
POLL_S = 1.0
TIMEOUT = httpx.Timeout(60.0, read=600.0)


class Fatal(Exception):
    """Nothing can go on (wrong key, server unreachable): one line, exit code 2."""


class FileFailed(Exception):
    """This file failed; the others go on."""


def add_parser(sub: Any) -> None:
    """Register `transcribe` on `stt`'s sub-command parser."""
    p = sub.add_parser(
        "transcribe",
        help="transcribe files through a server's job API (like OpenAI's `whisper` command)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="FILE_OR_DIR", help="audio files or folders")
    p.add_argument("--output_format", "-f", choices=[*FORMATS, "all"], default="all")
    p.add_argument("--output_dir", "-o", default=".", help="where the transcripts go")
    p.add_argument("--language", default=None, help="ISO-639-1 code; detected when absent")
    p.add_argument("--model", default="ink-whisper", help="a model name the server accepts")
    p.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    p.add_argument("--url", default=None, help=f"the server (default STT_URL, {DEFAULT_URL})")
    p.add_argument("--api-key", default=None, help="the API key (default STT_API_KEY)")
    p.add_argument("--concurrency", type=int, default=2, help="files in flight at once")
    p.set_defaults(run=run)


@dataclass(frozen=True)
class Options:
    url: str
    key: str
    formats: tuple[str, ...]
    output_dir: Path
    model: str
    language: str | None
    task: str

    def form(self) -> dict[str, str]:
        fields = {"model": self.model}
        if self.language and self.task == "transcribe":
            fields["language"] = self.language
        return fields

    @property
    def submit_path(self) -> str:
        return "/v1/audio/translations" if self.task == "translate" else "/stt/jobs"


def audio_files(paths: Sequence[str]) -> tuple[list[Path], list[str]]:
    """The files named, and those inside folders named (by suffix); missing paths apart."""
    found: list[Path] = []
    missing: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            missing.append(raw)
    return list(dict.fromkeys(found)), missing


def server_message(response: httpx.Response) -> str:
    """The message in either error family's shape, or the status line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if body.get("message"):
            return str(body["message"])
    return f"HTTP {response.status_code} {response.reason_phrase}".strip()


def tsv(verbose: dict[str, Any]) -> str:
    """OpenAI whisper's tsv: start and end in integer milliseconds, then the text."""
    lines = ["start\tend\ttext"]
    for s in verbose.get("segments") or []:
        text = " ".join(str(s["text"]).split())
        lines.append(f"{round(s['start'] * 1000)}\t{round(s['end'] * 1000)}\t{text}")
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


class JobBook:
    """`D/.stt-jobs.json`: idempotency key → job id, written as soon as a job exists."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        try:
            self.jobs: dict[str, str] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.jobs = {}

    def get(self, key: str) -> str | None:
        with self.lock:
            return self.jobs.get(key)

    def put(self, key: str, job_id: str) -> None:
        with self.lock:
            self.jobs[key] = job_id
            _write(self.path, json.dumps(self.jobs, indent=1))


class _Counting:
    """A file whose reads move an upload bar."""

    def __init__(self, f: IO[bytes], on_read: Callable[[int], object]) -> None:
        self.f = f
        self.on_read = on_read
        self.name = f.name

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.on_read(len(data))
        return data

    def fileno(self) -> int:
        return self.f.fileno()

    def tell(self) -> int:
        return self.f.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)


def idempotency_key(path: Path, opts: Options) -> str:
    """Same file and options, same key: a rerun finds the job instead of making another."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(block)
    material = json.dumps([opts.task, sorted(opts.form().items())]).encode()
    return f"stt-cli-{digest.hexdigest()[:40]}-{hashlib.sha256(material).hexdigest()[:12]}"


class Runner:
    def __init__(self, client: httpx.Client, opts: Options, book: JobBook, tty: bool) -> None:
        self.client = client
        self.opts = opts
        self.book = book
        self.tty = tty
        self.rows: set[int] = set()
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def say(self, line: str, *, error: bool = False) -> None:
        """A line the person should see; errors always, the rest only on a terminal."""
        if error or self.tty:
            tqdm.write(line, file=sys.stderr)

    @contextmanager
    def _bar(self, **kwargs: Any) -> Iterator[tqdm[Any]]:
        """A progress bar on the lowest free terminal row (none off a terminal)."""
        with self.lock:
            row = min(set(range(len(self.rows) + 1)) - self.rows)
            self.rows.add(row)
        try:
            with tqdm(
                disable=not self.tty, leave=False, dynamic_ncols=True, position=row, **kwargs
            ) as bar:
                yield bar
        finally:
            with self.lock:
                self.rows.discard(row)

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code == 401:
            raise Fatal(f"the server refused the API key: {server_message(response)}")
        if response.is_error:
            raise FileFailed(server_message(response))
        return response

    def _upload(self, path: Path, key: str) -> dict[str, Any]:
        size = path.stat().st_size
        with (
            path.open("rb") as f,
            self._bar(total=size, unit="B", unit_scale=True, desc=f"upload {path.name}") as bar,
        ):
            headers = {"Idempotency-Key": key}
            if self.opts.task == "translate":
                headers["Prefer"] = "respond-async"
            response = self.client.post(
                self.opts.submit_path,
                data=self.opts.form(),
                files={"file": (path.name, _Counting(f, bar.update))},  # type: ignore[dict-item]
                headers=headers,
            )
        body: dict[str, Any] = self._check(response).json()
        return body

    def _attach(self, job_id: str) -> dict[str, Any] | None:
        """The earlier run's job, if it is still there and did not end badly."""
        response = self.client.get(f"/stt/jobs/{job_id}")
        if response.status_code == 404:
            return None
        job: dict[str, Any] = self._check(response).json()
        return None if job["status"] == "cancelled" else job

    def _follow(self, path: Path, job: dict[str, Any]) -> dict[str, Any]:
        total = round(float(job.get("duration") or 0.0), 1)
        with self._bar(total=total or None, unit="s", desc=path.name) as bar:
            while job["status"] in ("queued", "running"):
                done = round(float(job.get("progress") or 0.0) * total, 1)
                bar.update(max(0.0, done - bar.n))
                if self.stop.wait(POLL_S):
                    raise FileFailed("stopped")
                job = self._check(self.client.get(f"/stt/jobs/{job['id']}")).json()
            bar.update(max(0.0, total - bar.n))
        return job

    def _save(self, path: Path, job_id: str) -> list[Path]:
        written: list[Path] = []
        verbose: dict[str, Any] | None = None
        for fmt in self.opts.formats:
            target = self.opts.output_dir / f"{path.stem}.{fmt}"
            if fmt in ("json", "tsv"):
                if verbose is None:
                    verbose = self._fetch(job_id, "verbose_json").json()
                assert verbose is not None
                text = json.dumps(verbose, ensure_ascii=False) if fmt == "json" else tsv(verbose)
            else:
                text = self._fetch(job_id, SERVER_FORMATS[fmt]).text
            _write(target, text)
            written.append(target)
        return written

    def _fetch(self, job_id: str, fmt: str) -> httpx.Response:
        return self._check(
            self.client.get(f"/stt/jobs/{job_id}/transcript", params={"response_format": fmt})
        )

    def one(self, path: Path) -> bool:
        """Transcribe one file; False (after saying why) when it failed."""
        try:
            key = idempotency_key(path, self.opts)
            earlier = self.book.get(key)
            job = self._attach(earlier) if earlier else None
            if job is None:
                job = self._upload(path, key)
                self.book.put(key, job["id"])
            else:
                self.say(f"{path}: resuming job {job['id']}")
            job = self._follow(path, job)
            if job["status"] != "succeeded":
                error = job.get("error") or {}
                raise FileFailed(f"the job {job['status']}: {error.get('message') or ''}".strip())
            written = self._save(path, job["id"])
        except FileFailed as exc:
            self.say(f"{path}: {exc}", error=True)
            return False
        except OSError as exc:
            self.say(f"{path}: {exc.strerror or exc}", error=True)
            return False
        self.say(f"{path} → {', '.join(str(p) for p in written)}")
        return True


def _preflight(client: httpx.Client, url: str) -> None:
    """One request before any upload, so that a wrong key or a server that is not there is
    one clear line."""
    try:
        response = client.get("/stt/jobs", params={"limit": 1})
    except httpx.HTTPError as exc:
        raise Fatal(f"cannot reach the server at {url}: {exc}") from exc
    if response.status_code == 401:
        raise Fatal(f"the server refused the API key: {server_message(response)}")
    if response.is_error:
        raise Fatal(f"the server at {url} answered {server_message(response)}")


def _options(args: argparse.Namespace) -> Options:
    url = (args.url or os.environ.get("STT_URL") or DEFAULT_URL).rstrip("/")
    key = args.api_key or os.environ.get("STT_API_KEY") or ""
    if not key:
        raise Fatal("no API key: pass --api-key or set STT_API_KEY")
    if args.concurrency < 1:
        raise Fatal("--concurrency must be at least 1")
    formats = FORMATS if args.output_format == "all" else (args.output_format,)
    return Options(url, key, formats, Path(args.output_dir), args.model, args.language, args.task)


def _run_all(runner: Runner, files: list[Path], concurrency: int) -> list[bool]:
    """Every file through the pool; on a fatal error the other files stop at their next
    poll and nothing new starts."""
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="stt-file")
    try:
        results = list(pool.map(runner.one, files))
    except BaseException:
        runner.stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return results


def run(args: argparse.Namespace) -> int:
    """0 when every file was transcribed, 1 when any failed, 2 when nothing could start."""
    tty = sys.stderr.isatty()
    try:
        opts = _options(args)
        files, missing = audio_files(args.paths)
        for raw in missing:
            print(f"{raw}: no such file or folder", file=sys.stderr)
        if not files:
            raise Fatal("no audio files to transcribe")
        opts.output_dir.mkdir(parents=True, exist_ok=True)
        headers = {"Authorization": f"Bearer {opts.key}", "User-Agent": "stt-transcribe"}
        with httpx.Client(base_url=opts.url, headers=headers, timeout=TIMEOUT) as client:
            _preflight(client, opts.url)
            runner = Runner(client, opts, JobBook(opts.output_dir / STATE_FILE), tty)
            results = _run_all(runner, files, args.concurrency)
    except Fatal as exc:
        print(f"stt transcribe: {exc}", file=sys.stderr)
        return 2
    except httpx.HTTPError as exc:
        print(f"stt transcribe: lost the server: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stt transcribe: interrupted; run it again to resume", file=sys.stderr)
        sys.stderr.flush()
        os._exit(130)  # uploads in flight are abandoned; their jobs are in the job book
    failed = results.count(False) + len(missing)
    if failed and tty:
        print(f"{failed} of {len(results) + len(missing)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0
