"""Content-based TF-IDF recommender: hand-computed cosines, reasons, new items, bounds,
validation, a brute-force reference under random catalogue changes, and MovieLens recall."""

from __future__ import annotations

import math
import pickle
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.recommenders import tfidf as content  # the scoring thresholds
from models.recommenders.base import Context, Recommender, ScoredItem
from models.recommenders.catalogue import Catalogue
from models.recommenders.content import ContentTfidf, category_term, tokenize
from streams.offline.datasets import load_movielens_100k, load_movielens_items

Vector = dict[str, float]

IDF1 = math.log(5 / 2) + 1  # df 1 among N = 4 items: ln((1 + N) / (1 + df)) + 1
IDF2 = math.log(5 / 3) + 1  # df 2
OPERA_C = 1 + 0.5 * (1 + math.log(2))  # title once + description twice at weight 0.5

# Raw tf x idf vectors of the four items of ``four()``, written out by hand.
A: Vector = {"cat:scifi": 3 * IDF1, "space": IDF2, "opera": IDF2}
B: Vector = {"cat:comedy": 3 * IDF2, "space": IDF2, "comedy": IDF1, "night": IDF2}
C: Vector = {"cat:comedy": 3 * IDF2, "cat:music": 3 * IDF1, "opera": OPERA_C * IDF2,
             "night": IDF2}
D: Vector = {"cat:drama": 3 * IDF1, "quiet": IDF1, "drama": IDF1}


def four(**kw: object) -> ContentTfidf:
    m = ContentTfidf(**kw)  # type: ignore[arg-type]
    m.upsert("a", "Space Opera", ["SciFi"])
    m.upsert("b", "Space Comedy Night", ["Comedy"])
    m.upsert("c", "Opera Night", ["Comedy", "Music"], description="opera, Opera!")
    m.upsert("d", "The Quiet Drama", ["Drama"])
    return m


def unit(v: Mapping[str, float]) -> Vector:
    norm = math.sqrt(sum(x * x for x in v.values()))
    return {t: x / norm for t, x in v.items()}


def add(*parts: tuple[float, Mapping[str, float]]) -> Vector:
    out: Vector = defaultdict(float)
    for weight, v in parts:
        for t, x in v.items():
            out[t] += weight * x
    return dict(out)


def cos(u: Mapping[str, float], v: Mapping[str, float]) -> float:
    uu, vv = unit(u), unit(v)
    return sum(x * vv.get(t, 0.0) for t, x in uu.items())


def scores(out: Sequence[ScoredItem]) -> dict[str, float]:
    return {s.item_id: s.score for s in out}


def interests(**values: float) -> Context:
    return Context(interests=values)


# -- text ---------------------------------------------------------------------------------------


def test_tokenize_words() -> None:
    assert tokenize("The QUICK brown fox, a 2nd time in 1999: naïve Ünïcode 東京 x_y 3D") == [
        "quick", "brown", "fox", "2nd", "time", "naïve", "ünïcode", "東京", "x_y", "3d"
    ]
    assert tokenize("") == [] and tokenize("a I 42 of the") == []
    assert category_term("Children's") == "cat:children's"


# -- known inputs, known outputs ----------------------------------------------------------------


def test_hand_computed_vectors_and_df() -> None:
    m = four()
    assert len(m) == 4 and m.n_terms == 10
    assert m.df("opera") == 2 and m.df("cat:comedy") == 2 and m.df("comedy") == 1
    assert m.df("the") == 0  # a stop word
    for item_id, raw in zip("abcd", (A, B, C, D), strict=True):
        assert m.vector(item_id) == pytest.approx(unit(raw))
    assert m.vector("zz") == {}


def test_hand_computed_cosines_for_history() -> None:
    out = four().rank(["a"], exclude=(), k=10)
    # b shares "space" with a, c shares "opera"; d shares nothing and is not returned.
    assert scores(out) == pytest.approx({"b": cos(A, B), "c": cos(A, C)})
    assert [s.item_id for s in out] == sorted("bc", key=lambda i: -scores(out)[i])
    assert all(s.strategy == "content" for s in out)


def test_hand_computed_cosines_for_interests() -> None:
    out = four().rank([], exclude=(), k=10, context=interests(Comedy=2.0, SciFi=1.0))
    q = {"cat:comedy": 2.0 * IDF2, "cat:scifi": 1.0 * IDF1}  # score x idf, as a query
    assert scores(out) == pytest.approx({"a": cos(q, A), "b": cos(q, B), "c": cos(q, C)})


def test_interests_and_recency_weighted_history_mix() -> None:
    m = four(interest_weight=0.5, recency_decay=0.5)
    out = m.rank(["a", "d"], exclude=(), k=10, context=interests(Music=3.0))
    # d is the latest item (weight 1), a the one before (0.5): weights normalized to sum 1;
    # the interests add a unit vector times interest_weight.
    q = add((0.5, unit({"cat:music": IDF1})), (1 / 1.5, unit(D)), (0.5 / 1.5, unit(A)))
    assert scores(out) == pytest.approx({"b": cos(q, B), "c": cos(q, C)})


def test_history_window_limits_the_items_used() -> None:
    m = four(history_window=1)
    # Only the latest distinct item (d) counts: nothing shares a term with it.
    assert m.rank(["a", "d", "d"], exclude=(), k=10) == []
    assert scores(m.rank(["d", "a"], exclude=(), k=10)) == pytest.approx(
        {"b": cos(A, B), "c": cos(A, C)}
    )


# -- reasons ------------------------------------------------------------------------------------


def catalogue_of_genres(m: ContentTfidf) -> ContentTfidf:
    m.upsert("c1", "Funny People", ["COMEDY"])
    m.upsert("c2", "Laugh Out Loud", ["comedy", "Romance"])
    m.upsert("d1", "Dark River", ["Drama"])
    m.upsert("d2", "Cold Stone", ["Drama", "Crime"])
    m.upsert("h1", "River Wild", ["Adventure"])
    return m


def test_category_interest_ranks_the_right_item_first_with_its_reason() -> None:
    m = catalogue_of_genres(ContentTfidf(new_item_max_interactions=1))
    for item_id in ("c1", "c2", "d1", "d2", "h1"):
        m.learn_one(item_id, [])
    out = m.rank([], exclude=(), k=10, context=interests(Comedy=5.0, Drama=1.0))
    # c1 has comedy alone (a shorter vector than c2's): first; dramas after comedies.
    assert [s.item_id for s in out] == ["c1", "c2", "d1", "d2"]
    # The interests' spelling is kept, whatever the catalogue's.
    assert [s.reason for s in out] == ["matches your interest in Comedy"] * 2 + [
        "matches your interest in Drama"] * 2


def test_two_spellings_of_one_interest_add_up() -> None:
    m = catalogue_of_genres(ContentTfidf())
    one = m.rank([], (), 10, interests(Comedy=5.0, Drama=2.0))
    two = m.rank([], (), 10, Context(interests={"comedy": 2.0, "Comedy ": 3.0, "Drama": 2.0}))
    assert scores(two) == pytest.approx(scores(one))
    assert two[0].reason == "new: matches your interest in Comedy "  # the stronger key


def test_history_word_reason_names_the_viewed_title() -> None:
    m = catalogue_of_genres(ContentTfidf())
    out = m.rank(["d1"], exclude=(), k=10)
    by_id = {s.item_id: s.reason for s in out}
    # h1 shares the word "river" with d1; d2 its Drama category: both come from d1.
    assert by_id == {"h1": "new: like Dark River you viewed",
                     "d2": "new: like Dark River you viewed"}


def test_reason_follows_the_largest_contribution() -> None:
    m = catalogue_of_genres(ContentTfidf())
    # Comedies match only the interest, h1 only d1's word "river"; d2 matches both d1's
    # Drama and the Crime interest: the larger of the two terms explains it.
    out = m.rank(["d1"], exclude=(), k=10, context=interests(Comedy=1.0, Crime=1.0))
    by_id = {s.item_id: s.reason for s in out}
    assert by_id["c1"] == by_id["c2"] == "new: matches your interest in Comedy"
    assert by_id["h1"] == "new: like Dark River you viewed"
    assert by_id["d2"] == "new: matches your interest in Crime"
    m = catalogue_of_genres(ContentTfidf(interest_weight=0.1))
    out = m.rank(["d1"], exclude=(), k=10, context=interests(Comedy=1.0, Crime=1.0))
    assert {s.item_id: s.reason for s in out}["d2"] == "new: like Dark River you viewed"


def test_title_falls_back_to_id() -> None:
    m = ContentTfidf()
    m.upsert("x1", "", ["Drama"])
    m.upsert("x2", "", ["Drama"])
    assert m.title("x1") == "x1" and m.title("nope") == "nope"
    assert m.rank(["x1"], (), 5)[0].reason == "new: like x1 you viewed"


# -- new items ----------------------------------------------------------------------------------


def test_new_items_lose_the_prefix_after_enough_interactions() -> None:
    m = catalogue_of_genres(ContentTfidf(new_item_max_interactions=2))
    m.learn_one("c1", ["d1"])
    assert m.is_new("c1")
    m.learn_one("c1", [], weight=5.0, context=Context())
    assert not m.is_new("c1") and m.is_new("c2") and not m.is_new("zz")
    out = m.rank([], (), 2, interests(Comedy=1.0))
    assert [(s.item_id, s.reason) for s in out] == [
        ("c1", "matches your interest in Comedy"), ("c2", "new: matches your interest in Comedy")
    ]


def test_interactions_before_the_item_is_indexed_count() -> None:
    m = ContentTfidf(new_item_max_interactions=2)
    m.learn_one("late", [])
    m.learn_one("late", [])
    m.upsert("late", "Late Arrival", ["Drama"])
    assert not m.is_new("late")
    # Re-indexing keeps the count; deleting forgets it.
    m.upsert("late", "Late Arrival 2", ["Drama"])
    assert not m.is_new("late")
    m.delete("late")
    m.upsert("late", "Late Arrival", ["Drama"])
    assert m.is_new("late")


def test_rank_new_ranks_only_new_items_then_newest_arrivals() -> None:
    m = catalogue_of_genres(ContentTfidf(new_item_max_interactions=1))
    m.learn_one("c1", [])
    m.learn_one("h1", [])
    out = m.rank_new([], (), 10, interests(Comedy=1.0))
    # c2 matches; then the other new items, most recently arrived first (c1, h1 are old).
    assert [(s.item_id, s.reason) for s in out] == [
        ("c2", "new: matches your interest in Comedy"),
        ("d2", "new arrival"), ("d1", "new arrival"),
    ]
    assert out[1].score == 0.0 and all(s.strategy == "content" for s in out)
    assert [s.item_id for s in m.rank_new(["d1"], {"c2"}, 1)] == ["d2"]
    # No query: the newest arrivals; a later re-upsert does not make an item newer.
    m.upsert("d1", "Dark River", ["Drama"])
    assert [s.item_id for s in m.rank_new([], (), 10)] == ["d2", "d1", "c2"]
    assert m.rank_new([], (), 0) == []


# -- exclusions ---------------------------------------------------------------------------------


def test_history_exclude_deleted_and_unavailable_never_returned() -> None:
    catalogue = Catalogue()
    m = catalogue_of_genres(ContentTfidf(catalogue=catalogue))
    ctx = interests(Comedy=1.0, Drama=1.0, Crime=1.0, Adventure=1.0, Romance=1.0)
    assert {s.item_id for s in m.rank([], (), 10, ctx)} == {"c1", "c2", "d1", "d2", "h1"}
    m.delete("c1")
    m.delete("c1")  # twice, and unknown ids, are fine
    m.delete("never")
    m.upsert("d2", "Cold Stone", ["Drama", "Crime"], available=False)
    catalogue.upsert("h1", "River Wild", available=False)
    out = m.rank(["d1"], exclude=["c2"], k=10, context=ctx)
    assert out == []
    assert "c1" not in m and "d2" in m and len(m) == 4
    assert m.df("cat:comedy") == 1 and m.df("funny") == 0
    # Unavailable items still describe the user's taste as history items.
    assert [s.item_id for s in m.rank(["d2"], (), 10)] == ["d1"]
    m.upsert("d2", "Cold Stone", ["Drama", "Crime"], available=True)
    assert [s.item_id for s in m.rank(["d1"], (), 10)] == ["d2"]


def test_many_excluded_top_items_still_fill_k() -> None:
    m = ContentTfidf()
    for n in range(200):
        m.upsert(f"i{n}", f"Show {n}", ["Drama"] if n % 2 else ["Drama", "Crime"])
    excluded = {f"i{n}" for n in range(0, 150)}
    out = m.rank([], excluded, 5, interests(Drama=1.0))
    assert len(out) == 5 and not excluded & {s.item_id for s in out}
    # Drama alone beats Drama + Crime; ties go to the item indexed first.
    assert [s.item_id for s in out] == ["i151", "i153", "i155", "i157", "i159"]


def test_empty_query_returns_nothing() -> None:
    m = four()
    assert m.rank([], (), 10) == []
    assert m.rank(["unknown"], (), 10, interests(Western=3.0)) == []
    assert m.rank(["a"], (), 0) == []
    assert ContentTfidf().rank(["a"], (), 10, interests(Comedy=1.0)) == []


# -- catalogue changes and bounds ---------------------------------------------------------------


def test_reupsert_changes_vector_and_df() -> None:
    m = four()
    m.upsert("b", "Opera House", ["Music"])
    assert m.df("space") == 1 and m.df("night") == 1 and m.df("comedy") == 0
    assert m.df("opera") == 3 and m.df("cat:music") == 2 and len(m) == 4
    idf2, idf3 = math.log(5 / 3) + 1, math.log(5 / 4) + 1
    new_b = {"cat:music": 3 * idf2, "opera": idf3, "house": IDF1}
    assert m.vector("b") == pytest.approx(unit(new_b))
    c = {"cat:comedy": 3 * IDF1, "cat:music": 3 * idf2, "opera": OPERA_C * idf3, "night": IDF1}
    assert scores(m.rank(["b"], (), 10)) == pytest.approx(
        {"a": cos(new_b, {"cat:scifi": 3 * IDF1, "space": IDF1, "opera": idf3}),
         "c": cos(new_b, c)}
    )


def test_max_items_evicts_the_least_recently_written() -> None:
    m = ContentTfidf(max_items=3)
    for item_id in ("a", "b", "c"):
        m.upsert(item_id, f"Title {item_id}", ["Drama"])
    m.upsert("a", "Title a again", ["Drama"])  # a is now the most recent write
    m.upsert("d", "Title d", ["Drama"])
    assert sorted(m._index) == ["a", "c", "d"] and len(m) == 3
    assert m.df("cat:drama") == 3 and m.df("title") == 3
    assert "b" not in {s.item_id for s in m.rank([], (), 10, interests(Drama=1.0))}
    assert m.title("b") == "b"


def test_max_terms_ignores_new_terms_until_room_is_freed() -> None:
    m = ContentTfidf(max_terms=3)
    m.upsert("a", "alpha beta", ["X"])
    m.upsert("b", "gamma alpha", ["X"])  # gamma: vocabulary full
    assert m.n_terms == 3 and m.ignored_terms == 1 and m.df("gamma") == 0
    assert m.vector("b") == pytest.approx(unit({"cat:x": 3.0, "alpha": 1.0}))
    m.delete("a")  # beta freed
    m.upsert("c", "gamma", [])
    assert m.df("gamma") == 1 and m.df("beta") == 0 and m.n_terms == 3


def test_max_text_chars_truncates_each_field() -> None:
    m = ContentTfidf(max_text_chars=11)
    m.upsert("a", "Short title and more words", ["Drama"], description="tiny words here")
    assert set(m.vector("a")) == {"cat:drama", "short", "title", "tiny", "words"}
    assert m.title("a") == "Short title"


def test_query_keeps_its_strongest_terms() -> None:
    m = four(max_query_terms=1)
    # a's strongest term is its rare, heavy category: nobody else has it.
    assert m.rank(["a"], (), 10) == []
    m = four(max_query_postings=3)
    # cat:scifi (df 1) first, then "space" and "opera" (df 2) tie: the lower term id, space,
    # fills the budget. b's score keeps only that term, over the whole query's norm.
    norm_a, norm_b = math.sqrt(sum(x * x for x in A.values())), math.sqrt(
        sum(x * x for x in B.values()))
    assert scores(m.rank(["a"], (), 10)) == pytest.approx({"b": IDF2 / norm_a * IDF2 / norm_b})


# -- robustness ---------------------------------------------------------------------------------


def test_bad_interest_values_are_ignored() -> None:
    m = catalogue_of_genres(ContentTfidf())
    bad: Any = {"Comedy": math.nan, "Drama": -1.0, "Crime": math.inf, "Romance": 0.0,
                "Adventure": "5", 7: 1.0, "Western": True}
    assert m.rank([], (), 10, Context(interests=bad)) == []
    more: Any = {**bad, "Comedy": np.float32(2.0)}
    out = m.rank(["d1"], (), 10, Context(interests=more))
    assert out and all(math.isfinite(s.score) and s.score > 0 for s in out)
    assert {s.item_id for s in out} == {"c1", "c2", "d2", "h1"}


@pytest.mark.parametrize("call", [
    lambda m: m.upsert("", "t"),
    lambda m: m.upsert(3, "t"),
    lambda m: m.upsert("a", None),
    lambda m: m.upsert("a", "t", "Drama"),
    lambda m: m.upsert("a", "t", [3]),
    lambda m: m.upsert("a", "t", description=b"x"),
    lambda m: m.delete(None),
    lambda m: m.learn_one("", []),
    lambda m: m.learn_one("a", [], weight=math.nan),
    lambda m: m.learn_one("a", "abc"),
    lambda m: m.rank("abc", (), 3),
    lambda m: m.rank([None], (), 3),
    lambda m: m.rank([], (), -1),
    lambda m: m.rank([], (), True),
    lambda m: m.rank([], (), 3, context={"Comedy": 1.0}),
    lambda m: m.rank_new("abc", (), 3),
])
def test_bad_input_rejected(call: object) -> None:
    m = four()
    with pytest.raises(ValueError):
        call(m)  # type: ignore[operator]


@pytest.mark.parametrize("kw", [
    {"max_items": 0}, {"max_terms": True}, {"max_text_chars": 1.5}, {"history_window": 0},
    {"new_item_max_interactions": 0}, {"max_query_terms": 0}, {"max_query_postings": -1},
    {"category_weight": 0.0}, {"category_weight": math.inf}, {"description_weight": -1.0},
    {"interest_weight": math.nan}, {"recency_decay": 0.0}, {"recency_decay": 1.5},
])
def test_bad_hyperparameters_rejected(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ContentTfidf(**kw)  # type: ignore[arg-type]


def test_is_a_recommender() -> None:
    assert isinstance(ContentTfidf(), Recommender)


def test_pickle_round_trip_keeps_ranking_and_learning() -> None:
    m = catalogue_of_genres(ContentTfidf(new_item_max_interactions=2))
    m.learn_one("c1", [])
    ctx = interests(Comedy=2.0, Drama=1.0)
    clone = pickle.loads(pickle.dumps(m))
    assert clone.rank(["d1"], (), 10, ctx) == m.rank(["d1"], (), 10, ctx)
    # The restored postings still take writes: both models change the same way.
    for model in (m, clone):
        model.upsert("c3", "Funny River", ["Comedy"])
        model.delete("c2")
        model.learn_one("c1", [])
    assert clone.rank(["d1"], (), 10, ctx) == m.rank(["d1"], (), 10, ctx)
    assert clone.rank_new([], (), 10) == m.rank_new([], (), 10)
    assert [s.item_id for s in clone.rank(["h1"], (), 10)][0] == "c3"


def test_deterministic_with_ties_to_the_item_indexed_first() -> None:
    def build() -> ContentTfidf:
        m = ContentTfidf()
        for n in range(30):
            m.upsert(f"i{n}", "Same Title", ["Drama"])  # identical vectors
            if n % 7 == 3:
                m.upsert("churn", f"Other {n}", ["Drama", "Crime"])  # changes df and N
        m.delete("i4")
        m.upsert("i31", "Same Title", ["Drama"])  # takes the freed slot 4
        return m

    one, two = build(), build()
    out = one.rank(["churn"], (), 5, interests(Drama=1.0))
    assert out == two.rank(["churn"], (), 5, interests(Drama=1.0))
    assert len({s.score for s in out}) == 1
    assert [s.item_id for s in out] == ["i0", "i1", "i2", "i3", "i31"]


@pytest.mark.parametrize(("dense_below", "scan_all_below"), [(10**9, 10**9), (0, 10**9), (0, 0)])
def test_all_scoring_paths_agree(monkeypatch: pytest.MonkeyPatch, dense_below: int,
                                 scan_all_below: int) -> None:
    rng = np.random.default_rng(7)
    words = [f"w{n}" for n in range(40)]
    cats = [f"C{n}" for n in range(6)]

    def build() -> ContentTfidf:
        m = ContentTfidf(max_items=150)
        for n in range(200):
            m.upsert(f"i{n}", " ".join(rng.choice(words, 3)), list(rng.choice(cats, 2)),
                     " ".join(rng.choice(words, 5)), available=n % 11 != 0)
            if n % 5 == 0:
                m.learn_one(f"i{n}", [])
        return m

    rng = np.random.default_rng(7)
    expected = build()
    queries = [(["i190", "i185"], {"i170"}, interests(C1=2.0, C3=1.0)),
               (["i199"], set(), None), ([], {"i160"}, interests(C0=1.0))]
    before = [expected.rank(h, ex, 10, c) for h, ex, c in queries]
    before_new = [expected.rank_new(h, ex, 10, c) for h, ex, c in queries]
    monkeypatch.setattr(content, "_DENSE_BELOW", dense_below)
    monkeypatch.setattr(content, "_SCAN_ALL_BELOW", scan_all_below)
    rng = np.random.default_rng(7)
    fresh = build()  # no cached norms: the sorted path computes them per candidate
    for model in (expected, fresh):
        assert [model.rank(h, ex, 10, c) for h, ex, c in queries] == before
        assert [model.rank_new(h, ex, 10, c) for h, ex, c in queries] == before_new
    assert all(len(b) == 10 for b in before)


# -- a brute-force reference under random catalogue changes -------------------------------------


def reference_vectors(items: Mapping[str, tuple[str, list[str], str]]) -> dict[str, Vector]:
    """Unit TF-IDF vectors computed from scratch, straight from the documented formula."""
    raw: dict[str, Vector] = {}
    for item_id, (title, cats, description) in items.items():
        v: Vector = {category_term(c): 3.0 for c in cats}
        for text, weight in ((title, 1.0), (description, 0.5)):
            for word, n in Counter(tokenize(text)).items():
                v[word] = v.get(word, 0.0) + weight * (1 + math.log(n))
        raw[item_id] = v
    df = Counter(t for v in raw.values() for t in v)
    idf = {t: math.log((1 + len(raw)) / (1 + n)) + 1 for t, n in df.items()}
    return {i: unit({t: w * idf[t] for t, w in v.items()}) for i, v in raw.items() if v}


words_st = st.lists(st.sampled_from(["red", "blue", "green", "cat", "dog", "sun"]), max_size=4)
ops_st = st.lists(
    st.tuples(st.sampled_from(["upsert", "upsert", "upsert", "delete"]), st.integers(0, 9),
              words_st, st.lists(st.sampled_from(["A", "B", "C"]), max_size=2, unique=True),
              words_st, st.booleans()),
    min_size=1, max_size=40,
)


@settings(max_examples=120, deadline=None)
@given(ops_st, st.lists(st.integers(0, 9), max_size=3), st.sampled_from([None, "A", "C"]))
def test_matches_a_from_scratch_computation(
    ops: list[tuple[str, int, list[str], list[str], list[str], bool]], history_ids: list[int],
    interest: str | None,
) -> None:
    m = ContentTfidf(max_items=6, recency_decay=0.5)
    items: dict[str, tuple[str, list[str], str]] = {}  # in write order, like the model
    available: dict[str, bool] = {}
    for op, n, title, cats, description, avail in ops:
        item_id = f"i{n}"
        items.pop(item_id, None)
        if op == "delete":
            m.delete(item_id)
            continue
        m.upsert(item_id, " ".join(title), cats, " ".join(description), available=avail)
        items[item_id] = (" ".join(title), cats, " ".join(description))
        available[item_id] = avail
        if len(items) > 6:
            del items[next(iter(items))]
        if n % 3 == 0:
            m.rank([item_id], (), 3)  # queries between writes refresh the lazy norms
    assert len(m) == len(items)
    vectors = reference_vectors(items)
    for item_id in items:
        assert m.vector(item_id) == pytest.approx(vectors.get(item_id, {}), abs=1e-12)

    history = [f"i{n}" for n in history_ids]
    ctx = None if interest is None else interests(**{interest: 2.0})
    recent = list(dict.fromkeys(reversed(history)))[:5]
    known = [(0.5**age, i) for age, i in enumerate(recent) if i in vectors]
    total = sum(r for r, _ in known)
    parts = [(r / total, vectors[i]) for r, i in known]
    if interest is not None and category_term(interest) in {
        t for v in vectors.values() for t in v
    }:
        parts.append((1.0, {category_term(interest): 1.0}))
    q = add(*parts)
    want = {
        i: cos(q, v) for i, v in vectors.items()
        if i not in history and available[i] and cos(q, v) > 1e-12
    } if q else {}
    got = m.rank(history, (), 20, ctx)
    assert scores(got) == pytest.approx(want, abs=1e-9)
    assert [s.score for s in got] == sorted((s.score for s in got), reverse=True)


# -- quality on real data -----------------------------------------------------------------------


def test_recall_on_movielens_prefix() -> None:
    items = load_movielens_items()
    m = ContentTfidf()
    for item_id, (title, genres) in items.items():
        m.upsert(item_id, title, genres)
    history: dict[str, list[str]] = defaultdict(list)
    seen: dict[str, set[str]] = defaultdict(set)
    genre_counts: dict[str, Counter[str]] = defaultdict(Counter)
    hits = 0
    rows = load_movielens_100k()[:10_000]
    for user, item, _, _ in rows:
        past = history[user]
        out = m.rank(past, seen[user], 10, Context(interests=genre_counts[user]))
        hits += any(s.item_id == item for s in out)
        m.learn_one(item, past)
        past.append(item)
        if len(past) > 50:
            del past[0]
        seen[user].add(item)
        genre_counts[user].update(items[item][1])
    # Measured: 0.0312 (popularity gets about 0.07 here, 10 random unseen items 0.006).
    # Genres and title words alone say little about MovieLens tastes; a broken similarity
    # or query falls towards the random level.
    assert hits / len(rows) > 0.027
