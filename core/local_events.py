"""Job-ended announcements between processes of one machine, without Redis.

On the embedded default (SQLite, the filesystem broker) the API and its workers share a
data directory. Each API process binds a Unix datagram socket in `events_dir`; a worker that
ends a job sends the job id to every socket there. Best effort: a lost or refused datagram
costs only latency, since the API's waiter polls the database as well. Nothing runs while
idle: the API sleeps on the socket, the worker sends only when a job ends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("stt.local_events")

_SUFFIX = ".sock"


def announce(folder: Path, job_id: str) -> int:
    """Send `job_id` to every API process listening in `folder`; how many took it."""
    try:
        paths = [p for p in folder.iterdir() if p.name.endswith(_SUFFIX)]
    except OSError:
        return 0
    sent = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for path in paths:
            try:
                sock.sendto(job_id.encode(), str(path))
                sent += 1
            except ConnectionRefusedError:  # nobody bound there: a process that died
                with contextlib.suppress(OSError):
                    path.unlink()  # (a new listener always binds a name of its own)
            except OSError:  # a listener that is busy (its buffer full): it polls the database
                continue
    return sent


class Listener:
    """One API process's socket in `folder`; `on_job(job_id)` runs in the event loop."""

    def __init__(self, folder: Path, on_job: Callable[[str], None]) -> None:
        self.folder = folder
        self.on_job = on_job
        self.path = folder / f"{os.getpid()}-{secrets.token_hex(4)}{_SUFFIX}"
        self._sock: socket.socket | None = None

    def open(self, add_reader: Callable[[int, Callable[[], None]], object]) -> bool:
        """Bind the socket and hand it to the loop's `add_reader`; False when it cannot be
        bound (e.g. a path too long for a Unix socket): the waiter's poll alone remains."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            sock.bind(str(self.path))
        except OSError:
            sock.close()
            log.warning("no local job events at %s; waiters poll the database", self.path)
            return False
        sock.setblocking(False)
        self._sock = sock
        add_reader(sock.fileno(), self._drain)
        return True

    def _drain(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                log.warning("local job events socket failed", exc_info=True)
                return
            with contextlib.suppress(UnicodeDecodeError):
                self.on_job(data.decode())

    def close(self, remove_reader: Callable[[int], object]) -> None:
        if self._sock is None:
            return
        remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
