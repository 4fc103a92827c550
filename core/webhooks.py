"""Webhook signatures and target checks.

Each delivery carries `STT-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` where the MAC
is over `"<t>.<body>"` with the shared secret (STT_WEBHOOK_SECRET). Receivers recompute it
and reject stale timestamps, which stops replays.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time
from urllib.parse import urlsplit

from core.echo import quoted
from core.errors import InvalidRequest

SIGNATURE_HEADER = "STT-Signature"


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def verify(secret: str, body: bytes, header: str, tolerance_s: float = 300.0) -> bool:
    """What a receiver does: check the MAC and that the timestamp is recent."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        ts = int(parts["t"])
        if abs(time.time() - ts) > tolerance_s:
            return False
        expected = sign(secret, body, ts).split("v1=", 1)[1]
        return hmac.compare_digest(expected.encode(), parts.get("v1", "").encode())
    except (ValueError, KeyError, TypeError, OverflowError):
        return False


def _allowed_by_list(
    host: str,
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
    allow: tuple[str, ...],
) -> bool:
    for entry in allow:
        if entry.lower() == host.lower():
            return True
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            continue
        if addresses and all(a in network for a in addresses):
            return True
    return False


def check_target(url: str, allow: tuple[str, ...]) -> None:
    """Refuse webhook URLs that are not http(s), or that reach private, loopback or
    link-local addresses, unless the allow-list (hosts or CIDRs) admits them."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest("webhook_url is not a valid URL", param="webhook_url") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("webhook_url must be an http(s) URL", param="webhook_url")
    host = parts.hostname
    try:
        infos = socket.getaddrinfo(host, port or (443 if parts.scheme == "https" else 80))
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidRequest(
            f"webhook_url host {quoted(host)} does not resolve", param="webhook_url"
        ) from exc
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if _allowed_by_list(host, addresses, allow):
        return
    for address in addresses:
        if not address.is_global:
            raise InvalidRequest(
                "webhook_url resolves to a private, loopback or link-local address",
                param="webhook_url",
            )
