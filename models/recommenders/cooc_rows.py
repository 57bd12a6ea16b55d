"""Bounded neighbour rows of co-occurrence counts: adding weight to pairs, and which pair a
full row gives up for a new one (the weakest, if it is no stronger than the new count)."""

from __future__ import annotations

import numpy as np

_all = np.logical_and.reduce  # ndarray.all's Python wrapper costs more than the work


def add_to_row(nb: np.ndarray, co: np.ndarray, i: int, cols: np.ndarray, w: float) -> None:
    """Add ``w`` to row ``i``'s counts with each of ``cols`` (distinct, not ``i``, most
    recent first), in place; ``nb`` and ``co`` are the row's neighbours and counts.

    An empty slot holds ``i`` itself. New neighbours take the empty slots first, then
    displace the weakest older pairs that are no stronger than ``w``.

    >>> nb, co = np.array([5, 0, 0]), np.array([2.0, 0.0, 0.0], dtype=np.float32)
    >>> add_to_row(nb, co, 0, np.array([5, 7, 8, 9]), 1.0)
    >>> nb.tolist(), co.tolist()
    ([5, 7, 8], [3.0, 1.0, 1.0])
    """
    # A neighbour is in a row at most once: the flat positions of the matches give the
    # found columns and their slots (per-row reductions cost several times more).
    hit = (nb[None, :] == cols[:, None]).ravel().nonzero()[0]
    new = cols
    if hit.size:
        found, slots = np.divmod(hit, nb.size)
        co[slots] += w
        if hit.size == cols.size:
            return
        unseen = np.ones(cols.size, dtype=bool)
        unseen[found] = False
        new = cols[unseen]
    empty = (nb == i).nonzero()[0][: new.size]
    rest = new[empty.size:]  # most recent history first: they get the free slots
    if rest.size:
        # Full row: the new pairs displace the weakest older ones that are no stronger.
        occupied = np.flatnonzero(nb != i)
        weakest = occupied[np.argsort(co[occupied], kind="stable")[: rest.size]]
        ok = co[weakest] <= w
        nb[weakest[ok]] = rest[: weakest.size][ok]
        co[weakest[ok]] = w
    nb[empty] = new[: empty.size]
    co[empty] = w


def add_to_rows(nb: np.ndarray, co: np.ndarray, rows: np.ndarray, j: int, w: float) -> None:
    """Add ``w`` to the count of ``j`` in each of ``rows`` (distinct, not ``j``), in place;
    ``nb`` and ``co`` are every row's neighbours and counts (row r's empty slots hold r).

    >>> nb = np.array([[0, 0], [2, 3], [2, 2]])
    >>> co = np.array([[0, 0], [1, 4], [0, 0]], dtype=np.float32)
    >>> add_to_rows(nb, co, np.array([0, 1, 2]), 9, 2.0)
    >>> nb.tolist(), co.tolist()
    ([[9, 0], [9, 3], [9, 2]], [[2.0, 0.0], [2.0, 4.0], [2.0, 0.0]])
    """
    row_nb = nb.take(rows, axis=0)
    # As in add_to_row: flat positions of the matches, not per-row reductions.
    hit = (row_nb == j).ravel().nonzero()[0]
    if hit.size:
        found, slots = np.divmod(hit, row_nb.shape[1])
        co[rows[found], slots] += w
        if hit.size == rows.size:
            return
        missing = np.ones(rows.size, dtype=bool)
        missing[found] = False
        rows, row_nb = rows[missing], row_nb[missing]
    empty = row_nb == rows[:, None]
    slot = empty.argmax(axis=1)  # the first empty slot, if there is one
    has_empty = empty[np.arange(rows.size), slot]
    if not _all(has_empty):
        full = rows[~has_empty]
        weakest = co[full].argmin(axis=1)
        slot[~has_empty] = weakest
        has_empty[~has_empty] = co[full, weakest] <= w
        rows, slot = rows[has_empty], slot[has_empty]
    nb[rows, slot] = j
    co[rows, slot] = w


def add_new_to_row(nb: np.ndarray, co: np.ndarray, i: int, cols: np.ndarray, w: np.ndarray
                   ) -> None:
    """Give row ``i`` the new neighbours ``cols`` (not in it, distinct, heaviest first)
    with counts ``w``, in place: the empty slots first, then each displaces the row's
    weakest pair if that is no stronger.

    >>> nb, co = np.array([0, 5, 0]), np.array([0.0, 2.0, 0.0], dtype=np.float32)
    >>> add_new_to_row(nb, co, 0, np.array([7, 9, 8]), np.array([3.0, 1.5, 1.0]))
    >>> nb.tolist(), co.tolist()
    ([7, 5, 9], [3.0, 2.0, 1.5])
    """
    empty = np.flatnonzero(nb == i)[: cols.size]
    k = empty.size
    nb[empty] = cols[:k]
    co[empty] = w[:k]
    for c, x in zip(cols[k:].tolist(), w[k:].tolist(), strict=True):
        j = int(co.argmin())
        if co[j] <= x:
            nb[j] = c
            co[j] = x
