"""Webhook signatures (`sign`/`verify`) and the target check that keeps webhooks off
private, loopback and link-local addresses unless the allow-list admits them."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from core.errors import InvalidRequest
from core.webhooks import check_target, sign, verify

SECRET = "whsec-unit"
BODY = b'{"id":"abc","status":"succeeded"}'


# --- signatures ----------------------------------------------------------------------------


def test_round_trip() -> None:
    header = sign(SECRET, BODY)
    assert header.startswith("t=") and ",v1=" in header
    assert verify(SECRET, BODY, header)


def test_signature_is_over_timestamp_and_body() -> None:
    assert sign(SECRET, BODY, 1_700_000_000) == sign(SECRET, BODY, 1_700_000_000)
    assert sign(SECRET, BODY, 1_700_000_000) != sign(SECRET, BODY, 1_700_000_001)
    assert sign(SECRET, BODY, 1_700_000_000).startswith("t=1700000000,v1=")


def test_wrong_secret() -> None:
    assert not verify("another-secret", BODY, sign(SECRET, BODY))


def test_altered_body() -> None:
    header = sign(SECRET, BODY)
    assert not verify(SECRET, BODY.replace(b"succeeded", b"failed"), header)
    assert not verify(SECRET, BODY + b" ", header)


def test_altered_timestamp() -> None:
    """The MAC covers the timestamp, so a replay cannot be given a fresh one."""
    now = int(time.time())
    mac = sign(SECRET, BODY, now - 10).split("v1=", 1)[1]
    assert not verify(SECRET, BODY, f"t={now},v1={mac}")


@pytest.mark.parametrize("age", [301, 3600, -301])
def test_stale_or_future_timestamp(age: int) -> None:
    header = sign(SECRET, BODY, int(time.time()) - age)
    assert not verify(SECRET, BODY, header)
    assert verify(SECRET, BODY, header, tolerance_s=abs(age) + 60)


def test_recent_timestamp_within_tolerance() -> None:
    assert verify(SECRET, BODY, sign(SECRET, BODY, int(time.time()) - 200))


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        "t=,v1=",
        "t=abc,v1=00",
        "v1=00",
        "t=1700000000",
        "t=1700000000;v1=00",
        "t=1.5,v1=00",
    ],
)
def test_malformed_header(header: str) -> None:
    assert not verify(SECRET, BODY, header)


def test_header_without_mac() -> None:
    assert not verify(SECRET, BODY, f"t={int(time.time())}")


@pytest.mark.parametrize("header", ["t={now},v1=\u00e9", "t=" + "9" * 400 + ",v1=00"])
def test_hostile_header_is_refused_not_raised(header: str) -> None:
    assert not verify(SECRET, BODY, header.format(now=int(time.time())))


# --- targets -------------------------------------------------------------------------------


def refused(url: str, allow: tuple[str, ...] = ()) -> str:
    """Check that `url` is refused as a webhook_url; return the message."""
    with pytest.raises(InvalidRequest) as info:
        check_target(url, allow)
    assert info.value.param == "webhook_url"
    assert info.value.status == 400
    return info.value.message


@pytest.mark.parametrize(
    "url",
    [
        "ftp://93.184.216.34/hook",
        "file:///etc/passwd",
        "gopher://93.184.216.34/",
        "javascript:alert(1)",
        "93.184.216.34/hook",
        "http:///no-host",
        "",
    ],
)
def test_scheme_and_host_required(url: str) -> None:
    assert "http(s)" in refused(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.0.0.1:9/x",
        "https://127.1.2.3/",
        "http://[::1]/hook",
        "http://10.0.0.1/",
        "http://10.255.1.2:8080/hook",
        "http://192.168.1.10/",
        "http://172.16.0.1/",
        "http://172.31.255.254/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://0.0.0.0/",
        "http://[::ffff:127.0.0.1]/",
        "http://2130706433/",  # 127.0.0.1 as one decimal number
        "http://localhost/hook",
        "http://LOCALHOST:8000/hook",
    ],
)
def test_non_public_addresses_refused(url: str) -> None:
    assert "private, loopback or link-local" in refused(url)


def test_unresolvable_host_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_host(host: str, *args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    assert "does not resolve" in refused("https://hooks.example.invalid/x")


def test_invalid_host_name_refused() -> None:
    """A label too long for IDNA fails before any lookup."""
    assert "does not resolve" in refused(f"https://{'a' * 70}.example/")


def _resolves_to(monkeypatch: pytest.MonkeyPatch, **hosts: list[str]) -> None:
    real = socket.getaddrinfo

    def fake(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in hosts:
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0))
                for a in hosts[host]
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


def test_host_name_checked_by_its_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    _resolves_to(
        monkeypatch,
        public_example=["93.184.216.34"],
        internal_example=["10.1.2.3"],
        mixed_example=["93.184.216.34", "192.168.0.5"],
    )
    check_target("https://public_example/hook", ())
    refused("https://internal_example/hook")
    refused("https://mixed_example/hook")  # one private address is enough to refuse


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.216.34/",
        "https://93.184.216.34:8443/hook?x=1",
        "http://[2606:2800:220:1:248:1893:25c8:1946]/hook",
    ],
)
def test_public_ip_literal_accepted(url: str) -> None:
    check_target(url, ())


@pytest.mark.parametrize(
    ("url", "allow"),
    [
        ("http://127.0.0.1:9/x", ("127.0.0.0/8",)),
        ("http://127.0.0.1:9/x", ("10.0.0.0/8", "127.0.0.1")),
        ("http://[::1]:9/x", ("::1",)),
        ("http://10.1.2.3/", ("10.0.0.0/8",)),
        ("http://172.16.5.4/", ("172.16.0.0/12",)),
        ("http://localhost:9/x", ("localhost",)),
        ("http://LocalHost:9/x", ("localhost",)),
        ("http://localhost:9/x", ("127.0.0.0/8", "::1")),
    ],
)
def test_allow_list_admits(url: str, allow: tuple[str, ...]) -> None:
    check_target(url, allow)


@pytest.mark.parametrize(
    ("url", "allow"),
    [
        ("http://10.1.2.3/", ("127.0.0.0/8",)),
        ("http://192.168.1.1/", ("localhost",)),
        ("http://169.254.169.254/", ("10.0.0.0/8", "not-a-network")),
    ],
)
def test_allow_list_admits_only_what_it_names(url: str, allow: tuple[str, ...]) -> None:
    refused(url, allow)


def test_allow_list_network_must_hold_every_address(monkeypatch: pytest.MonkeyPatch) -> None:
    _resolves_to(monkeypatch, split_example=["10.0.0.7", "127.0.0.1"])
    refused("http://split_example/", ("10.0.0.0/8",))
    check_target("http://split_example/", ("10.0.0.0/8", "split_example"))


@pytest.mark.parametrize(
    "url", ["http://93.184.216.34:99999/", "http://93.184.216.34:port/", "http://[::1/x"]
)
def test_malformed_url_is_a_400(url: str) -> None:
    refused(url)
