"""The v5 recipe's pieces in seconds: the augmentation layer, the camera conditions and the calibration fit."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from tests.imaging import committed_faces, face_batch
from training.calibration import (
    OBJECTIVES,
    Objective,
    accuracy_at_coverage,
    apply_temperature,
    fit_temperature,
    negative_log_likelihood,
    reliability,
)
from training.conditions import CONDITIONS, apply_condition


@pytest.fixture(scope="module")
def augment() -> type:
    """FaceAugment, imported lazily so the calibration tests run without the training extra."""
    pytest.importorskip("keras", reason="the training extra is not installed (pip install -e '.[train]')")
    from training.augment import FaceAugment

    return FaceAugment


def test_inference_is_the_exact_centre_crop(augment: type) -> None:
    faces = face_batch()
    out = np.asarray(augment(40)(faces, training=False))
    np.testing.assert_array_equal(out, faces[:, 4:44, 4:44])


def test_without_rotation_and_scale_a_training_crop_is_not_resampled(augment: type) -> None:
    """Every output is exactly one of the 9x9 integer crops of the face or its mirror: no interpolation."""
    faces = face_batch()
    layer = augment(40, seed=5, affine_p=0.0, photometric_p=0.0, blur_p=0.0, noise_p=0.0, erase_p=0.0)
    out = np.asarray(layer(faces, training=True))[..., 0]
    for got, face in zip(out, faces[..., 0], strict=True):
        crops = [v[a : a + 40, b : b + 40] for v in (face, face[:, ::-1]) for a in range(9) for b in range(9)]
        assert any(np.array_equal(got, crop) for crop in crops)


def test_blur_is_opencvs_gaussian(augment: type) -> None:
    faces = face_batch()[:, :40, :40]
    layer, twin = augment(40, seed=3, blur_p=1.0), augment(40, seed=3, blur_p=1.0)
    sigma = float(twin._uniform((), 0.5, 1.3))  # the twin draws the same sigma from the same seed
    got = np.asarray(layer._blur(faces, len(faces)))[..., 0]
    expected = [cv2.GaussianBlur(f[..., 0], (5, 5), sigma, borderType=cv2.BORDER_REFLECT_101) for f in faces]
    np.testing.assert_allclose(got, np.stack(expected), atol=1e-3)


def test_erasing_covers_2_to_25_percent_of_a_crop(augment: type) -> None:
    faces = np.full((64, 40, 40, 1), 100.0, dtype=np.float32)
    layer = augment(40, seed=9, erase_p=1.0)
    changed = (np.asarray(layer._erase(faces, 64)) != 100.0).mean(axis=(1, 2, 3))
    assert changed.min() > 0.005 and changed.max() <= 0.26


def test_training_output_stays_in_the_contracts_range(augment: type) -> None:
    out = np.asarray(augment(40, seed=1)(face_batch(), training=True))
    assert out.shape == (len(face_batch()), 40, 40, 1)
    assert out.min() >= 0.0 and out.max() <= 255.0
    assert not np.array_equal(out, face_batch()[:, 4:44, 4:44])


def batches_of(faces: np.ndarray, *, training: bool, jpeg_p: float) -> object:
    from training.batches import FaceBatches
    from training.config import TrainConfig
    from training.data import FaceSet

    labels = np.arange(len(faces), dtype=np.int64) % 7
    return FaceBatches(FaceSet(faces, labels), TrainConfig(batch_size=8, jpeg_p=jpeg_p), training=training)


def test_training_batches_are_shuffled_per_epoch_and_keep_each_face_with_its_label(augment: type) -> None:
    faces = committed_faces()
    batches = batches_of(faces, training=True, jpeg_p=0.0)
    epochs = []
    for _ in range(2):
        x, y = (np.concatenate(part) for part in zip(*(batches[i] for i in range(len(batches))), strict=True))
        assert x.dtype == np.float32 and x.shape == (len(faces), 48, 48, 1)
        originals = {face.tobytes(): i % 7 for i, face in enumerate(faces)}
        assert [originals[face[..., 0].astype(np.uint8).tobytes()] for face in x] == list(y.argmax(axis=1))
        epochs.append(x)
        batches.on_epoch_end()
    assert not np.array_equal(epochs[0], epochs[1])  # a new order each epoch
    again = batches_of(faces, training=True, jpeg_p=0.0)
    np.testing.assert_array_equal(np.concatenate([again[i][0] for i in range(len(again))]), epochs[0])  # seeded


def test_jpeg_recompression_touches_its_share_of_training_faces_only(augment: type) -> None:
    faces = np.concatenate([committed_faces()] * 8)
    train = batches_of(faces, training=True, jpeg_p=0.25)
    x = np.concatenate([train[i][0] for i in range(len(train))])[..., 0]
    untouched = {face.tobytes() for face in faces}
    share = np.mean([face.astype(np.uint8).tobytes() not in untouched for face in x])
    assert 0.1 < share < 0.4, share
    validation = batches_of(faces, training=False, jpeg_p=0.25)
    np.testing.assert_array_equal(np.concatenate([validation[i][0] for i in range(len(validation))])[..., 0], faces)


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_each_condition_degrades_the_faces_reproducibly(name: str) -> None:
    faces = committed_faces()
    degraded = apply_condition(name, faces, seed=3)
    assert degraded.shape == faces.shape and degraded.dtype == np.uint8
    assert np.abs(degraded.astype(int) - faces).mean() > 1.0
    np.testing.assert_array_equal(degraded, apply_condition(name, faces, seed=3))


def drawn_at_temperature_2() -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Labels drawn from softmax(z / 2), and the overconfident probabilities softmax(z)."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 3.0, (20000, 7))
    overconfident = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    true = apply_temperature(overconfident, 2.0)
    return np.array([rng.choice(7, p=row) for row in true]), overconfident


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_fit_recovers_the_temperature_the_labels_were_drawn_with(objective: Objective) -> None:
    labels, overconfident = drawn_at_temperature_2()
    temperature = fit_temperature(labels, overconfident, objective)
    assert temperature == pytest.approx(2.0, rel=0.05)
    calibrated = apply_temperature(overconfident, temperature)
    assert negative_log_likelihood(labels, calibrated) < negative_log_likelihood(labels, overconfident)
    assert reliability(labels, calibrated).expected_calibration_error < 0.02
    assert reliability(labels, overconfident).expected_calibration_error > 0.1
    np.testing.assert_array_equal(calibrated.argmax(1), overconfident.argmax(1))


def test_the_ece_fit_beats_the_nll_fit_on_ece_where_one_temperature_cannot_fix_both() -> None:
    """A quarter of the labels replaced at random: no temperature makes these probabilities calibrated, and the
    NLL optimum (pulled by the confident mistakes) then leaves more calibration error than the ECE fit."""
    labels, overconfident = drawn_at_temperature_2()
    rng = np.random.default_rng(1)
    noisy = np.where(rng.random(len(labels)) < 0.25, rng.integers(0, 7, len(labels)), labels)
    by_ece, by_nll = (apply_temperature(overconfident, fit_temperature(noisy, overconfident, o)) for o in OBJECTIVES)
    ece = reliability(noisy, by_ece).expected_calibration_error
    assert ece < reliability(noisy, by_nll).expected_calibration_error - 0.005


def test_reliability_bins_and_coverage_by_hand() -> None:
    # Two faces at 0.95 (one right), two at 0.55 (both right): bins 14 and 8 of 15.
    probabilities = np.full((4, 7), 0.0)
    probabilities[0, 0] = probabilities[1, 1] = 0.95
    probabilities[2, 2] = probabilities[3, 3] = 0.55
    labels = np.array([0, 0, 2, 3])
    curve = reliability(labels, probabilities)
    assert curve.count[14] == 2 and curve.count[8] == 2 and curve.count.sum() == 4
    assert curve.expected_calibration_error == pytest.approx(0.5 * abs(0.5 - 0.95) + 0.5 * abs(1.0 - 0.55))
    rows = {row["threshold"]: row for row in accuracy_at_coverage(labels, probabilities)}
    assert rows[0.0]["coverage"] == 1.0 and rows[0.0]["accuracy"] == 0.75
    assert rows[0.9]["coverage"] == 0.5 and rows[0.9]["accuracy"] == 0.5
