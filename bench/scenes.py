"""Where the public scenes are (``DEEPFER_SHARED_DIR``) and reading them for the benchmarks; their ground truth
and what counts as a match are ``tests/scenes.py``'s, so tests and benchmarks count recall the same way."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from tests.scenes import load_scenes

SHARED_DIR = Path(os.environ.get("DEEPFER_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
DEFAULT_SCENES = SHARED_DIR / "data" / "scenes_public"


def read_scenes(folder: Path) -> tuple[list[dict[str, Any]], list[NDArray[np.uint8]]]:
    """The scenes and their decoded BGR images, for the bench scripts: exits naming what is missing or unreadable."""
    if not (folder / "scenes.json").is_file():
        raise SystemExit(f"no scenes.json in {folder} (set DEEPFER_SHARED_DIR or --scenes)")
    scenes = load_scenes(folder)
    images = [cv2.imread(str(folder / scene["image"])) for scene in scenes]
    if missing := [scene["image"] for scene, image in zip(scenes, images, strict=True) if image is None]:
        raise SystemExit(f"unreadable scenes in {folder}: {missing[:5]}")
    return scenes, images
