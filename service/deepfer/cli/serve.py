"""``deepfer serve``: the HTTP service with the shipped (or configured) models, under uvicorn with its limits."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from deepfer.settings import Settings

if TYPE_CHECKING:
    pass


def add_serve(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser("serve", help="run the HTTP service (settings from DEEPFER_* variables)")
    parser.add_argument("--host", help="interface to listen on (DEEPFER_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (DEEPFER_PORT, default 8000)")
    parser.add_argument("--workers", type=int, help="worker processes (DEEPFER_WORKERS, default 1)")
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from deepfer.engine.models import load_models
    from deepfer.logs import configure_logging
    from deepfer.server.app import create_app
    from deepfer.server.connections import DrainingServer, uvicorn_options

    overrides = {name: getattr(args, name) for name in ("host", "port", "workers") if getattr(args, name) is not None}
    settings = Settings(**{**settings.model_dump(), **overrides})
    # Loaded before uvicorn starts, so a bad file ends the command with one readable line instead of a
    # lifespan traceback; a single process then serves these very models (they load once).
    models = load_models(settings)
    configure_logging(settings.log_level)
    if settings.workers > 1:
        # An import string, so each worker process builds its own app (and loads its own models) from the
        # environment; the models loaded above were only the check (deepfer.server.connections says what the
        # pre-drain does).
        del models
        uvicorn.run("deepfer.server.app:app_from_env", factory=True, **uvicorn_options(settings))
        return 0
    app = create_app(settings, models)
    config = uvicorn.Config(app, **uvicorn_options(settings))
    DrainingServer(config, app=app, pre_drain_s=settings.pre_drain_s).run()
    return 0
