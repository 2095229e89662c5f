"""People over time: track IDs for per-frame face detections, smoothed emotions per track, a summary per track.

One implementation for ``deepfer video``, the WebSocket stream and the client. Each feeds ``Tracker.update`` one
frame's detections with the frame's presentation time in seconds and gets the same faces back, in the same order,
with a track ID and both the raw and the smoothed probabilities; ``Tracker.summaries`` says, per person, when they
were seen and how their time splits across the seven emotions. Every rule that involves time is in seconds, never
in frames, so a 10 fps stream, a 60 fps file and a variable-frame-rate phone video behave alike.

One frame, in ``Tracker.update``:

1. Expire. A confirmed track unseen for more than ``max_gap_s`` has ended; a tentative one ended at its first miss.
2. Predict each live track's box at this frame's time: the last box moved at the centre's mean velocity over
   the last ``velocity_window_s``. Crossing faces hide each other for up to a second; without the prediction
   the hidden one's track waits where it vanished and the face reappears a box or more away, on the far side of
   the face that hid it. The velocity is measured over a fixed time, not frame to frame, because frame-to-frame
   jitter divided by a 1/60 s gap is a velocity noise that grows with the frame rate.
3. Gate and cost. A pair is allowed when the sizes (sqrt(w * h)) differ by at most ``max_size_ratio`` and either
   IoU >= ``min_iou`` or the centres are at most ``max_centre_distance + max_centre_drift_per_s * unseen_s``
   track sizes apart. IoU alone fails for small, fast or long-hidden faces whose boxes no longer overlap the
   prediction; distance alone would let a hidden child's track take the adult face passing in front of it. The
   distance allowed grows with the time unseen because the prediction's error does: a fixed gate wide enough
   for a face back after a second let a confirmed track jump to a false positive beside its face in the one
   frame the face was missed. cost = (1 - IoU) + distance + |log size
   ratio|, so each term is about 0..1 for the pairs the gate allows.
4. Optimal assignment (``deepfer.tracking.assignment``, the Hungarian method) maximising the total of (worst
   allowed cost - cost) over allowed pairs, confirmed tracks first, then tentative ones on what is left
   (DeepSORT's order: a two-frame false positive must not take a confirmed face's detection in a frame where that
   face was missed).
   Maximising that slack, rather than minimising cost with refused pairs at a large price, never trades one
   good pair for two mediocre ones: the large-price form maximises the number of pairs first, and on a crossing
   that swaps two identities whenever the swap keeps both pairs inside the gate.
5. Birth. An unmatched detection starts a tentative track; it gets an ID once it has ``min_hits`` consecutive
   hits spanning at least ``min_track_s`` with a mean detection score of at least ``min_track_score``, so a false
   positive lasting a frame or two never becomes a person. IDs count 1, 2, 3... over confirmed tracks.
6. Smooth each matched track's probabilities (``low_pass``) and add the time since its previous frame to its
   emotion shares.

Between frames, ``cut`` ends every track at once: the caller saw a scene cut (``deepfer.video.cuts``), after which
a face at the same place is somebody else.

Libraries considered (this project is MIT-licensed and runs numpy 2; metadata of each wheel read from PyPI):

- norfair 2.3.0 (BSD-3-Clause): requires ``numpy<2.0``, plus filterpy and rich.
- motpy 0.0.10 (MIT): last release 2021-09; needs filterpy.
- boxmot 25.0.0: AGPL-3.0, and pulls torch, torchvision, timm, pandas and pyarrow.
- bytetracker 0.3.2 (MIT): a 2023 repackaging of ByteTrack pinning ``scipy==1.9.3`` and ``torch==1.13.0``.

None fits, and what they add over this module (a Kalman filter, appearance embeddings) is not needed for a few
faces per frame whose boxes come from one detector. So: this small tracker, with the optimal assignment of
``deepfer.tracking.assignment`` (SciPy's would add 143 MB to the image for one function).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from deepfer.contract import LABELS
from deepfer.tracking.assignment import linear_sum_assignment

Rect = tuple[float, float, float, float]  # x, y, width, height in pixels


@dataclass(frozen=True)
class TrackerSettings:
    """Association, birth, expiry and smoothing rules; built once by the caller and passed to ``Tracker``.

    The defaults give 0 ID switches and 0 fragmentations on ``bench/tracking_clip.py``'s clip at 10, 25 and 60 fps
    and with variable frame gaps (see that script's docstring for the figures).
    """

    # Association gate: a detection may join a track when its size is within this factor of the track's...
    max_size_ratio: float = 1.4
    # ...and the IoU with the track's predicted box reaches this...
    min_iou: float = 0.3
    # ...or when the centres are at most this many track sizes (sqrt(w * h)) apart, plus the drift below per
    # second unseen. 0.5 covers detection jitter and a frame's unpredicted motion; two faces side by side have
    # centres at least one face apart.
    max_centre_distance: float = 0.5
    # How fast the prediction's error may grow while a face is unseen, in track sizes per second: a face back
    # after 1 s may be a size from its prediction (a person who stopped or turned while hidden). Wider lets a
    # coasting track take false positives and newcomers: at 1.0 it kept a person who had left alive through a
    # false positive and handed their ID to the next person to arrive there (measured on the clip at 60 fps).
    max_centre_drift_per_s: float = 0.5
    # Consecutive hits before a tentative track gets an ID: 3 frames is 0.12 s at 25 fps, and YuNet's false
    # positives rarely survive three frames in one place.
    min_hits: int = 3
    # And at least this long from its first frame to its latest, all hits: a count of frames is a shorter time at a
    # higher frame rate, a false positive's life is not. 0 here, so the live stream names people on their third
    # frame; ``deepfer video`` passes its measured default (``Settings.video_min_track_s``).
    min_track_s: float = 0.0
    # And a mean detection score over its frames of at least this (detections without a score do not count):
    # a blob that fires the detector weakly frame after frame stays tentative. 0 here, as above
    # (``Settings.video_min_track_score``).
    min_track_score: float = 0.0
    # A confirmed track unseen for longer than this has ended: a head turned away or a hand in front of the face
    # for up to this long keeps its ID.
    max_gap_s: float = 1.5
    # Time constant of the probability smoothing: a change of emotion shows 63 % in the smoothed bars after this
    # long. 0.5 s removes frame-to-frame flicker and still follows an expression within about a second.
    smoothing_time_constant_s: float = 0.5
    # The prediction's velocity is the centre's mean over this long: jitter of sigma px gives a velocity noise
    # of about 1.4 sigma / window px/s at any frame rate, and a change of direction shows after half of it.
    velocity_window_s: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.min_iou <= 1:
            raise ValueError(f"min_iou must be in (0, 1], got {self.min_iou}")
        if self.min_hits < 1:
            raise ValueError(f"min_hits must be at least 1, got {self.min_hits}")
        if self.max_size_ratio < 1:
            raise ValueError(f"max_size_ratio must be at least 1, got {self.max_size_ratio}")
        if self.min_track_s < 0:
            raise ValueError(f"min_track_s must not be negative, got {self.min_track_s}")
        if not 0 <= self.min_track_score <= 1:
            raise ValueError(f"min_track_score must be in [0, 1], got {self.min_track_score}")
        if self.max_centre_drift_per_s < 0:
            raise ValueError(f"max_centre_drift_per_s must not be negative, got {self.max_centre_drift_per_s}")
        for name in ("max_centre_distance", "max_gap_s", "smoothing_time_constant_s", "velocity_window_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


@dataclass(frozen=True)
class Sighting:
    """One face in one frame, as the pipeline reports it."""

    box: Rect
    probabilities: NDArray[np.float32]  # 7, LABELS order
    # 5 x 2 (eyes, nose tip, mouth corners) or None: carried through to the output, not used for association,
    # because they move with the box and add nothing to where it is.
    landmarks: NDArray[np.float32] | None = None
    # The detector's score, 0..1, or None where the caller has none: only a track's birth reads it
    # (``min_track_score``).
    score: float | None = None

    def __post_init__(self) -> None:
        if np.shape(self.probabilities) != (len(LABELS),):
            raise ValueError(f"probabilities must have shape ({len(LABELS)},), got {np.shape(self.probabilities)}")
        if self.box[2] <= 0 or self.box[3] <= 0:
            raise ValueError(f"box width and height must be positive, got {self.box}")


@dataclass(frozen=True)
class TrackedFace:
    """A detection with its track: ``track_id`` is None while the track is tentative (fewer than min_hits hits)."""

    detection: Sighting
    track_id: int | None
    smoothed: NDArray[np.float32]  # 7, LABELS order; equals the raw probabilities on a track's first frame

    @property
    def emotion(self) -> str:
        """The most probable emotion in this frame alone."""
        return LABELS[int(np.argmax(self.detection.probabilities))]

    @property
    def smoothed_emotion(self) -> str:
        return LABELS[int(np.argmax(self.smoothed))]


@dataclass(frozen=True)
class TrackSummary:
    """One person over the clip or session so far."""

    track_id: int
    first_s: float
    last_s: float
    frames: int
    # Share of the track's time per emotion, LABELS order, summing to 1. Time-weighted: each frame stands for
    # half the time to its previous and half to its next frame (a frame after a long gap counts for more than
    # one of a burst), and the emotion is the smoothed one, so one flickering frame is not counted as a mood.
    emotion_share: tuple[float, ...]
    ended: bool  # unseen for longer than max_gap_s as of the latest update

    @property
    def duration_s(self) -> float:
        return self.last_s - self.first_s

    @property
    def dominant_emotion(self) -> str:
        """The emotion with the largest share of time (the first in LABELS order on a tie)."""
        return LABELS[int(np.argmax(self.emotion_share))]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, emotions by name."""
        return {
            "track_id": self.track_id,
            "first_s": self.first_s,
            "last_s": self.last_s,
            "duration_s": self.duration_s,
            "frames": self.frames,
            "dominant_emotion": self.dominant_emotion,
            "emotion_share": dict(zip(LABELS, self.emotion_share, strict=True)),
            "ended": self.ended,
        }


def low_pass(
    smoothed: NDArray[np.float64],
    previous: NDArray[np.float64],
    current: NDArray[np.float64],
    gap_s: float,
    time_constant_s: float,
) -> NDArray[np.float64]:
    """One step of exponential smoothing over a gap of ``gap_s`` seconds between two samples.

    The exact step of the first-order low-pass ``tau * s' = x - s`` when the input ``x`` runs in a straight line
    from ``previous`` to ``current`` over the gap: ``s' = a*s + b*previous + c*current`` with ``a = exp(-gap/tau)``.
    The plain ``s + (1 - a) * (current - s)`` holds the new sample over the whole gap, so its answer at a given
    time depends on the frame rate by O(gap / tau); this one converges as O((gap / tau)^2), and a piecewise-linear
    input whose corners fall on common frames gives the same value at 10 fps and at 60 fps. The weights a, b, c
    are non-negative and sum to 1, so probabilities stay probabilities; a gap much longer than tau gives
    ``current`` back, within tau / gap.
    """
    ratio = gap_s / time_constant_s
    a = math.exp(-ratio)
    # (1 - e^-r) / r, computed without cancellation for the tiny gaps of a fast camera.
    mean_weight = -math.expm1(-ratio) / ratio
    return a * smoothed + (mean_weight - a) * previous + (1 - mean_weight) * current


def box_iou(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """IoU of every box in ``a`` (N x 4) with every box in ``b`` (M x 4), boxes as x, y, width, height: N x M."""
    a_x1, a_y1, a_x2, a_y2 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    b_x1, b_y1, b_x2, b_y2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    width = np.clip(np.minimum(a_x2, b_x2) - np.maximum(a_x1, b_x1), 0, None)
    height = np.clip(np.minimum(a_y2, b_y2) - np.maximum(a_y1, b_y1), 0, None)
    inter = width * height
    union = (a[:, 2:3] * a[:, 3:4]) + (b[:, 2] * b[:, 3]) - inter
    return np.asarray(inter / union, dtype=np.float64)


@dataclass
class _Track:
    """A track's running state: the latest box and probabilities, a velocity, and the time per emotion so far."""

    track_id: int | None
    first_s: float
    last_s: float
    box: NDArray[np.float64]  # 4: x, y, width, height of the latest detection
    raw: NDArray[np.float64]  # 7: latest raw probabilities
    smoothed: NDArray[np.float64]  # 7
    # (time s, centre x, y) of recent frames: the first is the latest at or before velocity_window_s ago.
    centres: deque[tuple[float, NDArray[np.float64]]] = field(default_factory=deque)
    hits: int = 1  # frames matched; all consecutive until confirmed, as a tentative track ends at its first miss
    score_sum: float = 0.0  # detection scores of the frames that had one, and how many did
    scored: int = 0
    share_s: NDArray[np.float64] = field(default_factory=lambda: np.zeros(len(LABELS)))  # seconds per emotion
    seen_last_frame: bool = True

    def predicted(self, time_s: float) -> NDArray[np.float64]:
        """The box at ``time_s`` if the centre keeps its velocity and the size stays (faces change scale slowly)."""
        (start_s, start), (end_s, end) = self.centres[0], self.centres[-1]
        velocity = (end - start) / (end_s - start_s) if end_s > start_s else np.zeros(2)
        shifted = self.box.copy()
        shifted[:2] += velocity * (time_s - self.last_s)
        return shifted

    def observe(self, time_s: float, detection: Sighting, settings: TrackerSettings) -> None:
        gap_s = time_s - self.last_s
        box = np.asarray(detection.box, dtype=np.float64)
        raw = detection.probabilities.astype(np.float64)
        self.centres.append((time_s, _centre(box)))
        while len(self.centres) > 2 and self.centres[1][0] <= time_s - settings.velocity_window_s:
            self.centres.popleft()
        previous_emotion = int(np.argmax(self.smoothed))
        self.smoothed = low_pass(self.smoothed, self.raw, raw, gap_s, settings.smoothing_time_constant_s)
        self.share_s[previous_emotion] += gap_s / 2
        self.share_s[int(np.argmax(self.smoothed))] += gap_s / 2
        self.box, self.raw, self.last_s = box, raw, time_s
        self.hits += 1
        self.add_score(detection.score)
        self.seen_last_frame = True

    def add_score(self, score: float | None) -> None:
        if score is not None:
            self.score_sum += score
            self.scored += 1

    def ready(self, settings: TrackerSettings) -> bool:
        """Whether a tentative track has shown enough to be a person: hits, time seen and mean score."""
        # The time is compared with a nanosecond's slack: 0.3 s from frame times such as 12 / 40 s may land a
        # rounding error short.
        return (
            self.hits >= settings.min_hits
            and self.last_s - self.first_s >= settings.min_track_s - 1e-9
            and (self.scored == 0 or self.score_sum / self.scored >= settings.min_track_score)
        )

    def summary(self, ended: bool) -> TrackSummary:
        assert self.track_id is not None, "only confirmed tracks are summarised"
        total = self.share_s.sum()
        # A track of one frame (min_hits=1) has no duration: its one emotion is all of it.
        share = self.share_s / total if total > 0 else np.eye(len(LABELS))[int(np.argmax(self.smoothed))]
        return TrackSummary(
            track_id=self.track_id,
            first_s=self.first_s,
            last_s=self.last_s,
            frames=self.hits,
            emotion_share=tuple(float(s) for s in share),
            ended=ended,
        )


def _centre(boxes: NDArray[np.float64]) -> NDArray[np.float64]:
    """Centres (..., 2) of boxes (..., 4) given as x, y, width, height."""
    return boxes[..., :2] + boxes[..., 2:] / 2


class Tracker:
    """Track IDs, smoothed probabilities and per-track summaries for one video or one live session.

    Not thread-safe: one tracker per video or per connection, fed frames in time order.
    """

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self._live: list[_Track] = []
        self._ended: list[TrackSummary] = []
        self._next_id = 1
        self._last_time_s: float | None = None

    def update(self, time_s: float, detections: Sequence[Sighting]) -> list[TrackedFace]:
        """Associate one frame's detections with the tracks; the answer is in the order of ``detections``.

        ``time_s`` is the frame's presentation time and must increase from frame to frame: the gaps between
        frames drive expiry, smoothing and prediction.
        """
        if self._last_time_s is not None and time_s <= self._last_time_s:
            raise ValueError(f"frame time {time_s} s is not after the previous frame's {self._last_time_s} s")
        self._last_time_s = time_s
        self._expire(time_s)
        pairs = self._associate(time_s, detections)

        track_of: dict[int, _Track] = {}
        for track in self._live:
            track.seen_last_frame = False
        for track_index, detection_index in pairs:
            track = self._live[track_index]
            track.observe(time_s, detections[detection_index], self.settings)
            track_of[detection_index] = track
        # A tentative track that missed this frame is dropped: births need consecutive hits.
        self._live = [t for t in self._live if t.track_id is not None or t.seen_last_frame]
        for index, detection in enumerate(detections):
            if index not in track_of:
                probabilities = detection.probabilities.astype(np.float64)
                box = np.asarray(detection.box, dtype=np.float64)
                track = _Track(
                    track_id=None,
                    first_s=time_s,
                    last_s=time_s,
                    box=box,
                    raw=probabilities,
                    smoothed=probabilities.copy(),
                    centres=deque([(time_s, _centre(box))]),
                )
                track.add_score(detection.score)
                self._live.append(track)
                track_of[index] = track
        for track in track_of.values():
            if track.track_id is None and track.ready(self.settings):
                track.track_id, self._next_id = self._next_id, self._next_id + 1

        return [
            TrackedFace(
                detection=detection,
                track_id=track_of[index].track_id,
                smoothed=track_of[index].smoothed.astype(np.float32),
            )
            for index, detection in enumerate(detections)
        ]

    def cut(self) -> None:
        """A scene cut: every track ends here (a confirmed one is summarised, a tentative one forgotten), so the
        next frame's faces start new tracks instead of taking the IDs of whoever stood at those places before."""
        self._ended += [track.summary(ended=True) for track in self._live if track.track_id is not None]
        self._live = []

    def summaries(self) -> list[TrackSummary]:
        """Every confirmed track so far, ended and live, by track ID."""
        live = [t.summary(ended=False) for t in self._live if t.track_id is not None]
        return sorted(self._ended + live, key=lambda s: s.track_id)

    def _expire(self, time_s: float) -> None:
        keep: list[_Track] = []
        for track in self._live:
            if time_s - track.last_s <= self.settings.max_gap_s:
                keep.append(track)
            elif track.track_id is not None:
                self._ended.append(track.summary(ended=True))
        self._live = keep

    def _associate(self, time_s: float, detections: Sequence[Sighting]) -> list[tuple[int, int]]:
        """(track index, detection index) pairs: the best allowed assignment, confirmed tracks first."""
        if not self._live or not detections:
            return []
        settings = self.settings
        predicted = np.stack([t.predicted(time_s) for t in self._live])
        boxes = np.array([d.box for d in detections], dtype=np.float64)
        iou = box_iou(predicted, boxes)
        track_size = np.sqrt(predicted[:, 2] * predicted[:, 3])[:, None]
        size_change = np.abs(np.log(np.sqrt(boxes[:, 2] * boxes[:, 3])[None, :] / track_size))
        unseen_s = np.array([time_s - t.last_s for t in self._live])[:, None]
        reach = settings.max_centre_distance + settings.max_centre_drift_per_s * unseen_s
        distance = np.linalg.norm(_centre(predicted)[:, None, :] - _centre(boxes)[None, :, :], axis=2) / track_size
        allowed = (size_change <= math.log(settings.max_size_ratio)) & ((iou >= settings.min_iou) | (distance <= reach))
        # No allowed pair costs more than this: IoU 0, at the size limit and the reach of the longest-unseen track.
        worst = 1 + float(reach.max()) + math.log(settings.max_size_ratio)
        slack = np.where(allowed, worst - (1 - iou + distance + size_change), 0.0)

        pairs: list[tuple[int, int]] = []
        free = list(range(len(detections)))
        for confirmed in (True, False):
            rows = [i for i, t in enumerate(self._live) if (t.track_id is not None) is confirmed]
            if not rows or not free:
                continue
            chosen = zip(*linear_sum_assignment(slack[np.ix_(rows, free)], maximize=True), strict=True)
            round_pairs = [(rows[r], free[c]) for r, c in chosen if allowed[rows[r], free[c]]]
            pairs += round_pairs
            free = [c for c in free if c not in {d for _, d in round_pairs}]
        return pairs
