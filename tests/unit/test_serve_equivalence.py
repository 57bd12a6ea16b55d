"""The serving path against plain reference rankings: every strategy, the hybrid blend,
the rules and the engine's list, on seeded engines that learned a few thousand events.

The references score every item, sort them all and filter in Python, as the models'
docstrings define the rankings; the service's ranking takes shortcuts (partial sorts,
caches, lazy reasons) that must not change a list: items, order, scores and reasons.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np
import pytest

from models.engine import STRATEGIES, Engine, EngineConfig
from models.recommenders.base import Context, Ranked, ScoredItem
from models.recommenders.catalogue import Catalogue
from models.recommenders.content import ContentTfidf
from models.recommenders.content_taste import (
    interests_of,
    query_terms,
    recent_slots,
    taste_query,
)
from models.recommenders.cooc_similarity import slot_terms
from models.recommenders.cooccurrence import ItemCooccurrence
from models.recommenders.hybrid import CONTEXT_BOUNDS, Hybrid
from models.recommenders.mf import ImplicitMF, decode_vector
from models.recommenders.popularity import Popularity, SegmentPopularity
from models.recommenders.rules import Rules
from models.recommenders.topk import cut_value
from models.users.profile import UserProfile

WORDS = ("storm river night city light dark heart road summer winter journey secret "
         "house love family game king queen star ghost machine island mountain ocean "
         "fire ice dream shadow story first little great").split()
CATEGORIES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller",
              "Crime", "Fantasy", "War", "Western", "Musical"]

# -- references: every item scored, one full sort, then the filters ----------------------------


def ref_popularity(pop: Popularity, history: Sequence[str], exclude: Collection[str],
                   k: int) -> list[ScoredItem]:
    out: list[ScoredItem] = []
    if k == 0:
        return out
    for item_id, score in pop.iter_ranked():
        if item_id in exclude or item_id in history:
            continue
        if pop.catalogue is not None and pop.catalogue.is_unavailable(item_id):
            continue
        out.append(ScoredItem(item_id, score, pop.reason, pop.strategy))
        if len(out) == k:
            break
    return out


def ref_segment_popularity(sp: SegmentPopularity, history: Sequence[str],
                           exclude: Collection[str], k: int,
                           context: Context | None) -> list[ScoredItem]:
    segment = context.segment if context is not None else None
    pop = sp._segments.get(segment) if segment else None
    if pop is None:
        return ref_popularity(sp.overall, history, exclude, k)
    out = ref_popularity(pop, history, exclude, k)
    if len(out) >= k:
        return out
    taken = set(exclude) | {s.item_id for s in out}
    return out + ref_popularity(sp.overall, history, taken, k - len(out))


def ref_mf(m: ImplicitMF, history: Sequence[str], exclude: Collection[str], k: int,
           context: Context | None) -> list[ScoredItem]:
    items = m._items
    size = len(items.ids)
    if k == 0 or not size:
        return []
    state = context.user_state if context is not None else None
    user = None if state is None else decode_vector(state.get(m.state_key), m.n_factors)
    if user is None or not user[:-1].any():
        scores = items.table[:size, -1]
        reason = "popular"
    else:
        scores = items.table[:size] @ user
        reason = "liked by people with similar taste"
    out = []
    for c in np.lexsort((np.arange(size), -scores)).tolist():
        item_id = items.ids[c]
        if not item_id or item_id in history or item_id in exclude:
            continue
        if m.catalogue is not None and m.catalogue.is_unavailable(item_id):
            continue
        out.append(ScoredItem(item_id, float(scores[c]), reason, m.strategy))
        if len(out) == k:
            break
    return out


def ref_cooc(m: ItemCooccurrence, history: Sequence[str], exclude: Collection[str],
             k: int) -> list[ScoredItem]:
    if k == 0:
        return []
    recent = list(dict.fromkeys(list(reversed(history))[: m.window]))
    counts = m._counts
    known = [(counts.index[i], age) for age, i in enumerate(recent) if i in counts.index]
    title = m.catalogue.title if m.catalogue is not None else str
    out: list[ScoredItem] = []
    if known:
        rows = np.array([h for h, _ in known], dtype=np.intp)
        ages = [a for _, a in known]
        nb = counts.nb[rows].ravel()
        contrib, factor = slot_terms(m.similarity_kind, counts, rows, m._recency[ages],
                                     m._total)
        sums = np.zeros(len(counts.ids))
        np.add.at(sums, nb, contrib)
        cands = np.flatnonzero(sums > 0.0)
        scores = sums[cands] * factor[cands]
        per_row = nb.reshape(rows.size, -1)
        terms = contrib.reshape(rows.size, -1)
        for j in np.lexsort((cands, -scores)).tolist():
            c = int(cands[j])
            item_id = counts.ids[c]
            if item_id in history or item_id in exclude:
                continue
            if m.catalogue is not None and m.catalogue.is_unavailable(item_id):
                continue
            # The history item with the largest term explains it (ties: the most recent).
            row_terms = [float(terms[r][per_row[r] == c].sum()) for r in range(rows.size)]
            best = int(rows[int(np.argmax(row_terms))])
            out.append(ScoredItem(item_id, float(scores[j]),
                                  f"similar to {title(counts.ids[best])} you viewed",
                                  "cooccurrence"))
            if len(out) == k:
                return out
    if m.fallback is not None:
        taken = set(history) | {s.item_id for s in out}
        for s in ref_popularity(m.fallback, (), set(exclude) | taken, k - len(out)):
            out.append(ScoredItem(s.item_id, s.score, m.fallback.reason, "popularity"))
    return out


def ref_content(m: ContentTfidf, history: Sequence[str], exclude: Collection[str], k: int,
                context: Context | None, new_only: bool = False) -> list[ScoredItem]:
    items, tfidf = m._items, m._tfidf
    recent, seen = recent_slots(items.index, history, m.history_window)
    interests = interests_of(context)
    if k == 0 or not items.index:
        return []
    big_l = tfidf.refresh(len(items.index))
    query, sources = taste_query(tfidf, recent, interests, interest_weight=m.interest_weight,
                                 recency_decay=m.recency_decay, big_l=big_l)
    if not query:
        return []
    terms, _, factors = query_terms(query, tfidf.df, m.max_query_terms,
                                    m.max_query_postings)
    size = len(tfidf.item_terms)
    sums = np.zeros(size)
    for t, f in zip(terms, factors.tolist(), strict=True):
        np.add.at(sums, tfidf.slots[t], tfidf.weights[t] * f)
    scores = sums * tfidf.inverse_norms(items.blocked, big_l)
    scores[seen] = 0.0
    if new_only:
        scores *= items.new[:size]
    slots = np.flatnonzero(scores > 0.0)
    kept = np.round(scores[slots], 12)
    factor_of = dict(zip(terms, factors.tolist(), strict=True))
    out: list[ScoredItem] = []
    for j in np.lexsort((slots, -kept)).tolist():
        c = int(slots[j])
        item_id = items.ids[c]
        if item_id in exclude:
            continue
        if m.catalogue is not None and m.catalogue.is_unavailable(item_id):
            continue
        best_t, best = -1, -1.0
        for t, w in zip(tfidf.item_terms[c].tolist(), tfidf.item_weights[c].tolist(),
                        strict=True):
            if t in factor_of and factor_of[t] * w > best:
                best_t, best = t, factor_of[t] * w
        source = sources[best_t][1]
        if isinstance(source, str):
            reason = f"matches your interest in {source}"
        else:
            reason = f"like {items.titles[source] or items.ids[source]} you viewed"
        out.append(ScoredItem(item_id, float(kept[j]),
                              "new: " + reason if items.new[c] else reason, "content"))
        if len(out) == k:
            break
    return out


def ref_content_new(m: ContentTfidf, history: Sequence[str], exclude: Collection[str],
                    k: int, context: Context | None) -> list[ScoredItem]:
    out = ref_content(m, history, exclude, k, context, new_only=True)
    taken = set(history) | {s.item_id for s in out}
    for item_id in reversed(m._items.arrivals):
        if len(out) >= k:
            break
        if item_id in taken or item_id in exclude or m._items.blocked[m._items.index[item_id]]:
            continue
        if m.catalogue is not None and m.catalogue.is_unavailable(item_id):
            continue
        out.append(ScoredItem(item_id, 0.0, "new arrival", "content"))
    return out


def ref_rescale(scores: list[float]) -> list[float]:
    values = [v if math.isfinite(v) else 0.0 for v in scores]
    lo, hi = min(values), max(values)
    if hi <= lo:
        return [1.0] * len(values)
    return [0.1 + 0.9 * (v - lo) / (hi - lo) for v in values]


def ref_hybrid(h: Hybrid, history: Sequence[str], exclude: Collection[str], k: int,
               context: Context | None) -> tuple[list[ScoredItem], list[str], np.ndarray, int]:
    """The blended list, and the candidate ids, feature rows and context a named user's
    list is remembered with."""
    c = sum(len(history) >= b for b in CONTEXT_BOUNDS)
    want = max(k, h.candidates)
    index: dict[str, int] = {}
    listings: list[tuple[int, list[ScoredItem]]] = []
    for s, name in enumerate(h._names):
        if not h._active[c, s] or k == 0:
            continue
        listed = ref_rank(h.components[name], history, exclude, want, context)
        for item in listed:
            index.setdefault(item.item_id, len(index))
        if listed:
            listings.append((s, listed))
    features = np.zeros((len(index), len(h._names)))
    for s, listed in listings:
        features[[index[i.item_id] for i in listed], s] = ref_rescale([i.score for i in listed])
    if not index:
        return [], [], features, c
    terms = features * h._weights[c]
    blended = terms.sum(axis=1)
    ids = list(index)
    out = []
    for r in np.argsort(-blended, kind="stable")[:k].tolist():
        s = int(np.argmax(terms[r]))
        if features[r, s] <= 0.0:
            s = int(np.argmax(features[r] > 0.0))
        listed = dict(listings)[s]
        mine = next(i for i in listed if i.item_id == ids[r])
        out.append(ScoredItem(ids[r], float(blended[r]), mine.reason, mine.strategy))
    return out, ids, features, c


def ref_rank(model: Any, history: Sequence[str], exclude: Collection[str], k: int,
             context: Context | None) -> list[ScoredItem]:
    if isinstance(model, Hybrid):
        return ref_hybrid(model, history, exclude, k, context)[0]
    if isinstance(model, SegmentPopularity):
        return ref_segment_popularity(model, history, exclude, k, context)
    if isinstance(model, Popularity):
        return ref_popularity(model, history, exclude, k)
    if isinstance(model, ImplicitMF):
        return ref_mf(model, history, exclude, k, context)
    if isinstance(model, ItemCooccurrence):
        return ref_cooc(model, history, exclude, k)
    assert isinstance(model, ContentTfidf)
    return ref_content(model, history, exclude, k, context)


def ref_rules(ranked: Sequence[ScoredItem], k: int, rules: Rules, catalogue: Catalogue,
              served_counts: dict[str, int], categories: Collection[str] | None
              ) -> list[ScoredItem]:
    out: list[ScoredItem] = []
    per_category: dict[str, int] = {}
    for item in ranked:
        if len(out) >= k:
            break
        cats = catalogue.categories(item.item_id)
        if (item.item_id in {s.item_id for s in out}
                or catalogue.is_unavailable(item.item_id)
                or (rules.max_repeats
                    and served_counts.get(item.item_id, 0) >= rules.max_repeats)
                or (categories and not set(categories) & set(cats))
                or (rules.max_per_category
                    and any(per_category.get(x, 0) >= rules.max_per_category
                            for x in cats))):
            continue
        for x in cats:
            per_category[x] = per_category.get(x, 0) + 1
        out.append(item)
    return out


def ref_recommend(e: Engine, profile: dict | None, k: int, strategy: str,
                  categories: Sequence[str] | None, per_category: int | None
                  ) -> list[ScoredItem]:
    """``Engine.recommend(..., read_only=True)`` of a profile that has not opted out."""
    prof = UserProfile.from_dict(profile) if profile else UserProfile()
    rules = e.rules if per_category is None else Rules(e.rules.max_repeats, per_category)
    exclude = set(prof.seen) | set(prof.purchased)
    context = Context(user_state=prof.model_state, interests=prof.interests,
                      segment=prof.segment or None, user="")
    wide = 2 * k + 10 if (categories or rules.max_per_category or rules.max_repeats) else k
    ranked = ref_rank(e.strategy(strategy), prof.recent_items, exclude, wide, context)
    counts = prof.served_counts
    items = ref_rules(ranked, k, rules, e.catalogue, counts, categories)
    if len(items) < k:
        fill = ref_segment_popularity(e.popularity, prof.recent_items, exclude, 4 * k, context)
        items = ref_rules(ranked + fill, k, rules, e.catalogue, counts, categories)
    return items


# -- comparing ---------------------------------------------------------------------------------


def assert_same(got: Sequence[ScoredItem], want: Sequence[ScoredItem], what: str) -> None:
    assert [s.item_id for s in got] == [s.item_id for s in want], what
    assert [(s.reason, s.strategy) for s in got] == [(s.reason, s.strategy) for s in want], what
    for g, w in zip(got, want, strict=True):
        assert type(g.score) is float, what
        assert g.score == pytest.approx(w.score, rel=1e-9, abs=1e-12), what


# -- seeded engines ----------------------------------------------------------------------------


def build_engine(seed: int, n_items: int, n_users: int, n_events: int,
                 check: Callable[[Engine, dict[str, dict], int], None], *,
                 rare_words: bool = False, every: int = 1000, max_repeats: int = 0) -> Engine:
    """An engine with a catalogue and ``n_events`` processed (served, so the blend learns
    too), calling ``check(engine, profiles, events so far)`` every ``every`` events."""
    rng = np.random.default_rng(seed)
    e = Engine(EngineConfig(exploration=0.3, new_item_rate=0.2, seed=seed,
                            max_repeats=max_repeats))
    names = [f"c{j}" for j in range(n_items // 2)] if rare_words else CATEGORIES
    for i in range(n_items):
        cats = [names[int(c)] for c in rng.choice(len(names), 1 + i % 3, replace=False)]
        words = ([f"w{int(x)}" for x in rng.integers(0, 5 * n_items, 3)] if rare_words
                 else [WORDS[int(x)] for x in rng.integers(0, len(WORDS), 5)])
        e.upsert_item(f"i{i}", f"The {words[0]} {words[1]}", cats,
                      f"A story of {' '.join(words[2:])}.", available=i % 37 != 5)
    item_p = 1.0 / (np.arange(n_items + 20) + 3.0)
    item_p /= item_p.sum()
    user_p = 1.0 / (np.arange(n_users) + 2.0)
    user_p /= user_p.sum()
    profiles: dict[str, dict] = {}
    dedupe: dict[str, list] = {}
    for n in range(1, n_events + 1):
        user = f"u{int(rng.choice(n_users, p=user_p))}"
        item = int(rng.choice(n_items + 20, p=item_p))
        item_id = f"i{item}" if item < n_items else f"new{item}"  # some not in the catalogue
        kind = "purchase" if rng.random() < 0.1 else "click"
        r = e.process(kind, user, item_id, 1_000 * n, event_id=f"e{n}", fingerprint="f",
                      profile=profiles.get(user), dedupe=dedupe.get(user),
                      amount=5.0 if kind == "purchase" else 0.0, serve_id=f"r{n}")
        assert r.profile is not None and r.dedupe is not None
        if int(user[1:]) % 3 == 0:  # segments, as the worker's segmenter sets them
            r.profile["sg"] = f"seg{int(user[1:]) % 2}"
        profiles[user], dedupe[user] = r.profile, r.dedupe
        if n == n_events // 2:
            e.delete_item("i3")  # deleted: unavailable, and out of the content index
        if n % every == 0:
            check(e, profiles, n)
    return e


def check_everything(e: Engine, profiles: dict[str, dict], n: int) -> None:
    users = sorted(profiles, key=lambda u: int(u[1:]))[:25] + [""]
    for user in users:
        profile = profiles.get(user)
        prof = UserProfile.from_dict(profile) if profile else UserProfile()
        exclude = set(prof.seen) | set(prof.purchased)
        history = prof.recent_items
        context = Context(user_state=prof.model_state, interests=prof.interests,
                          segment=prof.segment or None)
        for strategy in STRATEGIES:
            model = e.strategy(strategy)
            for k in (0, 1, 10, 40):
                where = f"{strategy} k={k} user={user!r} after {n} events"
                assert_same(model.rank(history, exclude, k, context),
                            ref_rank(model, history, exclude, k, context), where)
            assert_same(model.rank(history, (), 10, None),
                        ref_rank(model, history, (), 10, None), f"{strategy} anonymous")
            for categories, per_category in ((None, None), (["Drama", "Comedy"], None),
                                             (None, 1)):
                overrides = {} if per_category is None else {"max_per_category": per_category}
                got = e.recommend(profile, 10, key=f"q{n}", user=user, strategy=strategy,
                                  categories=categories, overrides=overrides, read_only=True)
                want = ref_recommend(e, profile, 10, strategy, categories, per_category)
                assert_same(got.items, want, f"recommend {strategy} {categories} "
                                             f"{per_category} user={user!r} after {n}")
        assert_same(e.content.rank_new(history, exclude, 5, context),
                    ref_content_new(e.content, history, exclude, 5, context), "rank_new")
        if user:  # a named user's list is remembered for the blend to learn from
            named = Context(user_state=prof.model_state, interests=prof.interests,
                            segment=prof.segment or None, user=user)
            got = e.hybrid.rank(history, exclude, 10, named)
            want, ids, features, c = ref_hybrid(e.hybrid, history, exclude, 10, named)
            assert_same(got, want, "hybrid, named user")
            if ids:
                kept_ids, kept_features, kept_c, kept_k = e.hybrid._pending[user]
                assert (list(kept_ids), kept_c, kept_k) == (ids, c, len(want))
                np.testing.assert_array_equal(kept_features, features.astype(np.float32))
            e.hybrid.forget_user(user)


def test_every_strategy_serves_what_the_reference_ranks() -> None:
    build_engine(seed=1, n_items=300, n_users=120, n_events=3000, check=check_everything)


def test_rare_words_and_a_second_seed() -> None:
    # Rare words and categories: content queries read few postings (its sparse paths);
    # and a repeat cap, so the rules count what each user was shown.
    build_engine(seed=7, n_items=3000, n_users=150, n_events=1500, check=check_everything,
                 rare_words=True, every=750, max_repeats=2)


def test_cooccurrence_with_short_rows_and_a_fallback() -> None:
    # Few neighbour slots per row: candidates are found by sorting the slots read.
    rng = np.random.default_rng(3)
    cat = Catalogue()
    for i in range(400):
        cat.upsert(f"i{i}", f"Item {i}", ["A"], available=i % 11 != 4)
    m = ItemCooccurrence(window=3, max_neighbours=4, catalogue=cat,
                         fallback=Popularity(catalogue=cat), half_life=500.0)
    users: dict[int, list[str]] = {}
    for n in range(4000):
        u = int(rng.integers(0, 300))
        past = users.setdefault(u, [])
        item = f"i{int(rng.zipf(1.3)) % 400}"
        m.learn_one(item, past, 1.0 + (n % 3 == 0))
        past.append(item)
        if n % 400 == 399:
            for hist in list(users.values())[:40]:
                exclude = set(hist[:2])
                for k in (1, 5, 30):
                    assert_same(m.rank(hist, exclude, k), ref_cooc(m, hist, exclude, k),
                                f"cooc k={k} after {n}")


def test_mf_scores_ties_by_row() -> None:
    # A new user ranks by item bias alone: many equal biases, ties go to the lower row.
    m = ImplicitMF(seed=0)
    for n in range(300):
        m.learn_one(f"i{n % 50}", [f"i{(n + 1) % 50}"], 1.0, Context(user_state={}))
    m._items.table[:50, -1] = np.round(m._items.table[:50, -1], 1)
    for k in (1, 7, 60):
        assert_same(m.rank(["i1"], {"i2"}, k, None), ref_mf(m, ["i1"], {"i2"}, k, None), "mf")


@pytest.mark.parametrize("n", [1, 100, 2047, 2048, 5000, 10_000, 30_000])
def test_cut_value_is_what_a_full_partition_cuts(n: int) -> None:
    rng = np.random.default_rng(n)
    arrays = [rng.random(n), np.round(rng.random(n), 2),  # many ties
              np.sort(rng.random(n)), np.sort(rng.random(n))[::-1],  # ordered
              np.zeros(n), rng.random(n).astype(np.float32),
              np.where(rng.random(n) < 0.9, 0.0, rng.random(n))]  # mostly zeros
    for values in arrays:
        for want in {1, 2, 10, 30, 68, 300, n // 3 or 1, n}:
            if want <= n:
                expected = np.partition(values, n - want)[n - want]
                assert cut_value(values, want) == expected, (n, want)


# -- the blend itself, against plain Python, on listed components ------------------------------


class Listed:
    """A component that lists fixed ``(item, score)`` pairs in that order (ties, duplicates
    and non-finite scores as given), minus history and exclusions; through ``ranked`` (lazy
    reasons, scores as a float32 or float64 array or a list) or through ``rank`` only."""

    def __init__(self, name: str, pairs: list[tuple[str, float]], form: str) -> None:
        self.name, self.pairs, self.form = name, pairs, form
        if form == "rank":
            self.ranked = None  # type: ignore[assignment]

    def learn_one(self, item_id: str, history: Sequence[str], weight: float = 1.0,
                  context: Context | None = None) -> None:
        pass

    def rank(self, history: Sequence[str], exclude: Collection[str], k: int,
             context: Context | None = None) -> list[ScoredItem]:
        kept = [(i, s) for i, s in self.pairs if i not in history and i not in exclude][:k]
        return [ScoredItem(i, s, f"{self.name} #{p} {i}", self.name)
                for p, (i, s) in enumerate(kept)]

    def ranked(self, history: Sequence[str], exclude: Collection[str], k: int,
               context: Context | None = None) -> Ranked:
        items = self.rank(history, exclude, k, context)
        scores: Any = [s.score for s in items]
        if self.form != "list":
            scores = np.array(scores, dtype=self.form)
        return Ranked([s.item_id for s in items], scores,
                      lambda ps: [(items[p].reason, items[p].strategy) for p in ps])


def plain_blend(h: Hybrid, history: Sequence[str], exclude: Collection[str], k: int,
                context: Context | None
                ) -> tuple[list[ScoredItem], list[str], list[list[float]], int]:
    """The blend as the docstring says, one Python float at a time: each component's list
    rescaled to [0.1, 1], unlisted 0, the weighted terms added in component order, ties to
    the first listed, explained by the largest term (all zero: the first listing). An item
    listed twice in one list takes its later score and its first reason. (numpy adds fewer
    than 8 terms one after the other, so the sums agree to the bit.)"""
    c = sum(len(history) >= b for b in CONTEXT_BOUNDS)
    weights = h.blend_matrix()[c]
    n = len(h._names)
    rows: dict[str, int] = {}
    features: list[list[float]] = []
    why: dict[tuple[int, int], tuple[str, str]] = {}
    for s, name in enumerate(h._names):
        if k == 0 or not h._active[c, s]:
            continue
        listed = h.components[name].rank(history, exclude, max(k, h.candidates), context)
        values = [float(i.score) if math.isfinite(i.score) else 0.0 for i in listed]
        lo, hi = min(values, default=0.0), max(values, default=0.0)
        for item, v in zip(listed, values, strict=True):
            if item.item_id not in rows:
                rows[item.item_id] = len(rows)
                features.append([0.0] * n)
            r = rows[item.item_id]
            features[r][s] = 1.0 if hi <= lo else 0.1 + 0.9 * (v - lo) / (hi - lo)
            why.setdefault((r, s), (item.reason, item.strategy))  # its first listing
    blended = []
    for f in features:
        total = 0.0
        for s in range(n):
            total += f[s] * weights[s]
        blended.append(total)
    out = []
    ids = list(rows)
    for r in sorted(range(len(ids)), key=lambda r: (-blended[r], r))[:k]:
        terms = [f * w for f, w in zip(features[r], weights, strict=True)]
        best = terms.index(max(terms))
        if features[r][best] <= 0.0:
            best = next(s for s in range(n) if features[r][s] > 0.0)
        out.append(ScoredItem(ids[r], blended[r], *why[(r, best)]))
    return out, ids, features, c


def test_the_blend_is_what_plain_python_computes() -> None:
    rng = np.random.default_rng(11)
    pool = [f"i{j}" for j in range(40)]
    values = [0.0, 0.5, 1.0, 2.0, 3.5, -1.0]  # few values: ties within and across lists
    for case in range(400):
        names = ["cooccurrence", "mf", "content", "popularity", "trending"][
            : int(rng.integers(1, 6))]
        components: dict[str, Any] = {}
        for name in names:
            size = int(rng.integers(0, 30))
            ids = [pool[int(j)] for j in rng.choice(len(pool), size, replace=False)]
            if size > 2 and rng.random() < 0.1:
                ids.append(ids[0])  # listed twice
            scores = (rng.choice(values, len(ids)) if rng.random() < 0.5
                      else rng.normal(0.0, 10.0, len(ids)))
            if len(ids) > 1 and rng.random() < 0.1:
                scores[int(rng.integers(0, len(ids)))] = rng.choice([np.nan, np.inf, -np.inf])
            if rng.random() < 0.1:
                scores[:] = 4.0  # flat
            order = np.argsort(-np.nan_to_num(scores, nan=-5.0), kind="stable")
            pairs = [(ids[j], float(scores[j])) for j in order.tolist()]
            form = str(rng.choice(["rank", "list", "float64", "float32"]))
            if form == "float32":
                pairs = [(i, float(np.float32(s))) for i, s in pairs]
            components[name] = Listed(name, pairs, form)
        contexts = {name: [x for x in ("new", "sparse", "regular") if rng.random() < 0.7]
                    for name in names if rng.random() < 0.3}
        h = Hybrid(components, candidates=int(rng.integers(1, 25)), contexts=contexts)
        matrix = rng.choice([0.0, 0.0, 0.2, 1.0, 3.0], (3, len(names)))
        matrix[:, 0] += 1.0  # every row a positive total
        if not h.mix_blend(matrix.tolist(), 1.0):
            continue  # every component with weight left is inactive in some context
        history = pool[:int(rng.choice([0, 1, 3, 5, 8]))]
        exclude = {pool[int(j)] for j in rng.integers(0, len(pool), 4)}
        for k in (0, 1, 3, 10, 60):
            user = f"u{case}-{k}"
            got = h.rank(history, exclude, k, Context(user=user))
            want, ids, features, c = plain_blend(h, history, exclude, k, None)
            where = f"case {case} k={k}"
            assert [(s.item_id, s.reason, s.strategy) for s in got] == \
                [(s.item_id, s.reason, s.strategy) for s in want], where
            assert [s.score for s in got] == [s.score for s in want], where  # to the bit
            assert all(type(s.score) is float for s in got), where
            if not want:
                assert user not in h._pending, where
                continue
            kept_ids, kept_features, kept_c, kept_k = h._pending.pop(user)
            assert (list(kept_ids), kept_c, kept_k) == (ids, c, len(want)), where
            assert kept_features.dtype == np.float32, where
            assert kept_features.tolist() == \
                np.array(features, dtype=np.float32).tolist(), where


# -- the shortcuts' own paths, compared exactly ------------------------------------------------


def assert_identical(got: Sequence[ScoredItem], want: Sequence[ScoredItem], what: str) -> None:
    """``assert_same``, with scores equal to the last bit."""
    assert_same(got, want, what)
    assert [s.score for s in got] == [s.score for s in want], what


@pytest.mark.parametrize("n", [1, 100, 2047, 2048, 5000, 10_000])
def test_at_or_above_is_a_cut_then_a_comparison(n: int) -> None:
    from models.recommenders.topk import at_or_above, sample_floor

    rng = np.random.default_rng(n)
    base = rng.random(n)
    arrays = [base, np.round(base, 2), np.sort(base)[::-1], np.zeros(n),
              base.astype(np.float32), np.where(rng.random(n) < 0.9, 0.0, base),
              np.round(base, 2) + rng.integers(0, 3, n) * 4e-13]  # ties a margin apart
    for values in arrays:
        for want in {1, 2, 30, 68, 300, n // 3 or 1, n}:
            if want > n:
                continue
            cut = np.partition(values, n - want)[n - want]
            for margin in (0.0, 1e-12):
                expected = np.flatnonzero(values >= cut - margin)
                for floor in (None, sample_floor(values, want)):
                    got_cut, at = at_or_above(values, want, floor, margin)
                    assert got_cut == cut, (n, want, margin)
                    np.testing.assert_array_equal(at, expected)


def test_content_top_is_a_full_sort_of_the_positive_scores() -> None:
    from models.recommenders.content_ranking import top

    rng = np.random.default_rng(5)
    n = 6000
    dense = np.round(rng.random(n), 3) + rng.integers(0, 3, n) * 3e-13  # rounding ties
    arrays = [dense, np.where(rng.random(n) < 0.3, 0.0, dense),  # some seen or blocked
              np.where(rng.random(n) < 0.95, 0.0, dense),  # mostly no match
              np.where(rng.random(n) < 0.5, 0.0, rng.random(n) * 2e-12),  # below the tie
              np.full(n, 0.25), rng.random(100)]
    for scores in arrays:
        for cand in (None, np.sort(rng.choice(10 * scores.size, scores.size, replace=False))):
            at = np.flatnonzero(scores > 0.0)
            slots = at if cand is None else cand[at]
            kept = np.round(scores[at], 12)
            order = np.lexsort((slots, -kept))
            for want in (1, 5, 30, 68, 272, 3000):
                got_slots, got_kept, more = top(scores, cand, want)
                np.testing.assert_array_equal(got_slots, slots[order][:want])
                np.testing.assert_array_equal(got_kept, kept[order][:want])
                assert more == (at.size > want)


def test_content_ties_and_many_excluded_items_at_the_top() -> None:
    # Many identical items (equal scores to the float), and the best few hundred excluded:
    # the cut falls inside ties and the ranking looks further several times.
    m = ContentTfidf()
    rng = np.random.default_rng(11)
    for i in range(4000):
        j = i % 400  # ten copies of each text
        m.upsert(f"i{i}", f"The {WORDS[j % len(WORDS)]} {WORDS[j // 40]}",
                 [CATEGORIES[j % len(CATEGORIES)], CATEGORIES[(j // 12) % len(CATEGORIES)]],
                 f"A story of {WORDS[(j * 7) % len(WORDS)]}.", available=i % 53 != 7)
    context = Context(interests={"Drama": 2.0, "Comedy": 1.0, "War": 0.5})
    everything = ref_content(m, [], (), 4000, context)
    for history in ([], ["i5", "i17", "i5"], [f"i{int(x)}" for x in rng.integers(0, 4000, 5)]):
        for top_n, every in ((0, 1), (7, 1), (100, 1), (700, 1), (1000, 10)):
            # The best top_n but each ``every``-th: the picks come in several rounds.
            exclude = {s.item_id for j, s in enumerate(everything[:top_n]) if j % every}
            for k in (1, 10, 30, 200):
                what = f"content history={history} top {top_n}/{every} excluded k={k}"
                assert_identical(m.rank(history, exclude, k, context),
                                 ref_content(m, history, exclude, k, context), what)
                assert_identical(m.rank(history, list(exclude), k, None),
                                 ref_content(m, history, exclude, k, None), what)


def test_mf_ties_and_many_excluded_rows_at_the_top() -> None:
    # More rows than the cut samples from, equal scores, and the best rows excluded.
    rng = np.random.default_rng(2)
    m = ImplicitMF(n_factors=4, seed=1)
    state: dict[str, Any] = {}
    for n in range(6000):
        m.learn_one(f"i{n % 3000}", [f"i{(n * 7) % 3000}"], 1.0, Context(user_state=state))
    table = m._items.table
    table[:3000] = np.round(table[:3000], 1)  # ties in scores and in biases
    user = Context(user_state=state)
    for context in (user, None):
        everything = ref_mf(m, [], (), 3000, context)
        for top_n, every in ((0, 1), (50, 1), (600, 1), (1000, 10)):
            # The best top_n but each ``every``-th: the picks come in several rounds.
            exclude = {s.item_id for j, s in enumerate(everything[:top_n]) if j % every}
            history = [f"i{int(x)}" for x in rng.integers(0, 3000, 40)]
            for k in (1, 30, 100):
                what = f"mf top {top_n}/{every} excluded k={k} user={context is not None}"
                assert_identical(m.rank(history, exclude, k, context),
                                 ref_mf(m, history, exclude, k, context), what)
