"""Debian's chromium driven by Playwright, with every request off this host refused."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, Route, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@contextmanager
def chromium() -> Iterator[Browser]:
    """The system's chromium (`.ci/run` installs it); a downloaded browser is never used."""
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install -y chromium (see .ci/run)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    host = parts.hostname or ""
    return host in LOOPBACK or host.startswith("127.")


@contextmanager
def guarded_context(browser: Browser) -> Iterator[tuple[BrowserContext, list[str]]]:
    """A fresh context whose requests to any other host are aborted and listed; the caller
    asserts the list is empty."""
    off_host: list[str] = []
    context = browser.new_context(accept_downloads=True, viewport={"width": 1100, "height": 900})

    def guard(route: Route) -> None:
        if is_local(route.request.url):
            route.continue_()
        else:
            off_host.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    try:
        yield context, off_host
    finally:
        context.close()
