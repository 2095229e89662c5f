"""Where every benchmark writes its JSON: ``bench/results/NAME-<UTC time>[-TAG].json`` (git-ignored), one way."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.local_service import REPO

RESULTS = REPO / "bench" / "results"


def run_header(load_at_start: tuple[float, float, float]) -> dict[str, Any]:
    """When, by which command and on what machine (with its load before and after): what a figure needs beside it."""
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": os.getloadavg(),
        },
    }


def save(name: str, record: dict[str, Any], tag: str = "") -> Path:
    """Write ``record`` as indented JSON, print where, and return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}{'-' + tag if tag else ''}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {out.relative_to(REPO)}")
    return out
