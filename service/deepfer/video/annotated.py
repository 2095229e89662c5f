"""``--annotated``: the video with the faces drawn, encoded so a browser plays it (H.264 in MP4, VP9 in WebM).

OpenCV's own writer cannot do this: the FFmpeg inside the opencv-python-headless wheels has no H.264 or VP9
encoder (``avc1``/``VP90`` fail to open), only MPEG-4 part 2 (``mp4v``), which browsers do not play. PyAV's wheels
bundle FFmpeg with libx264 and libvpx, and PyAV lets each frame carry its own presentation time, so a
variable-frame-rate source keeps its timing in the copy instead of being spread evenly at the average rate.

PyAV is the optional extra ``deepfer[video]``, not part of ``deepfer[server]``: about 105 MB installed (its FFmpeg
and codec libraries), which the service image, kept under 600 MB, has no room or use for; and its libx264 and
libx265 are GPL, which an image we distribute should not carry for a feature the server never uses.
"""

from __future__ import annotations

import importlib.util
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from deepfer.video.frames import VideoError, VideoInfo


@dataclass(frozen=True)
class Encoding:
    """How one output extension is written: FFmpeg's container and encoder names and their options."""

    container: str
    codec: str
    codec_options: dict[str, str]
    container_options: dict[str, str]


#: The extension of ``--annotated`` picks the encoding. H.264 at CRF 23 ("veryfast") and VP9 at CRF 32 (libvpx's
#: realtime mode: its default "good" mode is several times slower than the analysis itself); both yuv420p, the
#: only pixel format every browser decodes. ``faststart`` moves the MP4 index to the front, so a browser starts
#: playing before the whole file has arrived.
ENCODINGS: Final[dict[str, Encoding]] = {
    ".mp4": Encoding("mp4", "libx264", {"preset": "veryfast", "crf": "23"}, {"movflags": "+faststart"}),
    ".webm": Encoding(
        "webm", "libvpx-vp9", {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"}, {}
    ),
}
PIXEL_FORMAT: Final = "yuv420p"
#: Presentation times are written in units of 1/90000 s (MPEG's clock), fine enough for any source's times.
TIME_BASE: Final = Fraction(1, 90_000)


def pyav_install_hint() -> str:
    """How to get PyAV into the Python that runs this command, for each way the docs install deepfer.

    A pip install and the Makefile's ``.venv`` both have pip, and ``python -m pip`` with this very interpreter
    installs into the environment the command runs from, whichever it is (``pip`` on the PATH may belong to
    another). The service's Docker image has no pip (removed to stay small) and leaves PyAV out on purpose, so there
    the answer is to run the video command elsewhere and use the container's models through ``--url``.
    """
    requirement = _video_requirement()
    try:
        has_pip = importlib.util.find_spec("pip") is not None
    except ValueError:  # a module set to None in sys.modules has no spec
        has_pip = False
    if not has_pip:
        return (
            "this environment has no pip to add it (the service's Docker image leaves PyAV out on purpose): run "
            "`deepfer video --annotated` from a pip install (pip install 'deepfer[video]') or the Makefile's .venv "
            "(.venv/bin/pip install -e '.[video]'), with --url http://HOST:8000 to use the container's models"
        )
    return f"install it into this Python with `{shlex.quote(sys.executable)} -m pip install '{requirement}'`"


def _video_requirement() -> str:
    """PyAV's requirement as the installed package declares it for the extra ``video`` (``av>=14``), so the hint
    never drifts from pyproject.toml; plain ``av`` when deepfer runs from a checkout that was never installed."""
    try:
        declared = requires("deepfer") or []
    except PackageNotFoundError:
        declared = []
    return next((line.split(";")[0].strip() for line in declared if 'extra == "video"' in line), "av")


def check_annotated(path: Path) -> Encoding:
    """The encoding for ``path``, once it is known the encoder is there: a run that would fail only at its first
    annotated frame fails before any work instead."""
    encoding = encoding_for(path)
    try:
        import av  # noqa: F401
    except ImportError:
        raise VideoError(
            f"--annotated needs PyAV (the extra deepfer[video]) for its H.264/VP9 encoders, and it is not installed: "
            f"{pyav_install_hint()}"
        ) from None
    return encoding


def encoding_for(path: Path) -> Encoding:
    """The encoding for ``path``'s extension, or a ``VideoError`` naming the ones there are."""
    encoding = ENCODINGS.get(path.suffix.lower())
    if encoding is None:
        known = " or ".join(ENCODINGS)
        raise VideoError(f"cannot write an annotated video as {path.suffix or 'no extension'!r}: use {known}")
    return encoding


class AnnotatedWriter:
    """Encodes BGR frames, each at its own presentation time, into one stream."""

    def __init__(self, container: Any, stream: Any) -> None:
        self._container = container
        self._stream = stream
        self._last_pts: int | None = None

    def write(self, image: NDArray[np.uint8], time_s: float) -> None:
        """Encode one H x W x 3 BGR frame shown from ``time_s`` (strictly later than the previous frame's)."""
        import av

        pts = round(time_s / TIME_BASE)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # two times closer than one tick: keep them in order, one tick apart
        self._last_pts = pts
        height, width = self._stream.height, self._stream.width
        if image.shape[:2] != (height, width):  # 4:2:0 needs even sides: repeat the last row or column
            image = np.pad(image, ((0, height - image.shape[0]), (0, width - image.shape[1]), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts, frame.time_base = pts, TIME_BASE
        self._container.mux(self._stream.encode(frame))

    def close(self) -> None:
        """Flush the encoder's delayed frames and finish the file."""
        self._container.mux(self._stream.encode(None))
        self._container.close()


@contextmanager
def open_annotated_writer(path: Path, info: VideoInfo) -> Iterator[AnnotatedWriter]:
    """A writer for ``path`` at the source's size (rounded up to even), its codec chosen by the extension."""
    encoding = check_annotated(path)
    import av
    from av.video.stream import VideoStream

    try:
        container = av.open(str(path), mode="w", format=encoding.container, options=encoding.container_options)
    except (OSError, av.FFmpegError) as error:
        raise VideoError(f"cannot write an annotated video to {path}: {error}") from None
    # The nominal rate only guides the encoder's rate control; each frame's own time is what is written.
    stream = container.add_stream(encoding.codec, rate=Fraction(info.fps).limit_denominator(1001))
    if not isinstance(stream, VideoStream):  # a video codec gives a video stream; the types cannot say so
        raise VideoError(f"{encoding.codec} did not open a video stream")
    stream.width, stream.height = info.width + info.width % 2, info.height + info.height % 2
    stream.pix_fmt = PIXEL_FORMAT
    stream.time_base = TIME_BASE
    stream.codec_context.time_base = TIME_BASE
    options: dict[str, object] = {**encoding.codec_options}
    stream.options = options
    writer = AnnotatedWriter(container, stream)
    try:
        yield writer
    finally:
        writer.close()
