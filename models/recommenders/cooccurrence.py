"""Item-item co-occurrence over each user's recent items (cosine or Pearson), learned online."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from itertools import islice
from typing import Any

import numpy as np

from models.checks import check_int, check_number
from models.recommenders import cooc_ranking as ranking
from models.recommenders.base import (
    Context,
    Ranked,
    ScoredItem,
    check_half_life,
    check_item_id,
    check_k,
    check_weight,
    no_reasons,
)
from models.recommenders.catalogue import Catalogue
from models.recommenders.cooc_counts import CoocCounts
from models.recommenders.cooc_rows import add_to_row, add_to_rows
from models.recommenders.cooc_similarity import SIMILARITIES, pair_similarity, slot_terms
from models.recommenders.popularity import Popularity

# rank finds its candidates by scanning all items while there are fewer than this many
# per neighbour slot it reads, else by sorting the slots (both give the same result).
_SCAN_ALL_BELOW = 8
# Decay scales new counts up instead of shrinking old ones; past this the stored counts
# are divided back down (float32 holds 3.4e38, and one event adds at most 1e6 x this).
_RENORMALIZE_ABOVE = 1e20
# What this module has always offered: the similarity names live in cooc_similarity.py now.
__all__ = ["SIMILARITIES", "ItemCooccurrence"]


_compiled = False


def compile_kernels() -> None:
    """Compile (or load from numba's cache) the kernels for the argument types the model
    uses, once per process: when a model is made or restored, not on the first event a
    worker serves (a first compile takes about a second)."""
    global _compiled
    if _compiled:
        return
    nb = np.zeros((2, 2), dtype=np.int32)
    nb[1] = 1
    co = np.zeros((2, 2), dtype=np.float32)
    cols = np.array([1], dtype=np.int32)
    add_to_row(nb[0], co[0], 0, cols, 1.0)
    add_to_rows(nb, co, cols, 0, 1.0)
    ranking._best_rows(np.full(2, -1, dtype=np.intp), np.array([0], dtype=np.intp),
                       nb.ravel(), np.ones(4), 2)
    _compiled = True


class ItemCooccurrence:
    """Recommend items that co-occur with the user's last ``window`` items.

    When a user interacts with item i, i co-occurs with each of their previous ``window``
    items j: ``co[i][j]`` and ``co[j][i]`` grow by the event's weight, and so does ``n[i]``.
    ``similarity(i, j) = co[i][j] / sqrt(n[i] * n[j])`` (cosine), or with
    ``similarity="pearson"`` the correlation of the two items' occurrence indicators,
    ``(N co[i][j] - n[i] n[j]) / sqrt(n[i] (N - n[i]) n[j] (N - n[j]))`` with N the total
    weight learned, which also discounts pairs explained by two items' popularity alone.
    Counts decay: a count learned ``half_life`` events ago weighs half as much as one
    learned now (``None``: plain counts), so the model follows drifting tastes and new
    releases; similarities are ratios of counts, so the decay costs nothing per step.
    ``rank`` scores each candidate c by
    ``sum_h recency(h) * similarity(h, c)`` over the last ``window`` history items h, where
    ``recency`` is ``recency_decay ** age`` (age 0 is the latest item); the reason names the
    history item contributing most. Fewer than ``k`` candidates are topped up from
    ``fallback``, which this model owns: ``learn_one`` feeds it too, so do not also teach it
    elsewhere. An empty or unknown history is answered by the fallback alone.

    Memory is bounded: about ``8 * max_neighbours`` bytes per known item (float32 counts,
    int32 ids; 205 MB at the defaults' 100,000 items, allocated as items arrive). Each
    item keeps at most ``max_neighbours`` co-occurrence counts: when its row is full a new
    neighbour replaces the weakest one if that is no stronger than the new count, so rows
    keep their heaviest pairs (only items with more neighbours than that become
    approximate). At most ``max_items`` items are known: a new item beyond that first
    makes the least recently learned tenth forgotten. One event costs a few vector
    operations over ``window x max_neighbours`` slots plus one pass over a float per item.

    With a ``catalogue``, reasons use titles and items it marks unavailable or deleted are
    never returned. Learning and ranking are deterministic; the model pickles.

    >>> m = ItemCooccurrence(window=2, fallback=Popularity(half_life=None), half_life=None)
    >>> for user_items in (["a", "b", "c"], ["a", "b"], ["b", "d"]):
    ...     for pos, item in enumerate(user_items):
    ...         m.learn_one(item, user_items[:pos])
    >>> round(m.similarity("a", "b"), 4)  # 2 / sqrt(2 * 3)
    0.8165
    >>> [(s.item_id, s.strategy) for s in m.rank(["a"], exclude=(), k=3)]
    [('b', 'cooccurrence'), ('c', 'cooccurrence'), ('d', 'popularity')]
    >>> m.rank(["a"], exclude={"b"}, k=1)[0].reason
    'similar to a you viewed'
    """

    def __init__(
        self,
        window: int = 20,
        max_items: int = 100_000,
        max_neighbours: int = 256,
        fallback: Popularity | None = None,
        catalogue: Catalogue | None = None,
        recency_decay: float = 0.8,
        half_life: float | None = 20_000.0,
        similarity: str = "cosine",
    ) -> None:
        for name, value in (
            ("window", window), ("max_items", max_items), ("max_neighbours", max_neighbours)
        ):
            check_int(name, value, low=1)
        check_number("recency_decay", recency_decay, 0.0, 1.0, low_open=True, plain=True)
        check_half_life(half_life)
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        self.half_life = half_life
        self.similarity_kind = similarity
        self._growth = 1.0 if half_life is None else 2.0 ** (1.0 / half_life)
        self._unit = 1.0  # what one unit of weight adds to a count at this step
        self._total = 0.0  # N: all weight learned (decayed like the counts)
        self.window = window
        self.max_items = max_items
        self.max_neighbours = max_neighbours
        self.fallback = fallback
        self.catalogue = catalogue
        self.recency_decay = float(recency_decay)
        self._recency = self.recency_decay ** np.arange(window, dtype=np.float64)
        self._step = 0
        self._counts = CoocCounts(max_items, max_neighbours)
        compile_kernels()
        # The items the last learn step paired the item with, once record_pairs is called.
        self.last_pairs: list[str] | None = None

    # -- learning ---------------------------------------------------------------------------

    def learn_one(
        self, item_id: str, history: Sequence[str], weight: float = 1.0,
        context: Context | None = None,
    ) -> None:
        """Learn that a user whose recent items were ``history`` (before now) chose ``item_id``.

        History items the model does not know (never learned, or forgotten) are skipped;
        ``context`` is not used (item-item state only).
        """
        check_item_id(item_id)
        self._learn_checked(item_id, history, check_weight(weight), context)

    def _learn_checked(
        self, item_id: str, history: Sequence[str], raw_weight: float,
        context: Context | None = None,
    ) -> None:
        """``learn_one`` once ``item_id`` and the weight (a float) are checked by the caller."""
        recent = self._recent(history)
        self._step += 1
        self._unit *= self._growth
        if self._unit > _RENORMALIZE_ABOVE:
            self._renormalize()
        w = raw_weight * self._unit
        self._total += w
        counts = self._counts
        index = counts.index
        if self.last_pairs is not None:
            # As known before the item is added (which may forget some): the other
            # workers still know them.
            self.last_pairs = [h for h in recent if h != item_id and h in index]
        i = index.get(item_id)
        if i is None:
            i = counts.add(item_id)
        js = [j for j in map(index.get, recent) if j is not None and j != i]
        counts.count(i, w, self._step)
        if js:
            counts.add_pairs(i, js, w)
        if self.fallback is not None:
            self.fallback._learn_checked(item_id, history, raw_weight)

    def record_pairs(self) -> None:
        """Start keeping, after each learn step, the known recent items it paired the item
        with (``last_pairs``), for the sums other workers apply (models/sync.py)."""
        if self.last_pairs is None:
            self.last_pairs = []

    def _renormalize(self) -> None:
        unit = self._unit
        self._counts.rescale(unit)
        self._total /= unit
        self._unit = 1.0

    def apply_delta(
        self, steps: int, totals: Mapping[str, float], items: Sequence[str],
        pairs_a: np.ndarray, pairs_b: np.ndarray, weights: np.ndarray,
        total: float | None = None,
    ) -> None:
        """Age the counts by ``steps`` events, then add item ``totals`` and the weights of
        the unordered pairs ``(items[pairs_a[n]], items[pairs_b[n]])``, all decayed counts
        as of the last of those events (another worker's delta, models/sync.py): what
        learning those events here would have done, in time proportional to the items and
        pairs touched. ``total`` (N, for "pearson") defaults to the sum of ``totals``. A
        pair with an item this model does not know is skipped, as ``learn_one`` skips
        unknown history.
        """
        self._step += steps
        self._unit *= self._growth ** steps
        if self._unit > _RENORMALIZE_ABOVE:
            self._renormalize()
        unit, counts = self._unit, self._counts
        self._total += (sum(totals.values()) if total is None else total) * unit
        index = counts.index
        for item_id, w in totals.items():
            i = index.get(item_id)
            if i is None:
                i = counts.add(item_id)
            counts.count(i, w * unit, self._step)
        if not len(pairs_a):
            return
        rows = np.array([index.get(i, -1) for i in items], dtype=np.intp)
        rows_a, rows_b = rows[pairs_a], rows[pairs_b]
        known = (rows_a >= 0) & (rows_b >= 0)
        w32 = (np.asarray(weights, dtype=np.float64)[known] * unit).astype(np.float32)
        counts.add_weighted_pairs(np.concatenate([rows_a[known], rows_b[known]]),
                                  np.concatenate([rows_b[known], rows_a[known]]),
                                  np.concatenate([w32, w32]))

    # -- serving ----------------------------------------------------------------------------

    def rank(
        self, history: Sequence[str], exclude: Collection[str], k: int,
        context: Context | None = None,
    ) -> list[ScoredItem]:
        """The ``k`` best items for ``history`` (most recent last), never one of ``history``,
        ``exclude`` or the catalogue's unavailable items; best first (``context`` unused)."""
        return self.ranked(history, exclude, k, context).items()

    def ranked(
        self, history: Sequence[str], exclude: Collection[str], k: int,
        context: Context | None = None,
    ) -> Ranked:
        """What ``rank`` returns, with reasons made on demand (``Ranked``; explain before
        the model learns again)."""
        check_k(k)
        recent = self._recent(history)
        ids: list[str] = []
        scores: list[float] = []
        if k == 0:
            return Ranked(ids, scores, no_reasons)
        index = self._counts.index
        hs = []
        ages = []
        for age, item_id in enumerate(recent):
            h = index.get(item_id)
            if h is not None:
                hs.append(h)
                ages.append(age)
        explain_similar: Callable[[Sequence[int]], list[tuple[str, str]]] = no_reasons
        if hs:
            ids, scores, explain_similar = self._rank_similar(hs, ages, history, exclude, k)
        similar = len(ids)
        if similar < k and self.fallback is not None:
            ranking.fill(self.fallback, ids, scores, history, exclude, k, self.catalogue)
        filled = (self.fallback.reason if self.fallback is not None else "", "popularity")

        def explain(positions: Sequence[int]) -> list[tuple[str, str]]:
            made = iter(explain_similar([p for p in positions if p < similar]))
            return [next(made) if p < similar else filled for p in positions]

        return Ranked(ids, scores, explain)

    def _rank_similar(
        self, hs: list[int], ages: list[int], history: Sequence[str],
        exclude: Collection[str], k: int,
    ) -> tuple[list[str], list[float], Callable[[Sequence[int]], list[tuple[str, str]]]]:
        counts = self._counts
        rows = np.array(hs, dtype=np.intp)
        nb = counts.nb[rows].ravel()
        contrib, factor = slot_terms(
            self.similarity_kind, counts, rows, self._recency[ages], self._total
        )
        sums = np.bincount(nb, weights=contrib, minlength=len(counts.ids))
        candidates = ranking.candidates(sums, nb, _SCAN_ALL_BELOW)
        scores = sums[candidates] * factor[candidates]
        picked, picked_scores = ranking.pick(
            candidates, scores, counts.ids, history, exclude, k, self.catalogue
        )
        explain = ranking.explainer(counts, picked, rows, nb, contrib, self.catalogue)
        ids = counts.ids
        return [ids[c] for c in picked], picked_scores, explain

    # -- pickling ---------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # Flat, with the keys (and order) checkpoints have always had: older ones still load.
        # What is being recorded for the other workers stays out of checkpoints.
        state = {k: v for k, v in self.__dict__.items() if k not in ("_counts", "last_pairs")}
        state.update(self._counts.state())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self._counts = CoocCounts.from_state(state)
        compile_kernels()
        self.last_pairs = None  # not checkpointed: recording starts again (record_pairs)
        self.__dict__.update(state)

    # -- inspection -------------------------------------------------------------------------

    def similarity(self, a: str, b: str) -> float:
        """Similarity of two items as learned so far (0.0 if either is unknown or they were
        never seen together)."""
        index = self._counts.index
        i, j = index.get(a), index.get(b)
        if i is None or j is None or i == j:
            return 0.0
        return pair_similarity(self.similarity_kind, self._counts, i, j, self._total)

    def neighbours(self, item_id: str) -> dict[str, float]:
        """Co-occurrence counts of ``item_id`` with each neighbour it keeps (decayed counts
        are given as of the last step)."""
        counts = self._counts
        i = counts.index.get(item_id)
        if i is None:
            return {}
        unit, ids = self._unit, counts.ids
        return {ids[j]: float(c) / unit for j, c in counts.neighbours(i)}

    @property
    def nbytes(self) -> int:
        """Bytes held by the numpy state (the item-id dicts come on top)."""
        return self._counts.nbytes

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._counts.index

    def __len__(self) -> int:
        return len(self._counts)

    def _recent(self, history: Sequence[str]) -> list[str]:
        """The last ``window`` distinct items of ``history``, most recent first."""
        if isinstance(history, str):
            raise ValueError("history must be a sequence of item ids, not one string")
        recent: dict[str, None] = {}
        for item_id in islice(reversed(history), self.window):
            if item_id not in recent:
                # Inlined check_item_id: this runs for every history item of every event.
                if type(item_id) is not str or not item_id:
                    check_item_id(item_id)
                recent[item_id] = None
        return list(recent)
