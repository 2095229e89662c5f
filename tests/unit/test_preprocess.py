"""align_face: the FER framing of a detected face, levelled by the eyes, through the shared resize_face."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from deepfer.engine.align import (
    FRAME_CENTRE_DY_PER_BOX_WIDTH,
    FRAME_SIDE_PER_BOX_WIDTH,
    align_face,
    face_from_crop,
    to_batch,
)
from tests.imaging import DATA, read

SCENES = json.loads((DATA / "scenes" / "scenes.json").read_text())


def level_face() -> tuple[np.ndarray, tuple[float, float, float, float], np.ndarray]:
    """A synthetic grey face with level eyes: dark eye blobs on a mid-grey square, centred in 200x200."""
    image = np.full((200, 200, 3), 40, np.uint8)
    cv2.rectangle(image, (50, 50), (150, 150), (160, 160, 160), -1)
    landmarks = np.array([[80, 85], [120, 85], [100, 105], [85, 125], [115, 125]], np.float32)
    for x, y in landmarks[:2]:
        cv2.circle(image, (int(x), int(y)), 6, (0, 0, 0), -1)
    return image, (55.0, 55.0, 90.0, 100.0), landmarks


def test_output_is_48x48_uint8() -> None:
    image, box, landmarks = level_face()
    face = align_face(image, box, landmarks)
    assert face.shape == (48, 48) and face.dtype == np.uint8


def test_a_rolled_face_comes_out_like_the_level_one() -> None:
    """Rotating the picture 20 degrees about the face centre must not change the aligned crop much."""
    image, box, landmarks = level_face()
    level = align_face(image, box, landmarks).astype(np.float32)
    centre = (box[0] + box[2] / 2, box[1] + box[3] / 2)
    turn = cv2.getRotationMatrix2D(centre, 20, 1.0)
    rolled_image = cv2.warpAffine(image, turn, (200, 200), borderMode=cv2.BORDER_REPLICATE)
    rolled_landmarks = (np.c_[landmarks, np.ones(5)] @ turn.T).astype(np.float32)
    rolled = align_face(rolled_image, box, rolled_landmarks).astype(np.float32)
    assert np.abs(rolled - level).mean() < 6
    unaligned = face_from_crop(rolled_image[55:155, 55:145]).astype(np.float32)
    assert np.abs(cv2.resize(unaligned, (48, 48)) - level).mean() > np.abs(rolled - level).mean()


def test_crop_beyond_the_border_repeats_edge_pixels_instead_of_black() -> None:
    image = np.full((100, 100, 3), 200, np.uint8)
    landmarks = np.array([[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]], np.float32)
    face = align_face(image, (0.0, 0.0, 40.0, 50.0), landmarks)
    assert face.min() == 200


def test_framing_matches_the_ground_truth_on_a_committed_scene() -> None:
    """With landmarks level and the box where YuNet puts it, the frame covers the pasted FER face."""
    scene = SCENES[0]
    image = read(f"scenes/{scene['image']}")
    x, y, side, _ = scene["faces"][1]["box"]
    width = side / FRAME_SIDE_PER_BOX_WIDTH
    box_centre_y = y + side / 2 - FRAME_CENTRE_DY_PER_BOX_WIDTH * width
    box = (x + side / 2 - width / 2, box_centre_y - width * 0.6, width, width * 1.2)
    eyes_y = y + side * 0.4
    landmarks = np.array(
        [[x + side * 0.3, eyes_y], [x + side * 0.7, eyes_y], [x + side / 2, y + side * 0.55], [0, 0], [0, 0]],
        np.float32,
    )
    aligned = align_face(image, box, landmarks).astype(np.float32)
    truth = face_from_crop(image[y : y + side, x : x + side]).astype(np.float32)
    assert np.abs(aligned - truth).mean() < 3


def test_to_batch_layout() -> None:
    image, box, landmarks = level_face()
    batch = to_batch([align_face(image, box, landmarks)] * 3)
    assert batch.shape == (3, 48, 48, 1) and batch.dtype == np.float32
    assert batch.max() <= 255 and batch.min() >= 0
    assert to_batch([]).shape == (0, 48, 48, 1)


@pytest.mark.parametrize("layout", ["grey", "bgr", "bgra"])
def test_align_accepts_every_layout_to_grey_does(layout: str) -> None:
    image, box, landmarks = level_face()
    converted = {
        "grey": cv2.cvtColor(image, cv2.COLOR_BGR2GRAY),
        "bgr": image,
        "bgra": cv2.cvtColor(image, cv2.COLOR_BGR2BGRA),
    }[layout]
    np.testing.assert_array_equal(align_face(converted, box, landmarks), align_face(image, box, landmarks))
