"""The web app and the API docs in-process: served by the API, nothing from another host."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from api.routes.web import WEB_DIR
from tests.unit import test_jobs_api as jobs_api
from tests.unit.test_jobs_api import Service

audio, start, svc = jobs_api.audio, jobs_api.start, jobs_api.svc  # the job API's fixtures

URL_IN_ASSET = re.compile(
    r"""(?:src|href)\s*=\s*["']([^"']+)|url\(\s*["']?([^"')]+)|from\s+["']([^"']+)["']"""
)


def referenced(text: str) -> list[str]:
    return [next(g for g in m.groups() if g) for m in URL_IN_ASSET.finditer(text)]


@pytest.mark.parametrize("asset", sorted(p.name for p in WEB_DIR.iterdir()))
def test_assets_refer_only_to_this_host(asset: str) -> None:
    text = (WEB_DIR / asset).read_text()
    assert "//" not in "".join(u for u in referenced(text) if not u.startswith("data:"))
    assert not re.search(r"https?://", text.replace("http://www.w3.org/2000/svg", ""))


def test_the_page_and_its_modules_are_served(svc: Service) -> None:
    page = svc.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for url in referenced(page.text):
        asset = svc.client.get(url)
        assert asset.status_code == 200, url
    module = svc.client.get("/web/app.js")
    assert "javascript" in module.headers["content-type"]
    assert svc.client.get("/web/nope.js").status_code == 404


@pytest.mark.parametrize("path", ["/docs", "/schema", "/schema/swagger"])
def test_api_docs_load_their_scripts_from_this_host(svc: Service, path: str) -> None:
    html = svc.client.get(path)
    assert html.status_code == 200, path
    urls = referenced(html.text)
    assert any(u.endswith("swagger-ui-bundle.js") for u in urls)
    for url in urls:
        assert url.startswith("/"), url
        assert svc.client.get(url).status_code == 200, url


def test_openapi_json_is_the_documented_schema(svc: Service) -> None:
    schema = svc.client.get("/openapi.json").json()
    assert schema == svc.client.get("/schema/openapi.json").json()
    op = schema["paths"]["/stt/jobs/{job_id}/transcript"]["get"]
    assert "409" in op["responses"] and op["security"]
    assert any(p["name"] == "response_format" for p in op["parameters"])
    assert "/" not in schema["paths"] and "/docs" not in schema["paths"]


def test_swagger_assets_come_from_the_installed_package() -> None:
    from api.routes.web import swagger_assets

    assert (swagger_assets() / "swagger-ui-bundle.js").is_file()
    assert Path(swagger_assets()).parent.name == "swagger_ui"
