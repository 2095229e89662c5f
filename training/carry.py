"""``python -m training.carry --data ../shared/data/fer2013.zip``: what the GPU path takes to the lent machine.

The device tool copies the working tree (tracked files, untracked files git does not ignore, and the ignored
paths a call names in ``carry``) to the GPU machine, 64 MiB in all; ../shared does not travel. This writes the
git-ignored folder ``.carry/``: the ``train/`` split's original JPEGs, byte for byte, in one xz-compressed tar
(the 90/10 validation split is then drawn from the same files as on this machine), ``data.json`` naming the zip
they came from and its SHA-256, and wheels of the packages Keras needs that the machine lacks (it has JAX, numpy,
OpenCV, h5py, rich, absl and ml-dtypes, not Keras). It prints what a call carrying ``.carry`` moves and refuses
to finish above the limit, since the device tool would cut it.

Why a tar.xz and not the zip: a zip compresses each 1.5 KB JPEG alone, and about a third of each is the same
JFIF headers and tables; one xz stream over all of them stores those once. Measured: the train/ JPEGs are 44.8
MiB, deflated in the Kaggle zip 43.1 MiB, as one tar.xz 32.9 MiB; with the 18.5 MiB working tree only the last
fits under 64 MiB.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import zipfile
from importlib.metadata import version
from pathlib import Path

from training.data import sha256_of

REPO = Path(__file__).resolve().parents[1]
CARRY_LIMIT_BYTES = 64 * 2**20
# Keras's requirements that the GPU machine's image does not hold (its package list, device KINDS.md).
MISSING_THERE = ("keras", "namex", "optree")
# The machine's Python (3.12) and platform, for `pip download`.
WHEEL_TARGET = [
    "--python-version",
    "3.12",
    "--implementation",
    "cp",
    "--only-binary=:all:",
    *[f"--platform={tag}" for tag in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")],
]


def write_train_tar(source: Path, out: Path) -> int:
    """``train/`` entries of the Kaggle zip as an xz-compressed tar, in sorted order; their count."""
    count = 0
    with zipfile.ZipFile(source) as archive, tarfile.open(out, "w:xz", preset=9) as tar:
        for name in sorted(archive.namelist()):
            if name.startswith("train/") and not name.endswith("/"):
                data = archive.read(name)
                member = tarfile.TarInfo(name)
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
                count += 1
    return count


def download_wheels(out: Path) -> list[Path]:
    """The wheels of ``MISSING_THERE`` at this machine's versions, for the GPU machine's Python and platform."""
    out.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={version(name)}" for name in MISSING_THERE]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", *WHEEL_TARGET, "-d", str(out), *pins],
        check=True,
    )
    return sorted(out.glob("*.whl"))


def working_tree_bytes() -> int:
    """What the device tool copies besides the carried paths: tracked and untracked, not ignored, files."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    paths = [REPO / name for name in listed.decode().split("\0") if name]
    return sum(path.stat().st_size for path in paths if path.is_file())


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.carry", description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="Kaggle-layout FER2013 zip")
    parser.add_argument("--out", type=Path, default=REPO / ".carry", help="folder to write (git-ignored)")
    parser.add_argument("--no-wheels", action="store_true", help="skip the wheels (a machine without PyPI)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "fer2013-train.tar.xz"
    faces = write_train_tar(args.data, data)
    record = {"source": str(args.data), "source_sha256": sha256_of(args.data), "split": "train", "faces": faces}
    (args.out / "data.json").write_text(json.dumps(record, indent=2) + "\n")
    wheels = [] if args.no_wheels else download_wheels(args.out / "wheels")
    tree, carried = working_tree_bytes(), folder_bytes(args.out)
    total = tree + carried
    print(
        f"{data.name}: {faces} faces, {data.stat().st_size / 2**20:.1f} MiB, from {args.data.name} "
        f"(sha256 {record['source_sha256'][:12]})"
    )
    print(f"wheels: {', '.join(wheel.name for wheel in wheels) or 'none'}")
    print(f"working tree {tree / 2**20:.1f} MiB + {args.out.name} {carried / 2**20:.1f} MiB = {total / 2**20:.1f} MiB")
    if total > CARRY_LIMIT_BYTES:
        print(f"over the device tool's {CARRY_LIMIT_BYTES // 2**20} MiB carry limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
