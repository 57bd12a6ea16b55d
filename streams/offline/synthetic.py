"""A seeded synthetic interaction stream whose tastes and catalogue drift (``synthetic-drift``).

MovieLens 100K is one stream with mild drift; this one makes drift the point, so
``persona evaluate`` can show how strategies follow it. The generative model:

- **Items** (``n_items``, default 2,000) each belong to one of ``n_clusters`` (20) named
  clusters (the cluster name is the item's category, its title "<cluster> no. <n>"), and
  have a Zipf-like popularity weight ``1 / rank ** 0.9`` over a random ranking and a
  quality (normal, sd 0.4). 40% of items (and each cluster's most popular one) exist from
  the start; the others are released at uniform random times over the timeline, and a
  new item's weight is boosted
  ``1 + 4 exp(-age / 7 days)`` (fresh releases are briefly hot).
- **Fashion**: each cluster's appeal is ``exp`` of a Gaussian random walk over 10 knots
  spread across the timeline (step sd 0.8), linearly interpolated: whole clusters rise
  and fall over time, so the population's preferred clusters change.
- **Users** (``n_users``, 1,000): a taste mix over clusters drawn from
  Dirichlet(0.3) (a few favourite clusters each), a log-normal activity weight (a few
  heavy users), a rating bias (normal, sd 0.4).
- **Sessions**: a session is one user's visit, starting at a uniform random time in a
  90-day timeline from 2024-01-01 UTC, with a geometric number of events (mean 8) about
  90 s apart (exponential gaps). At the start of each session the user's taste drifts
  with probability 0.15: it becomes the mean of the old mix and a fresh Dirichlet draw,
  so preferred clusters switch now and then. The session browses one cluster, drawn from
  ``taste * fashion(t)``; each next event stays in it with probability 0.85, else jumps
  to a newly drawn cluster. Within the cluster an item is drawn from the released items
  by popularity weight (times the novelty boost), redrawn (up to 5 times) if the user
  already has it.
- **Ratings**: ``3.3 + user bias + item quality + 0.6 * affinity + noise(sd 0.8)``,
  rounded and clipped to 1..5, where ``affinity = clip(log(C * taste[cluster]), -2, 2) / 2``
  (users rate what they like best higher).

``drift=0`` turns off fashion, taste drift and late releases (a stationary stream, for
comparison); values in between scale them. The stream is deterministic given the seed
(numpy's PCG64) and the parameters; ``generate(n_events=N)`` is not the first N events of
a longer stream (the sessions spread over the same timeline): slice rows for that.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

import numpy as np

from models.checks import check_int
from streams.offline.datasets import Rating

CLUSTERS = (
    "Jazz", "Sci-Fi", "Cooking", "Travel", "Thriller", "Gardening", "Comedy", "History",
    "Fitness", "Anime", "Poetry", "Finance", "Gaming", "Romance", "Science", "Design",
    "Horror", "Sports", "Folk", "Nature",
)
START_S = 1_704_067_200  # 2024-01-01T00:00:00Z
DAY_S = 86_400
TIMELINE_S = 90 * DAY_S

_ZIPF = 0.9
_INITIAL_SHARE = 0.4
_NOVELTY_BOOST = 4.0
_NOVELTY_S = 7 * DAY_S
_FASHION_KNOTS = 10
_FASHION_STEP = 0.8
_TASTE_ALPHA = 0.3
_TASTE_SWITCH = 0.15
_SESSION_MEAN = 8
_GAP_S = 90.0
_STAY = 0.85
_REDRAWS = 5


@dataclass(frozen=True, slots=True)
class SyntheticStream:
    """The rows, sorted by time, and the catalogue with each item's cluster and release."""

    rows: list[Rating]  # (user, item, rating, ts_seconds), oldest first
    items: dict[str, tuple[str, list[str]]]  # item -> (title, [cluster name])
    cluster: dict[str, int]  # item -> cluster index into ``clusters``
    released: dict[str, int]  # item -> release time, epoch seconds
    clusters: tuple[str, ...]


def generate(
    n_events: int = 100_000,
    seed: int = 0,
    n_users: int = 1_000,
    n_items: int = 2_000,
    n_clusters: int = 20,
    drift: float = 1.0,
) -> SyntheticStream:
    """The synthetic-drift stream (model in the module docstring), deterministic per seed.

    >>> s = generate(n_events=500, seed=1, n_users=50, n_items=100)
    >>> len(s.rows), s.rows[0][0].startswith("u"), s.items[s.rows[0][1]][1][0] in CLUSTERS
    (500, True, True)
    >>> s.rows == generate(n_events=500, seed=1, n_users=50, n_items=100).rows
    True
    """
    for name, value, low in (("n_events", n_events, 0), ("n_users", n_users, 1),
                             ("n_items", n_items, 1), ("n_clusters", n_clusters, 1)):
        check_int(name, value, low=low)
    if n_clusters > len(CLUSTERS) or n_clusters > n_items:
        raise ValueError(f"n_clusters must be <= {len(CLUSTERS)} and <= n_items")
    if not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift must be in [0, 1], got {drift!r}")
    # One generator for every draw, taken in a fixed order (items, fashion, users,
    # sessions, events): the helpers below must keep that order, or a seed's stream changes.
    rng = np.random.default_rng(seed)
    catalogue = _Catalogue.draw(rng, n_items, n_clusters, drift)
    # fashion: log-appeal per cluster at knots across the timeline
    knots = np.cumsum(rng.normal(0.0, _FASHION_STEP * drift, (_FASHION_KNOTS, n_clusters)),
                      axis=0)
    users = _Users.draw(rng, n_users, n_clusters)
    sessions = _Sessions.draw(rng, n_events, users.activity, knots)
    events = _browse(rng, catalogue, users, sessions, drift)
    rows: list[Rating] = [
        (f"u{u}", f"i{i}", rating, START_S + int(ts)) for ts, u, i, rating in events[:n_events]
    ]
    names = CLUSTERS[:n_clusters]
    item_cluster, release = catalogue.cluster, catalogue.release
    items = {f"i{i}": (f"{names[item_cluster[i]]} no. {i}", [names[item_cluster[i]]])
             for i in range(n_items)}
    return SyntheticStream(
        rows=rows,
        items=items,
        cluster={f"i{i}": int(item_cluster[i]) for i in range(n_items)},
        released={f"i{i}": START_S + int(release[i]) for i in range(n_items)},
        clusters=names,
    )


@dataclass(frozen=True, slots=True)
class _Catalogue:
    """Each item's cluster, popularity weight, quality and release (s into the timeline)."""

    cluster: np.ndarray
    weight: np.ndarray
    quality: np.ndarray
    release: np.ndarray
    members: list[np.ndarray]  # cluster -> its items

    @classmethod
    def draw(cls, rng: np.random.Generator, n_items: int, c_n: int,
             drift: float) -> _Catalogue:
        item_cluster = rng.permutation(np.arange(n_items) % c_n)
        weight = 1.0 / (rng.permutation(n_items) + 1.0) ** _ZIPF
        quality = rng.normal(0.0, 0.4, n_items)
        late = rng.random(n_items) >= _INITIAL_SHARE
        release = np.where(late & (rng.random(n_items) < drift),
                           rng.uniform(0.0, TIMELINE_S, n_items), 0.0)
        members = [np.flatnonzero(item_cluster == c) for c in range(c_n)]
        for ids in members:  # every cluster has something to browse from the start
            release[ids[np.argmax(weight[ids])]] = 0.0
        return cls(item_cluster, weight, quality, release, members)

    def cdf(self, c: int, t: float) -> tuple[list[int], list[float]]:
        """Cluster ``c``'s items released by ``t``, and the cumulative weights to draw from."""
        ids = self.members[c][self.release[self.members[c]] <= t]
        age = t - self.release[ids]
        w = self.weight[ids] * (1.0 + _NOVELTY_BOOST * np.exp(-np.maximum(age, 0.0) / _NOVELTY_S))
        # plain lists: bisect on them beats numpy calls on ~100 floats, once per event
        return ids.tolist(), np.cumsum(w).tolist()


@dataclass(frozen=True, slots=True)
class _Users:
    """Each user's taste mix over clusters (changed in place as tastes drift), activity
    weight and rating bias."""

    taste: np.ndarray
    activity: np.ndarray
    bias: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, n_users: int, c_n: int) -> _Users:
        taste = rng.dirichlet(np.full(c_n, _TASTE_ALPHA), n_users)
        activity = rng.lognormal(0.0, 1.0, n_users)
        activity /= activity.sum()
        user_bias = rng.normal(0.0, 0.4, n_users)
        return cls(taste, activity, user_bias)


@dataclass(frozen=True, slots=True)
class _Sessions:
    """Enough sessions to reach n_events, at uniform times, in time order: each one's
    length, start, user and cluster appeal (scaled so the top cluster is 1)."""

    lengths: np.ndarray
    starts: np.ndarray
    user: np.ndarray
    appeals: np.ndarray  # (sessions, clusters)

    @classmethod
    def draw(cls, rng: np.random.Generator, n_events: int, activity: np.ndarray,
             knots: np.ndarray) -> _Sessions:
        lengths = rng.geometric(1.0 / _SESSION_MEAN, size=n_events // _SESSION_MEAN * 2 + 16)
        while lengths.sum() < n_events:  # rare: too many short sessions
            lengths = np.concatenate([lengths, rng.geometric(1.0 / _SESSION_MEAN, 64)])
        n_sessions = int(np.searchsorted(np.cumsum(lengths), n_events)) + 1
        lengths = lengths[:n_sessions]
        starts = np.sort(rng.uniform(0.0, TIMELINE_S, n_sessions))
        session_user = rng.choice(len(activity), n_sessions, p=activity)
        knot_t = np.linspace(0.0, TIMELINE_S, _FASHION_KNOTS)
        log_appeal = np.stack([np.interp(starts, knot_t, knots[:, c])
                               for c in range(knots.shape[1])], axis=1)
        appeals = np.exp(log_appeal - log_appeal.max(axis=1, keepdims=True))
        return cls(lengths, starts, session_user, appeals)


def _browse(rng: np.random.Generator, catalogue: _Catalogue, users: _Users,
            sessions: _Sessions, drift: float) -> list[tuple[float, int, int, float]]:
    """Every session's events as (ts, user, item, rating), sorted by time (stable: ties
    keep generation order)."""
    seen: list[set[int]] = [set() for _ in range(len(users.activity))]
    events: list[tuple[float, int, int, float]] = []
    quality_l, bias_l = catalogue.quality.tolist(), users.bias.tolist()
    taste, c_n = users.taste, len(catalogue.members)
    for s in range(len(sessions.lengths)):
        u, t0 = int(sessions.user[s]), float(sessions.starts[s])
        n = int(sessions.lengths[s])
        if drift and rng.random() < _TASTE_SWITCH * drift:
            taste[u] = 0.5 * taste[u] + 0.5 * rng.dirichlet(np.full(c_n, _TASTE_ALPHA))
        # how much the user likes each cluster, as it enters their ratings this session
        affinity = (np.clip(np.log(c_n * taste[u] + 1e-12), -2.0, 2.0) / 2.0).tolist()
        times = (t0 + np.cumsum(rng.exponential(_GAP_S, n))).tolist()
        draws = rng.random((n, 2 + _REDRAWS)).tolist()
        noise = rng.normal(0.0, 0.8, n).tolist()
        clusters = _session_clusters(taste[u], sessions.appeals[s], draws)
        cdfs: dict[int, tuple[list[int], list[float]]] = {}  # a session browses a few
        for j, c in enumerate(clusters):
            if c not in cdfs:
                cdfs[c] = catalogue.cdf(c, t0)
            item = _pick(cdfs[c], draws[j], seen[u])
            rating = 3.3 + bias_l[u] + quality_l[item] + 0.6 * affinity[c] + noise[j]
            events.append((times[j], u, item, float(min(5, max(1, round(rating))))))
    events.sort(key=lambda e: e[0])
    return events


def _session_clusters(taste: np.ndarray, appeal: np.ndarray,
                      draws: list[list[float]]) -> list[int]:
    """The cluster of each event of a session: drawn from ``taste * appeal`` at the start,
    then kept with probability _STAY per event, else drawn anew."""
    p = np.cumsum(taste * appeal)
    last = len(p) - 1

    def draw(x: float) -> int:
        return min(int(p.searchsorted(x * p[-1], side="right")), last)

    c = draw(draws[0][0])
    out = []
    for j, row in enumerate(draws):
        if j and row[0] >= _STAY:
            c = draw(row[1])
        out.append(c)
    return out


def _pick(cdf: tuple[list[int], list[float]], row: list[float], user_seen: set[int]) -> int:
    """An item drawn by weight, redrawn (up to _REDRAWS times) while the user has it."""
    ids, weights = cdf
    last = len(ids) - 1
    for r in range(_REDRAWS):
        item = ids[min(bisect_right(weights, row[2 + r] * weights[-1]), last)]
        if item not in user_seen:
            break
    user_seen.add(item)
    return item
