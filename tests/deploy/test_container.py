"""The Dockerfile, built and run for real: no Docker engine here, so Debian's podman via container-build.sh.

The other deployment tests check the files; this one checks the artefact. It builds the default (CPU) target on a
locally made Debian 12 / Python 3.11 base (../shared/tools/container-build.sh; no registry is reachable), runs it
the way a user would (settings only from DEEPFER_* variables, read-only root filesystem, /tmp a tmpfs), waits for
the image's own HEALTHCHECK, and compares its answer for a public scene with the repository's code answering the
same request. It skips only where podman is missing and cannot be installed, or the shared tools are absent.

Slow (a minute or two to build, more on a first run that bootstraps the base), hence the `container` mark:
`pytest -m "not container"` leaves it out.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.helpers import ROOT, answers_ok, public_scene, running_replicas, shared_dir, wait_until
from tests.servers import free_port

pytestmark = pytest.mark.container

TAG = "localhost/deepfer-test:cpu"
IMAGE_SIZE_LIMIT_BYTES = 600_000_000
BUILD_TIMEOUT_S = 1200


@dataclass
class Image:
    """The built image and the podman environment (storage and config paths) container-build.sh used."""

    tag: str
    env: dict[str, str]
    build_seconds: float

    def podman(self, *args: str, check: bool = True, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        """Run podman against the same storage the build used."""
        return subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout_s, check=check
        )


@dataclass
class Container:
    """A running container of the image, on the host network."""

    image: Image
    name: str
    url: str


def _require_podman() -> None:
    """Tests never install system packages: ``make test`` (and so CI) runs docker/ci-deps.sh first."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: run docker/ci-deps.sh (as root), as `make test` does")


@pytest.fixture(scope="module")
def image() -> Image:
    """Build the CPU image once per run; layers are cached in container-build.sh's storage between runs."""
    script = shared_dir() / "tools" / "container-build.sh"
    if not script.is_file():
        pytest.skip(f"container-build.sh not found at {script} (set DEEPFER_SHARED_DIR)")
    _require_podman()
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(script), str(ROOT), TAG], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
    )
    build_seconds = time.monotonic() - started
    assert done.returncode == 0, f"image build failed:\n{done.stderr[-4000:]}"
    # The script's last line is `export CONTAINERS_STORAGE_CONF=... CONTAINERS_CONF=...`.
    exports = next(line for line in reversed(done.stdout.splitlines()) if line.startswith("export "))
    env = dict(os.environ)
    env.update(token.split("=", 1) for token in shlex.split(exports.removeprefix("export ")))
    return Image(TAG, env, build_seconds)


@pytest.fixture(scope="module")
def container(image: Image) -> Iterator[Container]:
    """Run the image as compose would (read-only, tmpfs /tmp), on 127.0.0.1 of the host network, until healthy."""
    port = free_port()
    name = f"deepfer-test-{os.getpid()}"
    image.podman("rm", "-f", "--ignore", name)
    image.podman(
        "run", "--detach", "--name", name, "--network", "host",
        # No systemd here to run the HEALTHCHECK on a timer: the test runs it by hand.
        "--health-interval=disable",
        "--read-only", "--tmpfs", "/tmp",
        # Loopback only, so the test server is never reachable from outside this machine.
        "--env", "DEEPFER_HOST=127.0.0.1", "--env", f"DEEPFER_PORT={port}",
        image.tag,
    )  # fmt: skip
    try:

        def healthy() -> bool:
            state = image.podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
            assert state == "true", image.podman("logs", name, check=False).stdout[-3000:]
            return image.podman("healthcheck", "run", name, check=False).returncode == 0

        wait_until(healthy, 120, "the image's HEALTHCHECK to pass")
        yield Container(image, name, f"http://127.0.0.1:{port}")
    finally:
        image.podman("rm", "--force", "--time", "5", name, check=False)


def _predict(url: str, scene: bytes) -> dict[str, Any]:
    response = httpx.post(f"{url}/predict", files={"file": ("scene.jpg", scene, "image/jpeg")}, timeout=30.0)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_healthcheck_reports_healthy(container: Container) -> None:
    """`podman healthcheck run` passed in the fixture; podman recorded it, and /readyz agrees from outside."""
    status = container.image.podman("inspect", "--format", "{{.State.Health.Status}}", container.name)
    assert status.stdout.strip() == "healthy"
    assert answers_ok(f"{container.url}/readyz")


def test_predicts_a_public_scene_like_the_repository_code(container: Container, tmp_path: Path) -> None:
    """Same model file, same answer: the image's /predict against `deepfer serve` from this checkout.

    Library versions in the image are whatever pyproject's ranges resolved to at build time, so numbers get a
    small tolerance; the model hash, the faces found and their emotions must match exactly.
    """
    scene = public_scene()
    from_image = _predict(container.url, scene)
    with running_replicas(1, tmp_path) as (local,):
        from_repo = _predict(local.url, scene)

    assert from_image["model"] == from_repo["model"]
    assert from_image["image"] == from_repo["image"]
    assert from_image["faces"], "the public scene has faces"
    assert [f["emotion"] for f in from_image["faces"]] == [f["emotion"] for f in from_repo["faces"]]
    for ours, theirs in zip(from_image["faces"], from_repo["faces"], strict=True):
        for key in ("x", "y", "width", "height"):
            assert abs(ours["box"][key] - theirs["box"][key]) <= 2
        for label, probability in ours["probabilities"].items():
            assert probability == pytest.approx(theirs["probabilities"][label], abs=0.01)
        assert sum(ours["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)


def test_service_process_is_not_root(container: Container) -> None:
    """PID 1 is `deepfer serve` itself (exec-form ENTRYPOINT), and every one of its ids is the image's user."""
    status = container.image.podman("exec", container.name, "cat", "/proc/1/status").stdout
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert "deepfer" in container.image.podman("exec", container.name, "cat", "/proc/1/cmdline").stdout
    for key in ("Uid", "Gid"):
        ids = {int(value) for value in fields[key].split()}
        assert ids == {10001}, f"{key}: {fields[key].strip()}"


def test_tensorflow_is_not_in_the_image(container: Container) -> None:
    """Neither importable nor installed: TensorFlow is for training/ and export/, never the service."""
    check = (
        "import importlib.metadata as m, importlib.util as u;"
        "names = {d.metadata['Name'].lower() for d in m.distributions()};"
        "print(u.find_spec('tensorflow') is None, sorted(names & {'tensorflow', 'tf2onnx', 'keras'}))"
    )
    result = container.image.podman("exec", container.name, "python", "-c", check)
    assert result.stdout.strip() == "True []"


def test_image_is_under_600_mb(image: Image, capsys: pytest.CaptureFixture[str]) -> None:
    size = int(image.podman("image", "inspect", "--format", "{{.Size}}", image.tag).stdout)
    with capsys.disabled():
        print(f"\nimage {image.tag}: {size / 1e6:.0f} MB, built in {image.build_seconds:.0f} s")
    assert size < IMAGE_SIZE_LIMIT_BYTES
