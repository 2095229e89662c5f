"""WS /stream under load: 1, 4 and 16 concurrent streams, each a camera sending the public scenes at a fixed rate.

    python -m bench.stream                                  # starts `deepfer serve` on a free 127.0.0.1 port
    python -m bench.stream --fps 15 --duration-s 10 --streams 1 4 16
    python -m bench.stream --url http://127.0.0.1:8000

Each stream (``AsyncClient.stream()``, the shipped client) sends frames every ``1 / --fps`` seconds for
``--duration-s``, never waiting for answers, as a camera would; a second task reads the answers. Frame-to-result
latency is measured per answered frame, from just before its send to its answer's arrival, matched by ``seq``.
The server keeps only the newest frame of each stream, so past its capacity the figures to read are delivered
results/s and the frames it dropped (``stale``: replaced by a newer one before analysis; ``over_rate``: sent
over the ``stream_max_fps`` budget), which the server answers and counts in every result. Only 127.0.0.1 is
contacted; results are printed and saved as JSON under bench/results/ (git-ignored), with the load average,
because figures on a machine shared with a training job are depressed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.local_service import effective_settings, service_target
from bench.record import save
from bench.scenes import DEFAULT_SCENES
from deepfer.client import AsyncClient, AsyncStream, StreamClosedError
from deepfer.wire import StreamError, StreamResult

#: After a stream's last frame, how long its answer may take before the frame is counted unanswered.
DRAIN_S = 10.0


@dataclass
class StreamCounts:
    """One stream's run: what it sent, what came back, and the latency of each answered frame."""

    sent: int = 0
    results: int = 0
    errors: int = 0
    stale: int = 0
    over_rate: int = 0
    closed: str | None = None
    last_answer_at: float = 0.0
    latencies_s: list[float] | None = None
    server_total_ms: list[float] | None = None


@dataclass(frozen=True)
class LevelResult:
    streams: int
    target_fps_per_stream: float
    seconds: float
    frames_sent: int
    results: int
    results_per_s: float
    errors: int
    stale: int
    over_rate: int
    unanswered: int
    closed_streams: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    server_total_p50_ms: float | None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an already running service on 127.0.0.1 (default: start one)")
    parser.add_argument("--scenes", type=Path, default=DEFAULT_SCENES, help="folder of scene images")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4, 16], help="concurrent streams per level")
    parser.add_argument("--fps", type=float, default=15.0, help="frames per second each stream sends")
    parser.add_argument("--duration-s", type=float, default=10.0, help="how long each stream sends")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers of the started service")
    parser.add_argument("--tag", default="", help="label stored with the results")
    return parser.parse_args(argv)


async def run_stream(client: AsyncClient, images: list[bytes], offset: int, args: argparse.Namespace) -> StreamCounts:
    """One camera: a sending task on a fixed clock, this task reading answers until the last frame's (or drain)."""
    counts = StreamCounts(latencies_s=[], server_total_ms=[])
    sent_at: dict[int, float] = {}
    try:
        async with await client.stream() as stream:
            feeder = asyncio.create_task(
                _feed(stream, images, offset=offset, args=args, sent_at=sent_at, counts=counts)
            )
            last_seq = int(args.duration_s * args.fps) - 1
            last_answered = -1
            while last_answered < last_seq:
                try:
                    message = await stream.receive(timeout_s=DRAIN_S)
                except TimeoutError:
                    if feeder.done():
                        break
                    continue
                arrived = counts.last_answer_at = time.monotonic()
                last_answered = message.seq
                if isinstance(message, StreamResult):
                    counts.results += 1
                    counts.latencies_s.append(arrived - sent_at[message.seq])
                    counts.server_total_ms.append(message.timing.total_ms)
                    counts.stale, counts.over_rate = message.dropped.stale, message.dropped.over_rate
                elif isinstance(message, StreamError):
                    counts.errors += 1
            await feeder
    except StreamClosedError as error:
        counts.closed = f"{error.status} {error.code}: {error.message}"
    return counts


async def _feed(
    stream: AsyncStream,
    images: list[bytes],
    *,
    offset: int,
    args: argparse.Namespace,
    sent_at: dict[int, float],
    counts: StreamCounts,
) -> None:
    """Send on a fixed clock (a late send does not shift the next), scenes in turn from ``offset``."""
    period_s = 1.0 / args.fps
    start = time.monotonic()
    for index in range(int(args.duration_s * args.fps)):  # run_stream expects this many
        await asyncio.sleep(max(0.0, start + index * period_s - time.monotonic()))
        # Recorded before the send: the answer may be read before send() returns.
        sent_at[counts.sent] = time.monotonic()
        seq = await stream.send(images[(offset + index) % len(images)])
        assert seq == counts.sent, "frames are numbered in send order"
        counts.sent += 1


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


async def run_level(url: str, images: list[bytes], streams: int, args: argparse.Namespace) -> LevelResult:
    async with AsyncClient(url) as client:
        started = time.monotonic()
        # Offsets spread the streams over the scenes, so they do not send the same image in lockstep.
        runs = await asyncio.gather(*(run_stream(client, images, i * 7, args) for i in range(streams)))
        # Until the last answer (every frame is answered, a dropped one too).
        seconds = max((run.last_answer_at for run in runs), default=started) - started
    latencies_ms = [s * 1000 for run in runs for s in run.latencies_s or []]
    server_ms = [ms for run in runs for ms in run.server_total_ms or []]
    results = sum(run.results for run in runs)
    answered = results + sum(run.errors for run in runs)
    dropped = sum(run.stale + run.over_rate for run in runs)
    for run in runs:
        if run.closed:
            print(f"  a stream was closed: {run.closed}", file=sys.stderr)
    return LevelResult(
        streams=streams,
        target_fps_per_stream=args.fps,
        seconds=round(seconds, 2),
        frames_sent=sum(run.sent for run in runs),
        results=results,
        results_per_s=round(results / seconds, 1),
        errors=sum(run.errors for run in runs),
        stale=sum(run.stale for run in runs),
        over_rate=sum(run.over_rate for run in runs),
        unanswered=sum(run.sent for run in runs) - answered - dropped,
        closed_streams=sum(1 for run in runs if run.closed),
        p50_ms=_percentile(latencies_ms, 50),
        p99_ms=_percentile(latencies_ms, 99),
        max_ms=round(max(latencies_ms), 1) if latencies_ms else None,
        server_total_p50_ms=_percentile(server_ms, 50),
    )


COLUMNS = ("streams", "fps/stream", "sent", "results", "results/s", "stale", "over_rate", "errors", "p50 ms", "p99 ms")


def row(result: LevelResult) -> tuple[object, ...]:
    return (
        result.streams,
        result.target_fps_per_stream,
        result.frames_sent,
        result.results,
        result.results_per_s,
        result.stale,
        result.over_rate,
        result.errors,
        result.p50_ms,
        result.p99_ms,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.scenes.is_dir():
        raise SystemExit(f"scenes not found at {args.scenes} (set DEEPFER_SHARED_DIR or --scenes)")
    images = [path.read_bytes() for path in sorted(args.scenes.glob("*.jpg"))]
    process, url = service_target(args.url, args.workers)
    try:
        load_before = os.getloadavg()
        print(f"{len(images)} scenes -> {url}/stream, load average {load_before[0]:.2f}")
        print(" ".join(f"{name:>10}" for name in COLUMNS))
        levels = []
        for streams in args.streams:
            result = asyncio.run(run_level(url, images, streams, args))
            levels.append(result)
            print(" ".join(f"{value if value is not None else '-':>10}" for value in row(result)))
        load_after = os.getloadavg()
        print(f"load average at the end {load_after[0]:.2f}")
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
    record = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "tag": args.tag,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_start": load_before,
            "load_average_at_end": load_after,
        },
        "service": {
            "url": url,
            "workers": args.workers if process else None,
            "settings": effective_settings() if process else None,
        },
        "fps_per_stream": args.fps,
        "duration_s": args.duration_s,
        "levels": [asdict(level) for level in levels],
    }
    save("stream", record, args.tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
