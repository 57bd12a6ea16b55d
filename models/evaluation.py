"""Prequential (test-then-train) quality metrics, accumulated one event at a time.

Pure accumulators for ``persona evaluate`` (docs/quality.md, Protocol): the replay driver
asks a model, hands the outcome here, then lets the model learn. No I/O; the only side input is an
injectable clock for events per second.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

# Figures that depend only on the stream and the model, never on the machine: what a
# documented result is compared on (events_per_s is left out).
QUALITY_KEYS = ("recall", "ndcg", "mrr", "coverage", "popularity_percentile")


def ndcg_gain(rank: int | None) -> float:
    """NDCG of one event with a single relevant item: ``1 / log2(rank + 2)``, 0 on a miss.

    The ideal list puts the item first (gain 1), so no normalization is needed.

    >>> ndcg_gain(0), ndcg_gain(2), ndcg_gain(None)
    (1.0, 0.5, 0.0)
    """
    return 0.0 if rank is None else 1.0 / math.log2(rank + 2)


def reciprocal_rank(rank: int | None) -> float:
    """``1 / (rank + 1)`` (rank 0 is the top), 0 if the item was not recommended.

    >>> reciprocal_rank(0), reciprocal_rank(3), reciprocal_rank(None)
    (1.0, 0.25, 0.0)
    """
    return 0.0 if rank is None else 1.0 / (rank + 1)


class CountRanks:
    """Interaction counts per item, answering "how many items have a lower count" in O(1).

    Counts only ever grow by one, so an item moves from the block of items with count c
    to the block with c + 1. Keeping, for each count present, how many items it has and
    how many items have a strictly higher count, each ``add`` touches two blocks and each
    query is two dict lookups: no sorting, whatever the number of items. Items can also
    be made known at count 0 (``know``: a catalogue item nobody has chosen yet).

    >>> r = CountRanks()
    >>> for item in ["a", "b", "b", "c", "b", "c"]:
    ...     r.add(item)
    >>> r.count("b"), r.lower("b"), r.lower("c"), r.lower("a"), r.lower("zzz")
    (3, 2, 1, 0, 0)
    >>> r.know("d"); r.percentile("b"), r.percentile("a"), len(r)
    (0.75, 0.25, 4)
    """

    def __init__(self) -> None:
        self._count: dict[str, int] = {}
        self._chosen = 0  # items with a count >= 1
        self._size: dict[int, int] = {}  # count -> items with exactly that count
        self._higher: dict[int, int] = {}  # count -> items with a strictly higher count

    def __len__(self) -> int:
        return len(self._count)

    def __contains__(self, item: object) -> bool:
        return item in self._count

    def count(self, item: str) -> int:
        return self._count.get(item, 0)

    def know(self, item: str) -> None:
        """Make ``item`` known (count 0 if new): it now counts in every percentile."""
        self._count.setdefault(item, 0)

    def add(self, item: str) -> None:
        """One more interaction with ``item`` (an unknown item becomes known first)."""
        c = self._count.get(item, 0)
        size, higher = self._size, self._higher
        if c + 1 not in size:
            size[c + 1] = 0
            # nothing sits at c + 1, so the items above it are the items above c (for
            # c = 0: every chosen item)
            higher[c + 1] = higher[c] if c else self._chosen
        size[c + 1] += 1
        if c:
            higher[c] += 1
            size[c] -= 1
            if not size[c]:
                del size[c], higher[c]
        else:
            self._chosen += 1
        self._count[item] = c + 1

    def lower(self, item: str) -> int:
        """How many known items have a strictly lower count than ``item`` (0 if unknown)."""
        c = self._count.get(item, 0)
        if not c:
            return 0
        return len(self._count) - self._higher[c] - self._size[c]

    def percentile(self, item: str) -> float:
        """The fraction of known items with a strictly lower count (0.0 with none known)."""
        n = len(self._count)
        return self.lower(item) / n if n else 0.0


class _Window:
    """Sums over one run of events; the figures are means over its events."""

    __slots__ = ("events", "hits", "ndcg", "mrr", "pop_sum", "pop_n", "recommended",
                 "start", "started_at")

    def __init__(self, start: int, started_at: float) -> None:
        self.start = start
        self.started_at = started_at
        self.events = 0
        self.hits = 0
        self.ndcg = 0.0
        self.mrr = 0.0
        self.pop_sum = 0.0
        self.pop_n = 0
        self.recommended: set[str] = set()


def _figures(w: _Window, items_seen: int, seconds: float) -> dict[str, Any]:
    n = w.events
    return {
        "start": w.start,
        "events": n,
        "recall": w.hits / n if n else 0.0,
        "ndcg": w.ndcg / n if n else 0.0,
        "mrr": w.mrr / n if n else 0.0,
        "coverage": len(w.recommended) / items_seen if items_seen else 0.0,
        "popularity_percentile": w.pop_sum / w.pop_n if w.pop_n else 0.0,
        "events_per_s": n / seconds if seconds > 0 else 0.0,
    }


class PrequentialMetrics:
    """Top-k quality of a replay, overall and per window of ``window`` events.

    For every event, in stream order: ``add(rank, recommended)`` with what was
    recommended before the model saw the event (``rank`` is the 0-based position of the
    event's item in that list, None if absent), then ``learn(item)``.

    - recall (hit rate): share of events whose item was recommended;
    - ndcg: mean ``1 / log2(rank + 2)`` (0 on a miss); mrr: mean ``1 / (rank + 1)``;
    - coverage: distinct recommended items / distinct items known (per window:
      recommended within it / known at its end);
    - popularity_percentile: mean, over every recommended item, of the share of items
      known so far with strictly fewer interactions (near 1 = only the most popular).

    Known items are those seen in the stream plus those made known with ``know`` (the
    catalogue): a model that recommends catalogue items nobody has chosen yet covers them
    too, so coverage stays a share of what could be recommended.

    >>> m = PrequentialMetrics(k=2, window=2, clock=lambda: 0.0)
    >>> for rank, recs, item in [(None, [], "a"), (0, ["a"], "a"), (1, ["a", "b"], "b")]:
    ...     m.add(rank, recs)
    ...     m.learn(item)
    >>> s = m.summary()
    >>> s["events"], s["recall"], round(s["ndcg"], 4), s["mrr"], s["coverage"]
    (3, 0.6666666666666666, 0.5436, 0.5, 1.0)
    >>> [(w["start"], w["events"], w["recall"]) for w in s["windows"]]
    [(0, 2, 0.5), (2, 1, 1.0)]
    """

    def __init__(
        self, k: int = 10, window: int = 10_000,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.k = k
        self.window = window
        self._clock = clock
        self.counts = CountRanks()
        self._started_at = clock()
        self._total = _Window(0, self._started_at)
        self._current = _Window(0, self._started_at)
        self._closed: list[dict[str, Any]] = []

    @property
    def events(self) -> int:
        return self._total.events

    def _close_window(self) -> None:
        now = self._clock()
        w = self._current
        self._closed.append(_figures(w, len(self.counts), now - w.started_at))
        self._current = _Window(self._total.events, now)

    def add(self, rank: int | None, recommended: Sequence[str]) -> None:
        """One event: the item's 0-based ``rank`` in ``recommended`` (None: a miss)."""
        if rank is not None and not 0 <= rank < self.k:
            raise ValueError(f"rank must be in [0, {self.k}) or None, got {rank}")
        if self._current.events >= self.window:
            # closed here, not in learn(), so the window's coverage counts the items its
            # last event taught
            self._close_window()
        percentile = self.counts.percentile
        pop = 0.0
        for item in recommended:
            pop += percentile(item)
        n_rec = len(recommended)
        gain = ndcg_gain(rank)
        rr = reciprocal_rank(rank)
        for w in (self._total, self._current):
            w.events += 1
            if rank is not None:
                w.hits += 1
                w.ndcg += gain
                w.mrr += rr
            w.pop_sum += pop
            w.pop_n += n_rec
            w.recommended.update(recommended)

    def learn(self, item: str) -> None:
        """The event's item, as the model learns it (counts feed popularity_percentile)."""
        self.counts.add(item)

    def know(self, item: str) -> None:
        """A catalogue item the model may recommend, whether or not anyone chose it yet."""
        self.counts.know(item)

    def windows(self) -> list[dict[str, Any]]:
        """Figures per window, the last (possibly partial) one included."""
        out = list(self._closed)
        w = self._current
        if w.events:
            out.append(_figures(w, len(self.counts), self._clock() - w.started_at))
        return out

    def summary(self) -> dict[str, Any]:
        """Overall figures (keys of ``_figures`` but start) plus ``windows``."""
        figures = _figures(self._total, len(self.counts), self._clock() - self._started_at)
        del figures["start"]
        figures["items_known"] = len(self.counts)
        figures["windows"] = self.windows()
        return figures


class _ErrWindow:
    __slots__ = ("abs", "events", "sq", "start", "started_at")

    def __init__(self, start: int, started_at: float) -> None:
        self.start = start
        self.started_at = started_at
        self.events = 0
        self.abs = 0.0
        self.sq = 0.0

    def figures(self, seconds: float) -> dict[str, Any]:
        n = self.events
        return {
            "start": self.start,
            "events": n,
            "mae": self.abs / n if n else 0.0,
            "rmse": math.sqrt(self.sq / n) if n else 0.0,
            "events_per_s": n / seconds if seconds > 0 else 0.0,
        }


class RatingMetrics:
    """MAE and RMSE of rating predictions made before learning each rating (prequential).

    >>> m = RatingMetrics(window=2, clock=lambda: 0.0)
    >>> for predicted, actual in [(3.0, 4.0), (4.0, 4.0), (5.0, 3.0)]:
    ...     m.add(predicted, actual)
    >>> s = m.summary()
    >>> s["mae"], round(s["rmse"], 4), [w["mae"] for w in s["windows"]]
    (1.0, 1.291, [0.5, 2.0])
    """

    def __init__(self, window: int = 10_000, clock: Callable[[], float] = time.perf_counter):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self._clock = clock
        self._started_at = clock()
        self._total = _ErrWindow(0, self._started_at)
        self._current = _ErrWindow(0, self._started_at)
        self._closed: list[dict[str, Any]] = []

    @property
    def events(self) -> int:
        return self._total.events

    def add(self, predicted: float, actual: float) -> None:
        err = float(predicted) - float(actual)
        if not math.isfinite(err):
            raise ValueError(f"predicted and actual must be finite, got {predicted}, {actual}")
        if self._current.events >= self.window:
            now = self._clock()
            self._closed.append(self._current.figures(now - self._current.started_at))
            self._current = _ErrWindow(self._total.events, now)
        for w in (self._total, self._current):
            w.events += 1
            w.abs += abs(err)
            w.sq += err * err

    def windows(self) -> list[dict[str, Any]]:
        out = list(self._closed)
        if self._current.events:
            out.append(self._current.figures(self._clock() - self._current.started_at))
        return out

    def summary(self) -> dict[str, Any]:
        figures = self._total.figures(self._clock() - self._started_at)
        del figures["start"]
        figures["windows"] = self.windows()
        return figures


def rank_of(item: str, recommended: Iterable[str]) -> int | None:
    """0-based position of ``item`` in ``recommended``, None if absent.

    >>> rank_of("b", ["a", "b"]), rank_of("z", ["a"])
    (1, None)
    """
    for i, rec in enumerate(recommended):
        if rec == item:
            return i
    return None
