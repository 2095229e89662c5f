"""Faces drawn onto an image: one look for ``deepfer predict --annotate`` and ``deepfer video --annotated``.

The colours are the browser demo's palette, so an annotated file, the plot and the page read alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from deepfer.wire import Face

#: BGR colours per emotion, the same palette as the browser demo (static/demo.css).
EMOTION_BGR: Final[dict[str, tuple[int, int, int]]] = {
    "angry": (40, 39, 214),
    "disgust": (44, 160, 44),
    "fear": (189, 103, 148),
    "happy": (0, 168, 230),
    "sad": (180, 119, 31),
    "surprise": (14, 127, 255),
    "neutral": (127, 127, 127),
}


#: The label's text height above the baseline (``cv2.getTextSize``'s height) as a share of the frame's shorter side:
#: 27 px on a 1080p frame, 54 px on 4K, about a broadcast caption's size, so it reads at the size a video is watched.
TEXT_SHARE: Final = 0.025
#: ...but never under 10 px, about the smallest at which Hershey's simplex font stays legible (4.2 % of 240 px).
MIN_TEXT_PX: Final = 10
FONT: Final = cv2.FONT_HERSHEY_SIMPLEX


def text_style(frame_shape: tuple[int, ...]) -> tuple[float, int]:
    """(font scale, stroke thickness) giving text TEXT_SHARE of the frame's shorter side: a fixed scale is
    unreadable on a 4K frame and covers the faces on a small one."""
    height_px = max(MIN_TEXT_PX, round(TEXT_SHARE * min(frame_shape[:2])))
    thickness = max(1, round(height_px / 14))  # a stroke of 1 px up to 20 px text, 3 px on 4K
    return cv2.getFontScaleFromHeight(FONT, height_px, thickness), thickness


def draw_faces(frame: NDArray[np.uint8], faces: Sequence[Face]) -> NDArray[np.uint8]:
    """A copy of the BGR image with each face's box and "emotion NN%" drawn in the emotion's colour."""
    out = frame.copy()
    thickness = max(2, round(min(frame.shape[:2]) / 240))
    scale, stroke = text_style(frame.shape)
    for face in faces:
        box = face.box
        colour = EMOTION_BGR.get(face.emotion, (255, 255, 255))
        cv2.rectangle(out, (box.x, box.y), (box.x + box.width, box.y + box.height), colour, thickness)
        text = f"{face.emotion} {getattr(face.probabilities, face.emotion):.0%}"
        (text_w, text_h), baseline = cv2.getTextSize(text, FONT, scale, stroke)
        pad = max(2, text_h // 5)
        top = max(0, box.y - text_h - baseline - 2 * pad)
        cv2.rectangle(
            out, (box.x, top), (box.x + text_w + 2 * pad, top + text_h + baseline + 2 * pad), colour, cv2.FILLED
        )
        cv2.putText(out, text, (box.x + pad, top + pad + text_h), FONT, scale, (255, 255, 255), stroke, cv2.LINE_AA)
    return out
