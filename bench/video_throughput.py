"""``deepfer video`` frames/s on one clip: the local pipeline, and a server (``--url``) with 1 frame in flight
(what ``--url`` did before ``--in-flight``) and with 8.

    python -m bench.video_throughput [--frames 60] [--repeats 2] [--in-flight 1 8] [--out FILE.json]

The clip is made here from the public scenes (several people each, scaled to 640 x 480): ``--frames`` frames
cycling through them at 10 frames/s, written as MP4 once and read by every run. Every frame
is analysed (``--every 1``), results go to a CSV, no annotated copy: the figure is analysis throughput. The
server is ``deepfer serve`` started as ``bench/local_service.py`` starts it, on the same machine, so with
``--url`` the client's decode and PNG encode share the cores with the server. Each configuration runs
``--repeats`` times and the best is kept; the load average before and after is saved with the figures, since
anything else on the machine (a training job) lowers them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import cv2

from bench.local_service import REPO, effective_settings, start_service
from bench.scenes import DEFAULT_SCENES, read_scenes
from deepfer.settings import Settings
from deepfer.video import analyse_video
from deepfer.video.analysers import FrameAnalyser, local_analyser, remote_analyser

RESULTS = REPO / "bench" / "results"
SIZE = (640, 480)
FPS = 10


def make_clip(path: Path, frames: int, scenes: Path) -> None:
    _, images = read_scenes(scenes)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, SIZE)
    for index in range(frames):
        writer.write(cv2.resize(images[index % len(images)], SIZE, interpolation=cv2.INTER_AREA))
    writer.release()


async def frames_per_s(
    clip: Path, open_analyser: Callable[[], AbstractAsyncContextManager[FrameAnalyser]], in_flight: int, out: Path
) -> tuple[float, int]:
    """(frames/s, faces found) for one run over the whole clip; the analyser's start-up is not timed."""
    async with open_analyser() as analyse:
        started = time.perf_counter()
        results = await analyse_video(clip, analyse, every=1, out=out, progress=False, in_flight=in_flight)
        elapsed = time.perf_counter() - started
    return len(results) / elapsed, sum(len(result.faces) for result in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--scenes", type=Path, default=DEFAULT_SCENES)
    parser.add_argument("--out", type=Path, default=RESULTS / "video_throughput.json", help="the JSON record")
    args = parser.parse_args()

    load_before = os.getloadavg()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as folder:
        clip, out = Path(folder) / "clip.mp4", Path(folder) / "result.csv"
        make_clip(clip, args.frames, args.scenes)
        process, url = start_service()
        try:
            configurations: list[tuple[str, int, Callable[[], AbstractAsyncContextManager[FrameAnalyser]]]] = [
                ("local", n, lambda: local_analyser(Settings())) for n in args.in_flight
            ] + [("server", n, lambda: remote_analyser(url)) for n in args.in_flight]
            for where, in_flight, opener in configurations:
                runs = [asyncio.run(frames_per_s(clip, opener, in_flight, out)) for _ in range(args.repeats)]
                best = max(rate for rate, _ in runs)
                rows.append({"where": where, "in_flight": in_flight, "frames_per_s": best, "faces": runs[0][1]})
                print(f"{where:6s}  in flight {in_flight:2d}  {best:6.2f} frames/s  ({runs[0][1]} faces)", flush=True)
        finally:
            process.terminate()
            process.wait(timeout=30)
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min), on {os.cpu_count()} cores")
    record = {
        "frames": args.frames,
        "size": SIZE,
        "repeats": args.repeats,
        "rows": rows,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "settings": effective_settings(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
