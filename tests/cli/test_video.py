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
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from deepfer.cli import main
from deepfer.contract import LABELS
from deepfer.settings import Settings
from deepfer.tracking.tracker import TrackSummary
from deepfer.video import analyse_video
from deepfer.video.analysers import local_analyser
from deepfer.video.drawing import EMOTION_BGR, draw_faces
from deepfer.video.frames import REPEATED_TIME_STEP_S, presentation_time
from deepfer.video.plot import PANEL_HEIGHT, longest_tracks, tick_label, time_ticks
from deepfer.video.writers import FrameResult
from deepfer.wire import Face, PredictResponse
from tests.imaging import DATA, retime_mp4
from tests.scenes import iou
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
    """Three people, IDs once tracked for 0.3 s; the 2 s pause ends those tracks and starts three new ones."""
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
    # Tentative (empty) until tracked for 0.3 s (DEEPFER_VIDEO_MIN_TRACK_S), then an ID; after the pause, new people.
    assert ids[0] == ids[1] == ids[2] == ids[5] == ids[6] == ids[7] == ["", "", ""]
    assert all(ids[frame] == ["1", "2", "3"] for frame in (3, 4))
    assert all(ids[frame] == ["4", "5", "6"] for frame in range(8, 12))
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


# --- a track is a person: a transient face and a hard cut ---------------------------------------------------------

#: The cut clip at 25 frames/s: scene 0 for 0.8 s, a hard cut to scene 2 for 0.8 s. A FER face (a real face, but
#: one on screen for 4 frames, 0.12 s from its first to its last: what a reflection or a passer-by at the edge
#: gives) is pasted into frames 6-9 where scene 0 has none. Scene 2's face 1 sits where scene 0's face 1 was (IoU
#: 0.33, sizes 174 and 151 px): a tracker without cuts carries that ID across to the other person.
CUT_FPS, SHOT_FRAMES = 25, 20
TRANSIENT_FRAMES = range(6, 10)
TRANSIENT_BOX = (500, 360, 110, 110)  # x, y, width, height: the free lower right of scene 0


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each frame shifted by up to 2 px (a hand-held camera), so boxes jitter as in real footage."""
    path = tmp_path_factory.mktemp("cut") / "cut.mp4"
    rng = np.random.default_rng(0)
    face = cv2.imread(str(next((DATA / "faces" / "test" / "happy").glob("*.jpg"))))
    x, y, width, height = TRANSIENT_BOX
    transient = cv2.resize(face, (width, height), interpolation=cv2.INTER_CUBIC)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), CUT_FPS, (640, 480))
    for index in range(2 * SHOT_FRAMES):
        image = cv2.imread(str(SCENES / ("scene_0000.jpg" if index < SHOT_FRAMES else "scene_0002.jpg")))
        if index in TRANSIENT_FRAMES:
            image[y : y + height, x : x + width] = transient
        shift = np.float32([[1, 0, rng.uniform(-2, 2)], [0, 1, rng.uniform(-2, 2)]])
        writer.write(cv2.warpAffine(image, shift, (640, 480), borderMode=cv2.BORDER_REFLECT))
    writer.release()
    return path


def test_tracks_start_and_end_where_the_people_do(
    cut_clip: Path, tmp_path: Path, labelled_boxes: dict[str, list[tuple[float, ...]]]
) -> None:
    """Three people until the cut, three others after it, nothing else: the transient face (detected, so a
    track could have been made of it) gets no ID, no panel and no summary, and no ID crosses the cut."""
    out, summary, plot = tmp_path / "r.csv", tmp_path / "s.json", tmp_path / "p.png"
    argv = ["video", str(cut_clip), "--out", str(out), "--summary", str(summary), "--plot", str(plot)]
    assert main([*argv, "--plot-tracks", "6", "--no-progress"]) == 0

    rows = read_csv(out)
    transient_rows = [
        row
        for row in rows
        if row["face"] and iou(tuple(float(row[k]) for k in ("x", "y", "width", "height")), TRANSIENT_BOX) > 0.3
    ]
    # The detector fires on it in at least 3 of its 4 frames: enough for a third-consecutive-frame rule.
    assert len(transient_rows) >= 3 and {int(row["frame"]) for row in transient_rows} <= set(TRANSIENT_FRAMES)
    assert all(row["track_id"] == "" for row in transient_rows)

    scenes_of: dict[str, set[str]] = {}
    for row in rows:
        if row["track_id"]:
            frame = int(row["frame"])
            scene = "scene_0000.jpg" if frame < SHOT_FRAMES else "scene_0002.jpg"
            box = tuple(float(row[k]) for k in ("x", "y", "width", "height"))
            on = max(range(3), key=lambda i: iou(box, labelled_boxes[scene][i]))
            assert iou(box, labelled_boxes[scene][on]) > 0.3, (frame, box)
            scenes_of.setdefault(row["track_id"], set()).add(f"{scene}#{on}")
    assert all(len(people) == 1 for people in scenes_of.values()), scenes_of  # one person per ID
    assert len(scenes_of) == 6

    document = json.loads(summary.read_text())
    assert document["scene_cuts_s"] == pytest.approx([SHOT_FRAMES / CUT_FPS])
    cut_s, end_s = SHOT_FRAMES / CUT_FPS, (2 * SHOT_FRAMES - 1) / CUT_FPS
    spans = sorted((t["first_s"], t["last_s"], t["ended"]) for t in document["tracks"])
    assert (
        spans
        == [(0.0, pytest.approx(cut_s - 1 / CUT_FPS), True)] * 3
        + [(pytest.approx(cut_s), pytest.approx(end_s), False)] * 3
    )
    check_plot(plot, panels=6, dominant=[t["dominant_emotion"] for t in document["tracks"]])


def test_track_rules_are_flags(cut_clip: Path, tmp_path: Path) -> None:
    """The old rules through the flags: a track on its third frame (--min-track-s 0 --min-track-score 0) names the
    transient face, and a cut only at a complete change (--scene-cut-change 1) lets an ID cross to scene 2."""
    out, summary = tmp_path / "r.csv", tmp_path / "s.json"
    argv = ["video", str(cut_clip), "--out", str(out), "--summary", str(summary), "--no-progress"]
    assert main([*argv, "--min-track-s", "0", "--min-track-score", "0", "--scene-cut-change", "1"]) == 0
    rows = read_csv(out)
    named = {
        row["track_id"]
        for row in rows
        if row["track_id"] and iou(tuple(float(row[k]) for k in ("x", "y", "width", "height")), TRANSIENT_BOX) > 0.3
    }
    assert len(named) == 1
    document = json.loads(summary.read_text())
    assert document["scene_cuts_s"] == []
    assert any(t["first_s"] < SHOT_FRAMES / CUT_FPS < t["last_s"] for t in document["tracks"])


@pytest.mark.parametrize("flag", ["--min-track-s=-1", "--min-track-score=1.5", "--scene-cut-change=0"])
def test_track_flags_are_checked(flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["video", "clip.mp4", "--out", str(tmp_path / "r.csv"), flag])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert flag.split("=", maxsplit=1)[0] in err and "must be" in err


# --- outputs: checked before the work, written whole or not at all --------------------------------------------------


def test_annotated_without_pyav_fails_before_any_work_with_a_hint_that_installs_it(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PyAV made unimportable (as in ``pip install 'deepfer[server]'`` without the extra): exit 2, one line, no
    progress bar, no file at all; the hint's command, run with ``--dry-run``, is one this Python's pip accepts."""
    monkeypatch.setitem(sys.modules, "av", None)
    out, annotated, plot = tmp_path / "r.csv", tmp_path / "a.mp4", tmp_path / "p.png"
    argv = ["video", str(clip), "--out", str(out), "--annotated", str(annotated), "--plot", str(plot)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("deepfer video: --annotated needs PyAV"), err
    assert list(tmp_path.iterdir()) == []
    command = shlex.split(err.split("`")[1])
    assert command[:4] == [sys.executable, "-m", "pip", "install"]
    monkeypatch.delitem(sys.modules, "av")
    checked = subprocess.run(
        [*command[:4], "--dry-run", *command[4:]], check=False, capture_output=True, text=True, timeout=120
    )
    assert checked.returncode == 0, checked.stderr
    assert "already satisfied" in checked.stdout


def test_without_pip_the_hint_is_the_docker_images(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service's image has no pip and no PyAV on purpose: the hint says to run the command elsewhere."""
    monkeypatch.setitem(sys.modules, "av", None)
    monkeypatch.setitem(sys.modules, "pip", None)
    assert main(["video", str(clip), "--out", str(tmp_path / "r.csv"), "--annotated", str(tmp_path / "a.mp4")]) == 2
    err = capsys.readouterr().err
    assert "Docker image" in err and "--url" in err and "pip install 'deepfer[video]'" in err
    assert list(tmp_path.iterdir()) == []


def test_a_missing_output_folder_is_refused_before_any_work(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.csv"
    assert main(["video", str(clip), "--out", str(out), "--plot", str(tmp_path / "no" / "p.png")]) == 2
    err = capsys.readouterr().err
    assert f"the folder {tmp_path / 'no'} does not exist" in err
    assert list(tmp_path.iterdir()) == []


def test_a_failed_run_leaves_no_half_written_file_and_keeps_the_old_one(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dead service fails the run at its first frame, after the outputs were opened: the older result of the
    same name is still there, whole, and no temporary file is left."""
    out = tmp_path / "r.csv"
    out.write_text("an earlier run's result\n")
    dead = f"http://127.0.0.1:{free_port()}"
    assert main(["video", str(clip), "--out", str(out), "--url", dead, "--no-progress"]) == 1
    assert "cannot reach" in capsys.readouterr().err
    assert out.read_text() == "an earlier run's result\n"
    assert list(tmp_path.iterdir()) == [out]


def test_a_run_failing_midway_writes_none_of_its_outputs(clip: Path, tmp_path: Path) -> None:
    """The real pipeline failing at the 6th frame, with CSV, annotated copy, plot and summary asked for: no file."""

    async def run() -> None:
        async with local_analyser(Settings()) as analyse:
            calls = 0

            async def failing(image: NDArray[np.uint8]) -> PredictResponse:
                nonlocal calls
                calls += 1
                if calls == 6:
                    raise OSError("the disk is full")
                return await analyse(image)

            await analyse_video(
                clip,
                failing,
                every=1,
                out=tmp_path / "r.csv",
                annotated=tmp_path / "a.mp4",
                plot=tmp_path / "p.png",
                summary=tmp_path / "s.json",
                progress=False,
                in_flight=1,
            )

    with pytest.raises(OSError, match="disk is full"):
        asyncio.run(run())
    assert list(tmp_path.iterdir()) == []


# --- labels readable at any frame size ------------------------------------------------------------------------------


def label_text_height(width: int, height: int) -> int:
    """Rows holding the white label text that ``draw_faces`` puts on a face box in the middle of a black frame."""
    side = min(width, height) // 4
    face = Face.model_validate(
        {
            "box": {"x": width // 2, "y": height // 2, "width": side, "height": side},
            "emotion": "sad",
            "probabilities": {label: 1.0 if label == "sad" else 0.0 for label in LABELS},
            "detection_score": 0.9,
            "landmarks": None,
            "quality": {"size_px": side, "sharpness": 500.0},
        }
    )
    drawn = draw_faces(np.zeros((height, width, 3), np.uint8), [face])
    # Brighter than the band (sad: BGR 180, 119, 31) in every channel: the text, antialiased edges included.
    white = np.flatnonzero((drawn[: height // 2].min(axis=2) > 100).any(axis=1))
    return int(white[-1] - white[0] + 1)


def test_label_text_scales_with_the_frame() -> None:
    """The label's text is 1.5-4.5 % of the frame's height on a 4K frame and on a 320 x 240 one, never under 8 px:
    a fixed size (13 px) was 0.6 % of a 4K frame (unreadable once the video is scaled to a screen) and 5.4 % of a
    240 px one."""
    for width, height in ((3840, 2160), (320, 240)):
        text_px = label_text_height(width, height)
        assert 0.015 <= text_px / height <= 0.045, (width, height, text_px)
        assert text_px >= 8
