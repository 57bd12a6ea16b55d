"""Item-item co-occurrence over each user's recent items (cosine or Pearson), learned online."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from itertools import islice

import numpy as np

from models.checks import check_int, check_number
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
from models.recommenders.popularity import Popularity, as_lookup

_INITIAL_CAPACITY = 1024
# rank finds its candidates by scanning all items while there are fewer than this many
# per neighbour slot it reads, else by sorting the slots (both give the same result).
_SCAN_ALL_BELOW = 8
# Decay scales new counts up instead of shrinking old ones; past this the stored counts
# are divided back down (float32 holds 3.4e38, and one event adds at most 1e6 x this).
_RENORMALIZE_ABOVE = 1e20
SIMILARITIES = ("cosine", "pearson")


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
        self._index: dict[str, int] = {}
        self._ids: list[str] = []  # "" marks a forgotten index (never a valid id)
        self._free: list[int] = []  # forgotten indices, reused lowest first
        cap = min(_INITIAL_CAPACITY, max_items)
        self._n = np.zeros(cap, dtype=np.float64)
        self._inv_sqrt_n = np.zeros(cap, dtype=np.float64)  # 0 for unused indices
        self._last = np.zeros(cap, dtype=np.int64)
        self._column = np.full(cap, -1, dtype=np.intp)  # scratch for rank's explanations
        # Row r lists r's neighbours. An empty slot holds r itself with count 0: an item is
        # never its own neighbour, so a lookup cannot mistake an empty slot for a pair.
        self._nb = np.repeat(np.arange(cap, dtype=np.int32)[:, None], max_neighbours, axis=1)
        self._co = np.zeros((cap, max_neighbours), dtype=np.float32)

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
        i = self._index.get(item_id)
        if i is None:
            i = self._add(item_id)
        index = self._index
        js = [j for j in map(index.get, recent) if j is not None and j != i]
        self._n[i] += w
        self._inv_sqrt_n[i] = 1.0 / math.sqrt(self._n[i])
        self._last[i] = self._step
        if js:
            cols = np.array(js, dtype=np.int32)
            self._add_to_row(i, cols, w)
            self._add_to_rows(cols, i, w)
        if self.fallback is not None:
            self.fallback._learn_checked(item_id, history, raw_weight)

    def _renormalize(self) -> None:
        unit = self._unit
        self._n /= unit
        self._co /= np.float32(unit)
        used = self._n > 0
        self._inv_sqrt_n[used] = 1.0 / np.sqrt(self._n[used])
        self._total /= unit
        self._unit = 1.0

    def _add_to_row(self, i: int, cols: np.ndarray, w: float) -> None:
        nb, co = self._nb[i], self._co[i]  # views: writes land in the model
        match = nb[None, :] == cols[:, None]
        found = match.any(axis=1)
        co[match.argmax(axis=1)[found]] += w
        new = cols[~found]
        if not new.size:
            return
        empty = np.flatnonzero(nb == i)[: new.size]
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

    def _add_to_rows(self, rows: np.ndarray, j: int, w: float) -> None:
        nb = self._nb[rows]
        match = nb == j
        found = match.any(axis=1)
        self._co[rows[found], match.argmax(axis=1)[found]] += w
        if found.all():
            return
        rows, nb = rows[~found], nb[~found]
        empty = nb == rows[:, None]
        has_empty = empty.any(axis=1)
        slot = empty.argmax(axis=1)
        if not has_empty.all():
            full = rows[~has_empty]
            weakest = self._co[full].argmin(axis=1)
            slot[~has_empty] = weakest
            has_empty[~has_empty] = self._co[full, weakest] <= w
        rows, slot = rows[has_empty], slot[has_empty]
        self._nb[rows, slot] = j
        self._co[rows, slot] = w

    def _add(self, item_id: str) -> int:
        if not self._free and len(self._ids) >= self.max_items:
            self._forget_least_recent()
        if self._free:
            i = self._free.pop()
            self._ids[i] = item_id
        else:
            i = len(self._ids)
            if i == self._n.size:
                self._grow(min(2 * i, self.max_items))
            self._ids.append(item_id)
        self._index[item_id] = i
        return i

    def _grow(self, cap: int) -> None:
        old = self._n.size
        extra = cap - old
        self._n = np.concatenate([self._n, np.zeros(extra)])
        self._inv_sqrt_n = np.concatenate([self._inv_sqrt_n, np.zeros(extra)])
        self._last = np.concatenate([self._last, np.zeros(extra, dtype=np.int64)])
        self._column = np.concatenate([self._column, np.full(extra, -1, dtype=np.intp)])
        fresh = np.repeat(np.arange(old, cap, dtype=np.int32)[:, None], self.max_neighbours, 1)
        self._nb = np.concatenate([self._nb, fresh])
        self._co = np.concatenate(
            [self._co, np.zeros((extra, self.max_neighbours), dtype=np.float32)]
        )

    def _forget_least_recent(self) -> None:
        size = len(self._ids)
        count = max(1, self.max_items // 10)
        # Stable: among items last learned at the same step, the lowest index goes first.
        victims = np.argsort(self._last[:size], kind="stable")[:count]
        dead = np.zeros(size, dtype=bool)
        dead[victims] = True
        rows, slots = np.nonzero(dead[self._nb[:size]])
        self._nb[rows, slots] = rows
        self._co[rows, slots] = 0.0
        self._nb[victims] = victims[:, None]
        self._co[victims] = 0.0
        self._n[victims] = 0.0
        self._inv_sqrt_n[victims] = 0.0
        self._last[victims] = 0
        for v in victims.tolist():
            del self._index[self._ids[v]]
            self._ids[v] = ""
        self._free.extend(sorted(victims.tolist(), reverse=True))

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
        index = self._index
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
            self._fill(ids, scores, history, exclude, k)
        filled = (self.fallback.reason if self.fallback is not None else "", "popularity")

        def explain(positions: Sequence[int]) -> list[tuple[str, str]]:
            made = iter(explain_similar([p for p in positions if p < similar]))
            return [next(made) if p < similar else filled for p in positions]

        return Ranked(ids, scores, explain)

    def _rank_similar(
        self, hs: list[int], ages: list[int], history: Sequence[str],
        exclude: Collection[str], k: int,
    ) -> tuple[list[str], list[float], Callable[[Sequence[int]], list[tuple[str, str]]]]:
        rows = np.array(hs, dtype=np.intp)
        nb = self._nb[rows].ravel()
        if self.similarity_kind == "pearson":
            contrib, inv_c = self._pearson_terms(rows, ages, nb)
        else:
            weights = self._recency[ages] * self._inv_sqrt_n[rows]
            contrib = (self._co[rows] * weights[:, None]).ravel()
            inv_c = self._inv_sqrt_n
        sums = np.bincount(nb, weights=contrib, minlength=len(self._ids))
        candidates: np.ndarray
        if sums.size > _SCAN_ALL_BELOW * nb.size:
            # Big catalogue: scanning every item costs more than sorting the few touched.
            touched = np.sort(nb)
            touched = touched[np.concatenate(([True], touched[1:] != touched[:-1]))]
            candidates = touched[sums[touched] > 0.0]
        else:
            candidates = np.flatnonzero(sums > 0.0)
        scores = sums[candidates] * inv_c[candidates]
        picked, picked_scores = self._pick(candidates, scores, history, exclude, k)
        ids = self._ids

        def explain(positions: Sequence[int]) -> list[tuple[str, str]]:
            if not positions:
                return []
            chosen = np.array([picked[p] for p in positions], dtype=np.intp)
            return [(reason, "cooccurrence") for reason in self._explain(chosen, rows, nb, contrib)]

        return [ids[c] for c in picked], picked_scores, explain

    def _pick(
        self, candidates: np.ndarray, scores: np.ndarray, history: Sequence[str],
        exclude: Collection[str], k: int,
    ) -> tuple[list[int], list[float]]:
        """Up to ``k`` candidates by score (best first, ties: lower index), none of
        ``history``, ``exclude`` or the catalogue's unavailable items, with their scores.

        Sorts a prefix of ``2k + 8 + len(history)`` candidates, four times longer each
        round while too many of them are skipped, so a call rarely sorts them all.
        """
        excluded = as_lookup(exclude) if exclude else ()
        seen = set(history)
        catalogue, ids = self.catalogue, self._ids
        picked: list[int] = []
        picked_scores: list[float] = []
        want = 2 * k + 8 + len(seen)
        done = 0
        while True:
            best, best_scores = self._best(candidates, scores, want)
            for c, score in zip(best[done:].tolist(), best_scores[done:].tolist(), strict=True):
                item_id = ids[c]
                if item_id in seen or item_id in excluded:
                    continue
                if catalogue is not None and catalogue.is_unavailable(item_id):
                    continue
                picked.append(c)
                picked_scores.append(score)
                if len(picked) == k:
                    return picked, picked_scores
            if best.size == candidates.size:
                return picked, picked_scores
            done = best.size
            want *= 4

    def _pearson_terms(
        self, rows: np.ndarray, ages: list[int], nb: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-slot terms ``recency(h) * (N co[h][c] - n[h] n[c]) / sqrt(n[h] (N - n[h]))``
        and the per-item factor ``1 / sqrt(n[c] (N - n[c]))`` that completes them.

        Only stored neighbours get a term: an item never seen with h has co = 0, so its
        correlation with h is negative and could not lift it into the top k anyway.
        """
        total = self._total
        n = self._n
        # An item holding all the weight has no variance; its correlations are undefined.
        spread = np.maximum(n * (total - n), 1e-12 * max(total, 1.0) ** 2)
        inv = np.where(n > 0, 1.0 / np.sqrt(spread), 0.0)
        co = self._co[rows].astype(np.float64)
        centred = total * co - n[rows][:, None] * n[self._nb[rows]]
        centred[co <= 0] = 0.0  # empty slots
        weights = self._recency[ages] * inv[rows]
        return (centred * weights[:, None]).ravel(), inv

    @staticmethod
    def _best(
        candidates: np.ndarray, scores: np.ndarray, want: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``want`` best candidates and their scores, by score then index."""
        if candidates.size > want:
            # Keep every tie at the cut, so the result does not depend on ``want``.
            cut = np.partition(scores, candidates.size - want)[candidates.size - want]
            keep = np.flatnonzero(scores >= cut)
            candidates, scores = candidates[keep], scores[keep]
        order = np.lexsort((candidates, -scores))[:want]
        return candidates[order], scores[order]

    def _explain(
        self, picked: np.ndarray, rows: np.ndarray, nb: np.ndarray, contrib: np.ndarray,
    ) -> list[str]:
        # For each picked item, the history row with the largest term in its score. The
        # scratch table maps item index -> column; it is all -1 between calls, so no
        # per-call array as long as the catalogue is needed.
        column = self._column
        column[picked] = np.arange(picked.size)
        try:
            pos = np.take(column, nb)
        finally:
            column[picked] = -1
        flat = np.flatnonzero(pos >= 0)
        terms = np.zeros((rows.size, picked.size))
        terms[flat // (nb.size // rows.size), pos[flat]] = contrib[flat]
        best_rows = rows[terms.argmax(axis=0)].tolist()  # ties: the most recent item
        ids = self._ids
        title = self.catalogue.title if self.catalogue is not None else str
        return [f"similar to {title(ids[h])} you viewed" for h in best_rows]

    def _fill(
        self, ids: list[str], scores: list[float], history: Sequence[str],
        exclude: Collection[str], k: int,
    ) -> None:
        assert self.fallback is not None
        excluded = as_lookup(exclude)
        taken = set(history)
        taken.update(ids)
        catalogue = self.catalogue
        for item_id, score in self.fallback.iter_ranked():
            if item_id in taken or item_id in excluded:
                continue
            if catalogue is not None and catalogue.is_unavailable(item_id):
                continue
            ids.append(item_id)
            scores.append(score)
            if len(ids) == k:
                return

    # -- inspection -------------------------------------------------------------------------

    def similarity(self, a: str, b: str) -> float:
        """Similarity of two items as learned so far (0.0 if either is unknown or they were
        never seen together)."""
        i, j = self._index.get(a), self._index.get(b)
        if i is None or j is None or i == j:
            return 0.0
        slot = np.flatnonzero(self._nb[i] == j)
        if not slot.size:
            return 0.0
        co = float(self._co[i, slot[0]])
        if self.similarity_kind == "pearson":
            total, ni, nj = self._total, float(self._n[i]), float(self._n[j])
            spread = ni * (total - ni) * nj * (total - nj)
            return (total * co - ni * nj) / math.sqrt(spread) if spread > 0 else 0.0
        return co * float(self._inv_sqrt_n[i] * self._inv_sqrt_n[j])

    def neighbours(self, item_id: str) -> dict[str, float]:
        """Co-occurrence counts of ``item_id`` with each neighbour it keeps (decayed counts
        are given as of the last step)."""
        i = self._index.get(item_id)
        if i is None:
            return {}
        slots = np.flatnonzero(self._co[i] > 0)
        unit = self._unit
        return {
            self._ids[j]: float(c) / unit
            for j, c in zip(
                self._nb[i, slots].tolist(), self._co[i, slots].tolist(), strict=True
            )
        }

    @property
    def nbytes(self) -> int:
        """Bytes held by the numpy state (the item-id dicts come on top)."""
        arrays = (self._n, self._inv_sqrt_n, self._last, self._column, self._nb, self._co)
        return sum(a.nbytes for a in arrays)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def __len__(self) -> int:
        return len(self._index)

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
