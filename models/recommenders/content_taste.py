"""A user's taste as a TF-IDF query for content ranking: their category interests plus the
vectors of their recent items, weighted by recency and cut to the strongest terms."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from models.checks import is_real
from models.recommenders.base import Context, check_item_id
from models.recommenders.tfidf import TfidfIndex, category_term

# Where a query term's weight came from: (largest single contribution, interest key or
# history slot).
Source = tuple[float, str | int]


def interests_of(context: Context | None) -> Mapping[str, float]:
    """The request's category interests ({} for an anonymous request)."""
    if context is None:
        return {}
    if not isinstance(context, Context):
        raise ValueError(f"context must be a Context or None, got {context!r}")
    return context.interests


def recent_slots(
    index: Mapping[str, int], history: Sequence[str], window: int
) -> tuple[list[tuple[int, int]], list[int]]:
    """The slots of the last ``window`` distinct known items of ``history``, most recent
    first, paired with their ages; and the slots of all its known items.

    >>> recent_slots({"a": 0, "b": 1}, ["b", "x", "a"], 2)  # "x" is unknown
    ([(0, 0)], [0, 1])
    """
    if isinstance(history, str):
        raise ValueError("history must be a sequence of item ids, not one string")
    recent: dict[str, int] = {}  # item -> age
    seen: list[int] = []
    for item_id in reversed(history):
        # Inlined check_item_id: every history item is looked up, so every one is checked.
        if type(item_id) is not str or not item_id:
            check_item_id(item_id)
        slot = index.get(item_id)
        if slot is not None:
            seen.append(slot)
        if len(recent) < window and item_id not in recent:
            recent[item_id] = len(recent)
    known = [(index[i], age) for i, age in recent.items() if i in index]
    return known, seen


def taste_query(
    tfidf: TfidfIndex, recent: list[tuple[int, int]], interests: Mapping[str, float], *,
    interest_weight: float, recency_decay: float, big_l: float,
) -> tuple[dict[int, float], dict[int, Source]]:
    """Query term -> q_t * idf_t / |q| (what one unit of raw item weight scores), and
    term -> its ``Source``. The interests are category terms (``score x idf``, scaled to
    norm ``interest_weight``; scores that are not finite and > 0 are ignored), added to
    the unit vectors of the ``recent`` slots weighted ``recency_decay ** age`` and
    normalized to sum 1; {} without a known interest or recent item."""
    q: dict[int, float] = {}
    idf: dict[int, float] = {}
    sources: dict[int, Source] = {}
    if interests and interest_weight > 0:
        _add_interests(q, idf, sources, tfidf, interests, big_l)
        if q:
            scale = interest_weight / math.sqrt(sum(v * v for v in q.values()))
            for t, v in q.items():
                q[t] = v * scale
                sources[t] = (v * scale, sources[t][1])
    _add_history(q, idf, sources, tfidf, recent, recency_decay, big_l)
    if q:
        scale = 1.0 / math.sqrt(sum(v * v for v in q.values()))
        for t, v in q.items():
            q[t] = v * idf[t] * scale
    return q, sources


def _add_interests(
    q: dict[int, float], idf: dict[int, float], sources: dict[int, Source], tfidf: TfidfIndex,
    interests: Mapping[str, float], big_l: float,
) -> None:
    """Add ``score x idf`` per known interest to ``q``, unscaled."""
    vocab, df, log1p = tfidf.vocab, tfidf.df, math.log1p
    for key, value in interests.items():
        if type(key) is not str:
            continue
        if type(value) is not float:
            if not is_real(value):
                continue
            value = float(value)
        if not 0.0 < value < math.inf:  # NaN fails both tests: it never reaches a score
            continue
        t = vocab.get(category_term(key))
        if t is None:
            continue
        if t in q:  # two spellings of one category: add up, say the stronger
            q[t] += value * idf[t]
            if value > sources[t][0]:
                sources[t] = (float(value), key)
        else:
            i = idf[t] = big_l - log1p(df[t])
            q[t] = value * i
            sources[t] = (float(value), key)


def _add_history(
    q: dict[int, float], idf: dict[int, float], sources: dict[int, Source], tfidf: TfidfIndex,
    recent: list[tuple[int, int]], recency_decay: float, big_l: float,
) -> None:
    """Add the recency-weighted unit vectors of the ``recent`` slots to ``q``."""
    df, log1p = tfidf.df, math.log1p
    item_terms, item_weights = tfidf.item_terms, tfidf.item_weights
    known = [(slot, recency_decay**age) for slot, age in recent if item_terms[slot].size]
    total = sum(r for _, r in known)
    for slot, r in known:
        scale = r / total / tfidf.norm(slot, big_l)
        for t, w in zip(item_terms[slot].tolist(), item_weights[slot].tolist(), strict=True):
            weight = idf.get(t)
            if weight is None:
                weight = idf[t] = big_l - log1p(df[t])
            part = scale * w * weight
            best = sources.get(t)
            if best is None:
                q[t] = part
                sources[t] = (part, slot)
            else:
                q[t] += part
                if part > best[0]:
                    sources[t] = (part, slot)


def query_terms(
    query: dict[int, float], df: list[int], max_terms: int, max_postings: int
) -> tuple[list[int], list[int], np.ndarray]:
    """The query's terms, their posting counts and factors: all of them, or the strongest
    ``max_terms`` (ties: lower term id), skipping those whose postings would take the
    total past ``max_postings`` (the best term is always kept).

    >>> query_terms({5: 0.1, 2: 0.9, 7: 0.5}, [0, 0, 30, 0, 0, 2, 0, 40], 2, 60)
    ([2, 5], [30, 2], array([0.9, 0.1]))
    """
    terms = list(query)
    lens = [df[t] for t in terms]
    factors = np.fromiter(query.values(), dtype=np.float64, count=len(terms))
    if len(terms) <= max_terms and sum(lens) <= max_postings:
        return terms, lens, factors
    order = np.lexsort((np.array(terms), -factors))
    kept = order[:max_terms].tolist()
    if sum(lens[j] for j in kept) > max_postings:
        kept = []
        budget = max_postings
        for j in order.tolist():
            if lens[j] <= budget or not kept:
                kept.append(j)
                budget -= lens[j]
                if len(kept) == max_terms:
                    break
    return [terms[j] for j in kept], [lens[j] for j in kept], factors[kept]
