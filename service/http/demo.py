"""The browser demo at ``/``: one static page from ``service/http/static/``, served by the service itself.

Everything the page needs ships in the package (no CDN, no build step), and the Content-Security-Policy below
makes the browser enforce that: the page may load scripts, styles and connections from this origin only, so it
works offline, behind a firewall, and cannot leak an uploaded photo to a third party.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"

#: ``blob:`` images are the user's own file shown through an object URL; the camera needs no extra source.
CONTENT_SECURITY_POLICY: Final = "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'"


def install_demo(app: FastAPI) -> None:
    """Serve the page at ``/`` and its assets under ``/static``; neither appears in the OpenAPI schema."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def demo_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})
