"""The HTTP routes, one module per resource: ``predict``, ``model`` (and the admin reload), ``health`` (and metrics).

Health endpoints are always open; everything else sits behind ``require_api_key`` when ``DEEPFER_API_KEYS`` is
set, and admin routes behind ``DEEPFER_ADMIN_TOKEN``. ``ROUTERS`` is the order they are mounted in.
"""

from __future__ import annotations

from typing import Any

from deepfer.server.routes import health, model, predict

#: The tags every route carries, in the order /docs shows them.
TAGS: list[dict[str, Any]] = [
    {"name": "prediction", "description": "Faces and their emotions, for one image or a batch"},
    {"name": "model", "description": "What the service serves"},
    {"name": "operations", "description": "Health, readiness and Prometheus metrics"},
    {"name": "admin", "description": "Model reload; needs DEEPFER_ADMIN_TOKEN"},
]

ROUTERS = (health.open_router, predict.router, model.router, health.router, model.admin_router)
