"""The web app in a real headless chromium against a live server and worker.

Every request the page makes is routed through a guard: one to any host but this one fails
the test. The time from dropping a corpus clip to its first text on the page is logged."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pysrt
import pytest
import webvtt
from playwright.sync_api import Browser, Locator, Page, expect

from core.db import make_engine, session_factory, transaction
from core.keys import hash_key
from core.models import ApiKey
from tests.e2e.browser import chromium, guarded_context
from tests.e2e.jobs_client import submit, wait_ended
from tests.support import LiveService, clip, error_rate, start_service, stop_service_proc

pytestmark = pytest.mark.e2e

CLIP = "en_jfk_inaugural.flac"
LONG = "de_librivox_aeneas_de.mp3"
WEB_KEY = "sk-stt-web-tenant-0123456789"
TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def web_key(session_pg_url: str) -> str:
    """A tenant of its own, so the page lists only the jobs these tests make."""
    with transaction(session_factory(make_engine(session_pg_url))) as session:
        session.add(
            ApiKey(tenant="web", name="web", key_hash=hash_key(WEB_KEY), prefix="sk-stt-web")
        )
    return WEB_KEY


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Browser, service: LiveService) -> Iterator[Page]:
    with guarded_context(browser) as (context, off_host):
        p = context.new_page()
        p.set_default_timeout(30_000)
        yield p
        assert off_host == [], f"the page reached off this host: {off_host}"


def open_app(page: Page, service: LiveService, key: str) -> None:
    page.goto(f"{service.url}/")
    page.get_by_label("API key").fill(key)


def drop(page: Page, path: Path) -> None:
    """Drop a file on the drop zone as a person dragging it from their desktop would."""
    data = base64.b64encode(path.read_bytes()).decode()
    transfer = page.evaluate_handle(
        """([name, b64]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name));
            return transfer;
        }""",
        [path.name, data],
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})


def job_item(page: Page, name: str) -> Locator:
    return page.get_by_role("listitem", name=name, exact=True)


def alert(page: Page) -> Locator:
    return page.get_by_role("alert")


def test_drop_transcribe_read_download_reload_delete(
    page: Page, service: LiveService, web_key: str, tmp_path: Path
) -> None:
    c = clip(CLIP)
    open_app(page, service, web_key)
    drop(page, c.path)
    started = time.monotonic()
    page.get_by_role("button", name="Transcribe", exact=True).click()
    item = job_item(page, CLIP)
    item.locator(".job-text", has_text=re.compile(r"\w")).wait_for(timeout=TIMEOUT_MS)
    first_text_s = time.monotonic() - started
    print(f"\ndrop to first text on the page ({c.duration:.1f} s clip): {first_text_s:.2f} s")

    region = page.get_by_role("region", name="Transcript")
    region.locator(".word").first.wait_for(timeout=TIMEOUT_MS)
    expect(item.locator(".status")).to_have_text("succeeded")
    shown = " ".join(region.locator(".word").all_inner_texts())
    assert error_rate(c.reference, shown, "en") <= 0.1, shown

    downloads: dict[str, str] = {}
    for label, extension in (("SRT", "srt"), ("VTT", "vtt"), ("TXT", "txt"), ("JSON", "json")):
        with page.expect_download() as info:
            page.get_by_role("button", name=label, exact=True).click()
        download = info.value
        assert download.suggested_filename == f"en_jfk_inaugural.{extension}"
        target = tmp_path / download.suggested_filename
        download.save_as(target)
        downloads[label] = target.read_text()
    cues = pysrt.from_string(downloads["SRT"])
    assert cues and error_rate(c.reference, " ".join(s.text for s in cues), "en") <= 0.1
    captions = webvtt.from_buffer(io.StringIO(downloads["VTT"]))
    assert error_rate(c.reference, " ".join(x.text for x in captions.captions), "en") <= 0.1
    assert error_rate(c.reference, downloads["TXT"], "en") <= 0.1
    assert error_rate(c.reference, json.loads(downloads["JSON"])["text"], "en") <= 0.1

    # Clicking a word seeks the audio there, and that word is the one highlighted.
    job_id = item.get_attribute("data-id")
    assert job_id
    verbose = httpx.get(
        f"{service.url}/stt/jobs/{job_id}/transcript",
        params={"response_format": "verbose_json"},
        headers=service.headers(web_key),
    ).json()
    page.evaluate("document.querySelector('#player').muted = true")
    region.locator(".word").nth(6).click()
    at = page.evaluate("document.querySelector('#player').currentTime")
    assert verbose["words"][6]["start"] - 0.01 <= at <= verbose["words"][6]["start"] + 2
    assert region.locator(".word.now").count() == 1

    # The job is the job API's: a reload, and another browser with the key, show it.
    page.reload()
    expect(job_item(page, CLIP).locator(".status")).to_have_text("succeeded")
    other = page.context.browser
    assert other is not None
    with guarded_context(other) as (context, off_host):
        second = context.new_page()
        open_app(second, service, web_key)
        expect(job_item(second, f"Job {job_id}")).to_be_visible()
        assert off_host == []

    page.get_by_role("button", name=f"Delete {CLIP}").click()
    expect(job_item(page, CLIP)).to_have_count(0)
    gone = httpx.get(f"{service.url}/stt/jobs/{job_id}", headers=service.headers(web_key))
    assert gone.status_code == 404


def test_cancel_from_the_page(page: Page, service: LiveService, web_key: str) -> None:
    open_app(page, service, web_key)
    page.get_by_label("Audio file").set_input_files(clip(LONG).path)
    page.get_by_role("button", name="Transcribe", exact=True).click()
    item = job_item(page, LONG)
    expect(item.locator(".status")).to_have_text(re.compile("queued|running"))
    page.get_by_role("button", name=f"Cancel {LONG}").click()
    expect(item.locator(".status")).to_have_text("cancelled")
    job_id = item.get_attribute("data-id")
    body = httpx.get(f"{service.url}/stt/jobs/{job_id}", headers=service.headers(web_key)).json()
    assert body["status"] == "cancelled"


def test_a_wrong_key_is_shown_in_words(page: Page, service: LiveService) -> None:
    open_app(page, service, "sk-stt-not-a-real-key")
    expect(alert(page)).to_contain_text("The API key was refused: the API key is not valid")
    page.get_by_label("Audio file").set_input_files(clip(CLIP).path)
    page.get_by_role("button", name="Transcribe", exact=True).click()
    expect(alert(page)).to_contain_text(f"{CLIP}: The API key was refused")


def test_a_file_that_is_not_audio_is_shown_in_words(
    page: Page, service: LiveService, web_key: str, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("These are meeting notes, not a recording.\n" * 50)
    expected = submit(service, notes, key=web_key)
    assert expected.status_code == 415
    open_app(page, service, web_key)
    page.get_by_label("Audio file").set_input_files(notes)
    page.get_by_role("button", name="Transcribe", exact=True).click()
    message = expected.json()["message"]
    expect(alert(page)).to_contain_text(f"notes.txt: Not audio this server can read: {message}")


def test_nothing_chosen_is_shown_in_words(page: Page, service: LiveService, web_key: str) -> None:
    open_app(page, service, web_key)
    page.get_by_role("button", name="Transcribe", exact=True).click()
    expect(alert(page)).to_contain_text("Choose or drop at least one audio file.")


def test_a_job_ended_elsewhere_shows_its_status(
    page: Page, service: LiveService, web_key: str
) -> None:
    """A job submitted and cancelled through the API appears in the page as it is."""
    job_id = submit(service, clip(CLIP).path, key=web_key).json()["id"]
    httpx.delete(f"{service.url}/stt/jobs/{job_id}", headers=service.headers(web_key))
    assert wait_ended(service, job_id, key=web_key)["status"] == "cancelled"
    open_app(page, service, web_key)
    expect(job_item(page, f"Job {job_id}").locator(".status")).to_have_text("cancelled")


def test_api_docs_render_from_local_assets(page: Page, service: LiveService) -> None:
    page.goto(f"{service.url}/docs")
    expect(page.locator(".opblock").first).to_be_visible()
    assert page.locator(".opblock").count() > 10
    expect(page.get_by_text("/stt/jobs/{job_id}/transcript").first).to_be_visible()
    schema = httpx.get(f"{service.url}/openapi.json").json()
    assert "/stt/jobs/{job_id}/transcript" in schema["paths"]
    assert schema["openapi"].startswith("3.1")


@pytest.fixture(scope="module")
def strict_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """A server of its own (embedded default, no worker) that takes at most 5 s of audio."""
    svc = start_service(
        tmp_path_factory.mktemp("strict"),
        {"STT_API_KEY": WEB_KEY, "STT_MAX_AUDIO_SECONDS": "5"},
        workers=0,
    )
    yield svc
    stop_service_proc(svc.proc)


def test_a_limit_is_shown_in_words(browser: Browser, strict_service: LiveService) -> None:
    with guarded_context(browser) as (context, off_host):
        page = context.new_page()
        open_app(page, strict_service, WEB_KEY)
        page.get_by_label("Audio file").set_input_files(clip(CLIP).path)
        page.get_by_role("button", name="Transcribe", exact=True).click()
        expect(alert(page)).to_contain_text(
            f"{CLIP}: Too large: the audio lasts 11 s; the limit is 5 s"
        )
        expect(page.get_by_role("listitem")).to_have_count(0)  # no job was made
        assert off_host == []
