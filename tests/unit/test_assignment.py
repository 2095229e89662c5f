"""The Hungarian method against brute force on every shape up to 5 x 5, minimising and maximising."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from deepfer.tracking.assignment import linear_sum_assignment


def brute_force(cost: np.ndarray, maximize: bool) -> float:
    n, m = cost.shape
    if n <= m:
        totals = [cost[np.arange(n), list(p)].sum() for p in itertools.permutations(range(m), n)]
    else:
        totals = [cost[list(p), np.arange(m)].sum() for p in itertools.permutations(range(n), m)]
    return max(totals) if maximize else min(totals)


@pytest.mark.parametrize("maximize", [False, True])
def test_optimal_on_random_matrices_of_every_shape(maximize: bool) -> None:
    rng = np.random.default_rng(0)
    for n, m in itertools.product(range(1, 6), repeat=2):
        for _ in range(8):
            cost = rng.normal(size=(n, m)).round(1)  # rounded: ties between assignments happen
            rows, cols = linear_sum_assignment(cost, maximize=maximize)
            assert len(rows) == min(n, m) and len(set(rows)) == len(rows) and len(set(cols)) == len(cols)
            assert list(rows) == sorted(rows)
            assert cost[rows, cols].sum() == pytest.approx(brute_force(cost, maximize))


def test_refuses_what_has_no_assignment() -> None:
    with pytest.raises(ValueError):
        linear_sum_assignment(np.array([[1.0, np.inf]]))
