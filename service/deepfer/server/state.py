"""What the running app holds, typed: one ``ServiceState`` on ``app.state.service``, read through ``service_state``.

Why one typed object instead of loose ``app.state`` attributes: every reader (dependencies, the stream, the drain in
``connections``) sees the same names and types, and a misspelt attribute is a type error, not an AttributeError
under load.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette

from deepfer.engine.capacity import Slots
from deepfer.engine.pipeline import Pipeline
from deepfer.metrics import Metrics
from deepfer.settings import Settings


@dataclass
class ServiceState:
    settings: Settings
    metrics: Metrics
    streams: Slots  # open WS /stream connections (deepfer.server.stream)
    loaded: Pipeline | None = None  # set by the lifespan once the models are loaded
    ready: bool = False
    ready_detail: str = "loading models"
    draining: bool = False  # set on SIGTERM by connections.DrainingServer

    @property
    def pipeline(self) -> Pipeline:
        """The served pipeline; uvicorn routes no request before the lifespan has set it."""
        if self.loaded is None:
            raise RuntimeError("a request reached the app before its lifespan loaded the models")
        return self.loaded


def service_state(app: Starlette) -> ServiceState:
    state: ServiceState = app.state.service
    return state
