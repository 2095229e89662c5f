"""Where every benchmark writes its JSON: ``bench/results/NAME-<UTC time>[-TAG].json`` (git-ignored), one way."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.local_service import REPO

RESULTS = REPO / "bench" / "results"


def save(name: str, record: dict[str, Any], tag: str = "") -> Path:
    """Write ``record`` as indented JSON, print where, and return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}{'-' + tag if tag else ''}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {out.relative_to(REPO)}")
    return out
