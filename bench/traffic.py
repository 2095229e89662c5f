"""What every load benchmark reports about one run's requests, computed one way: throughput counts only 200s,
latency percentiles count every answer (an error is a latency the caller waited too)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Traffic:
    clients: int
    requests: int
    errors: int
    status_counts: dict[str, int]
    seconds: float
    images_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @staticmethod
    def figures(clients: int, latencies_s: list[float], statuses: dict[str, int], seconds: float) -> dict[str, Any]:
        """The fields above, as keywords for a subclass that adds its own."""
        milliseconds = np.array(latencies_s) * 1000
        ok = statuses.get("200", 0)
        return {
            "clients": clients,
            "requests": len(latencies_s),
            "errors": len(latencies_s) - ok,
            "status_counts": statuses,
            "seconds": round(seconds, 2),
            "images_per_s": round(ok / seconds, 1),
            "p50_ms": round(float(np.percentile(milliseconds, 50)), 1),
            "p95_ms": round(float(np.percentile(milliseconds, 95)), 1),
            "p99_ms": round(float(np.percentile(milliseconds, 99)), 1),
            "max_ms": round(float(milliseconds.max()), 1),
        }
