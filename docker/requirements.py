"""Print the service's runtime requirements, one per line, from ``pyproject.toml``, for ``pip install -r``.

The service is ``deepfer[server]``: the ``[project] dependencies`` (the client's) plus the ``server`` extra.

Why a script instead of ``pip install .``: the Dockerfile installs the dependencies in a layer of their own, before
the source is copied, so editing ``service/`` does not re-download numpy, OpenCV and ONNX Runtime on every
build. ``pyproject.toml`` stays the one list; nothing here repeats a version.

``--variant gpu`` swaps ``onnxruntime`` for the ``gpu`` extra (``onnxruntime-gpu``): both wheels install the same
``onnxruntime`` module, so having both in one environment leaves whichever was installed last, half-overwritten.
Optional extras such as ``train`` (TensorFlow) are never printed: the image carries only what ``deepfer serve``
imports.

Usage: ``python requirements.py [--variant cpu|gpu] [PYPROJECT]``; standard library only, so it runs on a bare
base image before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

# The distribution name at the start of a PEP 508 requirement ("onnxruntime>=1.20" -> "onnxruntime").
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_name(requirement: str) -> str:
    """Normalised distribution name of a PEP 508 string (PEP 503: lower case, runs of ``-_.`` become ``-``)."""
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def runtime_requirements(pyproject: Path, variant: str) -> list[str]:
    """``deepfer[server]``'s requirements in ``pyproject``, with ONNX Runtime replaced by the GPU build if asked."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    requirements: list[str] = [*project["dependencies"], *project["optional-dependencies"]["server"]]
    if variant == "gpu":
        requirements = [r for r in requirements if requirement_name(r) != "onnxruntime"]
        requirements += project["optional-dependencies"]["gpu"]
    return requirements


def main() -> None:
    """Parse the command line and print one requirement per line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("pyproject", nargs="?", type=Path, default=Path("pyproject.toml"))
    args = parser.parse_args()
    print("\n".join(runtime_requirements(args.pyproject, args.variant)))


if __name__ == "__main__":
    main()
