"""Where ``deepfer video`` puts its results: one analysed frame at a time, as CSV rows or JSON lines."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Protocol

from deepfer.contract import LABELS
from deepfer.http.schemas import Face
from deepfer.video.frames import VideoError

CSV_SUFFIXES: Final = frozenset({".csv"})
JSONL_SUFFIXES: Final = frozenset({".jsonl", ".ndjson", ".json"})
RESULT_SUFFIXES: Final = CSV_SUFFIXES | JSONL_SUFFIXES


@dataclass(frozen=True)
class FrameResult:
    """The faces found in one analysed frame."""

    frame: int  # 0-based index of the frame in the source video
    time_s: float  # frame / fps: its position in the video
    faces: list[Face]  # largest first, as the API orders them


class ResultWriter(Protocol):
    """Where analysed frames go, one at a time, so a long video never has to fit in memory as text."""

    def write(self, result: FrameResult) -> None:
        """Append one analysed frame."""


class CsvWriter:
    """One row per face; a frame without faces still gets one row (empty face columns), so gaps are visible."""

    def __init__(self, stream: IO[str]) -> None:
        self._writer = csv.writer(stream)
        self._writer.writerow(
            ["frame", "time_s", "face", "x", "y", "width", "height", "detection_score", "emotion", *LABELS]
        )

    def write(self, result: FrameResult) -> None:
        """Write the frame's faces as rows."""
        start = [result.frame, f"{result.time_s:.3f}"]
        if not result.faces:
            self._writer.writerow([*start, *[""] * (7 + len(LABELS))])
        for number, face in enumerate(result.faces):
            box = face.box
            probabilities = face.probabilities.model_dump()
            score = "" if face.detection_score is None else f"{face.detection_score:.4f}"
            self._writer.writerow(
                [
                    *start,
                    number,
                    box.x,
                    box.y,
                    box.width,
                    box.height,
                    score,
                    face.emotion,
                    *(f"{probabilities[label]:.6f}" for label in LABELS),
                ]
            )


class JsonLinesWriter:
    """One JSON object per analysed frame: ``{"frame", "time_s", "faces": [<the API's face objects>]}``."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, result: FrameResult) -> None:
        """Write the frame as one line."""
        line = {
            "frame": result.frame,
            "time_s": round(result.time_s, 3),
            "faces": [face.model_dump(mode="json") for face in result.faces],
        }
        self._stream.write(json.dumps(line) + "\n")


@contextmanager
def open_result_writer(path: Path) -> Iterator[ResultWriter]:
    """The writer the file's extension asks for: ``.csv`` or JSON lines (``.jsonl``, ``.ndjson``, ``.json``)."""
    suffix = path.suffix.lower()
    if suffix not in RESULT_SUFFIXES:
        raise VideoError(f"unknown output format {suffix!r} for {path}: use .csv, .jsonl, .ndjson or .json")
    with path.open("w", newline="", encoding="utf-8") as stream:
        yield CsvWriter(stream) if suffix in CSV_SUFFIXES else JsonLinesWriter(stream)
