"""Segments: profile features, online k-means, stable assignment, sizes and descriptions."""

from __future__ import annotations

import math
import pickle
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.marketing.segments import (
    BASE_FEATURES,
    DAY_MS,
    MONETARY,
    RECENCY,
    TENURE,
    OnlineKMeans,
    Segmenter,
    feature_names,
    profile_features,
)
from models.users.profile import UserProfile, apply_click, apply_purchase

HL = 7 * DAY_MS
NOW = 400 * DAY_MS
ACTION, COMEDY, DORMANT, NEW = range(4)


# --- helpers ----------------------------------------------------------------------------


def adjusted_rand_index(a: Sequence[int], b: Sequence[int]) -> float:
    """ARI from the contingency table (Hubert and Arabie, 1985)."""
    _, ai = np.unique(np.asarray(a), return_inverse=True)
    _, bi = np.unique(np.asarray(b), return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(table, (ai, bi), 1)

    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1) / 2).sum())

    n = len(a)
    index = pairs(table)
    rows, cols = pairs(table.sum(axis=1)), pairs(table.sum(axis=0))
    expected = rows * cols / (n * (n - 1) / 2)
    return (index - expected) / ((rows + cols) / 2 - expected)


def purity(labels: Sequence[str], truth: Sequence[int]) -> float:
    by: dict[str, Counter[int]] = defaultdict(Counter)
    for name, kind in zip(labels, truth, strict=True):
        by[name][kind] += 1
    return sum(max(c.values()) for c in by.values()) / len(labels)


def blobs(seed: int, k: int = 4, dim: int = 8, n: int = 3_000) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated Gaussian clusters, points in random order."""
    rng = np.random.default_rng(seed)
    centers = np.eye(k, dim) * 2.0 + rng.uniform(0, 0.3, (k, dim))
    labels = rng.integers(0, k, n)
    return centers[labels] + rng.normal(0, 0.08, (n, dim)), labels


def synthetic_user(kind: int, rng: np.random.Generator) -> UserProfile:
    """Four kinds: active Action buyers, active Comedy browsers, dormant Drama fans who once
    bought a little, and brand-new Sci-Fi/Animation clickers."""
    p = UserProfile()

    def item() -> str:
        return f"i{rng.integers(1_000)}"

    if kind == ACTION:
        start = NOW - int(rng.integers(30, 200)) * DAY_MS
        for _ in range(int(rng.integers(5, 15))):
            t = int(rng.integers(start, NOW - DAY_MS))
            extra = str(rng.choice(["Thriller", "Sci-Fi"]))
            p = apply_click(p, item(), t, ["Action", extra], half_life_ms=HL)
        for _ in range(int(rng.integers(2, 6))):
            t = int(rng.integers(NOW - 5 * DAY_MS, NOW))
            p = apply_purchase(p, item(), t, float(rng.uniform(50, 300)), ["Action"],
                               half_life_ms=HL)
    elif kind == COMEDY:
        start = NOW - int(rng.integers(30, 200)) * DAY_MS
        for _ in range(int(rng.integers(10, 40))):
            p = apply_click(p, item(), int(rng.integers(start, NOW)), ["Comedy"], half_life_ms=HL)
    elif kind == DORMANT:
        start = NOW - int(rng.integers(200, 360)) * DAY_MS
        end = NOW - int(rng.integers(60, 150)) * DAY_MS
        for _ in range(int(rng.integers(3, 10))):
            p = apply_click(p, item(), int(rng.integers(start, end)), ["Drama"], half_life_ms=HL)
        p = apply_purchase(p, item(), end, float(rng.uniform(5, 20)), ["Drama"], half_life_ms=HL)
    else:
        start = NOW - 2 * DAY_MS
        for _ in range(int(rng.integers(1, 4))):
            p = apply_click(p, item(), int(rng.integers(start, NOW)), ["Sci-Fi", "Animation"],
                            half_life_ms=HL)
    return p


@pytest.fixture(scope="module")
def population() -> tuple[list[UserProfile], list[int]]:
    rng = np.random.default_rng(1)
    kinds = [int(k) for k in rng.integers(0, 4, 1_200)]
    return [synthetic_user(k, rng) for k in kinds], kinds


def trained(profiles: Sequence[UserProfile], k: int = 6, seed: int = 0,
            warmup: int = 100) -> Segmenter:
    seg = Segmenter(k=k, seed=seed, warmup=warmup)
    for p in profiles:
        seg.learn_one(p, NOW)
    return seg


# --- features -----------------------------------------------------------------------------


def test_features_of_a_hand_made_profile() -> None:
    p = UserProfile(clicks=9, purchases=1, spend=math.e**2 - 1, first_seen_ms=0,
                    last_seen_ms=NOW - 30 * DAY_MS, interests={"Action": 6.0, "Drama": 2.0},
                    interest_ts_ms=NOW - 30 * DAY_MS)
    x = profile_features(p, NOW, ["Drama", "Action", "Comedy"])
    names = feature_names(["Drama", "Action", "Comedy"])
    got = dict(zip(names, x.tolist(), strict=True))
    assert got["recency"] == pytest.approx(math.log1p(30) / math.log1p(365))
    assert got["tenure"] == 1.0  # 400 days is past the cap
    assert got["frequency"] == pytest.approx(math.log1p(10) / math.log1p(10_000))
    assert got["monetary"] == pytest.approx(2 / math.log1p(100_000))
    assert got["purchase_ratio"] == pytest.approx(0.1)
    assert got["share:Drama"] == pytest.approx(0.25)
    assert got["share:Action"] == pytest.approx(0.75)
    assert got["share:Comedy"] == 0.0 and got["share:other"] == 0.0


def test_shares_ignore_time_but_not_other_categories() -> None:
    p = UserProfile(interests={"Action": 1.0, "Drama": 3.0}, interest_ts_ms=0,
                    first_seen_ms=0, last_seen_ms=0)
    early = profile_features(p, 0, ["Action", "", "Action"])
    late = profile_features(p, 300 * DAY_MS, ["Action", "", "Action"])
    base = len(BASE_FEATURES)
    # duplicates and free slots do not double count: other = Drama only
    assert early[base:].tolist() == pytest.approx([0.25, 0.0, 0.25, 0.75])
    assert late[base:].tolist() == early[base:].tolist()
    assert late[RECENCY] > early[RECENCY]


def test_empty_profile() -> None:
    x = profile_features(UserProfile(), NOW, ["Action"])
    assert x.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_tiny_interest_does_not_claim_a_full_share() -> None:
    p = UserProfile(interests={"Action": 1e-6}, last_seen_ms=0, first_seen_ms=0)
    assert profile_features(p, 0, ["Action"])[len(BASE_FEATURES)] == pytest.approx(1e-6)


@pytest.mark.parametrize("now", [-1, True, 1.5, 2**60, "0"])
def test_bad_now_is_refused(now: object) -> None:
    with pytest.raises(ValueError, match="now_ms"):
        profile_features(UserProfile(), now, [])  # type: ignore[arg-type]


@pytest.mark.parametrize("cats", ["Action", [1], None])
def test_bad_categories_are_refused(cats: object) -> None:
    with pytest.raises(ValueError, match="categories"):
        profile_features(UserProfile(), 0, cats)  # type: ignore[arg-type]


numbers = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
)
timestamps = st.one_of(st.none(), st.integers(min_value=-(10**30), max_value=10**30))


@settings(max_examples=300, deadline=None)
@given(
    clicks=numbers, purchases=numbers, spend=numbers,
    interests=st.dictionaries(st.text(max_size=3), numbers, max_size=8),
    first=timestamps, last=timestamps, its=st.integers(min_value=-(10**20), max_value=10**20),
    now=st.integers(min_value=0, max_value=2**53),
    cats=st.lists(st.text(max_size=3), max_size=6),
)
def test_features_are_finite_and_bounded(
    clicks: object, purchases: object, spend: object, interests: dict[str, object],
    first: int | None, last: int | None, its: int, now: int, cats: list[str],
) -> None:
    p = UserProfile(clicks=clicks, purchases=purchases, spend=spend,  # type: ignore[arg-type]
                    interests=interests,  # type: ignore[arg-type]
                    first_seen_ms=first, last_seen_ms=last, interest_ts_ms=its)
    x = profile_features(p, now, cats)
    assert x.shape == (len(BASE_FEATURES) + len(cats) + 1,)
    assert np.isfinite(x).all()
    assert ((x >= 0.0) & (x <= 1.0)).all()
    # each distinct category once, plus the rest: never more than all the interest
    shares = {c: float(s) for c, s in zip(cats, x[len(BASE_FEATURES):-1], strict=True) if c}
    assert sum(shares.values()) + float(x[-1]) <= 1.0 + 1e-9


# --- online k-means ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_kmeans_recovers_separated_clusters(seed: int) -> None:
    X, truth = blobs(seed)
    km = OnlineKMeans(k=4, seed=seed)
    for x in X:
        km.learn_one(x)
    predicted = [km.predict_one(x) for x in X]
    assert adjusted_rand_index(truth.tolist(), predicted) > 0.9
    assert km.counts().sum() == len(X)


def test_ari_helper_can_fail() -> None:
    truth = [0] * 50 + [1] * 50
    assert adjusted_rand_index(truth, truth) == pytest.approx(1.0)
    assert adjusted_rand_index(truth, [0, 1] * 50) < 0.1


def test_kmeans_is_deterministic_and_ignores_predict_calls_in_warmup() -> None:
    X, _ = blobs(3)
    a, b = OnlineKMeans(k=4, seed=11), OnlineKMeans(k=4, seed=11)
    for n, x in enumerate(X):
        a.learn_one(x)
        b.learn_one(x)
        if n < 150:
            b.predict_one(x)  # provisional centroids must not change anything
    ca, cb = a.centroids(), b.centroids()
    assert ca is not None and cb is not None
    assert np.array_equal(ca, cb)
    assert np.array_equal(a.counts(), b.counts())


def test_kmeans_pickle_round_trip_keeps_learning_identically() -> None:
    X, _ = blobs(4)
    km = OnlineKMeans(k=4, seed=2)
    for x in X[:1_000]:
        km.learn_one(x)
    twin = pickle.loads(pickle.dumps(km))
    for x in X[1_000:]:
        km.learn_one(x)
        twin.learn_one(x)
    assert np.array_equal(km.centroids(), twin.centroids())  # type: ignore[arg-type]
    assert [km.predict_one(x) for x in X] == [twin.predict_one(x) for x in X]


def test_kmeans_refuses_bad_points_without_learning_them() -> None:
    km = OnlineKMeans(k=2, seed=0, warmup=2)
    km.learn_one([0.0, 0.0])
    km.learn_one([1.0, 1.0])
    before = km.centroids()
    bads: list[Any] = [[math.nan, 0.0], [math.inf, 0.0], [0.0, 0.0, 0.0], [], [[0.0, 0.0]],
                       ["a", 1]]
    for bad in bads:
        with pytest.raises(ValueError):
            km.learn_one(bad)
    assert np.array_equal(km.centroids(), before)  # type: ignore[arg-type]
    assert km.n_seen == 2


def test_kmeans_follows_drift() -> None:
    km = OnlineKMeans(k=2, seed=0, memory=50, warmup=10)
    rng = np.random.default_rng(0)
    for _ in range(200):
        km.learn_one(rng.normal([0.0, 0.0], 0.01))
        km.learn_one(rng.normal([5.0, 5.0], 0.01))
    for _ in range(500):  # the second cluster moves
        km.learn_one(rng.normal([0.0, 0.0], 0.01))
        km.learn_one(rng.normal([5.0, 8.0], 0.01))
    c = km.centroids()
    assert c is not None
    moved = c[km.predict_one([5.0, 8.0])]
    assert moved == pytest.approx([5.0, 8.0], abs=0.1)


def test_kmeans_revives_a_centroid_that_won_nothing_at_seeding() -> None:
    km = OnlineKMeans(k=2, seed=0, warmup=5)
    for _ in range(5):
        km.learn_one([0.0, 0.0])  # fewer distinct points than k
    assert km.counts().tolist() == [5, 0]
    for _ in range(5):
        km.learn_one([3.0, 3.0])
    assert km.predict_one([0.0, 0.0]) != km.predict_one([3.0, 3.0])
    assert sorted(km.counts().tolist()) == [5, 5]


def test_kmeans_before_any_point() -> None:
    km = OnlineKMeans(k=3)
    assert km.predict_one([1.0]) == 0 and km.centroids() is None
    assert km.counts().tolist() == [0, 0, 0]


@pytest.mark.parametrize("kw", [{"k": 0}, {"k": 5, "warmup": 4}, {"memory": 0}, {"seed": -1},
                                {"k": True}])
def test_kmeans_bad_hyperparameters(kw: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        OnlineKMeans(**kw)


# --- the segmenter -----------------------------------------------------------------------


def test_segmenter_finds_the_synthetic_user_kinds(
    population: tuple[list[UserProfile], list[int]],
) -> None:
    profiles, kinds = population
    for k in (4, 6):
        seg = trained(profiles, k=k)
        labels = [seg.predict_one(p, NOW) for p in profiles]
        assert purity(labels, kinds) > 0.9
        assert len(set(labels)) >= 4
    assert purity(["s0"] * len(kinds), kinds) < 0.5  # the measure can fail


def test_descriptions_name_activity_spend_and_taste(
    population: tuple[list[UserProfile], list[int]],
) -> None:
    profiles, kinds = population
    seg = trained(profiles, k=4)

    def described(kind: int) -> str:
        return seg.describe(seg.predict_one(profiles[kinds.index(kind)], NOW))

    assert described(ACTION) == "active, high spend, into Action"
    assert described(COMEDY) == "active, no spend, into Comedy"
    assert described(DORMANT) == "dormant, low spend, into Drama"
    assert described(NEW).startswith("new, no spend, into ")
    assert "Sci-Fi" in described(NEW) and "Animation" in described(NEW)


def test_descriptions_of_hand_made_groups() -> None:
    def buyer(n: int, amount: float, cats: list[str], days_ago: float) -> UserProfile:
        t = NOW - int(days_ago * DAY_MS)
        p = apply_click(UserProfile(), f"x{n}", t - 20 * DAY_MS, cats, half_life_ms=HL)
        return apply_purchase(p, f"y{n}", t, amount, cats, half_life_ms=HL) if amount else p

    groups = [
        [buyer(n, 800.0, ["Sci-Fi", "Action"], 1) for n in range(30)],
        [buyer(n, 3.0, ["Horror"], 15) for n in range(30)],
        [buyer(n, 0.0, ["Western"], 90) for n in range(30)],
    ]
    users = [p for trio in zip(*groups, strict=True) for p in trio]
    seg = trained(users, k=3, warmup=30)
    said = [seg.describe(seg.predict_one(g[0], NOW)) for g in groups]
    assert said == [
        "active, high spend, into Action and Sci-Fi",
        "lapsing, low spend, into Horror",
        "dormant, no spend, into Western",
    ]


def test_segmenter_is_deterministic_and_pickles(
    population: tuple[list[UserProfile], list[int]],
) -> None:
    profiles, _ = population
    a = trained(profiles[:600], k=6, seed=3)
    b = pickle.loads(pickle.dumps(a))
    for p in profiles[600:]:
        a.learn_one(p, NOW)
        b.learn_one(p, NOW)
    assert [a.predict_one(p, NOW) for p in profiles] == [b.predict_one(p, NOW) for p in profiles]
    assert a.summary() == b.summary()
    c = trained(profiles, k=6, seed=3)
    assert [a.features(p, NOW).tolist() for p in profiles[:50]] == \
        [c.features(p, NOW).tolist() for p in profiles[:50]]
    assert [a.predict_one(p, NOW) for p in profiles] == [c.predict_one(p, NOW) for p in profiles]


def mixed(action_share: float) -> UserProfile:
    """A profile as active as the fans below, with its interest split between two genres."""
    return UserProfile(clicks=10, first_seen_ms=NOW - 50 * DAY_MS, last_seen_ms=NOW,
                       interest_ts_ms=NOW, interests={"Action": 10 * action_share + 1e-9,
                                                      "Comedy": 10 * (1 - action_share) + 1e-9})


@pytest.fixture()
def two_camps() -> Segmenter:
    users = [mixed(1.0) if n % 2 else mixed(0.0) for n in range(40)]
    return trained(users, k=2, warmup=20)


def boundary(seg: Segmenter, fan: str) -> float:
    """The Action share below which a profile is nearer the other centroid."""
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if seg.predict_one(mixed(mid), NOW) == fan:
            hi = mid
        else:
            lo = mid
    return hi


def test_assignment_keeps_its_segment_on_small_moves(two_camps: Segmenter) -> None:
    seg = two_camps
    fan = seg.assign(None, mixed(1.0), NOW)
    other = seg.assign(None, mixed(0.0), NOW)
    assert fan != other
    edge = boundary(seg, fan)
    assert 0.3 < edge < 0.7
    just_past = mixed(edge - 0.03)
    assert seg.predict_one(just_past, NOW) == other  # nearer the other centroid ...
    assert seg.assign(fan, just_past, NOW) == fan  # ... yet not far enough to move
    assert seg.assign(other, mixed(edge + 0.03), NOW) == other  # same from the other side
    assert seg.assign(fan, mixed(0.0), NOW) == other  # a big move does move
    assert seg.assign(other, mixed(1.0), NOW) == fan


def test_without_a_margin_the_smallest_move_flips(two_camps: Segmenter) -> None:
    seg = two_camps
    seg.switch_margin = 0.0
    fan = seg.predict_one(mixed(1.0), NOW)
    assert seg.assign(fan, mixed(boundary(seg, fan) - 0.03), NOW) != fan


def test_sizes_follow_moves(two_camps: Segmenter) -> None:
    seg = two_camps
    fan, other = seg.predict_one(mixed(1.0), NOW), seg.predict_one(mixed(0.0), NOW)

    def sizes() -> dict[str, int]:
        return {s["name"]: s["size"] for s in seg.summary()}

    held = [seg.assign(None, mixed(1.0), NOW) for _ in range(5)]
    held += [seg.assign(None, mixed(0.0), NOW) for _ in range(3)]
    assert sizes() == {fan: 5, other: 3}
    held = [seg.assign(prev, mixed(1.0), NOW) for prev in held]  # the 3 move, the 5 stay
    assert sizes() == {fan: 8, other: 0}
    held[0] = seg.assign(held[0], mixed(0.0), NOW)
    assert sizes() == {fan: 7, other: 1}
    seg.forget(held[0])
    seg.forget(None)
    seg.forget("s99")
    assert sizes() == {fan: 7, other: 0}
    assert seg.assign("s99", mixed(0.0), NOW) == other  # a stale name counts as new
    assert sizes() == {fan: 7, other: 1}


def test_describe_and_summary_edges() -> None:
    seg = Segmenter(k=3)
    assert seg.names == ("s0", "s1", "s2")
    assert seg.describe("s1") == "no data yet"
    assert seg.assign("s2", UserProfile(), NOW) == "s2"  # nothing learned: nobody moves
    with pytest.raises(ValueError, match="unknown segment"):
        seg.describe("s3")
    assert [s["size"] for s in seg.summary()] == [0, 0, 0]  # a kept segment was counted before
    assert seg.assign(None, UserProfile(), NOW) == "s0"
    assert [s["size"] for s in seg.summary()] == [1, 0, 0]


def test_vocabulary_is_bounded_and_goes_to_the_frequent_categories() -> None:
    seg = Segmenter(k=2, max_categories=3, warmup=10)
    early = [UserProfile(interests={c: 1.0}, last_seen_ms=0) for c in ("X", "Y", "Z")]
    for p in early:
        seg.learn_one(p, NOW)
    assert seg.vocabulary() == ["X", "Y", "Z"]
    many = UserProfile(interests={"W": 5.0, "V": 0.1, "U": 0.1}, last_seen_ms=0)
    for _ in range(10):
        seg.learn_one(many, NOW)
    # W took the weakest (oldest) slot in place; V and U are too rare to take one
    assert seg.vocabulary() == ["W", "Y", "Z"]
    assert len(seg.features(many, NOW)) == len(BASE_FEATURES) + 3 + 1


def test_a_replaced_category_starts_from_a_cleared_column() -> None:
    def fan(cat: str) -> UserProfile:
        return UserProfile(interests={cat: 1.0}, last_seen_ms=NOW, first_seen_ms=NOW)

    seg = Segmenter(k=2, max_categories=1, warmup=2)
    seg.learn_one(fan("X"), NOW)
    seg.learn_one(UserProfile(last_seen_ms=NOW, first_seen_ms=NOW), NOW)
    col = len(BASE_FEATURES)
    c = seg.centroids()
    assert c is not None and sorted(c[:, col].tolist()) == [0.0, 1.0]  # X's share
    while seg.vocabulary() == ["X"]:
        seg.learn_one(fan("W"), NOW)
    assert seg.vocabulary() == ["W"]
    c = seg.centroids()
    # X's old share no longer poses as W's: at most one W point has been averaged in
    assert c is not None and float(c[:, col].max()) <= 0.5


def test_reset_feature_clears_a_column_while_warming_up_and_after() -> None:
    km = OnlineKMeans(k=2, seed=0, warmup=3)
    km.learn_one([1.0, 1.0])
    km.learn_one([0.0, 1.0])
    km.reset_feature(1)
    c = km.centroids()
    assert c is not None and c[:, 1].tolist() == [0.0, 0.0]
    km.learn_one([0.0, 1.0])
    km.reset_feature(0, 0.5)
    c = km.centroids()
    assert c is not None and c[:, 0].tolist() == [0.5, 0.5]
    with pytest.raises(ValueError):
        km.reset_feature(2)


def test_spend_levels_are_relative_to_the_population() -> None:
    seg = Segmenter(k=1, warmup=1)
    assert seg.spend_rank(0.5) == 0.5  # no spender yet
    for amount in (10.0, 100.0, 1_000.0):
        seg.learn_one(UserProfile(spend=amount, purchases=1, last_seen_ms=NOW), NOW)
    x = seg.features(UserProfile(spend=1_000.0), NOW)[MONETARY]
    assert seg.spend_rank(float(x)) > 2 / 3
    x = seg.features(UserProfile(spend=10.0), NOW)[MONETARY]
    assert seg.spend_rank(float(x)) < 1 / 3


@pytest.mark.parametrize("kw", [{"max_categories": 0}, {"switch_margin": 1.0},
                                {"switch_margin": -0.1}, {"stats_half_life": 0},
                                {"scales": 1}, {"k": 0}])
def test_segmenter_bad_hyperparameters(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Segmenter(**kw)  # type: ignore[arg-type]


def test_activity_words_follow_recency_and_tenure() -> None:
    seg = Segmenter(k=1, warmup=1)
    seg.learn_one(UserProfile(first_seen_ms=NOW - DAY_MS, last_seen_ms=NOW), NOW)
    assert seg.describe("s0").startswith("new,")
    for first, last, word in ((100, 1, "active"), (100, 10, "lapsing"), (100, 40, "dormant")):
        seg = Segmenter(k=1, warmup=1)
        seg.learn_one(UserProfile(first_seen_ms=NOW - first * DAY_MS,
                                  last_seen_ms=NOW - last * DAY_MS), NOW)
        assert seg.describe("s0").startswith(word + ","), word
    c = seg.centroids()
    assert c is not None and c[0, RECENCY] > 0 and c[0, TENURE] > 0


def test_learn_assign_is_learn_one_then_assign(
    population: tuple[list[UserProfile], list[int]],
) -> None:
    profiles, _ = population
    one, both = Segmenter(k=4, warmup=50), Segmenter(k=4, warmup=50)
    previous: dict[int, str | None] = {}
    moved = 0
    for n, p in enumerate(profiles[:600] * 2):
        user = n % 600
        one.learn_one(p, NOW)
        expected = one.assign(previous.get(user), p, NOW)
        got = both.learn_assign(previous.get(user), p, NOW)
        assert got == expected
        moved += previous.get(user) not in (None, got)
        previous[user] = got
    assert np.array_equal(one.centroids(), both.centroids())
    assert one.summary() == both.summary()
    with pytest.raises(ValueError):
        both.learn_assign(None, profiles[0], -1)
