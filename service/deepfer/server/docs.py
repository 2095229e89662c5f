"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served by the service itself so they work on a closed network.

FastAPI's own pages load their JavaScript, CSS and fonts from a CDN and start Swagger UI with an inline script;
both fail on an offline network and under the demo's Content-Security-Policy. Here the assets come from the
``fastapi-offline`` wheel (Swagger UI 5 and ReDoc 2 as released, MIT/Apache-2.0; we use its files, not its
``FastAPIOffline`` class, whose pages keep the inline script), Swagger UI starts from ``static/docs.js``, and
ReDoc uses the system font stack instead of Google Fonts. Both pages get the demo's policy, so the browser itself
refuses anything that is not from this origin. ReDoc alone needs two more sources, both for its own code: inline
styles (its styled-components write ``<style>`` elements at run time: 80-odd violations and an unstyled page
otherwise; styles cannot run code or reach another host) and a ``blob:`` worker (its search index, built from
its own bundle). The one thing it still asks another host for, the "API docs by Redocly" logo of its sidebar,
the policy refuses: offline, the page just shows no logo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import fastapi_offline
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from deepfer.server.demo import CONTENT_SECURITY_POLICY

ASSETS_DIR: Final = Path(fastapi_offline.__file__).resolve().parent / "static"
REDOC_CONTENT_SECURITY_POLICY: Final = f"{CONTENT_SECURITY_POLICY}; style-src 'self' 'unsafe-inline'; worker-src blob:"

# Relative URLs (no leading slash), so the pages also work behind a proxy that serves the API under a prefix.
_SWAGGER_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title} - API</title>
  <link rel="icon" href="static/favicon.svg">
  <link rel="stylesheet" href="docs-assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
  <script src="docs-assets/swagger-ui-bundle.js"></script>
  <script src="static/docs.js"></script>
</body>
</html>
"""

_REDOC_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title} - API reference</title>
  <link rel="icon" href="static/favicon.svg">
</head>
<body>
  <redoc spec-url="{openapi_url}" font-family="system-ui, sans-serif"></redoc>
  <script src="docs-assets/redoc.standalone.js"></script>
</body>
</html>
"""


def install_docs(app: FastAPI) -> None:
    """Serve both pages and their assets; the app must be built with ``docs_url=None, redoc_url=None``."""
    app.mount("/docs-assets", StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    openapi_url = (app.openapi_url or "/openapi.json").lstrip("/")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        page = _SWAGGER_PAGE.format(title=app.title, openapi_url=openapi_url)
        return HTMLResponse(page, headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = _REDOC_PAGE.format(title=app.title, openapi_url=openapi_url)
        return HTMLResponse(page, headers={"Content-Security-Policy": REDOC_CONTENT_SECURITY_POLICY})
