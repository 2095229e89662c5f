"""Calibration of the seven probabilities: temperature fit, expected calibration error, accuracy against coverage.

Customers read the numbers as confidences, so "0.8" should be right about 80% of the time. One temperature,
fitted on the validation split (Guo et al. 2017), keeps every argmax (accuracy is unchanged) and is cheap enough
to live inside the ONNX graph. It acts on the log of the final, flip-averaged probabilities, which is what the
graph outputs: ``p ** (1 / T)`` renormalised.

The fit minimises the calibration error itself by default, not the negative log-likelihood. For the averaged
file the two disagree: its NLL optimum left a 15-bin ECE of 0.033 on validation (the top bins overconfident),
while a temperature 5% softer reached 0.021 for +0.001 NLL. ECE on 3,600 faces is a noisy step function (a
face crossing a bin edge moves it), so the objective is its mean over 10, 15 and 20 bins.

NumPy only, like ``training.report``: a 1-D fit needs no optimiser library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

ECE_BINS = 15
# What the temperature minimises on validation: the calibration error (the default) or the NLL.
Objective = Literal["ece", "nll"]
OBJECTIVES: tuple[Objective, ...] = ("ece", "nll")
# Confidence thresholds for the accuracy-against-coverage table: withhold answers below each.
COVERAGE_THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def apply_temperature(probabilities: NDArray[np.floating], temperature: float) -> NDArray[np.float64]:
    """softmax(log p / T) row by row; T > 1 softens, T < 1 sharpens, the argmax never moves."""
    logits = np.log(np.clip(probabilities.astype(np.float64), 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def negative_log_likelihood(labels: NDArray[np.int64], probabilities: NDArray[np.floating]) -> float:
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))


def fit_temperature(
    labels: NDArray[np.int64], probabilities: NDArray[np.floating], objective: Objective = "ece"
) -> float:
    """The T in [0.25, 8] that minimises ``objective`` on these faces: a log-spaced grid, then a finer one around
    its best. NLL is convex in 1/T, so there the grid's minimum is the minimum; two rounds reach a step of ~0.1%
    in T, far below what a validation split can resolve."""

    def loss(temperature: float) -> float:
        tempered = apply_temperature(probabilities, temperature)
        if objective == "nll":
            return negative_log_likelihood(labels, tempered)
        return float(np.mean([reliability(labels, tempered, bins).expected_calibration_error for bins in (10, 15, 20)]))

    def best_of(grid: NDArray[np.float64]) -> int:
        return int(np.argmin([loss(t) for t in grid]))

    coarse = np.geomspace(0.25, 8.0, 121)
    best = best_of(coarse)
    fine = np.geomspace(coarse[max(best - 1, 0)], coarse[min(best + 1, len(coarse) - 1)], 41)
    return float(fine[best_of(fine)])


@dataclass(frozen=True)
class Reliability:
    """Per confidence bin: mean confidence, accuracy and count (empty bins have count 0)."""

    confidence: NDArray[np.float64]
    accuracy: NDArray[np.float64]
    count: NDArray[np.int64]

    @property
    def expected_calibration_error(self) -> float:
        """Sum over bins of |accuracy - confidence| weighted by the bin's share of the faces."""
        total = max(int(self.count.sum()), 1)
        return float(np.sum(self.count / total * np.abs(self.accuracy - self.confidence)))


def reliability(labels: NDArray[np.int64], probabilities: NDArray[np.floating], bins: int = ECE_BINS) -> Reliability:
    """Equal-width bins of the top probability over (0, 1], as ECE is usually reported."""
    confidence = probabilities.max(axis=1).astype(np.float64)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    safe = np.maximum(count, 1)
    return Reliability(
        confidence=np.bincount(index, weights=confidence, minlength=bins) / safe,
        accuracy=np.bincount(index, weights=correct, minlength=bins) / safe,
        count=count,
    )


def accuracy_at_coverage(labels: NDArray[np.int64], probabilities: NDArray[np.floating]) -> list[dict[str, float]]:
    """For each threshold: the share of faces answered (top probability >= threshold) and their accuracy."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    rows = []
    for threshold in COVERAGE_THRESHOLDS:
        answered = confidence >= threshold
        rows.append(
            {
                "threshold": threshold,
                "coverage": float(answered.mean()),
                "accuracy": float(correct[answered].mean()) if answered.any() else float("nan"),
            }
        )
    return rows
