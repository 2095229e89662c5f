"""What the web stack costs per request: the app's ASGI path against ``Pipeline.analyze`` alone, same images.

    python -m bench.http_stack                       # 3 rounds of 100 public scenes each way
    python -m bench.http_stack --rounds 5 --images 200

The real app (``create_app``, its lifespan, middleware, routing, dependencies, multipart reading and response
model) is driven through its ASGI interface one request at a time, with no socket and no server: what is left
after subtracting the pipeline's own CPU is FastAPI and our layers, the part of the server's CPU per image that
the no-HTTP ceiling (``bench.ceiling``) does not pay. uvicorn and httptools come on top of it
(``bench.http_load`` measures the whole). CPU is the process's (every thread's) user + system time. Each image
goes both ways in turn, so drift on a shared machine falls on both; the median round's difference is reported,
with the range over rounds.

Printed and saved as JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.ceiling import load_images
from bench.local_service import QUIET
from bench.record import save
from bench.scenes import DEFAULT_SCENES

BOUNDARY = "deepfer-bench-stack"


@dataclass(frozen=True)
class StackResult:
    images: int
    rounds: int
    pipeline_ms_per_image: float
    asgi_ms_per_request: float
    stack_ms_per_request: float
    stack_ms_range: tuple[float, float]


def multipart(data: bytes) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="scene.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


async def asgi_post(app: Callable[..., Awaitable[None]], path: str, body: bytes) -> int:
    """One POST through the ASGI app as uvicorn would send it (body in one message); the response status."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # no disconnect while the app still listens
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def measure(images: list[bytes], rounds: int) -> StackResult:
    from deepfer.engine.pipeline import Options
    from deepfer.server.app import create_app
    from deepfer.server.state import service_state
    from deepfer.settings import Settings

    settings = Settings(**QUIET)
    app = create_app(settings)
    bodies = [multipart(data) for data in images]
    direct, through = [], []
    async with app.router.lifespan_context(app):
        pipeline = service_state(app).pipeline
        options = Options(detect=True, max_faces=settings.max_faces, min_face_size=0)
        for data in images[:5]:  # the first requests pay for lazy initialisation in both paths
            await pipeline.analyze(data, options)
        for _ in range(rounds):
            alone = served = 0.0
            for data, body in zip(images, bodies, strict=True):
                started = time.process_time()
                await pipeline.analyze(data, options)
                middle = time.process_time()
                if (status := await asgi_post(app, "/predict", body)) != 200:
                    raise SystemExit(f"/predict answered {status}")
                alone, served = alone + middle - started, served + time.process_time() - middle
            direct.append(alone * 1000 / len(images))
            through.append(served * 1000 / len(images))
    stack = [served - alone for alone, served in zip(direct, through, strict=True)]
    return StackResult(
        images=len(images),
        rounds=rounds,
        pipeline_ms_per_image=round(statistics.median(direct), 3),
        asgi_ms_per_request=round(statistics.median(through), 3),
        stack_ms_per_request=round(statistics.median(stack), 3),
        stack_ms_range=(round(min(stack), 3), round(max(stack), 3)),
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=Path, default=DEFAULT_SCENES, help="folder of scene images")
    parser.add_argument("--images", type=int, default=100, help="images per round and way")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tag", default="", help="label stored with the results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    images = load_images(args.scenes)[: args.images]
    result = asyncio.run(measure(images, args.rounds))
    print(f"{result.images} scenes x {result.rounds} rounds, CPU ms (all threads), median round")
    print(f"  pipeline.analyze alone   {result.pipeline_ms_per_image:8.3f} per image")
    print(f"  POST /predict via ASGI   {result.asgi_ms_per_request:8.3f} per request")
    low, high = result.stack_ms_range
    print(f"  web stack                {result.stack_ms_per_request:8.3f} per request (rounds {low} to {high})")
    save("http_stack", {"tag": args.tag, **asdict(result)}, args.tag)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
