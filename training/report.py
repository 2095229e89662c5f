"""Evaluation figures and tables from predicted probabilities: no model code, so any scorer can reuse it.

Confusion matrix, precision/recall/F1 and one-vs-rest ROC/AUC come from scikit-learn, the field's reference
implementation, so the figures mean exactly what a reader expects; tests/training/test_report.py checks them
against cases small enough to compute by hand. Calibration (ECE, NLL, coverage) is ``training.calibration``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: reports are written on servers and in CI

import matplotlib.pyplot as plt
import numpy as np
from numpy.typing import NDArray
from sklearn import metrics as sk

from deepfer.contract import LABELS
from training.calibration import ECE_BINS, Reliability, accuracy_at_coverage, negative_log_likelihood, reliability


@dataclass(frozen=True)
class ClassScores:
    precision: float
    recall: float
    f1: float
    support: int
    auc: float | None  # None when the split holds no face of the class (or only faces of it): AUC is undefined


def confusion_matrix(labels: NDArray[np.int64], predicted: NDArray[np.int64]) -> NDArray[np.int64]:
    """Rows are true classes, columns predicted classes, all seven even when a class is absent."""
    matrix: NDArray[np.int64] = sk.confusion_matrix(labels, predicted, labels=range(len(LABELS)))
    return matrix


def roc_curve(is_positive: NDArray[np.bool_], score: NDArray[np.float64]) -> tuple[NDArray, NDArray, float]:
    """(false positive rates, true positive rates, AUC) of one class against the rest; ties share a step."""
    fpr, tpr, _ = sk.roc_curve(is_positive, score)
    return fpr, tpr, float(sk.auc(fpr, tpr))


def score(labels: NDArray[np.int64], probabilities: NDArray[np.float32]) -> dict[str, Any]:
    """Accuracy, macro F1 and the per-class table for N labels and N x 7 probabilities."""
    predicted = probabilities.argmax(axis=1)
    classes = list(range(len(LABELS)))
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
    )
    per_class: dict[str, ClassScores] = {}
    for index, name in enumerate(LABELS):
        is_positive = labels == index
        defined = 0 < is_positive.sum() < len(labels)
        auc = float(sk.roc_auc_score(is_positive, probabilities[:, index])) if defined else None
        per_class[name] = ClassScores(
            float(precision[index]), float(recall[index]), float(f1[index]), int(support[index]), auc
        )
    aucs = [s.auc for s in per_class.values() if s.auc is not None]
    return {
        "count": len(labels),
        "accuracy": float(sk.accuracy_score(labels, predicted)),
        "macro_f1": float(np.mean(f1)),
        "macro_auc": float(np.mean(aucs)) if aucs else None,
        f"ece_{ECE_BINS}_bins": reliability(labels, probabilities).expected_calibration_error,
        "nll": negative_log_likelihood(labels, probabilities),
        "accuracy_at_coverage": accuracy_at_coverage(labels, probabilities),
        "per_class": {name: vars(s) for name, s in per_class.items()},
        "confusion_matrix": confusion_matrix(labels, predicted).tolist(),
    }


def plot_confusion(matrix: NDArray[np.int64], path: Path) -> None:
    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    figure, axes = plt.subplots(figsize=(7, 6))
    image = axes.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for (row, col), count in np.ndenumerate(matrix):
        colour = "white" if normalised[row, col] > 0.5 else "black"
        axes.text(col, row, f"{count}\n{normalised[row, col]:.0%}", ha="center", va="center", fontsize=7, color=colour)
    axes.set(
        xticks=range(len(LABELS)),
        yticks=range(len(LABELS)),
        xticklabels=LABELS,
        yticklabels=LABELS,
        xlabel="predicted",
        ylabel="true",
        title="Confusion matrix (row-normalised)",
    )
    plt.setp(axes.get_xticklabels(), rotation=45, ha="right")
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_roc(labels: NDArray[np.int64], probabilities: NDArray[np.float32], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(6, 6))
    for index, name in enumerate(LABELS):
        fpr, tpr, auc = roc_curve(labels == index, probabilities[:, index].astype(np.float64))
        axes.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title="One-vs-rest ROC")
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_reliability(curves: dict[str, Reliability], path: Path) -> None:
    """Accuracy against confidence per bin, one line per named set of probabilities (e.g. before/after)."""
    figure, axes = plt.subplots(figsize=(6, 6))
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8, label="perfect calibration")
    for name, curve in curves.items():
        filled = curve.count > 0
        axes.plot(
            curve.confidence[filled],
            curve.accuracy[filled],
            marker="o",
            label=f"{name} (ECE {curve.expected_calibration_error:.3f})",
        )
    axes.set(xlabel="confidence (top probability)", ylabel="accuracy", title=f"Reliability, {ECE_BINS} bins")
    axes.set(xlim=(0, 1), ylim=(0, 1))
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def coverage_table(scores: dict[str, Any]) -> str:
    """Markdown: what accuracy a user gets when answers below a confidence are withheld."""
    lines = ["| withhold below | answered | accuracy of answers |", "|---|---|---|"]
    for row in scores["accuracy_at_coverage"]:
        lines.append(f"| {row['threshold']:.1f} | {row['coverage']:.1%} | {row['accuracy']:.1%} |")
    return "\n".join(lines)


def plot_history(history_csv: Path, path: Path) -> bool:
    """Training/validation accuracy and loss per epoch from Keras' CSVLogger file; False when it is absent."""
    if not history_csv.is_file():
        return False
    with history_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return False
    epochs = [int(row["epoch"]) + 1 for row in rows]
    figure, (acc_axes, loss_axes) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("accuracy", "train"), ("val_accuracy", "validation")):
        acc_axes.plot(epochs, [float(row[key]) for row in rows], label=label)
    for key, label in (("loss", "train"), ("val_loss", "validation")):
        loss_axes.plot(epochs, [float(row[key]) for row in rows], label=label)
    acc_axes.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    loss_axes.set(xlabel="epoch", ylabel="loss", title="Loss (incl. L2)")
    acc_axes.legend()
    loss_axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def per_class_table(scores: dict[str, Any]) -> str:
    """Markdown table of the per-class scores, for the report folder and the README."""
    lines = ["| class | precision | recall | F1 | AUC | support |", "|---|---|---|---|---|---|"]
    for name, s in scores["per_class"].items():
        auc = "-" if s["auc"] is None else f"{s['auc']:.3f}"
        lines.append(f"| {name} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {auc} | {s['support']} |")
    macro_auc = "-" if scores["macro_auc"] is None else f"{scores['macro_auc']:.3f}"
    lines.append(f"| **all** | | | **macro {scores['macro_f1']:.3f}** | **macro {macro_auc}** | {scores['count']} |")
    return "\n".join(lines)


def write_report(
    out: Path,
    labels: NDArray[np.int64],
    probabilities: NDArray[np.float32],
    extra: dict[str, Any],
    history_csv: Path | None = None,
) -> dict[str, Any]:
    """Write metrics.json, per_class.md and the PNG figures into ``out``; return the metrics."""
    out.mkdir(parents=True, exist_ok=True)
    scores = score(labels, probabilities)
    plot_confusion(np.asarray(scores["confusion_matrix"]), out / "confusion_matrix.png")
    plot_roc(labels, probabilities, out / "roc.png")
    plot_reliability({"this model": reliability(labels, probabilities)}, out / "reliability.png")
    figures = ["confusion_matrix.png", "roc.png", "reliability.png"]
    if history_csv is not None and plot_history(history_csv, out / "training_curves.png"):
        figures.append("training_curves.png")
    report = {**extra, **scores, "figures": figures}
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "per_class.md").write_text(per_class_table(scores) + "\n\n" + coverage_table(scores) + "\n")
    return report
