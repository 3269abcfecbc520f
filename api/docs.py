"""``/docs``: Swagger UI served with its assets from the API itself (no CDN, so it works offline).

FastAPI's default ``/docs`` page loads Swagger UI's JS and CSS from a CDN. Here the page is FastAPI's own
(``get_swagger_ui_html``) pointed at ``swagger-ui-dist`` files vendored under ``api/static/swagger-ui``
(npm package, Apache-2.0, license beside them), mounted at ``/docs/assets`` with Starlette's StaticFiles."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["install_docs", "SWAGGER_UI_DIR", "SWAGGER_UI_VERSION", "DOCS_ASSETS"]

SWAGGER_UI_VERSION = "5.36.0"
SWAGGER_UI_DIR = Path(__file__).resolve().parent / "static" / "swagger-ui"
DOCS_ASSETS = "/docs/assets"


def install_docs(app: FastAPI, docs_url: str = "/docs") -> None:
    """Serve Swagger UI at ``docs_url`` with local assets (create the app with ``docs_url=None``)."""
    oauth2_url = app.swagger_ui_oauth2_redirect_url or f"{docs_url}/oauth2-redirect"
    app.mount(DOCS_ASSETS, StaticFiles(directory=SWAGGER_UI_DIR), name="swagger-ui-assets")

    @app.get(docs_url, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png", oauth2_redirect_url=oauth2_url,
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from the online validator
        )

    @app.get(oauth2_url, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
