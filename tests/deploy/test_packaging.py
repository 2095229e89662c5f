"""What an integrator installs: ``pip install deepfer`` is the client alone; the wheel holds only ``deepfer``.

The wheel is built from this checkout and installed into a fresh virtual environment (no system packages), then
used as an integrator would: ``from deepfer import Client`` and ``deepfer predict --url`` against the live
server, with no ONNX Runtime, OpenCV or FastAPI installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.servers import DATA, REPO

SERVER_ONLY = ("onnxruntime", "opencv-python-headless", "fastapi", "uvicorn", "starlette", "tensorflow")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        check=True,
        timeout=600,
    )
    (built,) = out.glob("deepfer-*.whl")
    return built


def test_the_wheel_ships_only_the_runtime_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    packages = {name.split("/")[0] for name in names}
    assert packages == {"deepfer", next(p for p in packages if p.endswith(".dist-info"))}, packages
    assert "deepfer/models/emotion-int8.onnx" in names and "deepfer/server/static/index.html" in names
    assert "deepfer/examples/predict.json" in names
    assert not [name for name in names if name.endswith(".keras")], "the Keras copy is for training only"


def test_the_client_installs_and_runs_without_the_server_dependencies(
    wheel: Path, tmp_path: Path, server_url: str
) -> None:
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", str(wheel)], check=True, timeout=600)

    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format", "json"], check=True, capture_output=True, text=True
    )
    installed = {entry["name"].lower() for entry in json.loads(listed.stdout)}
    assert not installed & set(SERVER_ONLY), installed & set(SERVER_ONLY)

    scene = DATA / "scenes" / "scene_0000.jpg"
    code = (
        "import sys\n"
        "from deepfer import Client\n"
        f"with Client({server_url!r}) as client:\n"
        f"    result = client.predict({str(scene)!r})\n"
        "print(len(result.faces))\n"
        "assert not {'cv2', 'onnxruntime', 'fastapi'} & set(sys.modules)\n"
    )
    done = subprocess.run([python, "-c", code], check=False, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3"

    command = environment / "bin" / "deepfer"
    done = subprocess.run(
        [command, "predict", "--url", server_url, "--format", "json", str(scene)],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)[0]["faces"]) == 3
