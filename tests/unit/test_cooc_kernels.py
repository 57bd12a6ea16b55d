"""The compiled co-occurrence kernels against the numpy they replaced."""

from __future__ import annotations

import numpy as np
import pytest

from models.recommenders.cooc_ranking import _best_rows


def numpy_best_rows(column: np.ndarray, picked: np.ndarray, nb: np.ndarray,
                    contrib: np.ndarray, n_rows: int) -> np.ndarray:
    column[picked] = np.arange(picked.size)
    try:
        pos = np.take(column, nb)
    finally:
        column[picked] = -1
    flat = np.flatnonzero(pos >= 0)
    terms = np.zeros((n_rows, picked.size))
    terms[flat // (nb.size // n_rows), pos[flat]] = contrib[flat]
    return terms.argmax(axis=0)


@pytest.mark.parametrize("seed", range(8))
def test_best_rows_is_what_numpy_picks_with_ties_and_negative_terms(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_items, width = 60, 6
    for _ in range(200):
        n_rows = int(rng.integers(1, 8))
        nb = np.stack([rng.choice(n_items, width, replace=False) for _ in range(n_rows)])
        nb = nb.astype(np.int32).ravel()
        # Few distinct values, some negative (Pearson terms), so ties are common.
        contrib = rng.choice([-1.0, 0.0, 0.5, 1.0, 2.0], nb.size)
        picked = rng.choice(n_items, int(rng.integers(1, 12)), replace=False).astype(np.intp)
        column = np.full(n_items, -1, dtype=np.intp)
        got = _best_rows(column, picked, nb, contrib, n_rows)
        assert (column == -1).all()  # the scratch is put back
        np.testing.assert_array_equal(got, numpy_best_rows(column, picked, nb, contrib, n_rows))
