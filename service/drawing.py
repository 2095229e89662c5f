"""Faces drawn onto an image: one look for ``deepfer predict --annotate`` and ``deepfer video --annotated``.

The colours are the browser demo's palette, so an annotated file, the plot and the page read alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from deepfer.http.schemas import Face

#: BGR colours per emotion, the same palette as the browser demo (static/demo.js).
EMOTION_BGR: Final[dict[str, tuple[int, int, int]]] = {
    "angry": (40, 39, 214),
    "disgust": (44, 160, 44),
    "fear": (189, 103, 148),
    "happy": (0, 168, 230),
    "sad": (180, 119, 31),
    "surprise": (14, 127, 255),
    "neutral": (127, 127, 127),
}


def draw_faces(frame: NDArray[np.uint8], faces: Sequence[Face]) -> NDArray[np.uint8]:
    """A copy of the BGR image with each face's box and "emotion NN%" drawn in the emotion's colour."""
    out = frame.copy()
    thickness = max(2, round(min(frame.shape[:2]) / 240))
    for face in faces:
        box = face.box
        colour = EMOTION_BGR.get(face.emotion, (255, 255, 255))
        cv2.rectangle(out, (box.x, box.y), (box.x + box.width, box.y + box.height), colour, thickness)
        text = f"{face.emotion} {getattr(face.probabilities, face.emotion):.0%}"
        (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1)
        top = max(0, box.y - text_h - baseline - 4)
        cv2.rectangle(out, (box.x, top), (box.x + text_w + 6, top + text_h + baseline + 4), colour, cv2.FILLED)
        cv2.putText(
            out,
            text,
            (box.x + 3, top + text_h + 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.6,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
    return out
