"""Where ``deepfer video`` puts its results: one analysed frame at a time, as CSV rows or JSON lines.

Each face carries its ``track_id`` (the same person keeps it across frames; empty/null while the track is
tentative, before it has been tracked for ``min_track_s`` with ``min_track_score``) and its track's smoothed
probabilities next to the frame's raw ones.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Protocol

from deepfer.contract import LABELS
from deepfer.tracking.tracker import TrackedFace
from deepfer.video.frames import VideoError
from deepfer.wire import Face

CSV_SUFFIXES: Final = frozenset({".csv"})
JSONL_SUFFIXES: Final = frozenset({".jsonl", ".ndjson", ".json"})
RESULT_SUFFIXES: Final = CSV_SUFFIXES | JSONL_SUFFIXES


@dataclass(frozen=True)
class FrameResult:
    """The faces found in one analysed frame."""

    frame: int  # 0-based index of the frame in the source video
    time_s: float  # the container's presentation time (frames.presentation_time)
    faces: list[Face]  # largest first, as the API orders them
    tracks: list[TrackedFace]  # one per face, same order: track ID and smoothed probabilities

    def __post_init__(self) -> None:
        if len(self.tracks) != len(self.faces):
            raise ValueError(f"{len(self.faces)} faces but {len(self.tracks)} tracked faces")


def _smoothed(tracked: TrackedFace) -> dict[str, float]:
    return {label: float(p) for label, p in zip(LABELS, tracked.smoothed, strict=True)}


class ResultWriter(Protocol):
    """Where analysed frames go, one at a time, so a long video never has to fit in memory as text."""

    def write(self, result: FrameResult) -> None:
        """Append one analysed frame."""


class CsvWriter:
    """One row per face; a frame without faces still gets one row (empty face columns), so gaps are visible."""

    def __init__(self, stream: IO[str]) -> None:
        self._writer = csv.writer(stream)
        self._writer.writerow(
            [
                "frame",
                "time_s",
                "face",
                "track_id",
                "x",
                "y",
                "width",
                "height",
                "detection_score",
                "emotion",
                *LABELS,
                "smoothed_emotion",
                *(f"smoothed_{label}" for label in LABELS),
            ]
        )

    def write(self, result: FrameResult) -> None:
        """Write the frame's faces as rows."""
        start = [result.frame, f"{result.time_s:.3f}"]
        if not result.faces:
            self._writer.writerow([*start, *[""] * (9 + 2 * len(LABELS))])
        for number, (face, tracked) in enumerate(zip(result.faces, result.tracks, strict=True)):
            box = face.box
            probabilities = face.probabilities.model_dump()
            score = "" if face.detection_score is None else f"{face.detection_score:.4f}"
            self._writer.writerow(
                [
                    *start,
                    number,
                    "" if tracked.track_id is None else tracked.track_id,
                    box.x,
                    box.y,
                    box.width,
                    box.height,
                    score,
                    face.emotion,
                    *(f"{probabilities[label]:.6f}" for label in LABELS),
                    tracked.smoothed_emotion,
                    *(f"{p:.6f}" for p in tracked.smoothed),
                ]
            )


class JsonLinesWriter:
    """One JSON object per analysed frame: ``{"frame", "time_s", "faces": [...]}``, each face the API's face
    object plus ``track_id``, ``smoothed_emotion`` and ``smoothed`` (the seven smoothed probabilities)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, result: FrameResult) -> None:
        """Write the frame as one line."""
        line = {
            "frame": result.frame,
            "time_s": round(result.time_s, 3),
            "faces": [
                {
                    **face.model_dump(mode="json"),
                    "track_id": tracked.track_id,
                    "smoothed_emotion": tracked.smoothed_emotion,
                    "smoothed": _smoothed(tracked),
                }
                for face, tracked in zip(result.faces, result.tracks, strict=True)
            ],
        }
        self._stream.write(json.dumps(line) + "\n")


def check_result_path(path: Path) -> None:
    """Refuse an extension that names no format: ``.csv`` or JSON lines (``.jsonl``, ``.ndjson``, ``.json``)."""
    if path.suffix.lower() not in RESULT_SUFFIXES:
        raise VideoError(
            f"unknown output format {path.suffix.lower()!r} for {path}: use .csv, .jsonl, .ndjson or .json"
        )


@contextmanager
def open_result_writer(path: Path) -> Iterator[ResultWriter]:
    """The writer the file's extension asks for (``check_result_path``)."""
    check_result_path(path)
    with path.open("w", newline="", encoding="utf-8") as stream:
        yield CsvWriter(stream) if path.suffix.lower() in CSV_SUFFIXES else JsonLinesWriter(stream)
