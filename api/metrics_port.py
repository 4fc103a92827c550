"""Where `/metrics` answers: on the API's port, or (with STT_METRICS_PORT) only on a port of
its own that a deployment keeps off the public network."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from core.settings import Settings


def metrics_here(settings: Settings, scope: Mapping[str, Any]) -> bool:
    """Whether a request that came in on `scope`'s server socket may read /metrics."""
    wanted = settings.api.metrics_port
    if not wanted:
        return True
    server = scope.get("server")
    if not server:
        return False
    return int(server[1]) == wanted


def listening_sockets(settings: Settings) -> list[socket.socket]:
    """The API's socket and, with STT_METRICS_PORT, the metrics socket, both bound."""
    ports = [settings.api.port]
    if settings.api.metrics_port and settings.api.metrics_port != settings.api.port:
        ports.append(settings.api.metrics_port)
    host = settings.api.host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return [socket.create_server((host, port), family=family, backlog=2048) for port in ports]
