"""The README's first-day snippets run as written, against a live server with the shipped models.

Each snippet is taken from README.md itself, so an edit there is what is tested. Only two things change before a
snippet runs: the service address (the README says 127.0.0.1:8000 or localhost:8000; the test server has a free
port) and, for shell lines, ``curl`` fails on an HTTP error (``--fail``), so a 4xx breaks the test instead of
printing. Their files (photo.jpg, group.jpg, clip.mp4, ...) are made from the committed test images in a
scratch folder, the snippets' working directory.

Run: every ```python block (the stream ones also against a server whose frame budget they outrun, each bounded
in time), the Quick start's and the API section's shell lines, and the video commands. Not run here, each
tested elsewhere or not runnable on a test machine: ``make`` (this suite is ``make test``), the client generator
(tests/http/test_generated_client.py), the reload call (tests/http/test_reload.py), training and export (hours of
TensorFlow; tests/training/), Docker, Compose and kubectl (tests/deploy/).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest

from tests.imaging import DATA
from tests.servers import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
ADDRESS = re.compile(r"(?:http://)?(?:127\.0\.0\.1|localhost):8000")
WS_ADDRESS = re.compile(r"ws://(?:127\.0\.0\.1|localhost):8000")


def blocks(language: str, section: str | None = None) -> list[str]:
    """The fenced blocks of ``language``, optionally only those under the heading ``section``."""
    text = README
    if section is not None:
        start = README.index(f"\n## {section}\n")
        end = README.find("\n## ", start + 1)
        text = README[start : end if end != -1 else None]
    return [body for lang, body in FENCE.findall(text) if lang == language]


def shell_lines(section: str) -> list[str]:
    """The commands of a section's bash blocks: comments dropped, continued lines joined, placeholders skipped."""
    joined = "\n".join(blocks("bash", section)).replace("\\\n", " ")
    lines = [re.sub(r"\s+#\s.*$", "", line).strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#") and "..." not in line]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The files the snippets name, from the committed images."""
    scene, other = DATA / "scenes" / "scene_0000.jpg", DATA / "scenes" / "scene_0002.jpg"
    for name in ("photo.jpg", "group.jpg", "a.jpg"):
        shutil.copy(scene, tmp_path / name)
    for name in ("other.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), cv2.imread(str(other)))
    cv2.imwrite(str(tmp_path / "face48.png"), cv2.imread(str(DATA / "images" / "fer_happy.jpg")))
    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), 8, (640, 480))
    for path in (scene, other):
        for _ in range(4):
            writer.write(cv2.imread(str(path)))
    writer.release()
    return tmp_path


def run_shell(line: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = "set -e; " + ADDRESS.sub(url, line).replace("curl ", "curl --fail -sS ")
    # `deepfer` as the README's reader has it after `make serve`: the console script of this environment.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", "-c", command], check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


STREAM_BLOCKS = [index for index, block in enumerate(blocks("python")) if "stream" in block]


def run_python(block: str, url: str, cwd: Path, timeout_s: float) -> str:
    """Run a snippet against ``url`` (its ws:// address, then every http one); its stdout."""
    code = ADDRESS.sub(url, WS_ADDRESS.sub(url.replace("http://", "ws://"), block))
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=cwd, capture_output=True, text=True, timeout=timeout_s
    )
    assert done.returncode == 0, f"README python block failed:\n{code}\n{done.stderr}"
    assert done.stdout.strip(), "the snippet printed nothing"
    return done.stdout


@pytest.fixture(scope="module")
def outrun_server(live_server: Callable[..., Any]) -> Iterator[str]:
    """One frame a second, one at a time: every stream snippet sends faster than that."""
    with live_server(stream_max_fps=1.0, stream_burst_frames=1) as url:
        yield url


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_snippet_runs_as_written(index: int, server_url: str, workdir: Path) -> None:
    run_python(blocks("python")[index], server_url, workdir, timeout_s=120)


@pytest.mark.parametrize("index", STREAM_BLOCKS)
def test_stream_snippet_ends_when_it_outruns_the_frame_budget(index: int, outrun_server: str, workdir: Path) -> None:
    """A client faster than max_fps: every frame is still answered ("dropped"), so a snippet that waits for
    answers ends (each bounded in time; a silently dropped frame hung the raw WebSocket one)."""
    stdout = run_python(blocks("python")[index], outrun_server, workdir, timeout_s=60)
    assert "dropped" in stdout or "rate" in stdout, stdout


def test_the_python_snippets_are_found() -> None:
    assert len(blocks("python")) >= 2  # the sync and the async client
    assert len(STREAM_BLOCKS) == 3  # the raw WebSocket, the sync and the async client's streams


QUICK_START = [line for line in shell_lines("Quick start") if line.startswith("curl")]
API = [
    line
    for line in shell_lines("API")
    if not line.startswith(("deepfer serve", "pip ", "openapi-python-client")) and "/admin/reload" not in line
]
VIDEO = shell_lines("Video analysis")


@pytest.mark.parametrize("line", QUICK_START + API + VIDEO)
def test_shell_snippet_runs_as_written(line: str, server_url: str, workdir: Path) -> None:
    done = run_shell(line, server_url, workdir)
    assert done.returncode == 0, f"{line}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


def test_the_shell_snippets_are_found() -> None:
    assert len(QUICK_START) == 1 and len(VIDEO) == 3
    assert any("deepfer predict" in line and "--annotate" in line for line in API)
    assert sum(line.startswith("curl") for line in API) >= 6
