"""The no-HTTP ceiling: what the cores sustain on the public scenes with the service's own stages and nothing else.

    python -m bench.ceiling                          # 2 processes x 1 thread, then 1 process x 2 threads
    python -m bench.ceiling --layouts 2x1 --duration-s 20

Each worker runs decode -> detect -> align -> classify (the faces of one image in one ONNX run) over the scenes,
round robin, with the models and settings a default ``deepfer serve`` loads. Workers start together after their
warm-up and stop at the same deadline. ``PxT`` is P processes of T threads each: ``2x1`` is what two cores can do
with nothing shared; ``1x2`` is what one process with two threads reaches (the GIL, OpenCV and ONNX Runtime
hand-offs included). ``bench.http_load --ceiling`` runs the first layout around each of its HTTP levels, so the
ratio the service reaches is taken against the machine's state just before and just after it.

Printed and saved as JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from multiprocessing.synchronize import Barrier
from pathlib import Path

from bench.record import save
from bench.scenes import DEFAULT_SCENES

WARMUP_IMAGES = 5


@dataclass(frozen=True)
class Layout:
    processes: int
    threads: int

    @classmethod
    def parse(cls, text: str) -> Layout:
        processes, _, threads = text.partition("x")
        return cls(int(processes), int(threads or 1))

    def __str__(self) -> str:
        return f"{self.processes}x{self.threads}"


@dataclass(frozen=True)
class CeilingResult:
    layout: str
    images: int
    seconds: float
    images_per_s: float
    faces_per_s: float
    cpu_ms_per_image: float


@dataclass(frozen=True)
class _Share:
    """One worker's part: where in the scenes it starts, how many its threads split, for how long."""

    offset: int
    stride: int
    threads: int
    duration_s: float


def _worker(images: list[bytes], share: _Share, start: Barrier, out: multiprocessing.Queue) -> None:
    """One process: load the models, warm up, wait for the others, then loop until the shared deadline."""
    import cv2

    from deepfer.engine.align import align_face, to_batch
    from deepfer.engine.decode import decode
    from deepfer.engine.models import load_models
    from deepfer.settings import Settings

    settings = Settings()
    cv2.setNumThreads(settings.opencv_threads)
    detector, classifier = load_models(settings)

    def analyse(data: bytes) -> int:
        image = decode(data, max_pixels=settings.max_pixels, max_pixel_scans=settings.max_pixel_scans)
        found = detector.detect(image)
        crops = [align_face(image, face.box, face.landmarks) for face in found]
        classifier.run(to_batch(crops))
        return len(crops)

    for data in images[:WARMUP_IMAGES]:
        analyse(data)
    threads = share.threads
    counts = [[0, 0] for _ in range(threads)]  # images, faces per thread
    start.wait()
    deadline = time.monotonic() + share.duration_s
    cpu_start = time.process_time()

    def loop(thread: int) -> None:
        index = share.offset + thread * share.stride // threads
        while time.monotonic() < deadline:
            counts[thread][1] += analyse(images[index % len(images)])
            counts[thread][0] += 1
            index += 1

    pool = [threading.Thread(target=loop, args=(thread,)) for thread in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    out.put((sum(c[0] for c in counts), sum(c[1] for c in counts), time.process_time() - cpu_start))


def measure(layout: Layout, images: list[bytes], duration_s: float) -> CeilingResult:
    """Run ``layout`` for ``duration_s`` and add up its workers' images, faces and CPU time."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter per worker, as a service process starts
    start = context.Barrier(layout.processes)
    out: multiprocessing.Queue = context.Queue()
    stride = len(images) // layout.processes
    workers = [
        context.Process(
            target=_worker, args=(images, _Share(index * stride, stride, layout.threads, duration_s), start, out)
        )
        for index in range(layout.processes)
    ]
    for worker in workers:
        worker.start()
    totals = [out.get(timeout=duration_s + 120) for _ in workers]
    for worker in workers:
        worker.join()
    done = sum(total[0] for total in totals)
    return CeilingResult(
        layout=str(layout),
        images=done,
        seconds=duration_s,
        images_per_s=round(done / duration_s, 1),
        faces_per_s=round(sum(total[1] for total in totals) / duration_s, 1),
        cpu_ms_per_image=round(sum(total[2] for total in totals) * 1000 / max(done, 1), 2),
    )


def load_images(folder: Path) -> list[bytes]:
    paths = sorted(folder.glob("*.jpg"))
    if not paths:
        raise SystemExit(f"no scenes in {folder} (set DEEPFER_SHARED_DIR or --scenes)")
    return [path.read_bytes() for path in paths]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=Path, default=DEFAULT_SCENES, help="folder of scene images")
    parser.add_argument("--layouts", type=Layout.parse, nargs="+", default=[Layout(2, 1), Layout(1, 2)])
    parser.add_argument("--duration-s", type=float, default=15.0, help="measured time per layout")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    images = load_images(args.scenes)
    load = os.getloadavg()
    print(f"{len(images)} scenes, {args.duration_s:.0f} s per layout, load average {load[0]:.1f}")
    print(f"{'layout':>8} {'images':>8} {'img/s':>8} {'faces/s':>8} {'cpu ms/img':>11}")
    results = []
    for layout in args.layouts:
        result = measure(layout, images, args.duration_s)
        results.append(result)
        print(
            f"{result.layout:>8} {result.images:>8} {result.images_per_s:>8} {result.faces_per_s:>8} "
            f"{result.cpu_ms_per_image:>11}"
        )
    record = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average_at_start": load,
        "duration_s": args.duration_s,
        "layouts": [asdict(result) for result in results],
    }
    save("ceiling", record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
