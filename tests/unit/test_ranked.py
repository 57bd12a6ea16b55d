"""``ranked`` (a strategy's list with reasons made on demand) agrees with ``rank``, and the
hybrid explains only what it serves, with the same result as through ``rank``."""

from __future__ import annotations

import pickle
from collections.abc import Collection, Sequence

import numpy as np
import pytest

from models.recommenders.base import Context, Ranked, ScoredItem
from models.recommenders.catalogue import Catalogue
from models.recommenders.content import ContentTfidf
from models.recommenders.cooccurrence import ItemCooccurrence
from models.recommenders.hybrid import Hybrid
from models.recommenders.mf import ImplicitMF
from models.recommenders.popularity import Popularity, SegmentPopularity

N_ITEMS = 60
CATS = ["Drama", "Comedy", "Crime", "Horror", "War"]


def catalogue_and_events(seed: int = 0) -> tuple[Catalogue, list[tuple[str, str]]]:
    rng = np.random.default_rng(seed)
    cat = Catalogue()
    for i in range(N_ITEMS):
        cat.upsert(f"i{i}", f"Title {i}", [CATS[i % 5], CATS[(i * 7) % 5]])
    cat.upsert("i3", "Gone", ["Drama"], available=False)
    items = (rng.zipf(1.5, 600) - 1) % N_ITEMS
    users = rng.integers(0, 25, 600)
    return cat, [(f"u{u}", f"i{i}") for u, i in zip(users.tolist(), items.tolist(), strict=True)]


def trained() -> tuple[dict[str, object], list[tuple[list[str], set[str], Context]]]:
    """Every strategy taught the same stream, and the requests to ask them."""
    cat, events = catalogue_and_events()
    content = ContentTfidf(catalogue=cat)
    for i in range(N_ITEMS):
        content.upsert(f"i{i}", f"Title {i} word{i % 7}", [CATS[i % 5]], f"about w{i % 11}",
                       available=i != 3)
    models: dict[str, object] = {
        "cooccurrence": ItemCooccurrence(window=5, catalogue=cat, fallback=Popularity()),
        "mf": ImplicitMF(n_factors=4, catalogue=cat, seed=1),
        "content": content,
        "popularity": SegmentPopularity(catalogue=cat),
        "trending": Popularity(half_life=50.0, catalogue=cat),
    }
    history: dict[str, list[str]] = {}
    states: dict[str, dict] = {}
    requests = []
    for n, (user, item) in enumerate(events):
        past = history.setdefault(user, [])
        ctx = Context(user_state=states.setdefault(user, {}), segment=f"s{n % 2}",
                      interests={CATS[len(past) % 5]: 1.0 + len(past)})
        requests.append((list(past), set(past[:2]), ctx))
        for model in models.values():
            model.learn_one(item, past, 1.0, ctx)  # type: ignore[attr-defined]
        past.append(item)
    return models, requests[::7]


MODELS, REQUESTS = trained()


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("k", [0, 1, 5, 30])
def test_ranked_is_rank_with_reasons_on_demand(name: str, k: int) -> None:
    model = MODELS[name]
    for history, exclude, ctx in REQUESTS:
        listed = model.rank(history, exclude, k, ctx)  # type: ignore[attr-defined]
        ranked = model.ranked(history, exclude, k, ctx)  # type: ignore[attr-defined]
        assert isinstance(ranked, Ranked)
        assert ranked.items() == listed
        assert ranked.ids == [s.item_id for s in listed]
        # Any subset, in any order, explains as the full list does.
        some = list(range(len(listed)))[::-2]
        assert ranked.explain(some) == [(listed[p].reason, listed[p].strategy) for p in some]


def test_ranked_of_a_list_keeps_it() -> None:
    items = [ScoredItem("a", 2.0, "why a", "x"), ScoredItem("b", 1.0, "why b", "y")]
    r = Ranked.of(items)
    assert r.items() == items and r.explain([1]) == [("why b", "y")]
    assert Ranked([], [], lambda ps: []).items() == []


class RankOnly:
    """A component seen only through ``rank`` (how the hybrid treats models without
    ``ranked``)."""

    def __init__(self, model: object) -> None:
        self.model = model

    def learn_one(self, item_id: str, history: Sequence[str], weight: float = 1.0,
                  context: Context | None = None) -> None:
        raise AssertionError("not taught here")

    def rank(self, history: Sequence[str], exclude: Collection[str], k: int,
             context: Context | None = None) -> list[ScoredItem]:
        return self.model.rank(history, exclude, k, context)  # type: ignore[attr-defined]


class Counting:
    """Wraps a component's ``ranked`` and records which positions were explained."""

    def __init__(self, model: object) -> None:
        self.model = model
        self.explained: list[int] = []
        self.listed = 0

    def learn_one(self, item_id: str, history: Sequence[str], weight: float = 1.0,
                  context: Context | None = None) -> None:
        raise AssertionError("not taught here")

    def rank(self, history: Sequence[str], exclude: Collection[str], k: int,
             context: Context | None = None) -> list[ScoredItem]:
        return self.ranked(history, exclude, k, context).items()

    def ranked(self, history: Sequence[str], exclude: Collection[str], k: int,
               context: Context | None = None) -> Ranked:
        inner = self.model.ranked(history, exclude, k, context)  # type: ignore[attr-defined]
        self.listed += len(inner.ids)

        def explain(positions: Sequence[int]) -> list[tuple[str, str]]:
            self.explained.extend(positions)
            return inner.explain(positions)

        return Ranked(inner.ids, inner.scores, explain)


def test_hybrid_explains_only_what_it_serves_and_serves_the_same() -> None:
    lazy = {name: Counting(m) for name, m in MODELS.items()}
    eager = {name: RankOnly(m) for name, m in MODELS.items()}
    cold = ("new", "sparse")
    contexts = {"content": cold, "popularity": cold, "trending": cold}
    h_lazy = Hybrid(lazy, candidates=20, contexts=contexts)  # type: ignore[arg-type]
    h_eager = Hybrid(eager, candidates=20, contexts=contexts)  # type: ignore[arg-type]
    served = 0
    for history, exclude, ctx in REQUESTS:
        plain = Context(user_state=ctx.user_state, interests=ctx.interests, segment=ctx.segment)
        a, b = h_lazy.rank(history, exclude, 5, plain), h_eager.rank(history, exclude, 5, plain)
        assert a == b
        served += len(a)
    explained = sum(len(c.explained) for c in lazy.values())
    listed = sum(c.listed for c in lazy.values())
    assert explained == served  # one explanation per item served
    assert listed > 3 * served  # the candidates: many more than were explained


def test_content_reads_a_model_pickled_with_row_postings() -> None:
    """A checkpoint from before postings were split into slot and weight arrays (one
    float64 array of (slot, weight) rows per term) still loads and ranks the same."""
    model = MODELS["content"]
    assert isinstance(model, ContentTfidf)
    state = model.__getstate__()
    state["_buffers"] = [np.column_stack([s.astype(np.float64), w])
                         for s, w in zip(state.pop("_slot_buffers"),
                                         state.pop("_weight_buffers"), strict=True)]
    old = ContentTfidf.__new__(ContentTfidf)
    old.__setstate__(state)
    for history, exclude, ctx in REQUESTS:
        assert old.rank(history, exclude, 10, ctx) == model.rank(history, exclude, 10, ctx)
    old.upsert("i999", "Brand new", ["Drama"])  # and keeps learning
    again = pickle.loads(pickle.dumps(old))
    assert again.rank(["i1"], (), 60) == old.rank(["i1"], (), 60)


def test_cooccurrence_skips_many_excluded_top_items() -> None:
    """Excluded and history items are skipped after sorting, not before: with the best
    candidates all excluded, the list is the rest of the same order."""
    model = MODELS["cooccurrence"]
    assert isinstance(model, ItemCooccurrence)
    for history, _, ctx in REQUESTS:
        full = [s.item_id for s in model.rank(history, (), N_ITEMS, ctx)]
        top = set(full[:25])
        rest = [s.item_id for s in model.rank(history, top, 10, ctx)]
        assert rest == [i for i in full if i not in top][:10]
