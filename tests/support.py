"""Helpers for tests: the corpus, word error rate, and a live service on loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.support import (
    ROOT,
    Clip,
    LiveService,
    clip,
    clips,
    corpus_dir,
    error_rate,
    free_port,
    long_audio,
    normalise,
    stop_service_proc,
)
from bench.support import start_service as _start_service

# The shared helpers live in bench/support.py (the bench may not import tests/).
__all__ = [
    "ROOT",
    "Clip",
    "LiveService",
    "clip",
    "clips",
    "corpus_dir",
    "error_rate",
    "free_port",
    "long_audio",
    "normalise",
    "start_service",
    "stop_service_proc",
]


def wait_until(
    predicate: Callable[[], object], timeout: float = 10.0, what: str = "the condition"
) -> None:
    """Poll `predicate` until it is truthy; fail with `what` once `timeout` seconds pass.

    Tests wait on an observable condition with this, never on a fixed sleep.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def celery_broker_idle(redis_url: str, queue: str) -> bool:
    """Celery on Redis: nothing waits in `queue` (any priority) and nothing delivered to a
    worker is still unacknowledged (late acks: a message is acked once its task returns)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        waiting = sum(
            int(client.llen(key)) for key in client.scan_iter(match=f"{queue}*", _type="list")
        )
        return waiting == 0 and int(client.hlen("unacked")) == 0
    finally:
        client.close()


def start_service(
    data_dir: Path,
    env: Mapping[str, str],
    workers: int = 1,
    timeout: float = 90.0,
    log_name: str = "service.log",
    python: str = sys.executable,
) -> LiveService:
    """bench.support's `stt serve` on loopback, with one API process unless `env` asks for
    more: the default (one per core) forks a second beside every service, which most tests
    do not need; several processes are tested on their own (tests/e2e/test_api_workers.py,
    the drain test)."""
    return _start_service(
        data_dir, {"STT_API_WORKERS": "1", **env}, workers, timeout, log_name, python
    )


def wait_for_worker(service: LiveService, timeout: float = 60.0) -> None:
    """Block until the service log says a worker is ready."""
    try:
        wait_until(lambda: "ready." in service.log(), timeout, "a worker to become ready")
    except AssertionError as exc:
        raise RuntimeError(f"no worker became ready:\n{service.log()}") from exc


def iter_words(body: dict[str, object]) -> Iterator[dict[str, object]]:
    words = body.get("words") or []
    assert isinstance(words, list)
    yield from words


class TcpProxy:
    """A loopback TCP proxy that can be cut and restored, to take a server 'down' for one
    client without touching the server other tests share."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Refuse new connections and break every open one."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            self._listener.close()
            self._listener = None
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


class RedisServer:
    """A private redis-server on a free loopback port, which a test may restart (empty)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        """Kill it (-9): whatever it held in memory is gone, as after a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_worker(
    env: Mapping[str, str], log_path: Path, args: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """A worker process in its own session (so a test can kill -9 it and its children);
    `args=["--webhooks"]` makes it a webhook worker."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "STT_CPU_THREADS": "2", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "worker", *args],
        cwd=ROOT,
        env=full_env,
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    proc.wait(timeout=60)


class MotoServer:
    """moto's standalone S3-compatible HTTP server on a free loopback port: the S3 backend
    is tested over real HTTP, not through an in-process patch."""

    ACCESS_KEY = "stt-test-access-key"
    SECRET_KEY = "stt-test-secret-key"
    REGION = "us-east-1"

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._client: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach it (and nothing from the developer's AWS setup)."""
        return {
            "STT_S3_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": self.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY,
            "AWS_REGION": self.REGION,
            "AWS_DEFAULT_REGION": self.REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/moto-api/", timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.url,
                region_name=self.REGION,
                aws_access_key_id=self.ACCESS_KEY,
                aws_secret_access_key=self.SECRET_KEY,
            )
        return self._client

    def create_bucket(self) -> str:
        name = f"stt-test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str) -> list[str]:
        """Every object key in the bucket."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def uploads(self, bucket: str) -> list[str]:
        """Keys of multipart uploads begun and neither completed nor aborted."""
        found = self.client().list_multipart_uploads(Bucket=bucket)
        return [upload["Key"] for upload in found.get("Uploads", [])]
