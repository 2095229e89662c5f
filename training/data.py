"""FER2013 in the Kaggle layout (``train/<emotion>/*.jpg``, ``test/<emotion>/*.jpg``), from a folder or a zip.

Every face goes through ``deepfer.engine.align.face_from_crop``: the same function that serves ``detect=false``
requests, so the model never sees a face prepared differently from the ones it is asked about.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
from numpy.typing import NDArray

from deepfer.contract import LABELS, MetadataKey
from deepfer.engine.align import face_from_crop

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class FaceSet:
    """N faces as N x 48 x 48 uint8 and their label indices into ``LABELS``."""

    faces: NDArray[np.uint8]
    labels: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: NDArray[np.int64]) -> FaceSet:
        return FaceSet(self.faces[index], self.labels[index])

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(LABELS))
        return {name: int(n) for name, n in zip(LABELS, counts, strict=True)}


def decode_face(data: bytes) -> NDArray[np.uint8]:
    """Encoded image bytes -> 48x48 uint8, decoding in colour as the service does."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a decodable image")
    return face_from_crop(image)


def _entries(source: Path, split: str) -> Iterator[tuple[str, bytes]]:
    """(label folder name, file bytes) for every image under ``split/`` in sorted path order."""
    if source.is_dir():
        for path in sorted((source / split).glob("*/*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                yield path.parent.name, path.read_bytes()
        return
    with zipfile.ZipFile(source) as archive:
        for name in sorted(archive.namelist()):
            parts = PurePosixPath(name).parts
            # Accept both "train/happy/x.jpg" and a zip with one wrapping folder "fer2013/train/happy/x.jpg".
            if len(parts) >= 3 and parts[-3] == split and PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES:
                yield parts[-2], archive.read(name)


def has_split(source: Path, split: str) -> bool:
    """Whether ``split/<emotion>/`` holds at least one image."""
    return next(_entries(source, split), None) is not None


def load_split(source: Path, split: str, limit_per_class: int | None = None) -> FaceSet:
    """Load one split ("train" or "test"); unknown label folders are an error, not silently skipped."""
    faces: list[NDArray[np.uint8]] = []
    labels: list[int] = []
    taken = dict.fromkeys(LABELS, 0)
    for label, data in _entries(source, split):
        if label not in taken:
            raise ValueError(f"{source}: unknown emotion folder {label!r}; expected one of {LABELS}")
        if limit_per_class is not None and taken[label] >= limit_per_class:
            continue
        faces.append(decode_face(data))
        labels.append(LABELS.index(label))
        taken[label] += 1
    if not faces:
        raise ValueError(f"{source}: no images found under {split}/<emotion>/")
    return FaceSet(np.stack(faces), np.asarray(labels, dtype=np.int64))


def stratified_split(labels: NDArray[np.int64], fraction: float, seed: int) -> tuple[NDArray, NDArray]:
    """Indices (keep, held_out) with ``fraction`` of every class held out, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    keep: list[NDArray[np.int64]] = []
    held: list[NDArray[np.int64]] = []
    for cls in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == cls))
        n_held = max(1, round(len(index) * fraction)) if len(index) > 1 else 0
        held.append(index[:n_held])
        keep.append(index[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


class SplitUnknownError(ValueError):
    """The validation split a model was trained with cannot be rebuilt: scoring on a guess would inflate it."""


@contextmanager
def split_errors_exit() -> Iterator[None]:
    """For a command's ``__main__``: a ``SplitUnknownError`` ends it with its message as the one line."""
    try:
        yield
    except SplitUnknownError as error:
        raise SystemExit(str(error)) from None


def validation_faces(
    model: Path, data: Path, metadata: dict[str, str], data_sha256: str
) -> tuple[FaceSet, dict[str, object]]:
    """The part of ``train/`` that the model's training held out, and the parameters that chose it.

    Rebuilt from the model's own record, never from flags: a different seed, fraction or per-class limit than
    training used would quietly mix training faces into it and inflate the score. Raises ``SplitUnknownError``
    when the record does not say, or ``data`` is not what the model was trained on (commands report it).
    """
    config = json.loads(metadata.get(MetadataKey.CONFIG, "{}"))
    if not {"seed", "val_fraction"} <= config.keys():
        raise SplitUnknownError(f"{model} has no training_config in its metadata: its validation split is unknown")
    if metadata.get(MetadataKey.DATA_SHA256) != data_sha256:
        raise SplitUnknownError(
            f"{data} is not the data {model} was trained on (SHA-256 {data_sha256[:12]}… vs "
            f"{metadata.get(MetadataKey.DATA_SHA256, 'unrecorded')[:12]}…): no validation split to rebuild"
        )
    training_limit = config.get("limit_per_class")
    full = load_split(data, "train", training_limit)
    split_seed = config.get("split_seed", config["seed"])  # older records: one seed chose the split too
    _, held = stratified_split(full.labels, config["val_fraction"], split_seed)
    chosen_by = {"seed": split_seed, "val_fraction": config["val_fraction"], "training_limit": training_limit}
    return full.subset(held), chosen_by


def sha256_of(source: Path) -> str:
    """SHA-256 of the zip file, or of every file's relative path and bytes for a folder."""
    digest = hashlib.sha256()
    if source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            digest.update(path.relative_to(source).as_posix().encode())
            digest.update(path.read_bytes())
    else:
        with source.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
