"""The ``deepfer`` command: ``serve`` runs the HTTP service, ``predict`` analyses image files, ``video`` a video.

Each command's module adds its parser, and its handler imports what it needs when it runs, so ``deepfer
--version`` and ``deepfer predict --url`` work from the client-only install (``pip install deepfer``); the local
pipeline, ``serve`` and ``video`` need ``deepfer[server]``. Settings come from ``DEEPFER_*`` like the service's;
flags override the few that matter on a command line.

One module per command (``serve``, ``predict``, ``video``); ``common`` holds what they share.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version

from deepfer.cli.common import UsageError
from deepfer.cli.predict import add_predict
from deepfer.cli.serve import add_serve
from deepfer.cli.video import add_video
from deepfer.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deepfer", description="DeepFER facial emotion recognition")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_package_version()}")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(subcommands)
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args, Settings())
    except UsageError as error:
        print(f"deepfer {args.command}: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `deepfer predict ... | head` closed the pipe: not an error worth a traceback. Point stdout at devnull so
        # the interpreter's final flush does not raise again (the recipe of Python's signal documentation).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as error:
        from deepfer.errors import ModelLoadError

        if not isinstance(error, ModelLoadError):
            raise
        print(f"deepfer: cannot start: {error}", file=sys.stderr)
        return 2


def _package_version() -> str:
    try:
        return version("deepfer")
    except PackageNotFoundError:
        return "0+unknown"


COMMANDS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    add_serve,
    add_predict,
    add_video,
)
