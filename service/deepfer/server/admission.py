"""Load shedding at the door: a prediction that arrives while every image slot is taken gets its 503 here.

Why an ASGI layer and not the route: a refusal should cost the service as little as possible, because a client
that ignores Retry-After sends the next request at once. Here a refusal skips routing, the dependencies, the
exception handlers and the body (never read): measured with wrk at 128 clients against 64 slots
(``bench.http_load --clients 128``), the served images/s fell to a quarter of the unloaded rate while the
refusals were raised in the route after the upload. ``Pipeline.analyze`` checks the slots again, so this is a
fast path, never the only guard.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from deepfer.engine.pipeline import Pipeline
from deepfer.errors import Overloaded
from deepfer.server.errors import error_response


class AdmissionMiddleware:
    """Answer POSTs to ``routes`` (by path) with 503 ``overloaded`` while every image slot is taken.

    A refusal is labelled with its route, as routing would have done, so the request metrics count it there.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        pipeline: Callable[[], Pipeline],
        routes: dict[str, BaseRoute],
        on_refused: Callable[[str], None],
    ) -> None:
        self.app = app
        self.pipeline = pipeline
        self.routes = routes
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.routes:
            try:
                self.pipeline().images.check()
            except Overloaded as refusal:
                scope["route"] = self.routes[scope["path"]]
                self.on_refused(refusal.code)
                answer = error_response(refusal.status, refusal.code, refusal.message, refusal.headers())
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)
