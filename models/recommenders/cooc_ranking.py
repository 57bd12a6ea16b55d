"""Co-occurrence ranking's last steps: the scored candidates, the top k of them with
deterministic ties, each pick's reason, and the fallback's top-up."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import numpy as np
from numba import njit

from models.recommenders.catalogue import Catalogue
from models.recommenders.cooc_counts import CoocCounts
from models.recommenders.popularity import Popularity, as_lookup
from models.recommenders.topk import cut_value

STRATEGY = "cooccurrence"


def candidates(sums: np.ndarray, nb: np.ndarray, scan_all_below: int) -> np.ndarray:
    """The items with a score sum > 0, in index order: ``sums`` is per item, ``nb`` the
    neighbour slots read. Scans every item while there are fewer than ``scan_all_below``
    per slot, else sorts the slots (both give the same result).

    >>> candidates(np.array([0.0, 2.0, 0.0, 1.0]), np.array([3, 1, 3]), 8).tolist()
    [1, 3]
    """
    if sums.size > scan_all_below * nb.size:
        # Big catalogue: scanning every item costs more than sorting the few touched.
        touched = np.sort(nb)
        touched = touched[np.concatenate(([True], touched[1:] != touched[:-1]))]
        return touched[sums[touched] > 0.0]
    return np.flatnonzero(sums > 0.0)


def pick(
    cands: np.ndarray, scores: np.ndarray, ids: list[str], history: Sequence[str],
    exclude: Collection[str], k: int, catalogue: Catalogue | None,
) -> tuple[list[int], list[float]]:
    """Up to ``k`` candidates by score (best first, ties: lower index), none of
    ``history``, ``exclude`` or the catalogue's unavailable items, with their scores.

    Sorts a prefix of ``2k + 8 + len(history)`` candidates, four times longer each
    round while too many of them are skipped, so a call rarely sorts them all.
    """
    excluded = as_lookup(exclude) if exclude else ()
    unavailable = catalogue.unavailable() if catalogue is not None else ()
    seen = set(history)
    picked: list[int] = []
    picked_scores: list[float] = []
    want = 2 * k + 8 + len(seen)
    done = 0
    while True:
        best_c, best_scores = best(cands, scores, want)
        for c, score in zip(best_c[done:].tolist(), best_scores[done:].tolist(), strict=True):
            item_id = ids[c]
            if item_id in seen or item_id in excluded or item_id in unavailable:
                continue
            picked.append(c)
            picked_scores.append(score)
            if len(picked) == k:
                return picked, picked_scores
        if best_c.size == cands.size:
            return picked, picked_scores
        done = best_c.size
        want *= 4


def best(cands: np.ndarray, scores: np.ndarray, want: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``want`` best candidates and their scores, by score then index.

    >>> [a.tolist() for a in best(np.array([4, 7, 9]), np.array([1.0, 2.0, 1.0]), 2)]
    [[7, 4], [2.0, 1.0]]
    """
    if cands.size > want:
        # Keep every tie at the cut, so the result does not depend on ``want``.
        cut = cut_value(scores, want)
        keep = np.flatnonzero(scores >= cut)
        cands, scores = cands[keep], scores[keep]
    order = np.lexsort((cands, -scores))[:want]
    return cands[order], scores[order]


def explainer(
    counts: CoocCounts, picked: list[int], rows: np.ndarray, nb: np.ndarray,
    contrib: np.ndarray, catalogue: Catalogue | None,
) -> Callable[[Sequence[int]], list[tuple[str, str]]]:
    """The ``Ranked.explain`` of the ``picked`` items, scored from the history ``rows``
    whose slots ``nb`` added ``contrib`` (valid until the counts change)."""

    def explain(positions: Sequence[int]) -> list[tuple[str, str]]:
        if not positions:
            return []
        chosen = np.array([picked[p] for p in positions], dtype=np.intp)
        return [(reason, STRATEGY)
                for reason in _reasons(counts, chosen, rows, nb, contrib, catalogue)]

    return explain


def _reasons(
    counts: CoocCounts, picked: np.ndarray, rows: np.ndarray, nb: np.ndarray,
    contrib: np.ndarray, catalogue: Catalogue | None,
) -> list[str]:
    # For each picked item, the history row with the largest term in its score.
    best_rows = rows[_best_rows(counts.column, picked, nb, contrib, rows.size)].tolist()
    ids = counts.ids
    title = catalogue.title if catalogue is not None else str
    return [f"similar to {title(ids[h])} you viewed" for h in best_rows]


@njit(cache=True)
def _best_rows(column: np.ndarray, picked: np.ndarray, nb: np.ndarray, contrib: np.ndarray,
               n_rows: int) -> np.ndarray:
    """For each of ``picked``, the position of the history row (``nb`` holds their slots,
    row by row, ``contrib`` their terms) whose term in its score is the largest; the first
    such row on ties (the most recent item), the first row if none holds it. ``column``
    maps item -> position and is all -1 between calls (scratch, put back).

    Compiled: a handful of numpy calls on a (rows x picked) table cost ~30 us a request.
    """
    width = nb.size // n_rows
    for p in range(picked.size):
        column[picked[p]] = p
    terms = np.zeros((n_rows, picked.size))
    for f in range(nb.size):
        p = column[nb[f]]
        if p >= 0:
            terms[f // width, p] = contrib[f]
    for p in range(picked.size):
        column[picked[p]] = -1
    out = np.empty(picked.size, dtype=np.int64)
    for p in range(picked.size):
        b = 0
        for r in range(1, n_rows):
            if terms[r, p] > terms[b, p]:
                b = r
        out[p] = b
    return out


def fill(
    fallback: Popularity, ids: list[str], scores: list[float], history: Sequence[str],
    exclude: Collection[str], k: int, catalogue: Catalogue | None,
) -> None:
    """Top ``ids`` and ``scores`` up to ``k`` from ``fallback``'s ranking, skipping items
    already in them, in ``history`` or ``exclude``, or unavailable in ``catalogue``."""
    excluded = as_lookup(exclude)
    taken = set(history)
    taken.update(ids)
    for item_id, score in fallback.iter_ranked():
        if item_id in taken or item_id in excluded:
            continue
        if catalogue is not None and catalogue.is_unavailable(item_id):
            continue
        ids.append(item_id)
        scores.append(score)
        if len(ids) == k:
            return
