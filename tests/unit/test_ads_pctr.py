"""pCTR: stable hashing, validated features, FTRL-Proximal learning, quality metrics."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import pickle
import random
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.ads.pctr import (
    HASH_BITS,
    MAX_WEIGHT,
    P_MIN,
    PctrModel,
    PctrQuality,
    RunningMeanBaseline,
    ad_features,
    cross_feature,
    hash_feature,
    user_view,
)
from models.users.profile import UserProfile, apply_click, apply_purchase

ROOT = Path(__file__).resolve().parents[2]
DIM = 2**HASH_BITS
HOUR = 3_600_000
VIEW = {"i": [["Comedy", 0.6], ["Drama", 0.4]], "r": 2, "f": 1, "s": "night-owls"}
CTX = {"device": "mobile", "lang": "en"}


def h(name: str) -> int:
    """hash_feature written out again: blake2b-64 of the UTF-8 name, little-endian,
    mapped onto [1, 2**20)."""
    d = hashlib.blake2b(name.encode("utf-8"), digest_size=8).hexdigest()
    le = int.from_bytes(bytes.fromhex(d)[::-1], "big")
    return le % (DIM - 1) + 1


def cross(a: int, b: int) -> int:
    """cross_feature written out again: multiplicative hash of the 40-bit pair key."""
    return (((a * DIM + b) * 0x9E3779B97F4A7C15) % 2**64) % (DIM - 1) + 1


def feats(view: dict | None = None, ad: str = "ad1", campaign: str = "camp1",
          cats: tuple[str, ...] = ("Comedy", "Kids"), slot: str = "top", hour: int = 14,
          ctx: dict | None = None) -> list[int]:
    return ad_features(VIEW if view is None else view, ad, campaign, cats, slot, hour,
                       CTX if ctx is None else ctx)


# ---- hashing


def test_hash_matches_an_independent_computation() -> None:
    for name in ["c=camp1", "a=ad1", "k=Comedy", "x=device=mobile", "", "é ünïcode ✓"]:
        assert hash_feature(name) == h(name)
    a, b = hash_feature("s=top"), hash_feature("c=camp1")
    assert cross_feature(a, b) == cross(a, b)
    assert cross_feature(a, b) != cross_feature(b, a)


@given(st.text(max_size=200))
def test_hash_in_range(name: str) -> None:
    assert 1 <= hash_feature(name) < DIM


@given(st.integers(0, DIM - 1), st.integers(0, DIM - 1))
def test_cross_in_range(a: int, b: int) -> None:
    assert 1 <= cross_feature(a, b) < DIM


def test_hash_stable_across_processes() -> None:
    code = "from models.ads.pctr import hash_feature as f; print(f('c=camp1'), f('a=ad-ünï'))"
    outs = set()
    for seed in ("1", "2", "random"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120, check=True)
        outs.add(res.stdout.strip())
    assert outs == {f"{h('c=camp1')} {h('a=ad-ünï')}"}


def test_crosses_spread_like_a_hash() -> None:
    a = [hash_feature(f"i=c{n}") for n in range(300)]
    b = [hash_feature(f"k=c{n}") for n in range(300)]
    idx = {cross_feature(x, y) for x in a for y in b}
    # 90,000 pairs into 2**20 - 1 slots: a random function keeps about 96% distinct
    assert len(idx) > 0.95 * 90_000


# ---- features


def test_features_sorted_unique_with_bias_and_all_groups() -> None:
    x = feats()
    assert x == sorted(set(x)) and x[0] == 0
    c, s = h("c=camp1"), h("s=top")
    expected = {
        0, c, h("a=ad1"), s, h("h=14"), h("k=Comedy"), h("k=Kids"),
        h("r=2"), h("f=1"), h("g=night-owls"),
        h("x=device=mobile"), h("x=lang=en"), cross(s, c),
        cross(h("x=device=mobile"), c), cross(h("x=lang=en"), c),
        cross(h("i=Comedy"), h("k=Comedy")), cross(h("i=Comedy"), h("k=Kids")),
        cross(h("i=Drama"), h("k=Comedy")), cross(h("i=Drama"), h("k=Kids")),
        h("m=3"),  # Comedy, 60% of the interests, is one of the ad's categories
    }
    assert set(x) == expected
    assert all(0 <= i < DIM for i in x)


@pytest.mark.parametrize(("share", "bucket"), [(0.0, 0), (0.1, 1), (0.3, 2), (0.6, 3)])
def test_interest_match_bucket(share: float, bucket: int) -> None:
    view = {"i": [["Other", 0.4]] + ([["Comedy", share]] if share else [])}
    x = ad_features(view, "ad1", "camp1", ["Comedy"], "top", 1, None)
    got = [b for b in range(4) if h(f"m={b}") in x]
    assert got == [bucket]


BAD_INTERESTS = [
    ["Drama", float("nan")], ["War", float("inf")], ["Noir", 1e300], ["Str", "0.5"],
    ["Neg", -0.2], ["Zero", 0.0], ["Big", 1.5], [7, 0.1], ["x" * 500, 0.1], ["Short"],
    "junk", ["Dec", Decimal("sNaN")], ["Frac", Fraction(10**400)], ["None", None],
    ["Comedy", 0.3],  # a repeat: the first share stands
]


@pytest.mark.parametrize("bad", BAD_INTERESTS, ids=range(len(BAD_INTERESTS)))
def test_bad_values_are_dropped_never_passed_on(bad: object) -> None:
    bad_view = {"i": [["Comedy", 0.6], bad], "r": float("nan"), "f": -1, "s": 12}
    clean_view = {"i": [["Comedy", 0.6]]}
    bad_ctx = {"device": "mobile", "nan": float("nan"), "inf": -float("inf"), "big": 1e300,
               "huge": 10**30, "obj": [1, 2], "none": None, "long": "v" * 1000, 5: "k",
               "dec": Decimal("NaN"), "": "empty key"}
    clean_ctx = {"device": "mobile"}
    bad_cats = ["Comedy", "", 3, None, "Comedy", "y" * 500]
    for hour in (24, -1, "3", 3.5, float("nan"), None):
        x = ad_features(bad_view, "ad1", "camp1", bad_cats, "top", hour, bad_ctx)  # type: ignore[arg-type]
        assert x == ad_features(clean_view, "ad1", "camp1", ["Comedy"], "top", -5, clean_ctx)
        assert not any(h(f"h={v}") in x for v in (24, -1, 3))
        assert h("m=3") in x  # the match share is Comedy's 0.6 alone


def test_only_the_first_interests_count() -> None:
    view = {"i": [[f"c{n}", 0.1] for n in range(8)]}
    x = ad_features(view, "ad1", "camp1", ["c4", "c5"], "top", 1, None)
    assert cross(h("i=c4"), h("k=c4")) in x and cross(h("i=c5"), h("k=c5")) not in x


def test_numbers_in_context_are_categories_with_few_digits() -> None:
    x = ad_features({}, "ad1", "camp1", [], "top", 3,
                    {"w": 0.123456, "n": 7.0, "b": False, "d": Decimal("2.5"), "m": -0.0})
    assert {h("x=w=0.123"), h("x=n=7"), h("x=b=0"), h("x=d=2.5"), h("x=m=0")} <= set(x)


def test_equal_values_give_equal_features() -> None:
    a = ad_features({"i": [["A", 1]], "r": 2, "f": True}, "ad1", "c", ["A"], "top", 3,
                    {"k": 1, "j": "v"})
    b = ad_features({"i": [["A", True]], "r": 2.0, "f": Decimal(1)}, "ad1", "c", ["A"], "top",
                    np.float64(3.0), {"j": "v", "k": True})  # type: ignore[arg-type]
    assert a == b
    # more context keys than are kept: the same ones whatever their order
    keys = [f"k{n:02d}" for n in range(40)]
    c1 = ad_features({}, "ad1", "c", [], "top", 3, {k: 1 for k in keys})
    ad_features({}, "ad1", "c", [], "top", 3, None)  # another request: no cache hit next
    c2 = ad_features({}, "ad1", "c", [], "top", 3, {k: 1 for k in reversed(keys)})
    assert c1 == c2 and len(c1) < 40


def test_invalid_ids_give_no_id_features() -> None:
    x = ad_features({}, "", "", [], "", 3, None)
    assert x == sorted({0, h("h=3")})
    for bad in (["ad1"], None, 7, "z" * 65):
        assert ad_features(None, bad, bad, "Comedy", bad, 3, [1]) == x  # type: ignore[arg-type]


def test_opted_out_view_gives_no_user_features() -> None:
    opted = dict(VIEW, np=True)
    assert feats(view=opted) == feats(view={})
    assert feats(view=opted) != feats()
    assert h("g=night-owls") not in feats(view=opted)


def test_request_cache_never_serves_stale_features() -> None:
    view = {"i": [["Comedy", 1.0]], "r": 1, "f": 0, "s": ""}
    ctx = {"device": "mobile"}
    a = ad_features(view, "ad1", "camp1", ["Comedy"], "top", 3, ctx)
    view["i"][0][0] = "Drama"
    b = ad_features(view, "ad1", "camp1", ["Comedy"], "top", 3, ctx)
    assert cross(h("i=Comedy"), h("k=Comedy")) in a
    assert cross(h("i=Drama"), h("k=Comedy")) in b and a != b
    ctx["device"] = "desktop"
    assert h("x=device=desktop") in ad_features(view, "ad1", "camp1", ["Comedy"], "top", 3, ctx)
    # same ad id, new categories: the ad-level part is recomputed
    y = ad_features(view, "ad1", "camp1", ["Sports"], "top", 3, ctx)
    assert h("k=Sports") in y and h("k=Comedy") not in y
    # the same values in new objects give the same features
    assert ad_features(json.loads(json.dumps(view)), "ad1", "camp1", ["Sports"], "top", 3,
                       dict(ctx)) == y
    tup = {"i": (("Comedy", 1.0),)}
    assert ad_features(tup, "ad1", "camp1", ["Comedy"], "top", 3, None) == ad_features(
        json.loads(json.dumps(tup)), "ad1", "camp1", ["Comedy"], "top", 3, None)
    # a view mutated in place between two candidates
    v = {"r": 1, "i": [["A", 1.0]]}
    first = ad_features(v, "ad1", "camp1", ["A"], "top", 3, None)
    v["r"] = 3
    v["i"].append(["B", 0.5])
    second = ad_features(v, "ad1", "camp1", ["A"], "top", 3, None)
    assert h("r=1") in first and h("r=3") in second and h("r=1") not in second
    assert cross(h("i=B"), h("k=A")) in second


scalars = st.one_of(st.integers(-2, 3), st.floats(-1, 3), st.booleans(), st.sampled_from(
    ["A", "B"]), st.none())
views = st.fixed_dictionaries({}, optional={
    "i": st.lists(st.one_of(st.lists(st.sampled_from(["A", "B", 0.5, 1, True]), max_size=2),
                            st.tuples(st.sampled_from(["A", "B"]), scalars)), max_size=3),
    "r": scalars, "f": scalars, "s": scalars, "np": scalars})
contexts = st.one_of(st.none(), st.dictionaries(st.sampled_from(["k", "j"]), scalars))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(views, contexts, st.sampled_from([1, 1.0, True, 2]),
                          st.booleans()), min_size=1, max_size=8))
def test_request_cache_is_invisible(calls: list[tuple[dict, dict | None, int, bool]]) -> None:
    import models.ads.pctr as ads_module

    prev: tuple[dict, dict | None] | None = None
    for view, ctx, hour, reuse in calls:
        if reuse and prev is not None:  # the same objects again, possibly mutated
            view, ctx = prev
            view["r"] = hour
        got = ad_features(view, "ad1", "camp1", ["A", "B"], "top", hour, ctx)
        # The same features computed afresh, with every cache of the module emptied.
        for cache in (ads_module._contexts, ads_module._ad_parts, ads_module._cross_tables):
            cache.clear()
        assert got == ad_features(view, "ad1", "camp1", ["A", "B"], "top", hour, ctx)
        prev = (view, ctx)


def test_features_for_many_candidates_equal_one_at_a_time() -> None:
    cands = [(f"ad{n}", f"camp{n % 3}", (f"cat{n % 4}", "Comedy")) for n in range(20)]
    together = [feats(ad=a, campaign=c, cats=cs) for a, c, cs in cands]
    alone = []
    for a, c, cs in cands:
        feats(view={}, ad="other")  # another request in between: no cache hit
        alone.append(feats(ad=a, campaign=c, cats=cs))
    assert together == alone


# ---- user_view


def profile() -> UserProfile:
    p = UserProfile()
    for n, cats in enumerate([["Comedy"], ["Comedy", "Drama"], ["Horror"], ["Comedy"]]):
        p = apply_click(p, f"i{n}", 1_000 * n, cats, half_life_ms=HOUR)
    return apply_purchase(p, "i9", 5_000, 10.0, ["Drama"], half_life_ms=HOUR)


def test_user_view_summarizes_the_profile() -> None:
    p = profile()
    v = user_view(p, now_ms=5_000 + 5 * HOUR, half_life_ms=HOUR)
    assert [c for c, _ in v["i"]] == ["Drama", "Comedy", "Horror"]
    assert math.isclose(sum(s for _, s in v["i"]), 1.0, abs_tol=0.002)
    assert v["r"] == int(math.log2(1 + 5)) and v["f"] == int(math.log2(1 + 5)) == 2
    assert v["s"] == ""
    assert json.loads(json.dumps(v)) == v
    assert user_view(UserProfile(), 0, HOUR) == {"i": [], "r": -1, "f": 0, "s": ""}
    assert user_view(p, 0, HOUR, opted_out=True) == {"np": True}
    p.opted_out = True
    assert user_view(p, 0, HOUR) == {"np": True}
    assert user_view(None, 0, HOUR) == {}


def test_user_view_stays_small() -> None:
    p = UserProfile()
    for n in range(40):
        cat = f"a-rather-long-category-name-number-{n:02d}-with-quotes-\"-and-é"
        p = apply_click(p, f"i{n}", n, [cat], half_life_ms=HOUR)
    v = user_view(p, 100, HOUR)
    assert len(json.dumps(v).encode()) < 300
    assert 1 <= len(v["i"]) <= 5
    assert math.isclose(sum(s for _, s in v["i"]), 1.0, abs_tol=0.003)


def test_user_view_share_never_rounds_to_zero() -> None:
    p = apply_click(UserProfile(), "i1", 0, ["Rare"], half_life_ms=HOUR)
    for n in range(3):
        p = apply_click(p, f"j{n}", 20 * HOUR, ["Main"], half_life_ms=HOUR)
    v = user_view(p, 20 * HOUR, HOUR)
    assert v["i"][0] == ["Main", 1.0] and v["i"][1] == ["Rare", 0.001]
    x = ad_features(v, "ad1", "camp1", ["Rare"], "top", 1, None)
    assert cross(h("i=Rare"), h("k=Rare")) in x


def test_user_view_recency_is_capped_and_never_negative_for_future_times() -> None:
    p = apply_click(UserProfile(), "i1", 10 * HOUR, ["A"], half_life_ms=HOUR)
    assert user_view(p, 10**15, HOUR)["r"] == 12
    assert user_view(p, 0, HOUR)["r"] == 0


# ---- the model


def test_fresh_model_predicts_the_prior() -> None:
    m = PctrModel(prior_ctr=0.02)
    for x in ([], [0], feats()):
        assert math.isclose(m.predict_one(x), 0.02, rel_tol=1e-12)


def test_learning_a_positive_raises_those_features_only() -> None:
    m = PctrModel(l1=0.0)
    x, other = [5, 6, 7], [8, 9]
    before, before_other = m.predict_one(x), m.predict_one(other)
    m.learn_one(x, 1)
    assert m.predict_one(x) > before
    assert m.predict_one(other) == before_other
    m.learn_one(other, 0)
    assert m.predict_one(other) < before_other


def test_negatives_lower_predictions() -> None:
    m = PctrModel(l1=0.0)
    x = [0, 11]
    p0 = m.predict_one(x)
    for _ in range(50):
        m.learn_one(x, False)
    assert m.predict_one(x) < p0


def test_l1_keeps_untouched_and_weak_weights_at_zero() -> None:
    m = PctrModel(l1=3.0)
    m.learn_one([0, 1, 2], 1)  # one click: |z| about 1 < l1 for the features
    assert set(m._w) == {0}  # only the bias (never sparsified) moved
    assert m.n_weights == 1
    for _ in range(30):
        m.learn_one([0, 1, 2], 1)
    assert set(m._w) == {0, 1, 2}
    assert all(i in m._z for i in m._w)
    assert m.predict_one([3, 4]) == PctrModel().predict_one([3, 4])


def test_ftrl_step_matches_the_paper_by_hand() -> None:
    alpha, beta, l1, l2, prior = 0.1, 1.0, 0.5, 2.0, 0.01
    m = PctrModel(alpha=alpha, beta=beta, l1=l1, l2=l2, prior_ctr=prior)
    x = [0, 42]
    m.learn_one(x, 1)
    g = prior - 1.0  # p - y with all weights 0
    z = g  # sigma * w = 0 on the first step
    n = g * g
    w42 = -(z - math.copysign(l1, z)) / ((beta + math.sqrt(n)) / alpha + l2)
    w0 = -z * alpha / (beta + math.sqrt(n))
    logit = math.log(prior / (1 - prior)) + w0 + w42
    assert math.isclose(m.predict_one(x), 1 / (1 + math.exp(-logit)), rel_tol=1e-12)
    # second step: z += g - sigma * w with sigma = (sqrt(n') - sqrt(n)) / alpha
    p = m.predict_one(x)
    m.learn_one(x, 0)
    g2 = p
    n2 = n + g2 * g2
    z42 = z + g2 - (math.sqrt(n2) - math.sqrt(n)) / alpha * w42
    w42b = 0.0 if abs(z42) <= l1 else -(z42 - math.copysign(l1, z42)) / (
        (beta + math.sqrt(n2)) / alpha + l2)
    z0 = z + g2 - (math.sqrt(n2) - math.sqrt(n)) / alpha * w0
    w0b = -z0 * alpha / (beta + math.sqrt(n2))
    logit = math.log(prior / (1 - prior)) + w0b + w42b
    assert math.isclose(m.predict_one(x), 1 / (1 + math.exp(-logit)), rel_tol=1e-12)


def test_weight_scales_the_step() -> None:
    a, b = PctrModel(l1=0.0), PctrModel(l1=0.0)
    a.learn_one([3], 1, weight=4.0)
    b.learn_one([3], 1)
    assert a.predict_one([3]) > b.predict_one([3])


def test_predict_many_equals_predict_one() -> None:
    m = trained()
    xs = [feats(ad=f"ad{n}", cats=("Comedy",) if n % 2 else ("Kids",)) for n in range(20)]
    assert m.predict_many(xs) == [m.predict_one(x) for x in xs]
    assert m.predict_many([]) == []


def stream(n: int, seed: int) -> list[tuple[list[int], int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ad = rng.randrange(30)
        cat = "Comedy" if ad % 3 == 0 else "Drama"
        x = feats(view={"i": [[rng.choice(["Comedy", "Drama"]), 1.0]], "r": 1, "f": 2, "s": ""},
                  ad=f"ad{ad}", campaign=f"camp{ad % 4}", cats=(cat,),
                  slot=rng.choice(["top", "side"]), hour=rng.randrange(24))
        out.append((x, int(rng.random() < (0.2 if ad % 3 == 0 else 0.02))))
    return out


def trained(seed: int = 0) -> PctrModel:
    m = PctrModel(seed=seed)
    for x, y in stream(2_000, 1):
        m.learn_one(x, y)
    return m


def test_the_model_learns_a_real_signal() -> None:
    m, q, base, bq = PctrModel(), PctrQuality(), RunningMeanBaseline(), PctrQuality()
    for x, y in stream(5_000, 2):
        q.update(m.predict_one(x), y)
        bq.update(base.predict_one(), y)
        m.learn_one(x, y)
        base.learn_one(y)
    assert q.log_loss < bq.log_loss
    assert q.auc() > 0.7
    assert 0.8 <= q.calibration <= 1.25


def test_pickle_round_trip_and_identical_future() -> None:
    m = trained()
    m2 = pickle.loads(pickle.dumps(m))
    xs = [x for x, _ in stream(200, 7)]
    assert m2.predict_many(xs) == m.predict_many(xs)
    assert m2.n_updates == m.n_updates and m2.n_weights == m.n_weights
    for x, y in stream(500, 8):
        m.learn_one(x, y)
        m2.learn_one(x, y)
    assert m2.predict_many(xs) == m.predict_many(xs)
    assert pickle.dumps(m2) == pickle.dumps(m)


def test_checkpoint_is_sparse() -> None:
    m = trained()
    touched = len(m._z)
    assert touched < 2_000
    assert len(pickle.dumps(m)) < 2_000 + 24 * touched


def test_seeded_determinism() -> None:
    a, b = trained(seed=3), trained(seed=3)
    assert pickle.dumps(a) == pickle.dumps(b)
    xs = [x for x, _ in stream(100, 9)]
    assert a.predict_many(xs) == b.predict_many(xs)


BAD_INPUTS = [
    ([0, DIM], 1, 1.0), ([-1], 1, 1.0), ([1.5], 1, 1.0), (["3"], 1, 1.0), ([True], 1, 1.0),
    ([3, 3], 1, 1.0), ("12", 1, 1.0), ([1], 2, 1.0), ([1], -1, 1.0), ([1], 0.5, 1.0),
    ([1], None, 1.0), ([1], "1", 1.0), ([1], 1, float("nan")), ([1], 1, float("inf")),
    ([1], 1, 0.0), ([1], 1, -1.0), ([1], 1, MAX_WEIGHT * 2), ([1], 1, "1"), ([1], 1, True),
]


@pytest.mark.parametrize(("x", "y", "weight"), BAD_INPUTS)
def test_learn_one_rejects_bad_input_without_changing_state(x: object, y: object,
                                                            weight: object) -> None:
    m = trained()
    before = pickle.dumps(m)
    with pytest.raises(ValueError):
        m.learn_one(x, y, weight)  # type: ignore[arg-type]
    assert pickle.dumps(m) == before


def test_learn_one_accepts_numpy_ints_and_bools() -> None:
    m = PctrModel()
    m.learn_one(np.array([0, 5], dtype=np.int64).tolist(), True)
    m.learn_one([np.int64(0), np.int32(5)], np.int64(0))  # type: ignore[list-item]
    assert m.n_updates == 2


@pytest.mark.parametrize("kwargs", [
    {"alpha": 0.0}, {"alpha": float("nan")}, {"beta": -1.0}, {"l1": -0.1},
    {"l2": float("inf")}, {"prior_ctr": 0.0}, {"prior_ctr": 1.0}, {"prior_ctr": float("nan")},
    {"seed": 1.5}, {"alpha": True}, {"alpha": 1e300}, {"beta": 1e300}, {"l2": 1e300},
])
def test_bad_hyperparameters_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        PctrModel(**kwargs)


indices = st.lists(st.integers(0, DIM - 1), unique=True, max_size=12)


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(st.tuples(indices, st.booleans(),
                             st.floats(min_value=1e-6, max_value=MAX_WEIGHT)), max_size=40),
    probe=indices,
    aggressive=st.booleans(),
)
def test_predictions_always_finite_in_range(
    steps: list[tuple[list[int], bool, float]], probe: list[int], aggressive: bool
) -> None:
    m = PctrModel(alpha=1e3, beta=1e-300, l1=0.0, l2=0.0) if aggressive else PctrModel()
    for x, y, w in steps:
        m.learn_one(x, y, w)
        for p in (m.predict_one(x), m.predict_one(probe)):
            assert math.isfinite(p) and P_MIN * 0.999 <= p <= 1 - P_MIN * 0.999
    assert all(math.isfinite(v) for v in m._w.values())


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=10),
    st.booleans(), st.none(), st.lists(st.floats(), max_size=2)), max_size=6),
    st.one_of(st.integers(-5, 30), st.floats()))
def test_any_context_gives_learnable_features(ctx: dict, hour: object) -> None:
    x = ad_features(VIEW, "ad1", "camp1", ["Comedy"], "top", hour, ctx)  # type: ignore[arg-type]
    assert x == sorted(set(x)) and x[0] == 0 and x[-1] < DIM
    m = PctrModel()
    m.learn_one(x, 1)
    assert 0 < m.predict_one(x) < 1


# ---- quality


def test_quality_against_hand_computed_values() -> None:
    q = PctrQuality()
    pairs = [(0.1, 0), (0.4, 1), (0.2, 0), (0.3, 1)]
    for p, y in pairs:
        q.update(p, y)
    ll = -(math.log(0.9) + math.log(0.4) + math.log(0.8) + math.log(0.3)) / 4
    assert math.isclose(q.log_loss, ll, rel_tol=1e-12)
    assert math.isclose(q.calibration, 1.0 / 2)
    assert math.isclose(q.ctr, 0.5) and math.isclose(q.predicted_ctr, 0.25)
    assert q.auc() == 1.0 and q.n == 4 and q.clicks == 2


def test_auc_counts_ties_half() -> None:
    q = PctrQuality()
    for p, y in [(0.5, 1), (0.5, 0), (0.2, 1), (0.8, 0)]:
        q.update(p, y)
    # positive pairs: (0.5 vs 0.5) tie -> 0.5, (0.5 vs 0.8) 0, (0.2 vs 0.5) 0, (0.2 vs 0.8) 0
    assert q.auc() == 0.5 / 4


def brute_auc(pairs: list[tuple[float, int]]) -> float:
    pos = [p for p, y in pairs if y]
    neg = [p for p, y in pairs if not y]
    won = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return won / (len(pos) * len(neg))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.01, 0.1, 0.25, 0.5, 0.9, 1.0]),
                          st.integers(0, 1)), min_size=2, max_size=60))
def test_metrics_equal_reference_computations(pairs: list[tuple[float, int]]) -> None:
    q = PctrQuality()
    for p, y in pairs:
        q.update(p, y)
    ps = np.clip([p for p, _ in pairs], P_MIN, 1 - P_MIN)
    ys = np.array([y for _, y in pairs])
    ll = float(-np.mean(ys * np.log(ps) + (1 - ys) * np.log(1 - ps)))
    assert math.isclose(q.log_loss, ll, rel_tol=1e-9, abs_tol=1e-12)
    if 0 < ys.sum() < len(ys):
        assert math.isclose(q.auc(), brute_auc(pairs), rel_tol=1e-12)
        assert math.isclose(q.calibration, sum(p for p, _ in pairs) / ys.sum())
    else:
        assert math.isnan(q.auc())


def test_quality_edge_cases() -> None:
    q = PctrQuality(max_samples=2)
    assert math.isnan(q.log_loss) and math.isnan(q.calibration) and math.isnan(q.auc())
    q.update(0.0, 1)  # clipped: a finite, large loss
    assert math.isclose(q.log_loss, -math.log(P_MIN))
    assert math.isnan(q.auc())
    for p, y in [(0.9, 0), (0.1, 1)]:
        q.update(p, y)
    assert q.auc() == 0.0  # only the last two pairs count towards AUC
    assert q.n == 3
    for bad in [(float("nan"), 0), (1.5, 0), (-0.1, 1), (0.5, 2), (0.5, None)]:
        with pytest.raises(ValueError):
            q.update(*bad)  # type: ignore[arg-type]
    assert q.n == 3


def test_running_mean_baseline() -> None:
    b = RunningMeanBaseline(prior_ctr=0.01, prior_weight=50)
    assert b.predict_one() == 0.01
    for y in [1, 0, 0, True]:
        b.learn_one(y)
    assert math.isclose(b.predict_one(), (2 + 0.01 * 50) / (4 + 50))
    with pytest.raises(ValueError):
        b.learn_one(3)
    with pytest.raises(ValueError):
        RunningMeanBaseline(prior_weight=0)
