"""Evaluation metrics against cases small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="the training extra is not installed (pip install -e '.[train]')")

from training.report import confusion_matrix, roc_curve, score


def one_hot(predicted: list[int]) -> np.ndarray:
    probabilities = np.full((len(predicted), 7), 0.01, dtype=np.float32)
    probabilities[np.arange(len(predicted)), predicted] = 0.94
    return probabilities


def test_confusion_matrix_counts_true_rows_and_predicted_columns() -> None:
    matrix = confusion_matrix(np.array([0, 0, 3, 3, 3]), np.array([0, 3, 3, 3, 6]))
    assert matrix[0, 0] == 1 and matrix[0, 3] == 1 and matrix[3, 3] == 2 and matrix[3, 6] == 1
    assert matrix.sum() == 5


def test_score_matches_hand_computed_precision_recall_f1() -> None:
    labels = np.array([0, 0, 3, 3, 3, 6])
    result = score(labels, one_hot([0, 3, 3, 3, 6, 6]))
    assert result["accuracy"] == pytest.approx(4 / 6)
    happy = result["per_class"]["happy"]  # 3 true happy, 4 predicted happy, 2 right
    assert happy["precision"] == pytest.approx(2 / 3)
    assert happy["recall"] == pytest.approx(2 / 3)
    angry = result["per_class"]["angry"]  # precision 1/1, recall 1/2
    assert angry["f1"] == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert result["per_class"]["disgust"]["support"] == 0
    assert result["per_class"]["disgust"]["auc"] is None  # no disgust face: its one-vs-rest AUC is undefined


def test_roc_auc_of_perfect_random_and_inverted_rankings() -> None:
    positive = np.array([True, True, False, False])
    assert roc_curve(positive, np.array([0.9, 0.8, 0.2, 0.1]))[2] == pytest.approx(1.0)
    assert roc_curve(positive, np.array([0.1, 0.2, 0.8, 0.9]))[2] == pytest.approx(0.0)
    assert roc_curve(positive, np.array([0.5, 0.5, 0.5, 0.5]))[2] == pytest.approx(0.5)
