"""Two classifier files, face by face, on the validation split they share: are they apart beyond noise?

Why paired: two files scored on the same faces differ only where one is right and the other wrong, so the spread
of their difference is the square root of those discordant faces (a sign test), far tighter than two accuracies'
separate intervals. docs/model.md's choices between candidates rest on this count.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, computed_field

from deepfer.engine.align import to_batch
from deepfer.engine.classifier import EmotionClassifier
from training.data import FaceSet, SplitUnknownError, sha256_of, split_errors_exit, validation_faces


class PairedComparison(BaseModel):
    faces: int
    accuracy_a: float
    accuracy_b: float
    only_a_right: int
    only_b_right: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def faces_apart(self) -> int:
        return self.only_a_right - self.only_b_right

    @computed_field  # type: ignore[prop-decorator]
    @property
    def paired_spread(self) -> float:
        """One standard deviation of ``faces_apart`` if the two files were equally accurate."""
        return math.sqrt(self.only_a_right + self.only_b_right)


def compare(
    labels: NDArray[np.int64], predicted_a: NDArray[np.int64], predicted_b: NDArray[np.int64]
) -> PairedComparison:
    right_a, right_b = predicted_a == labels, predicted_b == labels
    return PairedComparison(
        faces=len(labels),
        accuracy_a=float(right_a.mean()),
        accuracy_b=float(right_b.mean()),
        only_a_right=int((right_a & ~right_b).sum()),
        only_b_right=int((~right_a & right_b).sum()),
    )


def shared_validation(models: list[EmotionClassifier], paths: list[Path], data: Path) -> FaceSet:
    """The validation faces of both files, which must be the same split: otherwise one scores its training faces."""
    data_sha256 = sha256_of(data)
    splits = [
        validation_faces(path, data, model.model.metadata, data_sha256)
        for model, path in zip(models, paths, strict=True)
    ]
    (faces, chosen_a), (_, chosen_b) = splits
    if chosen_a != chosen_b:
        raise SplitUnknownError(
            f"{paths[0]} and {paths[1]} hold out different validation splits: {chosen_a} vs {chosen_b}"
        )
    return faces


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.compare", description=__doc__)
    parser.add_argument("model_a", type=Path)
    parser.add_argument("model_b", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="Kaggle-layout FER2013 folder or zip")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    paths = [args.model_a, args.model_b]
    models = [EmotionClassifier(path, intra_op_threads=0) for path in paths]
    faces = shared_validation(models, paths, args.data)
    predicted = [model.run_in_batches(to_batch(faces.faces), args.batch_size).argmax(axis=1) for model in models]
    result = compare(faces.labels, *predicted)
    print(result.model_dump_json())
    return 0


if __name__ == "__main__":
    with split_errors_exit():
        raise SystemExit(main())
