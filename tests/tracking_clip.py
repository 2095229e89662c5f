"""A synthetic clip with known identities, and its scoring as MOT benchmarks score trackers: the tracker's tests
(tests/unit/test_tracking.py) and its benchmark (``python bench/tracking_clip.py``) both run it.

The clip (``make_clip``): five people in a 1280 x 720 frame for 20 s, moving along straight segments. People 1 and
2 walk past each other at different depths (the nearer face hides the farther one while it covers more than 40 %
of it, for about 1 s) and 1 then walks out of the frame, 3 sways and turns away for 0.8 s, 4 walks diagonally
through the others' path and is hidden for 0.5 s, 5 arrives late. The detector is imitated with 3 % jitter of box
position and size, a 3 % chance of missing a visible face in any frame, and false positives (0.5 per second, 1 or
2 frames each, anywhere off the faces); the probabilities follow a per-person emotion script with Dirichlet noise.
``--variable`` draws each frame gap uniformly between 0.1x and 1.9x the nominal one, as phone video does in low
light.

Scoring (``evaluate``): CLEAR MOT (Bernardin and Stiefelhagen 2008) with IoU >= 0.5 matching that keeps last
frame's pairs while they still overlap, giving misses, false positives, ID switches, fragmentations and MOTA;
and IDF1 (Ristani et al. 2016) from the one-to-one identity mapping that maximises matched frames. A track
reports no box while tentative, so every birth costs ``min_hits - 1`` misses, as it would in a MOT benchmark.

Known weakness, seen while tuning: a coasting track takes a detection within its reach, so a false positive near
where a person vanished keeps the track alive, and a newcomer arriving there within ``max_gap_s`` inherits the ID.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfer.contract import LABELS
from deepfer.tracking.assignment import linear_sum_assignment
from deepfer.tracking.tracker import Rect, Sighting, Tracker, TrackerSettings, box_iou

REPO = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 1280, 720
DURATION_S = 20.0
# A face covered by a nearer one over more than this fraction of its area is not detected: YuNet loses a face
# once roughly the eyes or the mouth are covered.
HIDDEN_FRACTION = 0.4
MATCH_IOU = 0.5  # the MOT Challenge's matching threshold


@dataclass(frozen=True)
class Person:
    """Where one identity is and what it feels: (time s, centre x, centre y, size px) waypoints, linear between."""

    identity: int
    waypoints: tuple[tuple[float, float, float, float], ...]
    hidden: tuple[tuple[float, float], ...]  # (from s, to s): turned away or behind something; no detection
    emotions: tuple[tuple[float, str], ...]  # (from s, emotion), in time order

    def box_at(self, time_s: float) -> Rect | None:
        """The box at ``time_s``, or None when not in the scene: outside the waypoints, or the centre off the frame."""
        times = [w[0] for w in self.waypoints]
        if not times[0] <= time_s <= times[-1]:
            return None
        cx, cy, size = (float(np.interp(time_s, times, [w[k] for w in self.waypoints])) for k in (1, 2, 3))
        return (cx - size / 2, cy - size / 2, size, size) if 0 <= cx < WIDTH and 0 <= cy < HEIGHT else None

    def emotion_at(self, time_s: float) -> str:
        return [label for start, label in self.emotions if start <= time_s][-1]


PEOPLE = (
    Person(
        1,
        ((0, 150, 300, 130), (12, 1100, 330, 140), (13.5, 1400, 335, 140)),
        (),
        ((0, "neutral"), (4, "happy"), (9, "neutral")),
    ),
    Person(2, ((1, 1150, 320, 90), (14, 150, 300, 95)), (), ((0, "sad"), (8, "neutral"))),
    Person(
        3,
        ((0, 300, 560, 110), (5, 380, 540, 110), (10, 260, 580, 115), (15, 420, 560, 110), (20, 300, 550, 110)),
        ((9.0, 9.8),),
        ((0, "happy"), (6, "surprise"), (7, "happy")),
    ),
    Person(4, ((5, 1150, 640, 100), (15, 650, 120, 100)), ((11.0, 11.5),), ((0, "angry"), (10, "neutral"))),
    Person(5, ((14, 900, 450, 120), (20, 980, 430, 125)), (), ((0, "neutral"), (17, "fear"))),
)


@dataclass(frozen=True)
class ClipFrame:
    time_s: float
    detections: list[Sighting]  # what the imitated detector returned, false positives included
    truth: list[tuple[int, Rect]]  # (identity, exact box) of every face visible in the frame
    detected: list[tuple[int, Rect]]  # the part of ``truth`` the detector found: what a tracker can follow


def frame_times(fps: float, variable: bool, rng: np.random.Generator) -> list[float]:
    """Presentation times over the clip: every 1/fps s, or gaps drawn from 0.1/fps to 1.9/fps."""
    times, time_s = [], 0.0
    while time_s < DURATION_S:
        times.append(time_s)
        time_s += (rng.uniform(0.1, 1.9) if variable else 1.0) / fps
    return times


def visible_faces(time_s: float) -> list[tuple[int, Rect]]:
    """Faces in the scene and not hidden: turned away, or covered by a nearer (larger) face."""
    present = [
        (p.identity, box)
        for p in PEOPLE
        if (box := p.box_at(time_s)) is not None and not any(start <= time_s < end for start, end in p.hidden)
    ]
    visible = []
    for identity, box in present:
        covered = max(
            (_covered_fraction(box, other) for i, other in present if i != identity and other[2] > box[2]),
            default=0.0,
        )
        if covered <= HIDDEN_FRACTION:
            visible.append((identity, box))
    return visible


def _covered_fraction(box: Rect, by: Rect) -> float:
    width = max(0.0, min(box[0] + box[2], by[0] + by[2]) - max(box[0], by[0]))
    height = max(0.0, min(box[1] + box[3], by[1] + by[3]) - max(box[1], by[1]))
    return width * height / (box[2] * box[3])


def make_clip(fps: float = 25.0, variable: bool = False, seed: int = 0) -> list[ClipFrame]:
    """The synthetic clip: ground truth and imitated detections per frame (see the module docstring)."""
    rng = np.random.default_rng(seed)
    by_identity = {p.identity: p for p in PEOPLE}
    false_positives: list[tuple[Rect, int]] = []  # (box, frames left)
    frames = []
    times = frame_times(fps, variable, rng)
    mean_gap_s = DURATION_S / len(times)
    for time_s in times:
        truth = visible_faces(time_s)
        detected = [(identity, box) for identity, box in truth if rng.random() >= 0.03]
        detections = [_detect(box, by_identity[identity].emotion_at(time_s), rng) for identity, box in detected]
        if rng.random() < 0.5 * mean_gap_s:  # Poisson arrivals at 0.5 per second
            false_positives.append((_background_box(time_s, rng), int(rng.integers(1, 3))))
        detections += [_detect(box, str(rng.choice(LABELS)), rng) for box, _ in false_positives]
        false_positives = [(box, left - 1) for box, left in false_positives if left > 1]
        frames.append(ClipFrame(time_s, detections, truth, detected))
    return frames


def _background_box(time_s: float, rng: np.random.Generator) -> Rect:
    """A false positive's box: anywhere on the background, off every face in the scene (hidden ones included),
    because a detector does not see a second face on a face."""
    faces = [box for p in PEOPLE if (box := p.box_at(time_s)) is not None]
    while True:
        size = rng.uniform(60, 140)
        box = (rng.uniform(0, WIDTH - size), rng.uniform(0, HEIGHT - size), size, size)
        if not faces or not _iou([(0, box)], [(0, face) for face in faces]).any():
            return box


def _detect(box: Rect, emotion: str, rng: np.random.Generator) -> Sighting:
    size = box[2]
    cx, cy = box[0] + size / 2 + rng.normal(0, 0.03 * size), box[1] + size / 2 + rng.normal(0, 0.03 * size)
    side = size * (1 + rng.normal(0, 0.03))
    # The scripted emotion wins on average with about 0.6 of the mass, but any single frame may be wrong.
    alpha = np.ones(len(LABELS)) + 8.0 * (np.array(LABELS) == emotion)
    return Sighting(
        box=(float(cx - side / 2), float(cy - side / 2), float(side), float(side)),
        probabilities=rng.dirichlet(alpha).astype(np.float32),
    )


@dataclass(frozen=True)
class MotCounts:
    """CLEAR MOT and identity counts over a sequence."""

    truth: int  # ground-truth boxes, all frames
    hypotheses: int  # boxes the tracker reported with an ID
    misses: int  # ground-truth boxes matched by no hypothesis
    false_positives: int  # hypotheses matched to no ground truth
    id_switches: int  # a ground-truth identity matched to a different track ID than it last was
    fragmentations: int  # a ground-truth trajectory losing its match and getting one again later
    mota: float  # 1 - (misses + false positives + ID switches) / truth
    idf1: float  # 2 IDTP / (truth + hypotheses) under the best one-to-one identity mapping


def evaluate(
    frames: Sequence[tuple[list[tuple[int, Rect]], list[tuple[int, Rect]]]], min_iou: float = MATCH_IOU
) -> MotCounts:
    """Count MOT metrics from per-frame (truth, hypotheses), each a list of (identity or track ID, box)."""
    last_match: dict[int, int] = {}  # truth identity -> the hypothesis ID it was last matched to
    tracked: dict[int, list[bool]] = defaultdict(list)  # truth identity -> matched or not, per frame it is present
    overlap: dict[tuple[int, int], int] = defaultdict(int)  # (truth, hypothesis) -> frames with IoU >= min_iou
    truth_total = hypothesis_total = misses = false_positives = switches = 0
    for truth, hypotheses in frames:
        truth_total, hypothesis_total = truth_total + len(truth), hypothesis_total + len(hypotheses)
        iou = _iou(truth, hypotheses)
        for r, c in zip(*np.nonzero(iou >= min_iou), strict=True):
            overlap[truth[r][0], hypotheses[c][0]] += 1
        matches = _clear_matches(truth, hypotheses, iou, last_match, min_iou)
        for r, (identity, _) in enumerate(truth):
            tracked[identity].append(r in matches)
            if r in matches:
                hypothesis_id = hypotheses[matches[r]][0]
                switches += identity in last_match and last_match[identity] != hypothesis_id
                last_match[identity] = hypothesis_id
        misses += len(truth) - len(matches)
        false_positives += len(hypotheses) - len(matches)

    fragmentations = sum(_fragmentations(flags) for flags in tracked.values())
    truth_ids = sorted({t for t, _ in overlap})
    hypothesis_ids = sorted({h for _, h in overlap})
    weights = np.array([[overlap.get((t, h), 0) for h in hypothesis_ids] for t in truth_ids]).reshape(
        len(truth_ids), len(hypothesis_ids)
    )
    rows, cols = linear_sum_assignment(weights, maximize=True)
    id_true_positives = int(weights[rows, cols].sum())
    return MotCounts(
        truth=truth_total,
        hypotheses=hypothesis_total,
        misses=misses,
        false_positives=false_positives,
        id_switches=switches,
        fragmentations=fragmentations,
        mota=1 - (misses + false_positives + switches) / truth_total,
        idf1=2 * id_true_positives / (truth_total + hypothesis_total),
    )


def _iou(truth: list[tuple[int, Rect]], hypotheses: list[tuple[int, Rect]]) -> np.ndarray:
    if not truth or not hypotheses:
        return np.zeros((len(truth), len(hypotheses)))
    return box_iou(np.array([b for _, b in truth], dtype=float), np.array([b for _, b in hypotheses], dtype=float))


def _clear_matches(
    truth: list[tuple[int, Rect]],
    hypotheses: list[tuple[int, Rect]],
    iou: np.ndarray,
    last_match: dict[int, int],
    min_iou: float,
) -> dict[int, int]:
    """Truth row -> hypothesis column: last frame's pairs kept while they overlap, the rest by optimal IoU."""
    column_of = {h: c for c, (h, _) in enumerate(hypotheses)}
    matches: dict[int, int] = {}
    for r, (identity, _) in enumerate(truth):
        c = column_of.get(last_match.get(identity, -1))
        if c is not None and iou[r, c] >= min_iou and c not in matches.values():
            matches[r] = c
    rows = [r for r in range(len(truth)) if r not in matches]
    cols = [c for c in range(len(hypotheses)) if c not in matches.values()]
    if rows and cols:
        sub = iou[np.ix_(rows, cols)]
        chosen = zip(*linear_sum_assignment(sub, maximize=True), strict=True)
        matches |= {rows[i]: cols[j] for i, j in chosen if sub[i, j] >= min_iou}
    return matches


def _fragmentations(flags: list[bool]) -> int:
    """Times a trajectory goes from matched to unmatched and is matched again later."""
    runs = [flag for i, flag in enumerate(flags) if i == 0 or flag != flags[i - 1]]
    return sum(1 for i in range(1, len(runs) - 1) if not runs[i] and runs[i - 1])


@dataclass(frozen=True)
class ClipScore:
    """One run of the tracker over a clip, scored two ways."""

    scene: MotCounts  # against every visible face, as a MOT benchmark scores: detector misses count too
    detected: MotCounts  # against the faces the detector found: the tracker's own errors only
    track_ids: int  # track IDs given out (the clip has len(PEOPLE) identities)


def run_clip(frames: list[ClipFrame], settings: TrackerSettings) -> ClipScore:
    """The tracker over one clip, scored against the scene and against the detections."""
    tracker = Tracker(settings)
    hypotheses = []
    for frame in frames:
        faces = tracker.update(frame.time_s, frame.detections)
        hypotheses.append([(f.track_id, f.detection.box) for f in faces if f.track_id is not None])
    return ClipScore(
        scene=evaluate([(f.truth, h) for f, h in zip(frames, hypotheses, strict=True)]),
        detected=evaluate([(f.detected, h) for f, h in zip(frames, hypotheses, strict=True)]),
        track_ids=len(tracker.summaries()),
    )
