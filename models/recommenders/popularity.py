"""Time-decayed item popularity: the cold-start strategy and the co-occurrence fallback."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from itertools import islice

from models.checks import check_int
from models.recommenders.base import (
    Context,
    Ranked,
    ScoredItem,
    check_half_life,
    check_history,
    check_item_id,
    check_k,
    check_weight,
)
from models.recommenders.catalogue import Catalogue

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
        reason: str | None = None,
    ) -> None:
        check_half_life(half_life)
        for name, value in (("max_items", max_items), ("top_size", top_size)):
            check_int(name, value, low=1)
        self.half_life = half_life
        self.max_items = max_items
        self.top_size = top_size
        self.catalogue = catalogue
        self._reason = reason
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
        if self._reason is not None:
            return self._reason
        if self.strategy == "trending":
            return "trending now"
        return "popular" if self.half_life is None else "popular right now"

    def learn_one(
        self, item_id: str, history: Sequence[str] = (), weight: float = 1.0,
        context: Context | None = None,
    ) -> None:
        """Count one interaction with ``item_id`` (``history`` and ``context`` are not used)."""
        check_item_id(item_id)
        check_history(history)
        self._learn_checked(item_id, history, check_weight(weight), context)

    def _learn_checked(
        self, item_id: str, history: Sequence[str], w: float, context: Context | None = None
    ) -> None:
        """``learn_one`` once its arguments are checked (``w`` a float) by the caller."""
        self._unit *= self._growth
        if self._unit > _RENORMALIZE_ABOVE:
            self._renormalize()
        old = self._counts.get(item_id)
        new = (0.0 if old is None else old) + w * self._unit
        self._counts[item_id] = new
        self._place(item_id, old, new)
        if old is None and len(self._counts) > self.max_items:
            self._forget_weakest()

    def apply_delta(self, steps: int, increments: Mapping[str, float]) -> None:
        """Age the counts by ``steps`` events, then add ``increments`` (decayed counts as
        of the last of those events): what learning them here would have done, in time
        proportional to the items touched (another worker's delta, models/sync.py)."""
        self._unit *= self._growth ** steps
        if self._unit > _RENORMALIZE_ABOVE:
            self._renormalize()
        unit, counts = self._unit, self._counts
        for item_id, w in increments.items():
            old = counts.get(item_id)
            new = (0.0 if old is None else old) + w * unit
            counts[item_id] = new
            self._place(item_id, old, new)
            if old is None and len(counts) > self.max_items:
                self._forget_weakest()

    def score(self, item_id: str) -> float:
        """The decayed count of ``item_id`` as of the last step (0.0 if unknown)."""
        return self._counts.get(item_id, 0.0) / self._unit

    def rank(
        self, history: Sequence[str], exclude: Collection[str], k: int,
        context: Context | None = None,
    ) -> list[ScoredItem]:
        """The ``k`` most popular items not in ``history`` or ``exclude`` (nor unavailable);
        ``context`` is not used."""
        return self.ranked(history, exclude, k, context).items()

    def ranked(
        self, history: Sequence[str], exclude: Collection[str], k: int,
        context: Context | None = None,
    ) -> Ranked:
        """What ``rank`` returns, with reasons made on demand (``Ranked``)."""
        check_k(k)
        check_history(history)
        ids: list[str] = []
        scores: list[float] = []
        explained = [(self.reason, self.strategy)]
        out = Ranked(ids, scores, lambda positions: explained * len(positions))
        if k == 0:
            return out
        excluded = as_lookup(exclude)
        seen = set(history)
        unavailable = self.catalogue.unavailable() if self.catalogue is not None else ()
        unit = self._unit
        # The top list first (the common case), walked directly: this runs per request.
        for item_id, key in zip(self._top, self._top_keys, strict=True):
            if item_id in excluded or item_id in seen or item_id in unavailable:
                continue
            ids.append(item_id)
            scores.append(-key / unit)
            if len(ids) == k:
                return out
        if len(self._counts) > len(self._top):
            for item_id, score in islice(self.iter_ranked(), len(self._top), None):
                if item_id in excluded or item_id in seen or item_id in unavailable:
                    continue
                ids.append(item_id)
                scores.append(score)
                if len(ids) == k:
                    break
        return out

    @property
    def strategy(self) -> str:
        """The strategy name on ranked items: "trending" for a short memory."""
        return "popularity" if self.half_life is None or self.half_life > 5_000 else "trending"

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._counts

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


class SegmentPopularity:
    """Time-decayed popularity within each user segment, and overall.

    ``rank`` answers from the popularity of the context's segment (reason "popular in
    <segment>") and tops up from the overall ranking when the segment knows too few
    items, or when the request has no segment. At most ``max_segments`` segments are
    tracked (segments are a small configured set; past the cap the least recently learned
    segment is dropped), each holding up to ``max_items_per_segment`` items.

    >>> sp = SegmentPopularity(half_life=None)
    >>> for item, seg in [("a", "fans"), ("b", "fans"), ("b", "fans"), ("c", None)]:
    ...     sp.learn_one(item, [], context=Context(segment=seg))
    >>> [(s.item_id, s.reason) for s in sp.rank([], (), 3, Context(segment="fans"))]
    [('b', 'popular in fans'), ('a', 'popular in fans'), ('c', 'popular')]
    """

    def __init__(
        self,
        half_life: float | None = 20_000.0,
        max_items: int = 100_000,
        max_segments: int = 64,
        max_items_per_segment: int = 10_000,
        catalogue: Catalogue | None = None,
    ) -> None:
        self.half_life = half_life
        self.max_segments = check_int("max_segments", max_segments, low=1)
        self.max_items_per_segment = max_items_per_segment
        self.catalogue = catalogue
        self.overall = Popularity(half_life=half_life, max_items=max_items, catalogue=catalogue)
        self._segments: dict[str, Popularity] = {}

    def learn_one(
        self, item_id: str, history: Sequence[str] = (), weight: float = 1.0,
        context: Context | None = None,
    ) -> None:
        """Count the interaction overall and in the context's segment (if any)."""
        check_item_id(item_id)
        check_history(history)
        self._learn_checked(item_id, history, check_weight(weight), context)

    def _learn_checked(
        self, item_id: str, history: Sequence[str], w: float, context: Context | None = None
    ) -> None:
        """``learn_one`` once its arguments are checked (``w`` a float) by the caller."""
        self.overall._learn_checked(item_id, history, w)
        segment = context.segment if context is not None else None
        if not segment:
            return
        self._touch(segment)._learn_checked(item_id, history, w)

    def _touch(self, segment: str) -> Popularity:
        """``segment``'s model, made if new (the least recently touched one goes when
        there are ``max_segments``), and moved last: dict order is recency."""
        pop = self._segments.pop(segment, None)
        if pop is None:
            pop = Popularity(
                half_life=self.half_life, max_items=self.max_items_per_segment,
                catalogue=self.catalogue, reason=f"popular in {segment}",
            )
            if len(self._segments) >= self.max_segments:
                del self._segments[next(iter(self._segments))]
        self._segments[segment] = pop
        return pop

    def apply_delta(self, steps: int, increments: Mapping[str, float],
                    segments: Mapping[str, tuple[int, Mapping[str, float]]]) -> None:
        """``Popularity.apply_delta`` overall and in each of ``segments`` (its own steps
        and increments)."""
        self.overall.apply_delta(steps, increments)
        for segment, (seg_steps, incs) in segments.items():
            self._touch(segment).apply_delta(seg_steps, incs)

    def rank(
        self, history: Sequence[str], exclude: Collection[str], k: int,
        context: Context | None = None,
    ) -> list[ScoredItem]:
        """Top ``k`` in the segment, topped up from overall popularity."""
        return self.ranked(history, exclude, k, context).items()

    def ranked(
        self, history: Sequence[str], exclude: Collection[str], k: int,
        context: Context | None = None,
    ) -> Ranked:
        """What ``rank`` returns, with reasons made on demand (``Ranked``)."""
        check_k(k)
        segment = context.segment if context is not None else None
        pop = self._segments.get(segment) if segment else None
        if pop is None:
            return self.overall.ranked(history, exclude, k)
        out = pop.ranked(history, exclude, k)
        if len(out.ids) >= k:
            return out
        taken = set(as_lookup(exclude))
        taken.update(out.ids)
        rest = self.overall.ranked(history, taken, k - len(out.ids))
        n, first, second = len(out.ids), out.explain, rest.explain
        return Ranked(
            out.ids + rest.ids, [*out.scores, *rest.scores],
            lambda positions: [(first if p < n else second)([p if p < n else p - n])[0]
                               for p in positions],
        )

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.overall

    def segments(self) -> list[str]:
        """The segments tracked, least recently learned first."""
        return list(self._segments)

    def __len__(self) -> int:
        return len(self.overall)
