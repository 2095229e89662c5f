"""The browser demo at ``/``: one static page from ``service/deepfer/server/static/``, served by the service itself.

Everything the page needs ships in the package (no CDN, no build step), and the Content-Security-Policy below
makes the browser enforce that: the page may load scripts, styles and connections from this origin only, so it
works offline, behind a firewall, and cannot leak an uploaded photo to a third party.

Live mode's WebSocket to ``/stream`` is a connection too. CSP Level 3 lets ``'self'`` match ``ws:``/``wss:`` on
the page's own host and port (Chromium and Firefox do), but Safari long kept Level 2's "same scheme only", so
the page's policy names that one host's two WebSocket origins as well, taken from the request's ``Host`` header:
the host the browser itself asked for, whatever proxy sits in front (both schemes, because behind a TLS proxy
the service may not know the page is https). A ``Host`` that is not a plain host[:port] adds nothing, so it
cannot write a directive of its own into the header.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"

#: ``blob:`` images are the user's own file shown through an object URL; the camera needs no extra source.
CONTENT_SECURITY_POLICY: Final = "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'"

# A DNS name or IPv4 address, or a bracketed IPv6 address, and an optional port: nothing a CSP would parse.
_PLAIN_HOST: Final = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def demo_content_security_policy(host: str | None) -> str:
    """The page's policy: the base one, with the WebSocket origins of ``host`` (the request's Host header)."""
    if host is None or not _PLAIN_HOST.fullmatch(host):
        return f"{CONTENT_SECURITY_POLICY}; connect-src 'self'"
    return f"{CONTENT_SECURITY_POLICY}; connect-src 'self' ws://{host} wss://{host}"


def install_demo(app: FastAPI) -> None:
    """Serve the page at ``/`` and its assets under ``/static``; neither appears in the OpenAPI schema."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def demo_page(request: Request) -> FileResponse:
        policy = demo_content_security_policy(request.headers.get("host"))
        return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": policy})
