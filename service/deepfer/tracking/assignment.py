"""Optimal assignment of rows to columns (the Hungarian method, Kuhn-Munkres with potentials), in NumPy.

Why not ``scipy.optimize.linear_sum_assignment``: it is the only thing the service would take from SciPy, and
SciPy adds 143 MB to the image, which broke its 600 MB limit. Tracking assigns a few faces to a few tracks per
frame, so an O(n^2 m) loop over at most tens of rows costs microseconds. Same contract as SciPy's: each row of
the smaller side gets one distinct column, the total is optimal, results are sorted by row.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def linear_sum_assignment(
    cost: NDArray[np.floating], maximize: bool = False
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(rows, columns) of an optimal assignment of the n x m matrix, min(n, m) pairs."""
    matrix = np.asarray(cost, dtype=np.float64)
    if matrix.ndim != 2 or not np.isfinite(matrix).all():
        raise ValueError("cost must be a finite 2-D matrix")
    if maximize:
        matrix = -matrix
    transposed = matrix.shape[0] > matrix.shape[1]
    if transposed:
        matrix = matrix.T
    rows, cols = _hungarian(matrix)
    if transposed:
        rows, cols = cols, rows
    order = np.argsort(rows)
    return rows[order], cols[order]


def _hungarian(cost: NDArray[np.float64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Rows n <= columns m; potentials u, v keep every reduced cost >= 0, one row added per outer step."""
    n, m = cost.shape
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    owner = np.zeros(m + 1, dtype=np.int64)  # owner[j]: the row (1-based) holding column j; column 0 is a sentinel
    way = np.zeros(m + 1, dtype=np.int64)
    for row in range(1, n + 1):
        owner[0], column = row, 0
        slack = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while owner[column] != 0:
            used[column] = True
            current = owner[column]
            reduced = cost[current - 1] - u[current] - v[1:]
            better = ~used[1:] & (reduced < slack[1:])
            slack[1:][better] = reduced[better]
            way[1:][better] = column
            free = np.flatnonzero(~used[1:]) + 1
            nearest = free[np.argmin(slack[free])]
            delta = slack[nearest]
            u[owner[used]] += delta
            v[used] -= delta
            slack[~used] -= delta
            column = nearest
        while column:
            previous = way[column]
            owner[column] = owner[previous]
            column = previous
    taken = np.flatnonzero(owner[1:]) + 1
    return owner[taken] - 1, taken - 1
