"""The service's engine under concurrent load with no HTTP: what is left between the ceiling and the server.

    python -m bench.engine_load                      # 16 concurrent callers for 10 s, uvloop as the server runs
    python -m bench.engine_load --clients 16 64 --duration-s 10 --loop asyncio

``bench.ceiling`` runs the stages in two bare processes; ``bench.http_load`` measures the whole server. This runs
the server's own engine (``create_app``'s lifespan: the locate threads, the batcher, the classifier thread, the
metrics) with N callers awaiting ``Pipeline.analyze`` in a closed loop on one event loop, as the routes do, and
reports images/s, the process's CPU per image and the event loop thread's share of it. Set beside the other two
in one sitting, it splits the server's overhead into the engine's part and the HTTP layer's part (issue 28: the
engine alone came within 2% of the ceiling's CPU per image; the gap is HTTP's). Printed and saved as JSON under
bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.ceiling import load_images
from bench.local_service import QUIET
from bench.record import save
from bench.scenes import DEFAULT_SCENES

WARMUP_IMAGES = 10


@dataclass(frozen=True)
class EngineResult:
    clients: int
    images: int
    seconds: float
    images_per_s: float
    cpu_ms_per_image: float
    loop_thread_cpu_ms_per_image: float


async def measure(images: list[bytes], clients: int, duration_s: float) -> EngineResult:
    from deepfer.engine.pipeline import Options
    from deepfer.server.app import create_app
    from deepfer.server.state import service_state
    from deepfer.settings import Settings

    settings = Settings(**QUIET)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        pipeline = service_state(app).pipeline
        options = Options(detect=True, max_faces=settings.max_faces, min_face_size=0)
        for data in images[:WARMUP_IMAGES]:
            await pipeline.analyze(data, options)
        done = 0
        stop_at = time.monotonic() + duration_s

        async def caller(index: int) -> None:
            nonlocal done
            while time.monotonic() < stop_at:
                await pipeline.analyze(images[index % len(images)], options)
                done += 1
                index += clients

        loop_start, process_start, wall_start = time.thread_time(), time.process_time(), time.monotonic()
        await asyncio.gather(*(caller(offset) for offset in range(clients)))
        loop_used, process_used = time.thread_time() - loop_start, time.process_time() - process_start
        seconds = time.monotonic() - wall_start
    return EngineResult(
        clients=clients,
        images=done,
        seconds=round(seconds, 2),
        images_per_s=round(done / seconds, 1),
        cpu_ms_per_image=round(process_used * 1000 / done, 3),
        loop_thread_cpu_ms_per_image=round(loop_used * 1000 / done, 3),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=Path, default=DEFAULT_SCENES, help="folder of scene images")
    parser.add_argument("--clients", type=int, nargs="+", default=[16])
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop", help="uvloop: as uvicorn runs")
    parser.add_argument("--tag", default="", help="label stored with the results")
    args = parser.parse_args(argv)
    images = load_images(args.scenes)
    results = []
    for clients in args.clients:
        run = measure(images, clients, args.duration_s)
        if args.loop == "uvloop":
            import uvloop

            result = uvloop.run(run)
        else:
            result = asyncio.run(run)
        results.append(result)
        print(
            f"{clients:>3} callers: {result.images_per_s} img/s, {result.cpu_ms_per_image} ms CPU per image "
            f"({result.loop_thread_cpu_ms_per_image} ms on the event loop thread)"
        )
    save("engine_load", {"tag": args.tag, "loop": args.loop, "results": [asdict(r) for r in results]}, args.tag)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
