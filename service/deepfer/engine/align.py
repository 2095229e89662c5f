"""The single definition of a classifier input: how a face becomes a 48x48 grey uint8 array.

Training, evaluation and serving all call these functions, so a face seen at serving time is framed, greyed
and resampled exactly as the faces the model learnt from. Normalisation is not done here: it lives inside the
ONNX graph, and every consumer feeds raw 0..255 pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from deepfer.contract import FACE_SIZE
from deepfer.engine.pixels import as_uint8


def to_grey(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """HxW, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA) uint8 -> HxW uint8 grey."""
    if image.ndim == 2:
        return image
    channels = image.shape[2]
    if channels == 1:
        return image[:, :, 0]
    if channels == 3:
        return as_uint8(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    if channels == 4:
        return as_uint8(cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY))
    raise ValueError(f"expected 1, 3 or 4 channels, got {channels}")


def resize_face(grey: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Any HxW grey face crop -> 48x48 uint8.

    INTER_AREA when shrinking, because it averages like a camera sensor and does not alias the fine texture
    (wrinkles, teeth) that separates the emotions; INTER_CUBIC when enlarging a small face.
    """
    height, width = grey.shape
    if (height, width) == (FACE_SIZE, FACE_SIZE):
        return grey
    shrinking = height * width > FACE_SIZE * FACE_SIZE
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return as_uint8(cv2.resize(grey, (FACE_SIZE, FACE_SIZE), interpolation=interpolation))


def face_from_crop(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """An image that already is a face framed like FER2013 -> 48x48 uint8 grey.

    Used for the dataset's own faces in training and evaluation and for ``detect=false`` requests, so that both
    produce identical arrays for the same picture.
    """
    return resize_face(to_grey(image))


def to_batch(faces: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
    """k faces of 48x48 uint8 -> k x 48 x 48 x 1 float32 with raw values 0..255 (the ONNX input layout)."""
    if len(faces) == 0:
        return np.zeros((0, FACE_SIZE, FACE_SIZE, 1), dtype=np.float32)
    return np.stack(faces).astype(np.float32)[..., np.newaxis]


# FER2013's framing relative to a YuNet detection, fitted on the 390 faces YuNet found in the public scenes (where
# each ground-truth box is exactly the pasted 48x48 FER face): the median FER side is 1.254 YuNet box widths
# (spread 16%; inter-ocular distance spreads 28%, eye-to-mouth 18%, so the box width is the steadiest scale), and
# the FER centre sits 0.024 box widths above the box centre.
#
# `python -m bench.framing_fit --data fer2013.zip` re-measures this on scenes made from the validation split (no
# PublicTest face): side 1.237, centre 0.022 widths up. Accuracy on those 2,763 matched faces, shipped classifier
# v3.1 / v3 without its smoothing: ground-truth crop 68.4 / 68.2% (the upper bound) · this alignment 67.8 / 68.1%
# · same frame without rotation 67.9 / 67.6% · naive square crop of the YuNet box 68.0 / 67.0% · the YuNet box as
# is (non-square, squashed) 65.4 / 66.2%. A square frame is what matters; levelling the eyes is within noise on
# these upright-pasted faces, and is kept because real callers' faces roll further than FER's own.
FRAME_SIDE_PER_BOX_WIDTH = 1.254
FRAME_CENTRE_DY_PER_BOX_WIDTH = -0.024


def align_face(
    image: NDArray[np.uint8],
    box: tuple[float, float, float, float],
    landmarks: NDArray[np.float32],
) -> NDArray[np.uint8]:
    """A detected face -> 48x48 uint8 grey framed like FER2013.

    image: HxWx3 BGR (or any layout ``to_grey`` takes). box: (x, y, width, height) from the detector.
    landmarks: 5 x 2 (x, y), YuNet order, the first two being the eyes.

    The square FER frame (side and centre from the box, see the constants above) is turned so the eyes lie
    level, sampled at the source resolution with bilinear interpolation, then shrunk by ``resize_face`` exactly
    like a dataset face. Pixels outside the image repeat the border rather than turning black, because FER's
    own faces have no black margins for the model to read as a feature.
    """
    x, y, width, _ = box
    right_eye, left_eye = landmarks[0].astype(np.float64), landmarks[1].astype(np.float64)
    angle = float(np.degrees(np.arctan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0])))
    side = max(1, round(FRAME_SIDE_PER_BOX_WIDTH * width))
    centre_offset = np.array([0.0, FRAME_CENTRE_DY_PER_BOX_WIDTH * width])
    cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    centre = np.array([x + width / 2, y + box[3] / 2]) + np.array([[cos, -sin], [sin, cos]]) @ centre_offset
    # Source -> crop: rotate by -angle about the frame centre, then move that centre to the crop's centre.
    to_crop = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, 1.0)
    to_crop[:, 2] += side / 2 - centre
    crop = cv2.warpAffine(image, to_crop, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return resize_face(to_grey(as_uint8(crop)))


def sharpness(face: NDArray[np.uint8]) -> float:
    """48x48 uint8 grey face (``align_face`` or ``face_from_crop``) -> variance of its Laplacian, 0 and up.

    Measured on the classifier's own input, not the original crop, for two reasons: it says whether the face the
    emotion was judged on holds any detail, and every face is measured at the same 48x48 scale, so the figure
    is comparable across image and face sizes (a big soft face shrunk to 48x48 is sharp there; a small or
    blurred one enlarged to it is not). The Laplacian is the classic focus measure: blur removes exactly the
    high frequencies it responds to. FER2013's faces: median 2,150, 0.1st percentile 149 (PublicTest); the
    detector's colour blobs on the public scenes: 2-16.
    """
    return float(cv2.Laplacian(face, cv2.CV_64F).var())
