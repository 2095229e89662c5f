"""The docs' first-day snippets run as written, against a live server with the shipped models; their links resolve.

Each snippet is taken from README.md or docs/*.md itself, so an edit there is what is tested. Only two things change
before a snippet runs: the service address (the pages say 127.0.0.1:8000 or localhost:8000; the test server has a
free port) and, for shell lines, ``curl`` fails on an HTTP error (``--fail``), so a 4xx breaks the test instead of
printing. Their files (photo.jpg, group.jpg, clip.mp4, tests/data/scenes/scene_0000.jpg, ...) are made from the
committed test images in a scratch folder, the snippets' working directory.

Run: every ```python block of every page (the stream ones also against a server whose frame budget they outrun,
each bounded in time), the shell lines of the README's Quick start, of docs/api.md's API and of docs/video.md's
Video analysis. Not run here, each tested elsewhere or not runnable on a test machine: ``make`` (this suite is
``make test``), the client generator (tests/http/test_generated_client.py), the reload call
(tests/http/test_reload.py), training and export (hours of TensorFlow; tests/training/), Docker, Compose and kubectl
(tests/deploy/). Checked without a server: every relative link of those pages names a file, and a heading of it
that exists; the settings table of docs/limits.md has a row for every field of ``Settings`` and none for a field
that is gone.
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

from deepfer.settings import Settings
from tests.imaging import DATA
from tests.servers import REPO

DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
HEADING = re.compile(r"^(#{1,6}) (.+)$")
ADDRESS = re.compile(r"(?:http://)?(?:127\.0\.0\.1|localhost):8000")
WS_ADDRESS = re.compile(r"(?:ws://)(?:127\.0\.0\.1|localhost):8000")


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """``(index, line)`` of the lines outside fenced blocks, where a ``#`` starts a heading, not a comment."""
    fenced = False
    for index, line in enumerate(text.splitlines()):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            yield index, line


def section(page: Path, title: str) -> str:
    """The text under the heading ``title`` of ``page``, up to the next heading of its level or above."""
    text = page.read_text(encoding="utf-8")
    lines = text.splitlines()
    headings = [(index, len(found[1]), found[2]) for index, line in prose_lines(text) if (found := HEADING.match(line))]
    for position, (start, level, text) in enumerate(headings):
        if text == title:
            end = next((index for index, deeper, _ in headings[position + 1 :] if deeper <= level), len(lines))
            return "\n".join(lines[start:end]) + "\n"
    raise AssertionError(f"{page.name} has no heading {title!r}")


def blocks(language: str, text: str) -> list[str]:
    """The fenced blocks of ``language`` in ``text``."""
    return [body for lang, body in FENCE.findall(text) if lang == language]


def shell_lines(page: Path, title: str) -> list[str]:
    """The commands of a section's bash blocks: comments dropped, continued lines joined, placeholders skipped."""
    joined = "\n".join(blocks("bash", section(page, title))).replace("\\\n", " ")
    lines = [re.sub(r"\s+#\s.*$", "", line).strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#") and "..." not in line]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The files the snippets name, from the committed images."""
    scene, other = DATA / "scenes" / "scene_0000.jpg", DATA / "scenes" / "scene_0002.jpg"
    (tmp_path / "tests/data/scenes").mkdir(parents=True)
    for name in ("photo.jpg", "group.jpg", "a.jpg", "tests/data/scenes/scene_0000.jpg"):
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


PYTHON = {
    f"{page.name}:{index}": block
    for page in PAGES
    for index, block in enumerate(blocks("python", page.read_text(encoding="utf-8")))
}
STREAM_BLOCKS = [name for name, block in PYTHON.items() if "stream" in block]


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


@pytest.mark.parametrize("name", PYTHON)
def test_python_snippet_runs_as_written(name: str, server_url: str, workdir: Path) -> None:
    run_python(PYTHON[name], server_url, workdir, timeout_s=120)


@pytest.mark.parametrize("name", STREAM_BLOCKS)
def test_stream_snippet_ends_when_it_outruns_the_frame_budget(name: str, outrun_server: str, workdir: Path) -> None:
    """A client faster than max_fps: every frame is still answered ("dropped"), so a snippet that waits for
    answers ends (each bounded in time; a silently dropped frame hung the raw WebSocket one). ``results()`` without
    ``fps=`` paces itself at the server's ``max_fps`` (from ``ready``), so it does not outrun the budget: it must
    only end."""
    block = PYTHON[name]
    stdout = run_python(block, outrun_server, workdir, timeout_s=60)
    if "results(" not in block or "fps=" in block:
        assert "dropped" in stdout or "rate" in stdout, stdout


def test_the_python_snippets_are_found() -> None:
    assert "README.md:0" in PYTHON  # the front page's one call
    assert sum(name.startswith("client.md:") for name in PYTHON) >= 2  # the sync and the async client
    assert len(STREAM_BLOCKS) == 3  # the raw WebSocket, the sync and the async client's streams


QUICK_START = [line for line in shell_lines(REPO / "README.md", "Quick start") if line.startswith("curl")]
API = [
    line
    for line in shell_lines(DOCS / "api.md", "API")
    if not line.startswith(("deepfer serve", "pip ", "openapi-python-client")) and "/admin/reload" not in line
]
VIDEO = shell_lines(DOCS / "video.md", "Video analysis")


@pytest.mark.parametrize("line", QUICK_START + API + VIDEO)
def test_shell_snippet_runs_as_written(line: str, server_url: str, workdir: Path) -> None:
    done = run_shell(line, server_url, workdir)
    assert done.returncode == 0, f"{line}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


def test_the_shell_snippets_are_found() -> None:
    assert len(QUICK_START) == 1 and "tests/data/scenes/scene_0000.jpg" in QUICK_START[0] and len(VIDEO) == 3
    assert any("deepfer predict" in line and "--annotate" in line for line in API)
    assert sum(line.startswith("curl") for line in API) >= 6


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`[^`]*`")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    found: set[str] = set()
    for _, line in prose_lines(page.read_text(encoding="utf-8")):
        if heading := HEADING.match(line):
            slug = re.sub(r"[^\w\- ]", "", heading[2].strip().lower()).replace(" ", "-")
            found.add(slug if slug not in found else f"{slug}-1")
    return found


def relative_links(page: Path) -> list[str]:
    text = "\n".join(line for _, line in prose_lines(page.read_text(encoding="utf-8")))
    targets = LINK.findall(CODE_SPAN.sub("", text))
    return [target for target in targets if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_relative_links_point_to_files_and_headings_that_exist(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert not broken, broken


def test_the_pages_link_to_each_other() -> None:
    """The front page reaches every page of docs/, so no page is an orphan."""
    linked = {target.partition("#")[0] for target in relative_links(REPO / "README.md")}
    assert {f"docs/{page.name}" for page in DOCS.glob("*.md")} <= linked


def test_settings_table_has_a_row_for_every_setting() -> None:
    """The table's first column names settings (``HOST / PORT`` is two); it must name exactly ``Settings``' fields."""
    table = section(DOCS / "limits.md", "Settings")
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    named = {name.strip() for row in rows[1:] for name in row.split("/")}
    fields = {field.upper() for field in Settings.model_fields}
    assert not fields - named, f"settings missing from docs/limits.md: {sorted(fields - named)}"
    assert not named - fields, f"rows for settings that do not exist: {sorted(named - fields)}"
