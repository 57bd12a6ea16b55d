"""Content-based recommendations: TF-IDF over item titles, descriptions and categories,
matched against a user's category interests and recent items. Needs no clicks, so it
serves new items and sparse users, and feeds a hybrid's exploration slot."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from models.checks import check_int, check_non_negative, check_number, check_positive
from models.recommenders import content_ranking as ranking
from models.recommenders.base import (
    Context,
    Ranked,
    ScoredItem,
    check_item_id,
    check_k,
    check_weight,
    no_reasons,
)
from models.recommenders.catalogue import Catalogue, check_categories
from models.recommenders.content_items import ItemSlots
from models.recommenders.content_taste import (
    interests_of,
    query_terms,
    recent_slots,
    taste_query,
)
from models.recommenders.tfidf import (
    CATEGORY_PREFIX,
    STOP_WORDS,
    TfidfIndex,
    category_term,
    score_slots,
    term_weights,
    tokenize,
)

# What this module has always offered: the text helpers live in tfidf.py now.
__all__ = ["CATEGORY_PREFIX", "STOP_WORDS", "ContentTfidf", "category_term", "tokenize"]


class ContentTfidf:
    """Rank items by the TF-IDF cosine of their text to the user's interests and recent items.

    An item's vector has a term per category (``category_term``, weight ``category_weight``:
    the main signal), per title word (``1 + ln(count)``) and per description word (the
    same times ``description_weight``), each times ``idf = ln((1 + N) / (1 + df)) + 1``
    over the N indexed items; ``tokenize`` says what a word is. The query adds
    ``context.interests`` as category terms (``score x idf``, scaled to norm
    ``interest_weight``; scores that are not finite and > 0 are ignored) to the unit
    vectors of the last ``history_window`` distinct known ``history`` items, weighted
    ``recency_decay ** age`` (0 for the latest) and normalized to sum 1. An item's score
    is its cosine with the query. Only the query's ``max_query_terms`` strongest terms are
    read, skipping those that would take it past ``max_query_postings`` postings (a score
    missing a term is then a lower bound). Without interests or a known history item there
    is no query: ``rank`` returns [] (a hybrid falls back to popularity).

    The query term contributing most to an item's score gives its reason: "matches your
    interest in <the interest's spelling>", or "like <title> you viewed" for the history
    item contributing most to that term; "new: " comes first for items ``learn_one`` saw
    fewer than ``new_item_max_interactions`` times (interactions before the item is indexed
    count, for up to ``max_items`` ids). ``rank_new`` ranks new items only and tops up with
    the newest arrivals (first upsert; reason "new arrival", score 0.0).

    Bounds: ``max_items`` items (one more evicts the least recently written), ``max_terms``
    distinct terms (while it is full, new terms are not indexed, ``ignored_terms`` counts
    them; deletions free room), titles and descriptions cut at ``max_text_chars``. Memory
    is about 24 bytes per posting (an item's term) plus 0.5 KB per item and per term.
    Upserts change document frequencies: the IDFs and the item norms they enter catch up
    at the next query, in time proportional to the postings of the terms that changed.
    ``rank`` costs time proportional to its query terms' postings, not to the catalogue.

    Unavailable items (``upsert(..., available=False)`` or unavailable in the optional
    ``catalogue``), ``history`` and ``exclude`` are never returned. Deterministic: equal
    scores go to the lower internal slot (the item indexed first, unless it reuses the
    slot of a deleted one); the model pickles.

    >>> m = ContentTfidf()
    >>> m.upsert("1", "Toy Story", ["Animation", "Comedy"])
    >>> m.upsert("2", "Heat", ["Crime", "Thriller"], description="A heist in L.A.")
    >>> m.upsert("3", "Toy Soldiers", ["Action"])
    >>> for _ in range(5):
    ...     m.learn_one("3", [])
    >>> [(s.item_id, s.reason) for s in m.rank([], (), 3, Context(interests={"Crime": 2.0}))]
    [('2', 'new: matches your interest in Crime')]
    >>> [(s.item_id, round(s.score, 3), s.reason) for s in m.rank(["1"], (), 3)]
    [('3', 0.04, 'like Toy Story you viewed')]
    >>> [(s.item_id, s.reason) for s in m.rank_new(["2"], (), 3)]
    [('1', 'new arrival')]
    """

    strategy = "content"

    def __init__(
        self,
        max_items: int = 100_000,
        max_terms: int = 200_000,
        max_text_chars: int = 2048,
        category_weight: float = 3.0,
        description_weight: float = 0.5,
        history_window: int = 5,
        recency_decay: float = 0.7,
        interest_weight: float = 1.0,
        new_item_max_interactions: int = 5,
        max_query_terms: int = 32,
        max_query_postings: int = 50_000,
        catalogue: Catalogue | None = None,
    ) -> None:
        self.max_items = check_int("max_items", max_items, low=1)
        self.max_terms = check_int("max_terms", max_terms, low=1)
        self.max_text_chars = check_int("max_text_chars", max_text_chars, low=1)
        self.category_weight = check_positive("category_weight", category_weight)
        self.description_weight = check_non_negative("description_weight", description_weight)
        self.history_window = check_int("history_window", history_window, low=1)
        self.recency_decay = check_number("recency_decay", recency_decay, 0.0, 1.0,
                                          low_open=True)
        self.interest_weight = check_non_negative("interest_weight", interest_weight)
        self.new_item_max_interactions = check_int(
            "new_item_max_interactions", new_item_max_interactions, low=1
        )
        self.max_query_terms = check_int("max_query_terms", max_query_terms, low=1)
        self.max_query_postings = check_int("max_query_postings", max_query_postings, low=1)
        self.catalogue = catalogue
        self._items = ItemSlots(max_items, new_item_max_interactions)
        self._tfidf = TfidfIndex(max_terms, ItemSlots.initial_capacity(max_items))

    # -- catalogue --------------------------------------------------------------------------

    def upsert(
        self, item_id: str, title: str, categories: Iterable[str] = (), description: str = "",
        available: bool = True,
    ) -> None:
        """Index ``item_id``, or re-index it (its interaction count is kept)."""
        check_item_id(item_id)
        if not isinstance(title, str):
            raise ValueError(f"title must be a string, got {title!r}")
        if not isinstance(description, str):
            raise ValueError(f"description must be a string, got {description!r}")
        terms = term_weights(
            title, check_categories(categories), description, max_chars=self.max_text_chars,
            category_weight=self.category_weight, description_weight=self.description_weight,
        )
        slot = _empty_slot(self._items, self._tfidf, item_id)
        self._items.write(item_id, slot, title[: self.max_text_chars], available)
        self._tfidf.add(slot, terms)

    def delete(self, item_id: str) -> None:
        """Forget an item (a no-op for an unknown one)."""
        check_item_id(item_id)
        slot = self._items.discard(item_id)
        if slot is not None:
            self._tfidf.remove(slot)

    # -- learning ---------------------------------------------------------------------------

    def learn_one(
        self, item_id: str, history: Sequence[str], weight: float = 1.0,
        context: Context | None = None,
    ) -> None:
        """Count one interaction with ``item_id`` (any weight counts as one); an item stops
        being new at ``new_item_max_interactions``. ``history``, ``context`` are unused."""
        check_item_id(item_id)
        check_weight(weight)
        if isinstance(history, str):
            raise ValueError("history must be a sequence of item ids, not one string")
        self._learn_checked(item_id, history, 1.0, context)

    def _learn_checked(
        self, item_id: str, history: Sequence[str], w: float, context: Context | None = None
    ) -> None:
        """``learn_one`` once its arguments are checked by the caller."""
        self._items.count(item_id)

    def count_interactions(self, counts: Mapping[str, int]) -> None:
        """Count each item's interactions learned elsewhere (another worker's delta)."""
        for item_id, n in counts.items():
            self._items.count(item_id, n)

    # -- serving ----------------------------------------------------------------------------

    def rank(
        self, history: Sequence[str], exclude: Collection[str], k: int,
        context: Context | None = None,
    ) -> list[ScoredItem]:
        """The ``k`` items most similar to the user's interests and recent ``history`` (most
        recent last), best first; [] without interests or known history."""
        return self._rank(history, exclude, k, context, new_only=False).items()

    def ranked(
        self, history: Sequence[str], exclude: Collection[str], k: int,
        context: Context | None = None,
    ) -> Ranked:
        """What ``rank`` returns, with reasons made on demand (``Ranked``; explain before
        the model changes)."""
        return self._rank(history, exclude, k, context, new_only=False)

    def rank_new(
        self, history: Sequence[str], exclude: Collection[str], k: int,
        context: Context | None = None,
    ) -> list[ScoredItem]:
        """As ``rank``, among new items only; fewer than ``k`` matches are topped up with the
        most recently arrived new items (score 0.0, reason "new arrival")."""
        out = self._rank(history, exclude, k, context, new_only=True).items()
        if len(out) < k:
            ranking.fill_arrivals(out, self._items, history, exclude, k, self.catalogue,
                                  self.strategy)
        return out

    def _rank(
        self, history: Sequence[str], exclude: Collection[str], k: int,
        context: Context | None, new_only: bool,
    ) -> Ranked:
        check_k(k)
        items, tfidf = self._items, self._tfidf
        recent, seen = recent_slots(items.index, history, self.history_window)
        interests = interests_of(context)
        if k == 0 or not items.index:
            return Ranked([], [], no_reasons)
        big_l = tfidf.refresh(len(items.index))
        query, sources = taste_query(
            tfidf, recent, interests, interest_weight=self.interest_weight,
            recency_decay=self.recency_decay, big_l=big_l,
        )
        if not query:
            return Ranked([], [], no_reasons)
        terms, lens, factors = query_terms(
            query, tfidf.df, self.max_query_terms, self.max_query_postings
        )
        scores, cand = score_slots(tfidf, terms, lens, factors, items.blocked, seen, big_l)
        # A zero score is no match: blocked, already seen or, for rank_new, not new.
        if new_only:
            scores *= items.new[: scores.size] if cand is None else items.new[cand]
        picked, picked_scores = ranking.pick(scores, cand, items.ids, exclude, k,
                                             self.catalogue)
        explain = ranking.explainer(tfidf, items, picked, terms, factors, sources,
                                    self.strategy)
        return Ranked([items.ids[c] for c in picked], picked_scores, explain)

    # -- pickling ---------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # Flat, with the keys checkpoints have always had: older checkpoints still load.
        state = {k: v for k, v in self.__dict__.items() if k not in ("_items", "_tfidf")}
        state.update(self._items.state())
        state.update(self._tfidf.state())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self._items = ItemSlots.from_state(state)
        self._tfidf = TfidfIndex.from_state(state)
        self.__dict__.update(state)

    # -- inspection -------------------------------------------------------------------------

    def vector(self, item_id: str) -> dict[str, float]:
        """The item's unit TF-IDF vector as term -> weight ({} if unknown or without terms)."""
        slot = self._items.index.get(item_id)
        if slot is None or not self._tfidf.item_terms[slot].size:
            return {}
        return self._tfidf.vector(slot, self._tfidf.refresh(len(self._items)))

    def df(self, term: str) -> int:
        """How many indexed items have ``term`` (a word, or ``category_term(name)``)."""
        return self._tfidf.document_frequency(term)

    def is_new(self, item_id: str) -> bool:
        """True for an indexed item with fewer than ``new_item_max_interactions``."""
        return self._items.is_new(item_id)

    def title(self, item_id: str) -> str:
        """The indexed title, or the id when unknown or empty."""
        return self._items.title(item_id)

    @property
    def n_terms(self) -> int:
        """Distinct terms indexed (at most ``max_terms``)."""
        return len(self._tfidf.vocab)

    @property
    def ignored_terms(self) -> int:
        """Term occurrences not indexed because the vocabulary was full."""
        return self._tfidf.ignored_terms

    @property
    def _index(self) -> dict[str, int]:
        """Item id -> slot, oldest write first (read by tests)."""
        return self._items.index

    @property
    def _pending(self) -> dict[str, int]:
        """Interactions with items not indexed yet (read by tests and bench/memory_flood.py)."""
        return self._items.pending

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items.index

    def __len__(self) -> int:
        return len(self._items.index)


def _empty_slot(items: ItemSlots, tfidf: TfidfIndex, item_id: str) -> int:
    """The slot to (re)index ``item_id`` in, holding no terms: its own, else a new one (the
    least recently written item is evicted first when ``items`` is full)."""
    slot = items.index.get(item_id)
    if slot is not None:
        tfidf.remove(slot)
        return slot
    oldest = items.oldest_if_full()
    if oldest is not None:
        tfidf.remove(items.release(oldest))
    slot = items.allocate(item_id)
    if slot == len(tfidf.item_terms):
        tfidf.add_slot(items.capacity)
    return slot
