"""Time-decayed item popularity: the cold-start strategy and the co-occurrence fallback."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet

from models.catalogue import Catalogue
from models.recommenders.base import ScoredItem, check_item_id, check_k, check_weight

# Stored counts are scaled up instead of decaying every item each step; they are divided
# back down before the scale can overflow a float.
_RENORMALIZE_ABOVE = 1e150


def as_lookup(items: Collection[str]) -> Collection[str]:
    """``items`` itself if membership tests on it are O(1), else a set of it.

    >>> as_lookup(["a", "b"]) == {"a", "b"}
    True
    """
    if isinstance(items, (AbstractSet, Mapping)):
        return items
    return set(items)


class Popularity:
    """Items ranked by an exponentially decayed interaction count.

    Time is counted in events: every ``learn_one`` call is one step, and a count learned
    ``half_life`` steps ago weighs half as much as one learned now (``half_life=None``:
    plain counts). The top ``top_size`` items are kept sorted as they change, so ``rank``
    walks a short list instead of sorting every item; it only sorts everything when the
    excluded items fill that list, so keep ``top_size`` above the largest exclude set
    (a profile's ``seen_max`` + ``recent_max``). At most ``max_items`` items are
    tracked: past that, the weakest tenth is forgotten.

    >>> pop = Popularity(half_life=None)
    >>> for item in ["a", "b", "b", "c", "b", "c"]:
    ...     pop.learn_one(item, [])
    >>> [(s.item_id, s.score) for s in pop.rank([], exclude={"c"}, k=2)]
    [('b', 3.0), ('a', 1.0)]
    >>> pop.rank(["b"], exclude=(), k=1)[0].reason
    'popular'
    """

    def __init__(
        self,
        half_life: float | None = 20_000.0,
        max_items: int = 100_000,
        top_size: int = 1024,
        catalogue: Catalogue | None = None,
    ) -> None:
        if half_life is not None and not (
            isinstance(half_life, (int, float)) and 0 < half_life < math.inf
        ):
            raise ValueError(f"half_life must be None or a finite number > 0, got {half_life!r}")
        for name, value in (("max_items", max_items), ("top_size", top_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.half_life = half_life
        self.max_items = max_items
        self.top_size = top_size
        self.catalogue = catalogue
        self._growth = 1.0 if half_life is None else 2.0 ** (1.0 / half_life)
        self._unit = 1.0  # what one unit of weight adds to a stored count at this step
        self._counts: dict[str, float] = {}
        # The top list, best first; _top_keys holds the negated stored counts (ascending)
        # so bisect can place an item. Decay is uniform, so only a learned item moves.
        self._top: list[str] = []
        self._top_keys: list[float] = []
        self._in_top: set[str] = set()

    @property
    def reason(self) -> str:
        """The explanation attached to every item this strategy ranks."""
        return "popular" if self.half_life is None else "popular right now"

    def learn_one(self, item_id: str, history: Sequence[str] = (), weight: float = 1.0) -> None:
        """Count one interaction with ``item_id`` (``history`` is not used)."""
        check_item_id(item_id)
        w = check_weight(weight)
        self._unit *= self._growth
        if self._unit > _RENORMALIZE_ABOVE:
            self._renormalize()
        old = self._counts.get(item_id)
        new = (0.0 if old is None else old) + w * self._unit
        self._counts[item_id] = new
        self._place(item_id, old, new)
        if old is None and len(self._counts) > self.max_items:
            self._forget_weakest()

    def score(self, item_id: str) -> float:
        """The decayed count of ``item_id`` as of the last step (0.0 if unknown)."""
        return self._counts.get(item_id, 0.0) / self._unit

    def rank(self, history: Sequence[str], exclude: Collection[str], k: int) -> list[ScoredItem]:
        """The ``k`` most popular items not in ``history`` or ``exclude`` (nor unavailable)."""
        check_k(k)
        out: list[ScoredItem] = []
        if k == 0:
            return out
        excluded = as_lookup(exclude)
        seen = set(history)
        catalogue = self.catalogue
        reason = self.reason
        for item_id, score in self.iter_ranked():
            if item_id in excluded or item_id in seen:
                continue
            if catalogue is not None and catalogue.is_unavailable(item_id):
                continue
            out.append(ScoredItem(item_id, score, reason, "popularity"))
            if len(out) == k:
                break
        return out

    def iter_ranked(self) -> Iterator[tuple[str, float]]:
        """Every tracked item with its decayed count, best first (do not learn meanwhile).

        Ties keep the order in which items reached that count.
        """
        unit = self._unit
        for item_id, key in zip(self._top, self._top_keys, strict=True):
            yield item_id, -key / unit
        if len(self._counts) > len(self._top):
            in_top = self._in_top
            rest = [(c, i) for i, c in self._counts.items() if i not in in_top]
            # sorted() is stable: equal counts stay in first-seen order.
            rest.sort(key=lambda ci: -ci[0])
            for count, item_id in rest:
                yield item_id, count / unit

    def __len__(self) -> int:
        return len(self._counts)

    def _place(self, item_id: str, old: float | None, new: float) -> None:
        top, keys = self._top, self._top_keys
        if item_id in self._in_top:
            assert old is not None
            i = bisect_left(keys, -old)
            while top[i] != item_id:
                i += 1
            del top[i], keys[i]
        elif len(top) >= self.top_size and new <= -keys[-1]:
            return
        else:
            self._in_top.add(item_id)
        i = bisect_right(keys, -new)
        keys.insert(i, -new)
        top.insert(i, item_id)
        if len(top) > self.top_size:
            keys.pop()
            self._in_top.discard(top.pop())

    def _renormalize(self) -> None:
        unit = self._unit
        self._counts = {i: c / unit for i, c in self._counts.items()}
        self._top_keys = [k / unit for k in self._top_keys]
        self._unit = 1.0

    def _forget_weakest(self) -> None:
        drop = max(1, self.max_items // 10)
        # Stable sort: among equal counts the earliest-seen items go first.
        weakest = sorted(self._counts, key=self._counts.__getitem__)[:drop]
        for item_id in weakest:
            del self._counts[item_id]
        if self._in_top.intersection(weakest):
            # Items outside the list may now outrank what is left in it: rebuild.
            best = sorted(self._counts.items(), key=lambda ic: -ic[1])[: self.top_size]
            self._top = [i for i, _ in best]
            self._top_keys = [-c for _, c in best]
            self._in_top = set(self._top)
