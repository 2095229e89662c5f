"""What the commands share: the usage error they report alike, and the options for reaching a service."""

from __future__ import annotations

import argparse
import os


class UsageError(Exception):
    """Arguments that cannot work together; reported as ``deepfer <command>: ...`` with exit status 2."""


def add_url_options(parser: argparse.ArgumentParser, url_help: str) -> None:
    parser.add_argument("--url", help=url_help)
    parser.add_argument(
        "--api-key", default=os.environ.get("DEEPFER_API_KEY"), help="API key for --url (default: $DEEPFER_API_KEY)"
    )
