"""Several API processes on one set of listening sockets: forked by `stt serve`, drained
on SIGTERM.

uvicorn's own supervisor (`workers=N`) spawns every process afresh, so each re-imports the
whole app: on a 2-core machine two of them took 40 s to answer (one alone 12 s) while the
embedded workers started beside them, and a process that misses the supervisor's health
ping for `timeout_worker_healthcheck` is killed and spawned again, in a loop on a busy
machine. Here the supervisor imports the app's modules once and forks; each process then
builds its own app (engines, Redis, the waiter, the metrics' files) after the fork, so
nothing with a thread or a connection crosses it.

SIGTERM or SIGINT to the supervisor (or to the whole process group): every API process
gets SIGTERM once and drains (uvicorn's graceful shutdown: it stops accepting, finishes
the requests in flight, then runs the app's shutdown); the supervisor returns once all
have exited; a second signal to it kills them at once. A process that dies otherwise is
replaced, unless it failed before it served (a bad app or socket would fail the same way
again): then all stop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

import uvicorn

log = logging.getLogger("stt.api")

STARTUP_FAILURE = 3
"""An API process's exit status when it stopped before serving (uvicorn's own value)."""

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
POLL_S = 0.2
"""How often the supervisor looks for an API process that has exited."""


class ApiServer(uvicorn.Server):
    """uvicorn's server in a forked API process: any stop signal asks for the drain, never
    a forced exit. A terminal's Ctrl-C reaches every process of the group while the
    supervisor sends SIGTERM too, and uvicorn takes a SIGINT after another signal as "force
    quit"; forcing is the supervisor's (a second signal to it kills the processes)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(signal.SIGTERM, frame)


def _serve_forever(config: uvicorn.Config, sockets: list[socket.socket]) -> int:
    """The body of one forked API process; its exit status."""
    for sig in STOP_SIGNALS:  # the supervisor's handlers are not this process's
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    server = ApiServer(config)
    try:
        server.run(sockets=sockets)
    except BaseException:  # uvicorn exits with SystemExit when the app does not import
        if server.started:
            log.exception("API process %d failed", os.getpid())
            return 1
    return 0 if server.started else STARTUP_FAILURE


class Supervisor:
    """`count` forked API processes serving `config`'s app on `sockets`."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket], count: int) -> None:
        self.config, self.sockets, self.count = config, sockets, count
        self.children: set[int] = set()
        self.stopping = False
        self.status = 0

    def _fork(self) -> None:
        # Stop signals wait until the child has put its own handlers in place, and until
        # the parent knows the child's pid (so a stop reaches it).
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = _serve_forever(self.config, self.sockets)
                finally:
                    logging.shutdown()
                    os._exit(code)
            self.children.add(pid)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def stop(self, status: int = 0) -> None:
        """Ask every API process to drain and exit (once each)."""
        if self.stopping:
            return
        self.stopping, self.status = True, status
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, sig: int) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):  # it has just exited
                os.kill(pid, sig)

    def _on_signal(self, sig: int, _frame: FrameType | None) -> None:
        name = signal.Signals(sig).name
        if self.stopping:
            log.warning("received %s again: the API processes are stopped now", name)
            self._signal_all(signal.SIGKILL)
            return
        log.info("received %s: the API processes finish their requests, then exit", name)
        self.stop()

    def run(self, started: Callable[[], None] = lambda: None) -> int:
        """Fork the processes, call `started`, then wait until all have exited after a stop
        signal; the exit status for `stt serve`."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            for _ in range(self.count):
                self._fork()
            started()
            while self.children:
                # Each of ours by pid (os.wait would reap the embedded workers too), a few
                # times a second: a stop signal is handled at once, in _on_signal.
                for pid in list(self.children):
                    done, wait_status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        self.children.discard(pid)
                        self._replace_or_stop(pid, wait_status)
                time.sleep(POLL_S)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.status

    def _replace_or_stop(self, pid: int, wait_status: int) -> None:
        if self.stopping:
            return
        code = os.waitstatus_to_exitcode(wait_status)
        if code == STARTUP_FAILURE:
            log.error("API process %d could not start; stopping the others", pid)
            self.stop(STARTUP_FAILURE)
            return
        log.warning("API process %d exited (%d); starting another", pid, code)
        self._fork()
