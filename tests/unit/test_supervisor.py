"""The API processes' supervisor: an app that cannot start stops it (no restart loop)."""

from __future__ import annotations

import socket

import uvicorn

from api.supervisor import STARTUP_FAILURE, Supervisor


def test_an_app_that_cannot_start_stops_the_supervisor() -> None:
    config = uvicorn.Config("tests.no_such_module:app", log_config=None, log_level="critical")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        supervisor = Supervisor(config, [sock], 2)
        assert supervisor.run() == STARTUP_FAILURE
    assert supervisor.children == set()
