"""Co-occurrence counts in bounded memory: a row of at most ``max_neighbours`` pair counts and
a total per item, for at most ``max_items`` items (the least recently learned go first)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from models.recommenders.cooc_rows import add_new_to_row, add_to_row, add_to_rows

_INITIAL_CAPACITY = 1024
# Cells of the (rows x columns) lookup table add_weighted_pairs may build (int16: 8 MB).
_DENSE_CELLS = 4_000_000


class CoocCounts:
    """Item ids mapped to rows (small ints, forgotten ones reused lowest first), with each
    item's total ``n``, ``1 / sqrt(n)`` (0 for unused rows), last learned step, and its
    neighbours ``nb`` with their counts ``co``. An empty slot of row r holds r itself with
    count 0: an item is never its own neighbour, so a lookup cannot mistake an empty slot
    for a pair. ``column`` is all -1, scratch for whoever maps rows to positions and puts
    it back. Read the arrays, never write them but through the methods.

    >>> c = CoocCounts(max_items=2, max_neighbours=2)
    >>> a, b = c.add("a"), c.add("b")
    >>> c.count(a, 1.0, step=1); c.count(b, 3.0, step=2); c.add_pairs(b, [a], 3.0)
    >>> c.neighbours(a), float(c.n[b])
    ([(1, 3.0)], 3.0)
    >>> c.add("c"), "a" in c.index, c.free  # full: the least recently learned goes
    (0, False, [])
    """

    # What an ItemCooccurrence checkpoints, flat, each under "_" + its name: the keys its
    # checkpoints have always had, so older ones still load.
    STATE = ("index", "ids", "free", "n", "inv_sqrt_n", "last", "column", "nb", "co")

    def __init__(self, max_items: int, max_neighbours: int) -> None:
        self.max_items = max_items
        self.max_neighbours = max_neighbours
        self.index: dict[str, int] = {}
        self.ids: list[str] = []  # "" marks a forgotten row (never a valid id)
        self.free: list[int] = []  # forgotten rows, reused lowest first
        cap = min(_INITIAL_CAPACITY, max_items)
        self.n = np.zeros(cap, dtype=np.float64)
        self.inv_sqrt_n = np.zeros(cap, dtype=np.float64)
        self.last = np.zeros(cap, dtype=np.int64)
        self.column = np.full(cap, -1, dtype=np.intp)
        self.nb = np.repeat(np.arange(cap, dtype=np.int32)[:, None], max_neighbours, axis=1)
        self.co = np.zeros((cap, max_neighbours), dtype=np.float32)

    def state(self) -> dict[str, Any]:
        """What a checkpoint holds, by checkpoint key."""
        return {"_" + name: getattr(self, name) for name in self.STATE}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CoocCounts:
        """The counts ``state`` holds (and its bounds), taking their keys out of it."""
        counts = cls.__new__(cls)
        counts.max_items = state["max_items"]
        counts.max_neighbours = state["max_neighbours"]
        for name in cls.STATE:
            setattr(counts, name, state.pop("_" + name))
        return counts

    def add(self, item_id: str) -> int:
        """A row for the unknown ``item_id``; with ``max_items`` known, the least recently
        learned tenth is forgotten first."""
        if not self.free and len(self.ids) >= self.max_items:
            self._forget_least_recent()
        if self.free:
            i = self.free.pop()
            self.ids[i] = item_id
        else:
            i = len(self.ids)
            if i == self.n.size:
                self._grow(min(2 * i, self.max_items))
            self.ids.append(item_id)
        self.index[item_id] = i
        return i

    def count(self, i: int, w: float, step: int) -> None:
        """Add ``w`` to row ``i``'s total, learned at ``step``."""
        n = self.n[i] + w
        self.n[i] = n
        self.inv_sqrt_n[i] = 1.0 / math.sqrt(n)
        self.last[i] = step

    def add_pairs(self, i: int, js: list[int], w: float) -> None:
        """Add ``w`` to the pairs of row ``i`` with each of ``js`` (distinct, not ``i``,
        most recent first), both ways."""
        cols = np.array(js, dtype=np.int32)
        add_to_row(self.nb[i], self.co[i], i, cols, w)
        add_to_rows(self.nb, self.co, cols, i, w)

    def add_weighted_pairs(self, rows: np.ndarray, cols: np.ndarray, w: np.ndarray) -> None:
        """Add ``w[n]`` to the count of ``cols[n]`` in row ``rows[n]`` (distinct (row, col)
        pairs, one way: give both ways for a symmetric update). Existing pairs are added in
        one vectorized pass; new ones fill a row's empty slots heaviest first, then
        displace its weakest pairs that are no stronger."""
        if not rows.size:
            return
        nb, co = self.nb, self.co
        slot = self._slots(rows, cols)
        found = slot >= 0
        co[rows[found], slot[found]] += w[found]
        new = ~found
        if not new.any():
            return
        rows, cols, w = rows[new], cols[new], w[new]
        order = np.lexsort((-w, rows))
        rows, cols, w = rows[order], cols[order], w[order]
        first = np.r_[True, rows[1:] != rows[:-1]]
        starts = np.flatnonzero(first)
        urows = rows[starts]
        # Rows fill their slots lowest first, so their empty slots are usually the last
        # ones: the k-th new neighbour of such a row goes to slot (occupied + k) in one
        # vectorized step; rows it does not fit (full, or with holes) go one by one.
        empty = nb[urows] == urows[:, None]
        occupied = self.max_neighbours - empty.sum(axis=1)
        suffix = empty.all(axis=1) | (empty.argmax(axis=1) == occupied)
        per_row = np.diff(np.r_[starts, rows.size])
        rank = np.arange(rows.size) - np.repeat(starts, per_row)
        slot = np.repeat(occupied, per_row) + rank
        easy = np.repeat(suffix & (occupied + per_row <= self.max_neighbours), per_row)
        nb[rows[easy], slot[easy]] = cols[easy]
        co[rows[easy], slot[easy]] = w[easy]
        if easy.all():
            return
        # Full rows: the k-th heaviest new pair of a row takes the row's k-th weakest slot
        # if that pair is no stronger (as one at a time would, but for ties between new
        # pairs and the ones they displaced).
        full = np.repeat(occupied == self.max_neighbours, per_row) & (rank < self.max_neighbours)
        if full.any():
            frows, franks, fcols, fw = rows[full], rank[full], cols[full], w[full]
            ufull = np.unique(frows)
            counts = co[ufull]
            k = int(franks.max()) + 1  # only each row's k weakest slots are needed
            if k < counts.shape[1]:
                candidates = np.argpartition(counts, k - 1, axis=1)[:, :k]
            else:
                candidates = np.argsort(counts, axis=1)
            order = np.argsort(np.take_along_axis(counts, candidates, 1), axis=1,
                               kind="stable")
            weakest = np.take_along_axis(candidates, order, 1)
            slot = weakest[np.searchsorted(ufull, frows), franks]
            ok = co[frows, slot] <= fw
            nb[frows[ok], slot[ok]] = fcols[ok]
            co[frows[ok], slot[ok]] = fw[ok]
        hard = ~(easy | full)
        if not hard.any():
            return
        rows, cols, w = rows[hard], cols[hard], w[hard]
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        ends = np.r_[starts[1:], rows.size]
        for r, a, b in zip(rows[starts].tolist(), starts.tolist(), ends.tolist(),
                           strict=True):
            add_new_to_row(nb[r], co[r], r, cols[a:b], w[a:b])

    def _slots(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The slot of ``cols[n]`` in row ``rows[n]`` (-1: not a neighbour there).

        Each distinct row's neighbours are read once and placed in a (rows x cols) table
        of this call's distinct rows and columns, instead of scanning a whole row for each
        pair (several times fewer element reads when rows recur); past ``_DENSE_CELLS``
        cells, the scan."""
        urows, u_of = np.unique(rows, return_inverse=True)
        ucols, c_of = np.unique(cols, return_inverse=True)
        if urows.size * ucols.size > _DENSE_CELLS:
            match = self.nb[rows] == cols[:, None]
            slot = match.argmax(axis=1)
            return np.where(match[np.arange(rows.size), slot], slot, -1)
        column = self.column
        column[ucols] = np.arange(ucols.size)
        try:
            local = column[self.nb[urows]]  # each neighbour's column here, -1 if none
        finally:
            column[ucols] = -1
        # One spare last column takes every neighbour that is not a column here (-1).
        table = np.full((urows.size, ucols.size + 1), -1, dtype=np.int16)
        width = local.shape[1]
        table[np.arange(urows.size)[:, None], local] = np.arange(width, dtype=np.int16)
        # (an empty slot, row r holding r, is never asked for: no pair joins r to r)
        return table[u_of, c_of].astype(np.intp)

    def rescale(self, unit: float) -> None:
        """Divide every count and total by ``unit``."""
        self.n /= unit
        self.co /= np.float32(unit)
        used = self.n > 0
        self.inv_sqrt_n[used] = 1.0 / np.sqrt(self.n[used])

    def neighbours(self, i: int) -> list[tuple[int, float]]:
        """Row ``i``'s neighbours and their counts, in slot order."""
        slots = np.flatnonzero(self.co[i] > 0)
        return list(zip(self.nb[i, slots].tolist(), self.co[i, slots].tolist(), strict=True))

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (the id dict and list come on top)."""
        arrays = (self.n, self.inv_sqrt_n, self.last, self.column, self.nb, self.co)
        return sum(a.nbytes for a in arrays)

    def __len__(self) -> int:
        return len(self.index)

    def _grow(self, cap: int) -> None:
        old = self.n.size
        extra = cap - old
        self.n = np.concatenate([self.n, np.zeros(extra)])
        self.inv_sqrt_n = np.concatenate([self.inv_sqrt_n, np.zeros(extra)])
        self.last = np.concatenate([self.last, np.zeros(extra, dtype=np.int64)])
        self.column = np.concatenate([self.column, np.full(extra, -1, dtype=np.intp)])
        fresh = np.repeat(np.arange(old, cap, dtype=np.int32)[:, None], self.max_neighbours, 1)
        self.nb = np.concatenate([self.nb, fresh])
        self.co = np.concatenate(
            [self.co, np.zeros((extra, self.max_neighbours), dtype=np.float32)]
        )

    def _forget_least_recent(self) -> None:
        size = len(self.ids)
        count = max(1, self.max_items // 10)
        # Stable: among items last learned at the same step, the lowest row goes first.
        victims = np.argsort(self.last[:size], kind="stable")[:count]
        dead = np.zeros(size, dtype=bool)
        dead[victims] = True
        rows, slots = np.nonzero(dead[self.nb[:size]])
        self.nb[rows, slots] = rows
        self.co[rows, slots] = 0.0
        self.nb[victims] = victims[:, None]
        self.co[victims] = 0.0
        self.n[victims] = 0.0
        self.inv_sqrt_n[victims] = 0.0
        self.last[victims] = 0
        for v in victims.tolist():
            del self.index[self.ids[v]]
            self.ids[v] = ""
        self.free.extend(sorted(victims.tolist(), reverse=True))
