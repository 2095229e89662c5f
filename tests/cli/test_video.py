"""``deepfer video`` on real MP4s written here with OpenCV from the committed public scenes.

The first clip shows scene A for 4 frames, then scene B, then A again, at 8 frames/s, so each analysed row can
be checked against the scene that was on screen at that frame: its boxes must be that scene's labelled faces.
The second is variable-frame-rate (its ``stts`` box rewritten, ``tests.imaging.retime_mp4``): scene A at 10
frames/s, a 2 s pause, then scene A again, so tracks must end and new IDs start where the container's times say,
which ``index / fps`` would never show.
"""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from bench.scenes import iou
from deepfer.cli import main
from deepfer.contract import LABELS
from deepfer.drawing import EMOTION_BGR
from deepfer.http.schemas import PredictResponse
from deepfer.settings import Settings
from deepfer.tracking import TrackSummary
from deepfer.video import analyse_video
from deepfer.video.analysers import local_analyser
from deepfer.video.frames import REPEATED_TIME_STEP_S, presentation_time
from deepfer.video.plot import PANEL_HEIGHT, longest_tracks, tick_label, time_ticks
from deepfer.video.writers import FrameResult
from tests.imaging import DATA, retime_mp4
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
    assert list(rows[0]) == [
        "frame",
        "time_s",
        "face",
        "track_id",
        *box_columns,
        "detection_score",
        "emotion",
        *LABELS,
        "smoothed_emotion",
        *(f"smoothed_{label}" for label in LABELS),
    ]
    assert sorted({int(row["frame"]) for row in rows}) == list(range(0, FRAME_COUNT, 2))
    for row in rows:
        frame = int(row["frame"])
        assert float(row["time_s"]) == pytest.approx(frame / FPS, abs=1e-3)
        assert row["face"] != "", f"no face found in frame {frame}"
        probabilities = {label: float(row[label]) for label in LABELS}
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert row["emotion"] == max(probabilities, key=probabilities.__getitem__)
        # Each scene is on screen for two analysed frames only: fewer than min_hits (3), so no track is confirmed.
        assert row["track_id"] == ""
        box = tuple(float(row[key]) for key in box_columns)
        on_screen = SEQUENCE[frame // FRAMES_EACH]
        assert max(iou(box, truth) for truth in labelled_boxes[on_screen]) > 0.3, (frame, box, on_screen)

    check_annotated(annotated, clip, rows)
    check_plot(plot, panels=1)


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


def check_plot(plot: Path, panels: int, dominant: list[str] | None = None) -> None:
    """A PNG of ``panels`` track panels; a panel's plotting area holds its track's dominant emotion's line, and a
    clip without tracks gets one empty panel (no line in any emotion's colour)."""
    image = cv2.imread(str(plot))
    assert image is not None and image.shape == (PANEL_HEIGHT * panels, 1000, 3)
    for number in range(panels):
        area = image[number * PANEL_HEIGHT + 41 : (number + 1) * PANEL_HEIGHT - 51, 61:869]
        drawn = {label: int(np.all(area == EMOTION_BGR[label], axis=-1).sum()) for label in LABELS}
        if dominant is None:
            assert not any(drawn.values()), drawn
        else:
            assert drawn[dominant[number]] > 100, (number, dominant[number], drawn)


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
        assert face["track_id"] is None and row["track_id"] == ""  # two frames per scene: none confirmed
        assert face["smoothed_emotion"] == row["smoothed_emotion"]
        for label in LABELS:
            assert face["probabilities"][label] == pytest.approx(float(row[label]), abs=1e-5)
            assert face["smoothed"][label] == pytest.approx(float(row[f"smoothed_{label}"]), abs=1e-5)


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


#: The variable-frame-rate clip: 5 frames 0.1 s apart, a 2 s pause (longer than max_gap_s, 1.5 s), 7 more.
VFR_TIMES = [0.0, 0.1, 0.2, 0.3, 0.4, 2.4, 2.5, 2.6, 2.7, 2.8, 2.9, 3.0]


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vfr") / "pause.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10, (640, 480))
    image = cv2.imread(str(SCENES / "scene_0000.jpg"))
    for _ in VFR_TIMES:
        writer.write(image)
    writer.release()
    retime_mp4(path, VFR_TIMES)
    return path


def test_tracks_summary_and_panels_follow_the_containers_times(
    vfr_clip: Path, tmp_path: Path, labelled_boxes: dict[str, list[tuple[float, ...]]]
) -> None:
    """Three people, IDs from their third frame; the 2 s pause ends those tracks and starts three new ones."""
    out, summary, plot = tmp_path / "r.csv", tmp_path / "summary.json", tmp_path / "plot.png"
    argv = ["video", str(vfr_clip), "--out", str(out), "--summary", str(summary), "--plot", str(plot)]
    assert main([*argv, "--plot-tracks", "2", "--no-progress"]) == 0

    rows = read_csv(out)
    times = sorted({float(row["time_s"]) for row in rows})
    assert times == pytest.approx(VFR_TIMES, abs=1e-3)  # the container's times, not index / fps
    by_frame: dict[int, list[dict[str, str]]] = {}
    for row in rows:
        by_frame.setdefault(int(row["frame"]), []).append(row)
    assert all(len(faces) == 3 for faces in by_frame.values()), {f: len(r) for f, r in by_frame.items()}
    ids = {frame: sorted(row["track_id"] for row in faces) for frame, faces in by_frame.items()}
    # min_hits = 3: tentative (empty) for two frames, then an ID; after the pause, new people.
    assert ids[0] == ids[1] == ids[5] == ids[6] == ["", "", ""]
    assert all(ids[frame] == ["1", "2", "3"] for frame in (2, 3, 4))
    assert all(ids[frame] == ["4", "5", "6"] for frame in range(7, 12))
    # Each ID stays on one labelled face: same box (within the codec's noise) in every frame it is on.
    boxes: dict[str, set[int]] = {}
    truth = labelled_boxes["scene_0000.jpg"]
    for row in rows:
        if row["track_id"]:
            box = tuple(float(row[key]) for key in ("x", "y", "width", "height"))
            boxes.setdefault(row["track_id"], set()).add(max(range(3), key=lambda i: iou(box, truth[i])))
        smoothed = [float(row[f"smoothed_{label}"]) for label in LABELS]
        assert sum(smoothed) == pytest.approx(1.0, abs=1e-4)
        assert row["smoothed_emotion"] == LABELS[int(np.argmax(smoothed))]
    assert all(len(faces) == 1 for faces in boxes.values()), boxes
    assert boxes["1"] | boxes["2"] | boxes["3"] == {0, 1, 2}

    document = json.loads(summary.read_text())
    assert document["video"] == str(vfr_clip)
    tracks = document["tracks"]
    assert [t["track_id"] for t in tracks] == [1, 2, 3, 4, 5, 6]
    for track in tracks:
        early = track["track_id"] <= 3
        # A track's time starts at its first frame, tentative frames included.
        assert (track["first_s"], track["last_s"]) == pytest.approx((0.0, 0.4) if early else (2.4, 3.0), abs=1e-3)
        assert track["frames"] == (5 if early else 7)
        assert track["ended"] is early
        assert sum(track["emotion_share"].values()) == pytest.approx(1.0)
        assert track["dominant_emotion"] == max(track["emotion_share"], key=track["emotion_share"].__getitem__)
    # --plot-tracks 2: the two longest tracks (0.6 s), 4 and 5, one panel each.
    check_plot(plot, panels=2, dominant=[tracks[3]["dominant_emotion"], tracks[4]["dominant_emotion"]])


@pytest.mark.parametrize(
    ("index", "position_ms", "previous_s", "expected_s"),
    [
        (0, 0.0, None, 0.0),  # the first frame at 0 ms is a real time
        (3, 130.0, 0.08, 0.13),  # the container's time, whatever index / fps says (0.12 s)
        (3, 0.0, 0.08, 0.12),  # 0 ms after the first frame: no time; index / fps
        (3, float("nan"), 0.08, 0.12),
        (3, -1.0, 0.08, 0.12),
        (3, 80.0, 0.08, 0.08 + REPEATED_TIME_STEP_S),  # repeated: one step after the previous
        (3, 50.0, 0.08, 0.08 + REPEATED_TIME_STEP_S),  # backwards: the same
        (3, 0.0, 0.2, 0.2 + REPEATED_TIME_STEP_S),  # the index / fps fallback is held to increasing too
    ],
)
def test_presentation_time_rule(index: int, position_ms: float, previous_s: float | None, expected_s: float) -> None:
    assert presentation_time(index, position_ms, 25.0, previous_s) == pytest.approx(expected_s)


def test_the_longest_tracks_get_the_panels() -> None:
    def track(track_id: int, first_s: float, last_s: float, frames: int) -> TrackSummary:
        return TrackSummary(track_id, first_s, last_s, frames, (1.0, 0, 0, 0, 0, 0, 0), ended=False)

    summaries = [track(1, 0, 1, 10), track(2, 0, 5, 50), track(3, 1, 2, 12), track(4, 2, 3, 10), track(5, 0, 0.5, 5)]
    # 2 is longest (5 s); of the 1 s ones, 3 has more frames; 1 and 4 tie, the lower ID wins. In ID order.
    assert [t.track_id for t in longest_tracks(summaries, 3)] == [1, 2, 3]
    assert longest_tracks(summaries, 0) == []


def stream_facts(path: Path) -> tuple[str, str, list[float]]:
    """(codec, pixel format, every frame's presentation time in s) as PyAV's FFmpeg reads the file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [float(frame.time) for frame in container.decode(stream)]
        return stream.codec_context.name, stream.codec_context.pix_fmt, sorted(times)


@pytest.mark.parametrize(("suffix", "codec"), [(".mp4", "h264"), (".webm", "vp9")])
def test_annotated_video_plays_in_a_browser_and_keeps_the_times(
    vfr_clip: Path, tmp_path: Path, suffix: str, codec: str
) -> None:
    """H.264 or VP9 in yuv420p (what browsers decode), one frame per source frame, each at the source's own
    presentation time: the variable-frame-rate clip's 2 s pause survives instead of being spread evenly."""
    annotated = tmp_path / f"annotated{suffix}"
    argv = ["video", str(vfr_clip), "--every", "2", "--out", str(tmp_path / "r.csv"), "--annotated", str(annotated)]
    assert main([*argv, "--no-progress"]) == 0
    written_codec, pixel_format, times = stream_facts(annotated)
    assert (written_codec, pixel_format) == (codec, "yuv420p")
    assert times == pytest.approx(stream_facts(vfr_clip)[2], abs=1e-3) == VFR_TIMES
    if suffix == ".mp4":  # faststart: the index (moov) comes before the frames (mdat)
        head = annotated.read_bytes()
        assert head.index(b"moov") < head.index(b"mdat")


def test_unknown_annotated_extension_is_refused_before_any_work(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["video", str(clip), "--out", str(tmp_path / "r.csv"), "--annotated", str(tmp_path / "a.avi")])
    assert exited.value.code == 2
    assert "use .mp4 (H.264) or .webm (VP9)" in capsys.readouterr().err


def test_frames_in_flight_through_a_server_match_one_at_a_time_locally(
    vfr_clip: Path, tmp_path: Path, server_url: str
) -> None:
    """Eight frames in flight (answers may come back in any order) give the rows, times and track IDs of the
    local pipeline fed one frame at a time; probabilities to 1e-5 (the int8 classifier's batch-size noise)."""
    remote, local = tmp_path / "remote.csv", tmp_path / "local.csv"
    argv = ["video", str(vfr_clip), "--no-progress"]
    assert main([*argv, "--out", str(remote), "--url", server_url, "--in-flight", "8"]) == 0
    assert main([*argv, "--out", str(local), "--in-flight", "1"]) == 0
    remote_rows, local_rows = read_csv(remote), read_csv(local)
    assert len(remote_rows) == len(local_rows) == 3 * len(VFR_TIMES)
    exact = ["frame", "time_s", "face", "track_id", "x", "y", "width", "height", "emotion", "smoothed_emotion"]
    for got, want in zip(remote_rows, local_rows, strict=True):
        assert [got[key] for key in exact] == [want[key] for key in exact]
        for label in LABELS:
            assert float(got[label]) == pytest.approx(float(want[label]), abs=1e-5)
            assert float(got[f"smoothed_{label}"]) == pytest.approx(float(want[f"smoothed_{label}"]), abs=1e-5)
    assert {row["track_id"] for row in remote_rows} == {"", "1", "2", "3", "4", "5", "6"}


def test_answers_arriving_out_of_order_are_taken_in_frame_order(vfr_clip: Path, tmp_path: Path) -> None:
    """The real pipeline, each answer held back less than the one before it, so with 4 in flight the later frames
    finish first: the rows (and the tracker's IDs) still come out as with one frame at a time."""

    async def run(in_flight: int, out: Path) -> list[FrameResult]:
        async with local_analyser(Settings()) as analyse:
            delays = iter(np.linspace(0.08, 0.0, len(VFR_TIMES)))

            async def late(image: NDArray[np.uint8]) -> PredictResponse:
                delay = next(delays)
                answer = await analyse(image)
                await asyncio.sleep(delay)
                return answer

            return await analyse_video(vfr_clip, late, every=1, out=out, progress=False, in_flight=in_flight)

    crossed = asyncio.run(run(4, tmp_path / "crossed.csv"))
    sequential = asyncio.run(run(1, tmp_path / "sequential.csv"))
    assert [result.frame for result in crossed] == list(range(len(VFR_TIMES)))
    assert [[t.track_id for t in r.tracks] for r in crossed] == [[t.track_id for t in r.tracks] for r in sequential]
    assert (tmp_path / "crossed.csv").read_text() == (tmp_path / "sequential.csv").read_text()
