"""One conformance suite over every strategy: pickling, determinism, unseen users and items,
bad and oversized inputs, non-finite interests, and the per-user state models write."""

from __future__ import annotations

import copy
import math
import pickle
import time
from collections.abc import Callable, Sequence

import orjson
import pytest

from models.engine import STRATEGIES, Engine, EngineConfig
from models.recommenders.base import Context, Recommender, ScoredItem
from models.recommenders.content import ContentTfidf
from models.recommenders.cooccurrence import ItemCooccurrence
from models.recommenders.hybrid import Hybrid
from models.recommenders.mf import ImplicitMF
from models.recommenders.popularity import Popularity, SegmentPopularity

ITEMS = [f"i{n}" for n in range(12)]
CATEGORIES = ["Drama", "Comedy", "Action"]
CATALOGUE = {item: (f"Title {n} word{n % 4}", [CATEGORIES[n % 3]]) for n, item in enumerate(ITEMS)}
USERS = [f"u{n}" for n in range(6)]
# (user, item): each user walks the catalogue with their own stride
EVENTS = [(user, ITEMS[(3 * u + s * (u + 1)) % len(ITEMS)])
          for s in range(6) for u, user in enumerate(USERS)]


def content() -> ContentTfidf:
    m = ContentTfidf()
    for item, (title, cats) in CATALOGUE.items():
        m.upsert(item, title, cats)
    return m


def hybrid() -> Hybrid:
    return Hybrid({
        "cooccurrence": ItemCooccurrence(fallback=Popularity()),
        "popularity": Popularity(),
        "mf": ImplicitMF(n_factors=8, seed=7),
        "content": content(),
    })


def from_engine(strategy: str) -> Callable[[], Recommender]:
    def build() -> Recommender:
        e = Engine(EngineConfig(strategy=strategy, exploration=0.0))
        for item, (title, cats) in CATALOGUE.items():
            e.upsert_item(item, title, cats)
        return e.strategy(strategy)
    return build


FACTORIES: dict[str, Callable[[], Recommender]] = {
    "cooccurrence-cosine": lambda: ItemCooccurrence(fallback=Popularity()),
    "cooccurrence-pearson": lambda: ItemCooccurrence(fallback=Popularity(),
                                                     similarity="pearson"),
    "popularity": Popularity,
    "trending": lambda: Popularity(half_life=2000),
    "segment-popularity": SegmentPopularity,
    "mf": lambda: ImplicitMF(n_factors=8, seed=3),
    "content": content,
    "hybrid": hybrid,
    **{f"engine-{s}": from_engine(s) for s in STRATEGIES},
}
WRITES_USER_STATE = {"mf", "hybrid", "engine-mf", "engine-hybrid"}
# Popularity and SegmentPopularity do not use history, and do not check it either: a str
# is read as a set of one-character ids. To be fixed there, then covered here too.
CHECKS_HISTORY = sorted(set(FACTORIES) - {"popularity", "trending", "segment-popularity",
                                          "engine-popularity", "engine-trending"})


@pytest.fixture(params=list(FACTORIES))
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def context(user: str, states: dict[str, dict]) -> Context:
    n = USERS.index(user) if user in USERS else 0
    return Context(user_state=states.setdefault(user, {}),
                   interests={CATEGORIES[n % 3]: 2.0, CATEGORIES[(n + 1) % 3]: 0.5},
                   segment=f"seg{n % 2}", user=user)


def feed(model: Recommender, states: dict[str, dict] | None = None) -> dict[str, dict]:
    """Learn EVENTS, serving each user before each event (the hybrid joins the two);
    returns the users' states (fresh ones unless given)."""
    states = {} if states is None else states
    history: dict[str, list[str]] = {u: [] for u in USERS}
    for user, item in EVENTS:
        ctx = context(user, states)
        model.rank(history[user], (), 5, ctx)
        model.learn_one(item, history[user], 1.0 if len(history[user]) % 3 else 3.0, ctx)
        if item in history[user]:
            history[user].remove(item)
        history[user].append(item)
    return states


QUERIES: list[tuple[str, list[str], set[str]]] = [
    ("u0", [], set()),
    ("u1", ["i1"], {"i2"}),
    ("u2", ["i3", "i7", "i4"], set()),
    ("u5", ITEMS[:6], {"i9"}),
    ("stranger", ["never-seen", "i5"], {"unknown", "i6"}),
]


def ranks(model: Recommender, states: dict[str, dict], k: int = 8) -> list[list[ScoredItem]]:
    return [model.rank(h, ex, k, context(user, states)) for user, h, ex in QUERIES]


def check_list(out: list[ScoredItem], k: int, forbidden: Sequence[str] | set[str],
               known: set[str]) -> None:
    ids = [s.item_id for s in out]
    assert len(out) <= k and len(set(ids)) == len(ids)
    assert set(ids) <= known, set(ids) - known
    assert not set(ids) & set(forbidden)
    for s in out:
        assert isinstance(s, ScoredItem) and math.isfinite(s.score)
        assert isinstance(s.reason, str) and s.reason and isinstance(s.strategy, str)


def test_is_a_recommender(name: str) -> None:
    assert isinstance(FACTORIES[name](), Recommender)


def test_learns_something(name: str) -> None:
    m = FACTORIES[name]()
    states = feed(m)
    assert any(ranks(m, states)), "a trained model ranks at least one item for someone"


def test_pickle_round_trip_ranks_and_learns_the_same(name: str) -> None:
    m = FACTORIES[name]()
    states = feed(m)
    clone = pickle.loads(pickle.dumps(m))
    clone_states = copy.deepcopy(states)
    assert ranks(clone, clone_states) == ranks(m, states)
    # keep learning on both copies, each with its own copy of the users' states
    feed(m, states)
    feed(clone, clone_states)
    assert ranks(clone, clone_states) == ranks(m, states)
    assert clone_states == states


def test_seeded_determinism(name: str) -> None:
    a, b = FACTORIES[name](), FACTORIES[name]()
    states_a, states_b = feed(a), feed(b)
    assert states_a == states_b
    got_a, got_b = ranks(a, states_a), ranks(b, states_b)
    assert got_a == got_b  # ScoredItem equality includes the exact scores
    assert [[s.score for s in r] for r in got_a] == [[s.score for s in r] for r in got_b]


def test_never_returns_history_or_excluded_items(name: str) -> None:
    m = FACTORIES[name]()
    states = feed(m)
    known = set(ITEMS)
    for user, history, exclude in QUERIES:
        for k in (1, 3, 12, 50):
            out = m.rank(history, exclude, k, context(user, states))
            check_list(out, k, set(history) | exclude, known)
    # excluding everything leaves nothing
    assert m.rank([], set(ITEMS), 5, context("u0", states)) == []
    assert m.rank(ITEMS, (), 5, context("u0", states)) == []


def test_unseen_users_and_items(name: str) -> None:
    fresh = FACTORIES[name]()
    for ctx in (None, Context(), Context(user_state={})):
        check_list(fresh.rank([], (), 5, ctx), 5, (), set(ITEMS))
        check_list(fresh.rank(["ghost"], {"ghost2"}, 5, ctx), 5, {"ghost"}, set(ITEMS))
    m = FACTORIES[name]()
    states = feed(m)
    for ctx in (None, Context(), Context(user_state={}),
                Context(user_state={}, segment="never", user="new-user")):
        check_list(m.rank([], (), 10, ctx), 10, (), set(ITEMS))
        out = m.rank(["ghost", "i2"], ["ghost2", "i3"], 10, ctx)
        check_list(out, 10, {"ghost", "i2", "ghost2", "i3"}, set(ITEMS))
    # a brand-new item learned with an unknown history is known afterwards, not an error
    m.learn_one("brand-new", ["unknown-history-item"], context=context("u1", states))
    check_list(m.rank(["brand-new"], (), 20, context("u1", states)), 20, {"brand-new"},
               set(ITEMS) | {"brand-new"})


def test_k_zero_is_empty(name: str) -> None:
    m = FACTORIES[name]()
    states = feed(m)
    for user, history, exclude in QUERIES:
        assert m.rank(history, exclude, 0, context(user, states)) == []


@pytest.mark.parametrize("weight", [math.nan, math.inf, -math.inf, -1.0, 0.0, 1e7, True, False,
                                    "1", None])
def test_bad_weight_rejected_and_nothing_learned(name: str, weight: object) -> None:
    m = FACTORIES[name]()
    states = feed(m)
    before = ranks(m, states)
    with pytest.raises(ValueError):
        m.learn_one("i1", ["i2"], weight, context("u1", states))  # type: ignore[arg-type]
    assert ranks(m, states) == before


def test_largest_weight_accepted(name: str) -> None:
    m = FACTORIES[name]()
    states = feed(m)
    m.learn_one("i1", ["i2"], 1e6, context("u1", states))
    for r in ranks(m, states):
        assert all(math.isfinite(s.score) for s in r)


@pytest.mark.parametrize("item", ["", 3, None, b"i1", ("i1",)])
def test_bad_item_id_rejected_and_nothing_learned(name: str, item: object) -> None:
    m = FACTORIES[name]()
    states = feed(m)
    before = ranks(m, states)
    with pytest.raises(ValueError):
        m.learn_one(item, ["i2"], 1.0, context("u1", states))  # type: ignore[arg-type]
    assert ranks(m, states) == before


@pytest.mark.parametrize("name", CHECKS_HISTORY)
def test_str_history_rejected(name: str) -> None:
    m = FACTORIES[name]()
    states = feed(m)
    before = ranks(m, states)
    with pytest.raises(ValueError):
        m.learn_one("i1", "i2", 1.0, context("u1", states))
    with pytest.raises(ValueError):
        m.rank("i1", (), 5, context("u1", states))
    assert ranks(m, states) == before


@pytest.mark.parametrize("k", [-1, True, False, 1.5, None, "3"])
def test_bad_k_rejected(name: str, k: object) -> None:
    m = FACTORIES[name]()
    states = feed(m)
    with pytest.raises(ValueError):
        m.rank(["i1"], (), k, context("u1", states))  # type: ignore[arg-type]


def test_oversized_history_and_exclude_are_fast(name: str) -> None:
    m = FACTORIES[name]()
    states = feed(m)
    big = [f"big{n}" for n in range(10_000)]
    history = [*big, "i1", "i4"]
    start = time.perf_counter()
    out = m.rank(history, set(big) | {"i2"}, 10, context("u1", states))
    check_list(out, 10, {"i1", "i4", "i2"}, set(ITEMS))
    out = m.rank(["i1"], big + ["i3"], 10, context("u1", states))  # a list, not a set
    check_list(out, 10, {"i1", "i3"}, set(ITEMS))
    m.learn_one("i5", history, 1.0, context("u1", states))
    assert time.perf_counter() - start < 1.0
    assert len(m.rank(["i1"], (), 5, context("u1", states))) <= 5


def test_very_long_item_id_is_accepted_or_rejected_consistently(name: str) -> None:
    m = FACTORIES[name]()
    states = feed(m)
    long_id = "L" * 10_000

    def outcome(call: Callable[[], object]) -> bool:
        try:
            call()
        except ValueError:
            return False
        return True

    learned = outcome(lambda: m.learn_one(long_id, ["i1"], 1.0, context("u1", states)))
    as_history = outcome(lambda: m.rank([long_id], (), 20, context("u1", states)))
    as_exclude = outcome(lambda: m.rank(["i1"], {long_id}, 20, context("u1", states)))
    assert learned == as_history == as_exclude
    if learned:
        known = set(ITEMS) | {long_id}
        check_list(m.rank([long_id], (), 20, context("u1", states)), 20, {long_id}, known)
        check_list(m.rank([], {long_id}, 20, context("u1", states)), 20, {long_id}, known)
        check_list(m.rank(["i1"], (), 20, context("u1", states)), 20, {"i1"}, known)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_interests_never_give_nan_scores(name: str, bad: float) -> None:
    m = FACTORIES[name]()
    states = feed(m)
    for user, history, exclude in QUERIES:
        ctx = Context(user_state=states.setdefault(user, {}), user=user, segment="seg0",
                      interests={"Drama": bad, "Comedy": 1.0, "Action": -1.0, "Nope": bad})
        out = m.rank(history, exclude, 10, ctx)
        check_list(out, 10, set(history) | exclude, set(ITEMS))
        m.learn_one("i3", history, 1.0, ctx)
    only_bad = Context(user_state={}, interests={"Drama": bad})
    check_list(m.rank([], (), 10, only_bad), 10, (), set(ITEMS))
    for r in ranks(m, states):
        assert all(math.isfinite(s.score) for s in r)


def test_user_state_is_small_and_json_serializable(name: str) -> None:
    m = FACTORIES[name]()
    states = feed(m)
    for state in states.values():
        encoded = orjson.dumps(state)
        assert len(encoded) < 1024, (len(encoded), state)
        assert orjson.loads(encoded) == state
        for key, value in state.items():
            assert isinstance(key, str) and len(orjson.dumps(value)) < 1024
    if name in WRITES_USER_STATE:
        assert all(states[u] for u in USERS)
        # and what was written reads back: the JSON round trip ranks the same
        decoded = {u: orjson.loads(orjson.dumps(s)) for u, s in states.items()}
        assert ranks(m, decoded) == ranks(m, states)
    else:
        assert not any(states.values())
