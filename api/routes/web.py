"""The web app at `/` and the API docs at `/docs`, every asset served from this package.

Nothing is fetched from another host: the page is plain ES modules in `api/web/`, and
Swagger UI's scripts come from the `swagger-ui-py` package (Swagger UI 5, which reads
OpenAPI 3.1; only its files are used, the package is never imported)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from litestar import Request, Response, get
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.datastructures import State
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.router import Router
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
ASSETS = "/web"
SWAGGER_ASSETS = "/swagger-ui"
FAVICON = f"<link rel='icon' type='image/svg+xml' href='{ASSETS}/favicon.svg'>"
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; connect-src 'self'"
)
"""Only this host: the browser itself refuses anything else (Swagger's inline start-up
script and styles need 'unsafe-inline')."""


def swagger_assets() -> Path:
    """Swagger UI's `static/` folder inside the `swagger-ui-py` package."""
    spec = importlib.util.find_spec("swagger_ui")
    assert spec is not None and spec.submodule_search_locations is not None
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def swagger_plugin(path: str | Sequence[str] = "/swagger") -> SwaggerRenderPlugin:
    """Swagger UI with its scripts, styles and icon served by this API."""
    return SwaggerRenderPlugin(
        js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
        css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{SWAGGER_ASSETS}/swagger-ui-standalone-preset.js",
        favicon=FAVICON,
        path=path,
    )


def _schema(request: Request[Any, Any, State]) -> dict[str, Any]:
    return request.app.plugins.get(OpenAPIPlugin).provide_openapi_schema()


@get("/", include_in_schema=False, media_type="text/html")
async def index() -> Response[bytes]:
    """The web app's page."""
    return Response(
        (WEB_DIR / "index.html").read_bytes(),
        media_type="text/html",
        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"},
    )


@get("/docs", include_in_schema=False, media_type="text/html")
async def docs(request: Request[Any, Any, State]) -> Response[bytes]:
    """Interactive API docs (Swagger UI) rendered from `/openapi.json`."""
    html = swagger_plugin().render(request, _schema(request))
    return Response(html, media_type="text/html", headers={"Content-Security-Policy": CSP})


@get("/openapi.json", include_in_schema=False)
async def openapi_json(request: Request[Any, Any, State]) -> dict[str, Any]:
    """The service's OpenAPI document."""
    return _schema(request)


def routes() -> list[ControllerRouterHandler]:
    """The page, its assets, the docs and Swagger UI's assets."""
    static: list[Router] = [
        create_static_files_router(ASSETS, [WEB_DIR], name="web"),
        create_static_files_router(SWAGGER_ASSETS, [swagger_assets()], name="swagger"),
    ]
    return [index, docs, openapi_json, *static]
