"""User segments: profile features, online k-means over them, stable assignment and
plain-words descriptions of each segment (what ``persona segments`` lists).

The segment names ``s0`` .. ``s{k-1}`` are metric labels and travel on the ``segments``
topic, so there are exactly ``k`` of them and a name always means the same centroid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count, repeat
from numbers import Integral
from typing import Any

import numpy as np
import numpy.typing as npt

from models.checks import (
    MAX_TS_MS,
    check_int,
    check_number,
    check_positive,
    check_ts,
    is_int,
    is_integral,
)
from models.users.profile import UserProfile

DAY_MS = 86_400_000
# Profile features, in this order, before one interest share per vocabulary category and
# the share of interest in every other category.
BASE_FEATURES = ("recency", "tenure", "frequency", "monetary", "purchase_ratio")
RECENCY, TENURE, FREQUENCY, MONETARY, PURCHASE_RATIO = range(len(BASE_FEATURES))
# Interest shares are taken against at least one click's worth of interest, so a profile
# holding almost no interest (corrupt or hand-made) counts as having no clear taste.
INTEREST_FLOOR = 1.0
# Stored scores beyond this are corrupt; clipping keeps the sums finite.
MAX_SCORE = 1e12
# Activity words, from a centroid's days since last seen and since first seen.
ACTIVE_DAYS = 7.0
LAPSING_DAYS = 30.0
NEW_DAYS = 7.0
# A centroid below this spend (in currency units, on the log scale) "spends nothing".
NO_SPEND = 1.0
# A category is named in a description when it holds at least this share of interest.
MIN_DESCRIBED_SHARE = 0.15
# A category takes over a vocabulary slot when its weight is this many times the weakest
# slot's: the margin keeps two similar categories from swapping slots back and forth.
VOCAB_MARGIN = 2.0
SPEND_BINS = 64
# After warm-up, a point this many times farther (squared) from every centroid than points
# usually are from theirs takes over a centroid that has no points, if there is one.
SPAWN_FACTOR = 4.0


@dataclass(frozen=True, slots=True)
class FeatureScales:
    """Where each log-scaled feature reaches 1.0 (larger values are clipped to 1.0).

    >>> FeatureScales().recency_cap_days
    365.0
    """

    recency_cap_days: float = 365.0
    frequency_cap: float = 10_000.0
    spend_cap: float = 100_000.0

    def __post_init__(self) -> None:
        for name in ("recency_cap_days", "frequency_cap", "spend_cap"):
            check_positive(name, getattr(self, name), plain=True)


DEFAULT_SCALES = FeatureScales()


def feature_names(categories: Sequence[str]) -> list[str]:
    """Names of the entries of ``profile_features(..., categories)``.

    >>> feature_names(["Action"])
    ['recency', 'tenure', 'frequency', 'monetary', 'purchase_ratio', 'share:Action', 'share:other']
    """
    return [*BASE_FEATURES, *(f"share:{c}" for c in _check_vocabulary(categories)), "share:other"]


def profile_features(
    profile: UserProfile,
    now_ms: int,
    categories: Sequence[str],
    *,
    scales: FeatureScales = DEFAULT_SCALES,
) -> npt.NDArray[np.float64]:
    """The profile as ``len(BASE_FEATURES) + len(categories) + 1`` numbers, each in [0, 1].

    - recency: log1p(days since last seen) / log1p(``recency_cap_days``); 1.0 if never seen;
    - tenure: the same for days since first seen (0.0 if never seen);
    - frequency: log1p(clicks + purchases) / log1p(``frequency_cap``);
    - monetary: log1p(spend) / log1p(``spend_cap``);
    - purchase_ratio: purchases / (clicks + purchases);
    - one share per category (an empty string is a free slot and gets 0.0), then the share
      of all other categories: the category's recency-weighted interest divided by the
      larger of the total and ``INTEREST_FLOOR``. Decay scales every category alike, so
      the shares need no half-life: a dormant user keeps the taste they last showed
      (recency says they are dormant).

    Stored values are data and may be corrupt: NaN counts as 0, +inf as the cap, negative
    numbers as 0 and a last-seen time after ``now_ms`` as now, so the result is always
    finite. Bad arguments (``now_ms``, ``categories``) raise ValueError.

    >>> p = UserProfile(clicks=3, purchases=1, spend=99.0, interests={"Action": 3.0,
    ...                 "Drama": 1.0}, interest_ts_ms=0, first_seen_ms=0, last_seen_ms=0)
    >>> x = profile_features(p, 0, ["Action", "Comedy"])
    >>> [round(float(v), 2) for v in x]
    [0.0, 0.0, 0.17, 0.4, 0.25, 0.75, 0.0, 0.25]
    """
    now = check_ts("now_ms", now_ms)
    cats = _check_vocabulary(categories)
    return _features(profile, now, cats, scales)


def _features(
    p: UserProfile, now: int, cats: Sequence[str], scales: FeatureScales
) -> npt.NDArray[np.float64]:
    return np.array(_feature_list(p, now, cats, scales))


def _interest_scores(p: UserProfile) -> dict[str, float]:
    """The profile's interest scores, each ``_clean``-ed (every key kept)."""
    interests = p.interests if isinstance(p.interests, dict) else {}
    # _clean inlined for the common case (a positive float), which it dominates.
    return {c: (s if s < MAX_SCORE else MAX_SCORE) if type(s) is float and s > 0.0
            else _clean(s, MAX_SCORE) for c, s in interests.items()}


def _positions(cats: Sequence[str]) -> dict[str, list[int]]:
    """Each category's feature columns (a category listed twice has two)."""
    at: dict[str, list[int]] = {}
    for j, cat in enumerate(cats, len(BASE_FEATURES)):
        if cat:
            at.setdefault(cat, []).append(j)
    return at


def _feature_list(
    p: UserProfile, now: int, cats: Sequence[str], scales: FeatureScales,
    scores: dict[str, float] | None = None, positions: dict[str, list[int]] | None = None,
) -> list[float]:
    """``positions``: ``_positions(cats)``, if the caller keeps it."""
    # Plain floats, one numpy array at the end: element-wise numpy writes cost more than
    # the arithmetic (this runs twice per event). Every value is finite by construction
    # and none is negative; only the log-scaled ones can pass 1 (shares are parts of a
    # total at least as large, and a sum of non-negative floats is at least each term).
    base = len(BASE_FEATURES)
    x = [0.0] * (base + len(cats) + 1)
    last = _timestamp(p.last_seen_ms)
    first = _timestamp(p.first_seen_ms)
    recency_norm = math.log1p(scales.recency_cap_days)
    if last is None:
        x[RECENCY] = 1.0
    else:
        x[RECENCY] = min(1.0, math.log1p(max(0, now - last) / DAY_MS) / recency_norm)
    if first is not None:
        x[TENURE] = min(1.0, math.log1p(max(0, now - first) / DAY_MS) / recency_norm)
    clicks = _clean(p.clicks, MAX_SCORE)
    purchases = _clean(p.purchases, MAX_SCORE)
    events = clicks + purchases
    x[FREQUENCY] = min(1.0, math.log1p(events) / math.log1p(scales.frequency_cap))
    x[MONETARY] = min(1.0, math.log1p(_clean(p.spend, MAX_SCORE))
                      / math.log1p(scales.spend_cap))
    if events > 0:
        x[PURCHASE_RATIO] = purchases / events
    if scores is None:
        scores = _interest_scores(p)
    total = sum(scores.values())
    if total > 0.0:
        norm = max(total, INTEREST_FLOOR)
        if positions is None:
            positions = _positions(cats)
        # Over the profile's categories, not every column: most columns are not among
        # them. A category listed twice is still counted once towards "other".
        shown = 0.0
        at = positions.get
        for cat, score in scores.items():
            columns = at(cat)
            if columns is not None:
                shown += score
                for j in columns:
                    x[j] = score / norm
        x[-1] = max(0.0, total - shown) / norm
    return x


class OnlineKMeans:
    """Sequential k-means on fixed-length vectors, deterministic given ``seed`` and the
    order of the points.

    The first ``warmup`` points are buffered; centroids are then seeded from them with
    k-means++ and refined with ``n_iter`` Lloyd iterations (before that, ``predict_one``
    answers from the same seeding over the points buffered so far). After warm-up each
    point moves its nearest centroid towards it by ``1 / min(count, memory)``: a running
    mean at first, then an average over about the last ``memory`` points of that cluster,
    so centroids follow drift. A centroid left without points at seeding (fewer distinct
    warm-up points than ``k``) is moved to the first later point that fits no cluster.
    Points must be finite and all of one length.

    >>> km = OnlineKMeans(k=2, seed=0, warmup=4)
    >>> for x in ([0.0, 0.1], [1.0, 0.9], [0.1, 0.0], [0.9, 1.0], [0.05, 0.05]):
    ...     km.learn_one(x)
    >>> km.predict_one([0.0, 0.0]) != km.predict_one([1.0, 1.0])
    True
    >>> km.counts().tolist()
    [2, 3]
    """

    def __init__(
        self, k: int = 6, seed: int = 0, memory: int = 1_000, warmup: int = 100, n_iter: int = 10
    ) -> None:
        for name, value, low in (("k", k, 1), ("memory", memory, 1), ("n_iter", n_iter, 0)):
            check_int(name, value, low)
        if not is_int(warmup) or warmup < k:
            raise ValueError(f"warmup must be an int >= k ({k}), got {warmup!r}")
        check_int("seed", seed, low=0)
        self.k = k
        self.seed = seed
        self.memory = memory
        self.warmup = warmup
        self.n_iter = n_iter
        self._dim: int | None = None
        self._buffer: list[npt.NDArray[np.float64]] | None = []
        # Seeded from the buffer on demand while warming up (None: not computed yet).
        self._centroids: npt.NDArray[np.float64] | None = None
        self._counts = np.zeros(k, dtype=np.int64)
        # Running mean squared distance of a point to its centroid.
        self._spread = 0.0
        # Whether the counts sum to ``memory`` or more (read with a default: older pickles).
        self._full = False

    @property
    def seeded(self) -> bool:
        """True once warm-up is over and points update the centroids one by one."""
        return self._buffer is None

    @property
    def n_seen(self) -> int:
        """Points learned so far."""
        return int(self._counts.sum()) if self._buffer is None else len(self._buffer)

    def centroids(self) -> npt.NDArray[np.float64] | None:
        """A copy of the centroids (k rows), or None before the first point."""
        c = self._current()
        return None if c is None else c.copy()

    def counts(self) -> npt.NDArray[np.int64]:
        """Points learned by each centroid (during warm-up: buffered points nearest to it)."""
        if self._buffer is not None:
            c = self._current()
            if c is None:
                return np.zeros(self.k, dtype=np.int64)
            return np.bincount(_nearest_all(np.array(self._buffer), c), minlength=self.k)
        return self._counts.copy()

    def learn_one(self, x: npt.ArrayLike) -> None:
        """Learn one point (ValueError, and nothing learned, if it is not finite or is of
        another length than the first point's)."""
        self._learn(self._check(x))

    def _learn(self, v: npt.NDArray[np.float64]) -> None:
        self._learn_values(v.tolist(), v)

    def _learn_values(
        self, x: list[float], v: npt.NDArray[np.float64] | None = None
    ) -> list[float] | None:
        """Learn the point ``x`` (``v``: the same point as an array, if there is one); the
        distances from it to each centroid once learned, or None while warming up.

        Plain floats after warm-up: k distances and one centroid's move cost less so
        than as a dozen numpy calls on arrays this small."""
        if self._buffer is not None:
            self._buffer.append(np.array(x) if v is None else v)
            self._centroids = None
            if len(self._buffer) >= self.warmup:
                points = np.array(self._buffer)
                centroids = self._seed_from(points)
                labels = _nearest_all(points, centroids)
                self._counts = np.bincount(labels, minlength=self.k)
                self._spread = float(((points - centroids[labels]) ** 2).sum(axis=1).mean())
                self._centroids = centroids
                self._buffer = None
            return None
        c = self._centroids
        assert c is not None
        rows = c.tolist()
        d = [math.dist(row, x) for row in rows]
        j = min(range(len(d)), key=d.__getitem__)  # the first nearest, as argmin
        nearest = d[j] * d[j]
        counts = self._counts
        if nearest > SPAWN_FACTOR * self._spread and 0 in counts:
            # A centroid that won nothing at seeding (the warm-up points were fewer
            # distinct ones than k) takes the first point that fits no cluster.
            j = int(np.argmin(counts))
            c[j] = x
            counts[j] = 1
            d[j] = 0.0
            return d
        counts[j] += 1
        memory = self.memory
        n = min(int(counts[j]), memory)
        moved = [a + (b - a) / n for a, b in zip(rows[j], x, strict=True)]
        c[j] = moved
        d[j] = math.dist(moved, x)
        # Counts only grow: once their sum reaches memory it stays there (no more sums).
        if self.__dict__.get("_full", False):
            seen = memory
        else:
            seen = min(int(counts.sum()), memory)
            self._full = seen == memory
        self._spread += (nearest - self._spread) / seen
        return d

    def learn_weighted(self, x: Sequence[float], n: int) -> None:
        """Learn ``n`` points all equal to ``x`` (a group's mean, from another worker's
        sums) as ``n`` calls of ``learn_one(x)`` would, in O(k) after warm-up.

        The nearest centroid moves to ``x + (c - x) * keep``: with equal points its
        sequential steps ``1 / min(count, memory)`` multiply to ``keep = count0 / (count0
        + a) * (1 - 1 / memory) ** (n - a)``, ``a`` of them below the memory. The spread
        moves by the group's share of the points seen. Warm-up takes the points one by
        one (at most ``warmup`` of them).

        >>> one, many = OnlineKMeans(k=1, warmup=1), OnlineKMeans(k=1, warmup=1)
        >>> for km in (one, many):
        ...     km.learn_one([0.0])
        >>> for _ in range(3):
        ...     one.learn_one([1.0])
        >>> many.learn_weighted([1.0], 3)
        >>> one.centroids().tolist() == many.centroids().tolist(), many.counts().tolist()
        (True, [4])
        """
        n = int(n)
        point = [float(v) for v in x]
        self._check_length(len(point))
        if not all(math.isfinite(v) for v in point):
            raise ValueError("a point must be finite")
        while n > 0 and self._buffer is not None:
            self._learn_values(point)
            n -= 1
        if n <= 0:
            return
        c = self._centroids
        assert c is not None
        rows = c.tolist()
        d = [math.dist(row, point) for row in rows]
        j = min(range(len(d)), key=d.__getitem__)
        nearest = d[j] * d[j]
        counts = self._counts
        if nearest > SPAWN_FACTOR * self._spread and 0 in counts:
            j = int(np.argmin(counts))  # as learn_one: a spare centroid takes the group
            c[j] = point
            counts[j] = n
            return
        memory = self.memory
        before = int(counts[j])
        a = max(0, min(n, memory - before))
        keep = (before / (before + a) if a > 0 else 1.0) * (1.0 - 1.0 / memory) ** (n - a)
        c[j] = [b + (r - b) * keep for r, b in zip(rows[j], point, strict=True)]
        counts[j] += n
        if self.__dict__.get("_full", False):
            seen = memory
        else:
            seen = min(int(counts.sum()), memory)
            self._full = seen == memory
        self._spread += (nearest - self._spread) * min(1.0, n / seen)

    def predict_one(self, x: npt.ArrayLike) -> int:
        """Index of the nearest centroid (ties: the lowest index; 0 before any point)."""
        d = self.distances(x)
        return int(np.argmin(d)) if d.size else 0

    def distances(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Euclidean distance from ``x`` to each centroid (empty before any point)."""
        return self._distances(self._check(x))

    def _distances(self, v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        c = self._current()
        if c is None:
            return np.zeros(0)
        x = v.tolist()  # as learning measures them (math.dist), so both agree on ties
        return np.array([math.dist(row, x) for row in c.tolist()])

    def reset_feature(self, j: int, value: float = 0.0) -> None:
        """Set feature ``j`` of every centroid (and buffered point) to ``value``: for when
        the meaning of that feature changes, so old values must not pull new points."""
        if self._dim is None:
            return
        if not 0 <= j < self._dim:
            raise ValueError(f"feature index must be in [0, {self._dim}), got {j!r}")
        if self._buffer is not None:
            for v in self._buffer:
                v[j] = value
            self._centroids = None
        elif self._centroids is not None:
            self._centroids[:, j] = value

    def _current(self) -> npt.NDArray[np.float64] | None:
        if self._centroids is None and self._buffer:
            self._centroids = self._seed_from(np.array(self._buffer))
        return self._centroids

    def _seed_from(self, points: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        # A generator derived from (seed, number of points): the result depends only on
        # the points, not on how often predict_one ran during warm-up.
        rng = np.random.default_rng([self.seed, len(points)])
        n = len(points)
        chosen = [int(rng.integers(n))]
        d2 = ((points - points[chosen[0]]) ** 2).sum(axis=1)
        for _ in range(1, self.k):
            total = float(d2.sum())
            if total > 0.0:
                i = int(rng.choice(n, p=d2 / total))
            else:
                i = int(rng.integers(n))
            chosen.append(i)
            d2 = np.minimum(d2, ((points - points[i]) ** 2).sum(axis=1))
        centroids = points[chosen].copy()
        for _ in range(self.n_iter):
            labels = _nearest_all(points, centroids)
            moved = False
            for j in range(self.k):
                members = points[labels == j]
                if len(members):
                    mean = members.mean(axis=0)
                    if not np.array_equal(mean, centroids[j]):
                        centroids[j] = mean
                        moved = True
            if not moved:
                break
        return centroids

    def _trusted(self, x: list[float]) -> npt.NDArray[np.float64]:
        """``x`` as a point, for the segmenter's own features: finite by construction,
        so only their length is checked."""
        self._check_length(len(x))
        return np.array(x)

    def _check_length(self, size: int) -> None:
        if self._dim is None:
            self._dim = size
        elif size != self._dim:
            raise ValueError(f"points have {self._dim} features, got {size}")

    def _check(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        try:
            v = np.array(x, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"a point must be a sequence of numbers: {exc}") from None
        if v.ndim != 1 or v.size == 0:
            raise ValueError(f"a point must be a non-empty 1-D vector, got shape {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError("a point must be finite (no NaN or inf)")
        if self._dim is None:
            self._dim = v.size
        elif v.size != self._dim:
            raise ValueError(f"points have {self._dim} features, got {v.size}")
        return v


def _nearest_all(
    points: npt.NDArray[np.float64], centroids: npt.NDArray[np.float64]
) -> npt.NDArray[np.intp]:
    d2 = ((points[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    return np.argmin(d2, axis=1)


@dataclass
class GroupSum:
    """What a segmenter learned from ``n`` profiles of one segment, summed, in a form
    that needs no vocabulary: the base features, each category's interest share (as
    ``profile_features`` computes a share column, for every category of the profile),
    and the monetary feature's spend-histogram bins."""

    n: int = 0
    base: list[float] = field(default_factory=lambda: [0.0] * len(BASE_FEATURES))
    shares: dict[str, float] = field(default_factory=dict)
    spend: dict[int, int] = field(default_factory=dict)


class SegmentSums:
    """A segmenter's learning between two model-sync flushes, summed per segment.

    Summed per the segment each user was assigned: a group's mean stands for its users,
    so another worker's segmenter learns the group as that many profiles at the mean
    (``Segmenter.learn_sums``; k-means moves a centroid to the mean of its points, so a
    group's mean moves it as its points would). A group leaves only once it sums at
    least ``min_users`` distinct users (``take``): no one user's numbers go out alone.

    >>> sums = SegmentSums()
    >>> for user in ("u1", "u2"):
    ...     sums.add("s0", UserProfile(clicks=1, interests={"Drama": 2.0}), 0, user)
    >>> sums.take(3), len(sums)
    ({}, 2)
    >>> taken = sums.take(2)
    >>> taken["s0"].n, taken["s0"].shares, len(sums)
    (2, {'Drama': 2.0}, 0)
    """

    def __init__(self, scales: FeatureScales = DEFAULT_SCALES) -> None:
        self.scales = scales
        self.groups: dict[str, GroupSum] = {}
        self._users: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return sum(g.n for g in self.groups.values())

    def add(self, segment: str, profile: UserProfile, now_ms: int, user: str) -> None:
        """Sum ``profile`` (learned as of ``now_ms``) into ``segment``'s group."""
        now = check_ts("now_ms", now_ms)
        scores = _interest_scores(profile)
        x = _feature_list(profile, now, (), self.scales, scores, {})
        g = self.groups.get(segment)
        if g is None:
            g = self.groups[segment] = GroupSum()
            self._users[segment] = set()
        self._users[segment].add(user)
        g.n += 1
        for i in range(len(BASE_FEATURES)):
            g.base[i] += x[i]
        total = sum(scores.values())
        if total > 0.0:
            norm = max(total, INTEREST_FLOOR)
            shares = g.shares
            for cat, score in scores.items():
                if score > 0.0 and isinstance(cat, str) and cat:
                    shares[cat] = shares.get(cat, 0.0) + score / norm
        monetary = x[MONETARY]
        if monetary > 0.0:
            b = min(int(monetary * SPEND_BINS), SPEND_BINS - 1)
            g.spend[b] = g.spend.get(b, 0) + 1

    def take(self, min_users: int) -> dict[str, GroupSum]:
        """Remove and return the groups of at least ``min_users`` distinct users."""
        out = {seg: g for seg, g in self.groups.items()
               if len(self._users[seg]) >= min_users}
        for seg in out:
            del self.groups[seg]
            del self._users[seg]
        return out


class Segmenter:
    """Segments users by their profile features: online k-means, a bounded category
    vocabulary, stable (hysteretic) assignment, segment sizes and descriptions.

    The vocabulary holds up to ``max_categories`` categories, weighted by the interest
    shares of the profiles learned (decaying with a half-life of ``stats_half_life``
    learned profiles); a category takes a full vocabulary's weakest slot only when it
    weighs ``VOCAB_MARGIN`` times more, and that feature is then reset in every centroid.
    ``assign`` keeps a user's previous segment unless another centroid is closer by
    the factor ``1 - switch_margin``, and counts users per segment from the moves it
    returns (``forget`` takes an erased user out).

    >>> from models.users.profile import apply_purchase
    >>> def buyer(item, amount, category):
    ...     return apply_purchase(UserProfile(), item, 0, amount, [category], half_life_ms=DAY_MS)
    >>> users = [buyer(f"a{n}", 500.0, "Action") for n in range(20)]
    >>> users += [buyer(f"c{n}", 5.0, "Comedy") for n in range(20)]
    >>> seg = Segmenter(k=2, warmup=20)
    >>> for p in users:
    ...     seg.learn_one(p, now_ms=DAY_MS)
    >>> fan = seg.assign(None, users[0], now_ms=DAY_MS)
    >>> seg.describe(fan), seg.describe(seg.predict_one(users[-1], now_ms=DAY_MS))
    ('new, high spend, into Action', 'new, low spend, into Comedy')
    >>> [s["size"] for s in seg.summary() if s["name"] == fan]
    [1]
    """

    def __init__(
        self,
        k: int = 6,
        seed: int = 0,
        *,
        max_categories: int = 16,
        switch_margin: float = 0.15,
        memory: int = 1_000,
        warmup: int = 100,
        stats_half_life: float = 20_000.0,
        scales: FeatureScales = DEFAULT_SCALES,
    ) -> None:
        check_positive("stats_half_life", stats_half_life, plain=True)
        check_int("max_categories", max_categories, 1, 256)
        check_number("switch_margin", switch_margin, 0.0, 1.0, high_open=True, plain=True)
        if not isinstance(scales, FeatureScales):
            raise ValueError(f"scales must be a FeatureScales, got {scales!r}")
        self.k = k
        self.seed = seed
        self.max_categories = max_categories
        self.switch_margin = float(switch_margin)
        self.memory = memory
        self.warmup = warmup
        self.stats_half_life = float(stats_half_life)
        self.scales = scales
        self._kmeans = OnlineKMeans(k=k, seed=seed, memory=memory, warmup=warmup)
        self._names = tuple(f"s{j}" for j in range(k))
        self._index = {name: j for j, name in enumerate(self._names)}
        self._sizes = [0] * k
        # Vocabulary slots ("" is free); a slot's category keeps its feature column.
        self._slots = [""] * max_categories
        # Decayed category weights, stored multiplied by _scale (which grows instead of
        # every weight shrinking at each step); bounded to 4 x max_categories entries.
        self._weights: dict[str, float] = {}
        self._scale = 1.0
        self._keep = 0.5 ** (1.0 / self.stats_half_life)
        # Decayed histogram of the monetary feature over the profiles that spent something.
        self._spend_hist = np.zeros(SPEND_BINS)

    @property
    def names(self) -> tuple[str, ...]:
        """Every segment name, ``s0`` .. ``s{k-1}``."""
        return self._names

    @property
    def n_learned(self) -> int:
        """Profiles learned so far (for "did anything change since the checkpoint")."""
        return self._kmeans.n_seen

    def centroids(self) -> npt.NDArray[np.float64] | None:
        """A copy of the centroids (row j is segment ``s{j}``; columns as ``features``), or
        None before the first profile."""
        return self._kmeans.centroids()

    def vocabulary(self) -> list[str]:
        """The categories with a feature column, in column order (free slots left out)."""
        return [c for c in self._slots if c]

    def features(self, profile: UserProfile, now_ms: int) -> npt.NDArray[np.float64]:
        """``profile_features`` over this segmenter's vocabulary slots (fixed length)."""
        return _features(profile, check_ts("now_ms", now_ms), self._slots, self.scales)

    def learn_one(self, profile: UserProfile, now_ms: int) -> None:
        """Learn from one profile as of ``now_ms``: vocabulary, spend levels, centroids."""
        self._learn(profile, check_ts("now_ms", now_ms))

    def learn_sums(self, groups: dict[str, GroupSum]) -> None:
        """Learn another worker's summed groups (``SegmentSums``), in name order: each as
        its ``n`` profiles at the group's mean (vocabulary weights, spend histogram,
        k-means through ``OnlineKMeans.learn_weighted``). The mean point is built in
        this segmenter's own vocabulary, so the workers' vocabularies need not agree.

        >>> seg = Segmenter(k=1, warmup=1)
        >>> seg.learn_sums({"s0": GroupSum(2, [0.0, 0.0, 0.5, 0.0, 0.0], {"Drama": 1.0})})
        >>> seg.n_learned, seg.vocabulary()
        (2, ['Drama'])
        """
        for name in sorted(groups):
            g = groups[name]
            n = int(g.n)
            if n <= 0:
                continue
            shares = {c: v / n for c, v in g.shares.items() if v > 0.0}
            self._learn_vocabulary(shares, n)
            keep_n = self._keep ** n
            self._spend_hist *= keep_n
            for b, hits in g.spend.items():
                if 0 <= b < SPEND_BINS and hits > 0:
                    self._spend_hist[b] += hits
            slots = self._slots
            x = [v / n for v in g.base] + [0.0] * (len(slots) + 1)
            base = len(BASE_FEATURES)
            positions = self._positions()
            shown = 0.0
            for cat, share in shares.items():
                columns = positions.get(cat)
                if columns is not None:
                    shown += share
                    for j in columns:
                        x[j] = share
            x[-1] = max(0.0, sum(shares.values()) - shown)
            x[:base] = [min(1.0, max(0.0, v)) for v in x[:base]]
            self._kmeans.learn_weighted(x, n)

    def learn_assign(self, previous: str | None, profile: UserProfile, now_ms: int) -> str:
        """``learn_one`` then ``assign`` (the same result), computing the features once:
        what a service does with each new profile.

        >>> seg = Segmenter(k=2, warmup=2)
        >>> seg.learn_assign(None, UserProfile(clicks=1), now_ms=0) in seg.names
        True
        """
        x, d = self._learn(profile, check_ts("now_ms", now_ms))
        if d is None:  # warming up: the distances to the seeding so far
            d = self._kmeans._distances(np.array(x)).tolist()
        return self._assign(previous, d)

    def _learn(self, profile: UserProfile, now: int) -> tuple[list[float], list[float] | None]:
        """Learn ``profile``; its feature vector (after the vocabulary learned from it) and
        its distances to the centroids once learned (None while k-means warms up)."""
        scores = _interest_scores(profile)
        self._learn_vocabulary(scores)
        x = _feature_list(profile, now, self._slots, self.scales, scores, self._positions())
        self._spend_hist *= self._keep
        monetary = x[MONETARY]
        if monetary > 0.0:
            self._spend_hist[min(int(monetary * SPEND_BINS), SPEND_BINS - 1)] += 1.0
        kmeans = self._kmeans
        kmeans._check_length(len(x))
        return x, kmeans._learn_values(x)

    def _positions(self) -> dict[str, list[int]]:
        """``_positions`` of the vocabulary slots, kept while the slots stay the same."""
        kept = self.__dict__.get("_kept_positions")
        slots = self._slots
        if kept is None or kept[0] != slots:
            kept = self._kept_positions = (list(slots), _positions(slots))
        return kept[1]

    def predict_one(self, profile: UserProfile, now_ms: int) -> str:
        """The nearest segment, with no hysteresis and no counting."""
        return self._names[self._kmeans.predict_one(self.features(profile, now_ms))]

    def assign(self, previous: str | None, profile: UserProfile, now_ms: int) -> str:
        """The user's segment now, given the one they had: ``previous`` is kept unless
        another centroid is closer by the factor ``1 - switch_margin``. Sizes follow:
        a new user (``previous`` None or not a current name) adds one, a move shifts one."""
        kmeans = self._kmeans
        x = kmeans._trusted(_feature_list(profile, check_ts("now_ms", now_ms), self._slots,
                                          self.scales, positions=self._positions()))
        return self._assign(previous, kmeans._distances(x).tolist())

    def _assign(self, previous: str | None, d: list[float]) -> str:
        """The segment for a user who had ``previous``, ``d`` from each centroid."""
        prev = self._index.get(previous) if previous is not None else None
        if not d:  # nothing learned yet: nothing to move anyone for
            best = 0 if prev is None else prev
        else:
            best = min(range(len(d)), key=d.__getitem__)  # the first nearest, as argmin
            if prev is not None and not d[best] < (1.0 - self.switch_margin) * d[prev]:
                best = prev
        if prev != best:
            if prev is not None:
                self._sizes[prev] = max(0, self._sizes[prev] - 1)
            self._sizes[best] += 1
        return self._names[best]

    def forget(self, segment: str | None) -> None:
        """Take one user out of ``segment``'s size (an erased user); unknown names do nothing."""
        j = self._index.get(segment) if segment is not None else None
        if j is not None:
            self._sizes[j] = max(0, self._sizes[j] - 1)

    def describe(self, segment: str) -> str:
        """The segment in plain words: activity, spend level and top categories, e.g.
        ``"active, high spend, into Action and Sci-Fi"``."""
        if segment not in self._index:
            raise ValueError(f"unknown segment {segment!r}; segments are {', '.join(self._names)}")
        centroids = self._kmeans.centroids()
        if centroids is None:
            return "no data yet"
        c = centroids[self._index[segment]]
        return f"{self._activity(c)}, {self._spend_level(c)}, {self._taste(c)}"

    def summary(self) -> list[dict[str, Any]]:
        """One entry per segment: ``name``, ``size`` (users currently assigned) and
        ``description``."""
        return [
            {"name": name, "size": self._sizes[j], "description": self.describe(name)}
            for j, name in enumerate(self._names)
        ]

    def _learn_vocabulary(self, cleaned: dict[str, float], n: int = 1) -> None:
        """Learn the category weights from a profile's cleaned interest scores (``n``:
        from that many profiles with these scores)."""
        self._scale /= self._keep if n == 1 else self._keep ** n
        weights = self._weights
        if self._scale > 1e100:
            for cat in weights:
                weights[cat] /= self._scale
            self._scale = 1.0
        scores = {c: v for c, v in cleaned.items() if v > 0.0 and isinstance(c, str) and c}
        total = sum(scores.values())
        if total <= 0.0:
            return
        scale = self._scale if n == 1 else self._scale * n
        for cat, s in scores.items():
            weights[cat] = weights.get(cat, 0.0) + scale * s / total
        slots = self._slots
        taken = set(slots)
        in_slots = self._positions()  # the slots' categories, kept between calls
        newcomers = [c for c in scores if c not in in_slots]
        if len(newcomers) > 1:
            newcomers.sort(key=lambda c: (-weights[c], c))
        for cat in newcomers:
            if "" in taken:
                j = slots.index("")
            else:
                # The weakest slot (ties: the smaller name, then the lower index).
                j = min(zip(map(weights.get, slots, repeat(0.0)), slots, count()))[2]
                if not weights[cat] > VOCAB_MARGIN * weights.get(slots[j], 0.0):
                    break  # newcomers are sorted: no later one can pass either
                self._kmeans.reset_feature(len(BASE_FEATURES) + j)
            taken.discard(slots[j])
            slots[j] = cat
            taken.add(cat)
        if len(weights) > 4 * self.max_categories:
            spare = sorted((c for c in weights if c not in taken), key=lambda c: (weights[c], c))
            for cat in spare[: len(weights) - 3 * self.max_categories]:
                del weights[cat]

    def _activity(self, c: npt.NDArray[np.float64]) -> str:
        norm = math.log1p(self.scales.recency_cap_days)
        since_last = math.expm1(float(c[RECENCY]) * norm)
        since_first = math.expm1(float(c[TENURE]) * norm)
        if since_last > LAPSING_DAYS:
            return "dormant"
        if since_last > ACTIVE_DAYS:
            return "lapsing"
        return "new" if since_first <= NEW_DAYS else "active"

    def _spend_level(self, c: npt.NDArray[np.float64]) -> str:
        m = float(c[MONETARY])
        if m < math.log1p(NO_SPEND) / math.log1p(self.scales.spend_cap):
            return "no spend"
        rank = self.spend_rank(m)
        if rank < 1 / 3:
            return "low spend"
        return "medium spend" if rank < 2 / 3 else "high spend"

    def spend_rank(self, monetary: float) -> float:
        """Where a monetary feature value falls among the (recent) spending profiles
        learned, in [0, 1]: the share below it, counting its own histogram bin half
        (0.5 before any spender). Below 1/3 is "low spend", from 2/3 "high spend"."""
        hist = self._spend_hist
        total = float(hist.sum())
        if total <= 0.0:
            return 0.5
        i = min(max(int(monetary * SPEND_BINS), 0), SPEND_BINS - 1)
        return (float(hist[:i].sum()) + 0.5 * float(hist[i])) / total

    def _taste(self, c: npt.NDArray[np.float64]) -> str:
        base = len(BASE_FEATURES)
        shares = [(float(c[base + j]), cat) for j, cat in enumerate(self._slots) if cat]
        top = sorted((s for s in shares if s[0] >= MIN_DESCRIBED_SHARE),
                     key=lambda sc: (-sc[0], sc[1]))[:3]
        names = [cat for _, cat in top]
        if not names:
            return "no clear favourite category"
        if len(names) == 1:
            return f"into {names[0]}"
        return f"into {', '.join(names[:-1])} and {names[-1]}"


def _clean(value: object, cap: float) -> float:
    """A stored number as a float in [0, cap]: NaN and junk are 0, +inf is ``cap``."""
    if type(value) is float:  # the common cases first; bool and other types go the long way
        return min(value, cap) if value > 0.0 else 0.0
    if type(value) is int:  # min first: a huge int would overflow float()
        return float(min(value, cap)) if value > 0 else 0.0
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return 0.0 if not isinstance(value, Integral) else (cap if int(value) > 0 else 0.0)
    if math.isnan(v) or v <= 0.0:
        return 0.0
    return min(v, cap)


def _timestamp(value: object) -> int | None:
    # Stored timestamps are clipped to MAX_TS_MS: differences of them stay exact floats.
    if type(value) is int:
        return min(max(0, value), MAX_TS_MS)
    if not is_integral(value):
        return None
    return min(max(0, int(value)), MAX_TS_MS)


def _check_vocabulary(categories: Sequence[str]) -> Sequence[str]:
    if isinstance(categories, str) or not isinstance(categories, Sequence):
        raise ValueError(f"categories must be a sequence of strings, got {categories!r}")
    for cat in categories:
        if not isinstance(cat, str):
            raise ValueError(f"categories must be strings, got {cat!r}")
    return categories
