"""Item-item similarity from co-occurrence counts: cosine, or Pearson over occurrence
indicators, for one pair or as the per-slot terms of a ranking's scores."""

from __future__ import annotations

import math

import numpy as np

from models.recommenders.cooc_counts import CoocCounts

SIMILARITIES = ("cosine", "pearson")


def slot_terms(
    kind: str, counts: CoocCounts, rows: np.ndarray, recency: np.ndarray, total: float
) -> tuple[np.ndarray, np.ndarray]:
    """For history ``rows`` weighted ``recency``: one term per neighbour slot of those
    rows (flat, row by row) and a per-item factor, so that a candidate c scores
    ``factor[c] * sum(terms of the slots holding c)`` (``total`` is N, for Pearson)."""
    if kind == "pearson":
        return _pearson_terms(counts, rows, recency, total)
    inv_sqrt_n = counts.inv_sqrt_n
    weights = recency * inv_sqrt_n[rows]
    return (counts.co[rows] * weights[:, None]).ravel(), inv_sqrt_n


def _pearson_terms(
    counts: CoocCounts, rows: np.ndarray, recency: np.ndarray, total: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-slot terms ``recency(h) * (N co[h][c] - n[h] n[c]) / sqrt(n[h] (N - n[h]))``
    and the per-item factor ``1 / sqrt(n[c] (N - n[c]))`` that completes them.

    Only stored neighbours get a term: an item never seen with h has co = 0, so its
    correlation with h is negative and could not lift it into the top k anyway.
    """
    n = counts.n
    # An item holding all the weight has no variance; its correlations are undefined.
    spread = np.maximum(n * (total - n), 1e-12 * max(total, 1.0) ** 2)
    inv = np.where(n > 0, 1.0 / np.sqrt(spread), 0.0)
    co = counts.co[rows].astype(np.float64)
    centred = total * co - n[rows][:, None] * n[counts.nb[rows]]
    centred[co <= 0] = 0.0  # empty slots
    weights = recency * inv[rows]
    return (centred * weights[:, None]).ravel(), inv


def pair_similarity(kind: str, counts: CoocCounts, i: int, j: int, total: float) -> float:
    """The similarity of rows ``i`` and ``j`` (distinct); 0.0 if ``i`` does not keep ``j``
    as a neighbour, or for Pearson when either item has no variance."""
    slot = np.flatnonzero(counts.nb[i] == j)
    if not slot.size:
        return 0.0
    co = float(counts.co[i, slot[0]])
    if kind == "pearson":
        ni, nj = float(counts.n[i]), float(counts.n[j])
        spread = ni * (total - ni) * nj * (total - nj)
        return (total * co - ni * nj) / math.sqrt(spread) if spread > 0 else 0.0
    return co * float(counts.inv_sqrt_n[i] * counts.inv_sqrt_n[j])
