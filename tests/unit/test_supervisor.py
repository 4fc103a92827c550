"""The API processes' supervisor: an app that cannot start stops it (no restart loop), and
a stop signal is always a drain."""

from __future__ import annotations

import signal
import socket

import uvicorn

from api.supervisor import STARTUP_FAILURE, ApiServer, Supervisor


def test_an_app_that_cannot_start_stops_the_supervisor() -> None:
    config = uvicorn.Config("tests.no_such_module:app", log_config=None, log_level="critical")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        supervisor = Supervisor(config, [sock], 2)
        assert supervisor.run() == STARTUP_FAILURE
    assert supervisor.children == set()


def test_a_forked_api_process_drains_on_any_stop_signal_never_forced() -> None:
    """Ctrl-C reaches the whole group and the supervisor sends SIGTERM as well: uvicorn's
    own server would take that second signal as "force quit" and drop requests in flight."""
    plain = uvicorn.Server(uvicorn.Config("api.app:serve_app"))
    plain.handle_exit(signal.SIGTERM, None)
    plain.handle_exit(signal.SIGINT, None)
    assert plain.force_exit  # what the subclass is for
    server = ApiServer(uvicorn.Config("api.app:serve_app"))
    server.handle_exit(signal.SIGTERM, None)
    server.handle_exit(signal.SIGINT, None)
    assert server.should_exit and not server.force_exit
