"""Bounded neighbour rows of co-occurrence counts: adding weight to pairs, and which pair a
full row gives up for a new one (the weakest, if it is no stronger than the new count)."""

from __future__ import annotations

import numpy as np
from numba import njit

# The two learn-step kernels are compiled (numba): a step scans a few rows of up to 256
# slots per history item, a loop numpy could only vectorize as a chain of 15-20 small
# calls (42 us per event against 9 compiled, identical counts: test_learn_equivalence).
# cache=True keeps the machine code beside the module, so only a first run compiles.


@njit(cache=True)
def add_to_row(nb: np.ndarray, co: np.ndarray, i: int, cols: np.ndarray, w: float) -> None:
    """Add ``w`` to row ``i``'s counts with each of ``cols`` (distinct, not ``i``, most
    recent first), in place; ``nb`` and ``co`` are the row's neighbours and counts.

    An empty slot holds ``i`` itself. New neighbours take the empty slots first, then
    displace the weakest older pairs that are no stronger than ``w`` (the weakest first,
    ties by slot). ``w`` counts as a float32, as numpy's rules for a Python float with a
    float32 array have it.

    >>> nb, co = np.array([5, 0, 0]), np.array([2.0, 0.0, 0.0], dtype=np.float32)
    >>> add_to_row(nb, co, 0, np.array([5, 7, 8, 9]), 1.0)
    >>> nb.tolist(), co.tolist()
    ([5, 7, 8], [3.0, 1.0, 1.0])
    """
    w32 = np.float32(w)
    m = nb.size
    new = np.empty(cols.size, dtype=np.int64)
    n_new = 0
    for t in range(cols.size):
        c = cols[t]
        found = -1
        for s in range(m):
            if nb[s] == c:  # a neighbour is in a row at most once
                found = s
                break
        if found >= 0:
            co[found] += w32
        else:
            new[n_new] = c
            n_new += 1
    if n_new == 0:
        return
    empty = np.empty(n_new, dtype=np.int64)
    n_empty = 0
    for s in range(m):
        if n_empty == n_new:
            break
        if nb[s] == i:
            empty[n_empty] = s
            n_empty += 1
    if n_empty < n_new:
        # Full row: the new pairs past the empty slots (most recent history gets those)
        # displace the weakest older ones that are no stronger.
        occupied = np.empty(m, dtype=np.int64)
        n_occ = 0
        for s in range(m):
            if nb[s] != i:
                occupied[n_occ] = s
                n_occ += 1
        occupied = occupied[:n_occ]
        order = np.argsort(co[occupied], kind="mergesort")  # stable: ties by slot
        for t in range(min(n_new - n_empty, n_occ)):
            s = occupied[order[t]]
            if co[s] <= w32:
                nb[s] = new[n_empty + t]
                co[s] = w32
    for t in range(n_empty):
        nb[empty[t]] = new[t]
        co[empty[t]] = w32


@njit(cache=True)
def add_to_rows(nb: np.ndarray, co: np.ndarray, rows: np.ndarray, j: int, w: float) -> None:
    """Add ``w`` to the count of ``j`` in each of ``rows`` (distinct, not ``j``), in place;
    ``nb`` and ``co`` are every row's neighbours and counts (row r's empty slots hold r).
    A row without ``j`` gives it its first empty slot, or else its weakest pair (the
    first of equals) if that is no stronger than ``w``.

    >>> nb = np.array([[0, 0], [2, 3], [2, 2]])
    >>> co = np.array([[0, 0], [1, 4], [0, 0]], dtype=np.float32)
    >>> add_to_rows(nb, co, np.array([0, 1, 2]), 9, 2.0)
    >>> nb.tolist(), co.tolist()
    ([[9, 0], [9, 3], [9, 2]], [[2.0, 0.0], [2.0, 4.0], [2.0, 0.0]])
    """
    w32 = np.float32(w)
    m = nb.shape[1]
    for t in range(rows.size):
        r = rows[t]
        slot = -1
        for s in range(m):
            if nb[r, s] == j:
                slot = s
                break
        if slot >= 0:
            co[r, slot] += w32
            continue
        for s in range(m):
            if nb[r, s] == r:
                slot = s
                break
        if slot < 0:
            slot = 0
            for s in range(1, m):
                if co[r, s] < co[r, slot]:
                    slot = s
            if co[r, slot] > w32:
                continue
        nb[r, slot] = j
        co[r, slot] = w32


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
