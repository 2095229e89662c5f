"""``deepfer video`` on a real MP4 written here with OpenCV from the committed public scenes.

The clip shows scene A for 4 frames, then scene B, then A again, at 8 frames/s, so each analysed row can be
checked against the scene that was on screen at that frame: its boxes must be that scene's labelled faces.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from bench.scenes import iou
from deepfer.cli import main
from deepfer.contract import LABELS
from deepfer.drawing import EMOTION_BGR
from deepfer.video.plot import tick_label, time_ticks
from tests.imaging import DATA
from tests.servers import free_port

SCENES = DATA / "scenes"
SEQUENCE = ("scene_0000.jpg", "scene_0002.jpg", "scene_0000.jpg")
FRAMES_EACH, FPS = 4, 8
FRAME_COUNT = len(SEQUENCE) * FRAMES_EACH


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "scenes.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (640, 480))
    for name in SEQUENCE:
        image = cv2.imread(str(SCENES / name))
        for _ in range(FRAMES_EACH):
            writer.write(image)
    writer.release()
    return path


@pytest.fixture(scope="module")
def labelled_boxes() -> dict[str, list[tuple[float, ...]]]:
    scenes = json.loads((SCENES / "scenes.json").read_text())
    return {scene["image"]: [tuple(face["box"]) for face in scene["faces"]] for scene in scenes}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


def test_csv_annotated_video_and_plot(
    clip: Path, tmp_path: Path, labelled_boxes: dict[str, list[tuple[float, ...]]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Every 2nd frame through the local pipeline: rows, timestamps and boxes match what was on screen."""
    out, annotated, plot = tmp_path / "result.csv", tmp_path / "annotated.mp4", tmp_path / "plot.png"
    argv = ["video", str(clip), "--every", "2", "--out", str(out), "--annotated", str(annotated), "--plot", str(plot)]
    assert main(argv) == 0
    assert f"{FRAME_COUNT}/{FRAME_COUNT}" in capsys.readouterr().err  # the progress bar reached the end

    rows = read_csv(out)
    box_columns = ["x", "y", "width", "height"]
    assert list(rows[0]) == ["frame", "time_s", "face", *box_columns, "detection_score", "emotion", *LABELS]
    assert sorted({int(row["frame"]) for row in rows}) == list(range(0, FRAME_COUNT, 2))
    for row in rows:
        frame = int(row["frame"])
        assert float(row["time_s"]) == pytest.approx(frame / FPS, abs=1e-3)
        assert row["face"] != "", f"no face found in frame {frame}"
        probabilities = {label: float(row[label]) for label in LABELS}
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert row["emotion"] == max(probabilities, key=probabilities.__getitem__)
        box = tuple(float(row[key]) for key in box_columns)
        on_screen = SEQUENCE[frame // FRAMES_EACH]
        assert max(iou(box, truth) for truth in labelled_boxes[on_screen]) > 0.3, (frame, box, on_screen)

    check_annotated(annotated, clip, rows)
    check_plot(plot)


def check_annotated(annotated: Path, source: Path, rows: list[dict[str, str]]) -> None:
    """Same length and size as the source; each face's box edge is drawn in its emotion's colour."""
    video, original = cv2.VideoCapture(str(annotated)), cv2.VideoCapture(str(source))
    try:
        assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAME_COUNT
        ok, drawn = video.read()
        ok_source, plain = original.read()
    finally:
        video.release()
        original.release()
    assert ok and ok_source and drawn.shape == plain.shape == (480, 640, 3)
    for row in (row for row in rows if row["frame"] == "0"):
        x, y, height = int(row["x"]), int(row["y"]), int(row["height"])
        edge = drawn[y + height // 2, x].astype(int)  # middle of the left edge (lossy codec: roughly)
        assert np.abs(edge - EMOTION_BGR[row["emotion"]]).max() < 90, (row["emotion"], edge)
        assert np.abs(edge - plain[y + height // 2, x].astype(int)).max() > 40


def check_plot(plot: Path) -> None:
    """A PNG chart whose plotting area holds a line in every emotion's colour."""
    image = cv2.imread(str(plot))
    assert image is not None and image.shape == (420, 1000, 3)
    area = image[40:370, 60:870]
    for label in LABELS:
        assert np.all(area == EMOTION_BGR[label], axis=-1).sum() > 50, f"no {label} line"


def test_json_lines_through_a_server_match_the_local_pipeline(clip: Path, tmp_path: Path, server_url: str) -> None:
    """--url sends frames losslessly, so the server's answers equal the local pipeline's, frame by frame."""
    remote, local = tmp_path / "remote.jsonl", tmp_path / "local.csv"
    assert main(["video", str(clip), "--every", "3", "--out", str(remote), "--url", server_url, "--no-progress"]) == 0
    assert main(["video", str(clip), "--every", "3", "--out", str(local), "--no-progress"]) == 0

    lines: list[dict[str, Any]] = [json.loads(line) for line in remote.read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(0, FRAME_COUNT, 3))
    flattened = [(line["frame"], face) for line in lines for face in line["faces"]]
    rows = read_csv(local)
    assert len(flattened) == len(rows) > 0
    for (frame, face), row in zip(flattened, rows, strict=True):
        assert frame == int(row["frame"])
        assert [face["box"][key] for key in ("x", "y", "width", "height")] == [
            int(row[key]) for key in ("x", "y", "width", "height")
        ]
        assert face["emotion"] == row["emotion"]
        for label in LABELS:
            assert face["probabilities"][label] == pytest.approx(float(row[label]), abs=1e-5)


def test_bad_input_fails_with_one_readable_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["video", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "r.csv")]) == 1
    assert "video not found" in capsys.readouterr().err

    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    assert main(["video", str(not_a_video), "--out", str(tmp_path / "r.csv")]) == 1
    assert "cannot open" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exited:
        main(["video", str(not_a_video), "--out", str(tmp_path / "r.txt")])
    assert exited.value.code == 2
    assert "use .csv" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("end_s", "ticks"),
    [
        (1.375, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4]),  # the test clip: 12 frames at 8 frames/s
        (7.3, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]),
        (61.0, [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0]),
        (0.0, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),  # one analysed frame: a one-second axis
    ],
)
def test_plot_time_axis_has_round_ticks(end_s: float, ticks: list[float]) -> None:
    """Steps of 1, 2 or 5 times a power of ten, from 0 to the first tick at or past the end, at most 9 ticks."""
    assert time_ticks(end_s) == pytest.approx(ticks)
    assert [tick_label(t, 0.2) for t in (0.0, 0.4, 1.2)] == ["0.0s", "0.4s", "1.2s"]
    assert [tick_label(t, 10.0) for t in (0.0, 70.0)] == ["0s", "70s"]


def test_a_dead_url_is_named(clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    assert main(["video", str(clip), "--out", str(tmp_path / "r.csv"), "--url", dead, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert dead in err and "cannot reach" in err
