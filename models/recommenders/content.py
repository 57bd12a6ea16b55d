"""Content-based recommendations: TF-IDF over item titles, descriptions and categories,
matched against a user's category interests and recent items. Needs no clicks, so it
serves new items and sparse users, and feeds a hybrid's exploration slot."""

from __future__ import annotations

import functools
import heapq
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from numbers import Real

import numpy as np

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
from models.recommenders.popularity import as_lookup

CATEGORY_PREFIX = "cat:"
# Words too common in titles and descriptions to say anything about an item. Short on
# purpose: IDF already discounts frequent words; this only drops the glue.
STOP_WORDS = frozenset(
    "an and are as at be but by for from has have he her his if in into is it its no not "
    "of on or our she so than that the their them then there these they this to was we "
    "were what when which who will with you your".split()
)
_WORD = re.compile(r"\w+")  # str patterns are Unicode-aware: "café", "東京" are words
_INITIAL_CAPACITY = 1024
_INITIAL_POSTINGS = 4
_NO_TERMS = np.empty(0, dtype=np.int32)
_NO_WEIGHTS = np.empty(0)
_NO_SLOTS = np.empty(0, dtype=np.int32)
# rank scores every item while the catalogue has at most _DENSE_BELOW slots per posting
# it reads, sums the postings into one entry per slot and keeps the touched ones up to
# _SCAN_ALL_BELOW, else sorts the postings (the same result each way).
_DENSE_BELOW = 2
_SCAN_ALL_BELOW = 8
# Scores are compared rounded, so float noise from the incremental norms cannot break a
# tie that exact arithmetic would make (identical items): ties go to the lower item index.
_SCORE_DECIMALS = 12
_TIE = 10.0**-_SCORE_DECIMALS


def tokenize(text: str) -> list[str]:
    """Casefolded ``\\w+`` words of ``text``, without 1-character words, stop words and
    pure numbers (a year or a count would link unrelated items).

    >>> tokenize("The Café of 1995: Toy-Story 2, l'été")
    ['café', 'toy', 'story', 'été']
    """
    return [
        w for w in _WORD.findall(text.casefold())
        if len(w) > 1 and w not in STOP_WORDS and not w.isdigit()
    ]


@functools.lru_cache(maxsize=4096)  # interests spell the same few categories every request
def category_term(category: str) -> str:
    """The term a category becomes: its own namespace, so "Drama" never matches the word.

    >>> category_term(" Sci-Fi ")
    'cat:sci-fi'
    """
    return CATEGORY_PREFIX + category.strip().casefold()


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
        for name, value in (
            ("max_items", max_items), ("max_terms", max_terms),
            ("max_text_chars", max_text_chars), ("history_window", history_window),
            ("new_item_max_interactions", new_item_max_interactions),
            ("max_query_terms", max_query_terms), ("max_query_postings", max_query_postings),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name, number, positive in (
            ("category_weight", category_weight, True),
            ("description_weight", description_weight, False),
            ("interest_weight", interest_weight, False),
        ):
            if not _is_number(number) or not (0.0 if positive else -1.0) < number < math.inf:
                raise ValueError(f"{name} must be a finite number {'>' if positive else '>='} "
                                 f"0, got {number!r}")
        if not (_is_number(recency_decay) and 0 < recency_decay <= 1):
            raise ValueError(f"recency_decay must be in (0, 1], got {recency_decay!r}")
        self.max_items = max_items
        self.max_terms = max_terms
        self.max_text_chars = max_text_chars
        self.category_weight = float(category_weight)
        self.description_weight = float(description_weight)
        self.history_window = history_window
        self.recency_decay = float(recency_decay)
        self.interest_weight = float(interest_weight)
        self.new_item_max_interactions = new_item_max_interactions
        self.max_query_terms = max_query_terms
        self.max_query_postings = max_query_postings
        self.catalogue = catalogue
        # Items live in slots; _index is in write order (oldest first), so eviction is FIFO.
        self._index: dict[str, int] = {}
        self._ids: list[str] = []  # "" marks a free slot
        self._titles: list[str] = []
        # Each item's terms and raw weights (tf x field weight), as arrays: dicts would take
        # several times the memory.
        self._item_terms: list[np.ndarray] = []
        self._item_weights: list[np.ndarray] = []
        self._free_slots: list[int] = []  # heap: lowest free slot reused first
        cap = min(_INITIAL_CAPACITY, max_items)
        # With s_t = ln(1 + df_t) and L = ln(1 + N) + 1, idf_t = L - s_t, so an item's squared
        # norm sum_t w_t^2 (L - s_t)^2 is L^2 A - 2 L B + C: a change of N costs nothing and a
        # change of df_t only touches the items posted under t.
        self._a = np.zeros(cap)  # sum_t w_t^2
        self._b = np.zeros(cap)  # sum_t w_t^2 s_t
        self._c = np.zeros(cap)  # sum_t w_t^2 s_t^2
        self._blocked = np.ones(cap, dtype=bool)  # free or unavailable
        self._new = np.zeros(cap, dtype=bool)
        self._clicks = np.zeros(cap, dtype=np.int64)
        self._pending: dict[str, int] = {}  # interactions with items not indexed (yet)
        self._arrivals: dict[str, None] = {}  # new items, in order of first upsert
        # Terms: postings are slots (int32) and raw weights (float64) in growable buffers,
        # one pair per term; _slots and _weights hold views of their first df_t entries
        # (rebuilt after unpickling). Two flat arrays, not one of (slot, weight) rows:
        # scoring reads them whole, and numpy works on contiguous ints several times faster.
        self._vocab: dict[str, int] = {}
        self._terms: list[str] = []  # "" marks a free term id
        self._free_terms: list[int] = []
        self._df: list[int] = []
        self._slot_buffers: list[np.ndarray] = []
        self._weight_buffers: list[np.ndarray] = []
        self._slots: list[np.ndarray] = []
        self._weights: list[np.ndarray] = []
        # Terms whose df changed since the last query -> the s_t the B and C sums hold.
        self._stale: dict[int, float] = {}
        self._ignored_terms = 0
        self._inv_norms: np.ndarray | None = None  # see _inverse_norms

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
        terms = self._vectorize(title, check_categories(categories), description)
        self._inv_norms = None
        slot = self._index.pop(item_id, None)
        if slot is None:
            if len(self._index) >= self.max_items:
                self._forget(next(iter(self._index)))
            slot = self._allocate(item_id)
        else:
            self._unindex(slot)
        self._index[item_id] = slot  # (re)inserted last: the most recently written
        self._titles[slot] = title[: self.max_text_chars]
        self._blocked[slot] = not available
        self._add_terms(slot, terms)

    def delete(self, item_id: str) -> None:
        """Forget an item (a no-op for an unknown one)."""
        check_item_id(item_id)
        self._pending.pop(item_id, None)
        if item_id in self._index:
            self._forget(item_id)

    def _vectorize(
        self, title: str, categories: tuple[str, ...], description: str
    ) -> dict[str, float]:
        limit = self.max_text_chars
        terms: dict[str, float] = {}
        for cat in categories:
            term = category_term(cat[:limit])
            if term != CATEGORY_PREFIX:
                terms[term] = self.category_weight
        fields = [(title, 1.0)]
        if self.description_weight > 0:
            fields.append((description, self.description_weight))
        for text, weight in fields:
            counts: dict[str, int] = {}
            for word in tokenize(text[:limit]):
                counts[word] = counts.get(word, 0) + 1
            for word, n in counts.items():
                terms[word] = terms.get(word, 0.0) + weight * (1.0 + math.log(n))
        return terms

    def _allocate(self, item_id: str) -> int:
        if self._free_slots:
            slot = heapq.heappop(self._free_slots)
            self._ids[slot] = item_id
        else:
            slot = len(self._ids)
            if slot == self._a.size:
                self._grow(min(2 * slot, self.max_items))
            self._ids.append(item_id)
            self._titles.append("")
            self._item_terms.append(_NO_TERMS)
            self._item_weights.append(_NO_WEIGHTS)
        clicks = self._pending.pop(item_id, 0)
        self._clicks[slot] = clicks
        is_new = clicks < self.new_item_max_interactions
        self._new[slot] = is_new
        if is_new:
            self._arrivals[item_id] = None
        return slot

    def _grow(self, cap: int) -> None:
        extra = cap - self._a.size
        self._a = np.concatenate([self._a, np.zeros(extra)])
        self._b = np.concatenate([self._b, np.zeros(extra)])
        self._c = np.concatenate([self._c, np.zeros(extra)])
        self._blocked = np.concatenate([self._blocked, np.ones(extra, dtype=bool)])
        self._new = np.concatenate([self._new, np.zeros(extra, dtype=bool)])
        self._clicks = np.concatenate([self._clicks, np.zeros(extra, dtype=np.int64)])

    def _forget(self, item_id: str) -> None:
        self._inv_norms = None
        slot = self._index.pop(item_id)
        self._unindex(slot)
        self._arrivals.pop(item_id, None)
        self._ids[slot] = self._titles[slot] = ""
        self._blocked[slot] = True
        self._new[slot] = False
        self._clicks[slot] = 0
        heapq.heappush(self._free_slots, slot)

    def _mark_stale(self, t: int) -> None:
        if t not in self._stale:
            self._stale[t] = math.log1p(self._df[t])

    def _add_terms(self, slot: int, terms: dict[str, float]) -> None:
        ids: list[int] = []
        raw: list[float] = []
        a = b = c = 0.0
        vocab, df, stale = self._vocab, self._df, self._stale
        slot_buffers, weight_buffers = self._slot_buffers, self._weight_buffers
        for term, w in terms.items():
            t = vocab.get(term)
            if t is None:
                if len(vocab) >= self.max_terms:
                    self._ignored_terms += 1
                    continue
                t = self._new_term(term)
            n = df[t]
            s = stale.get(t)
            if s is None:
                s = stale[t] = math.log1p(n)
            slots, weights = slot_buffers[t], weight_buffers[t]
            if n == len(slots):
                slots = slot_buffers[t] = np.concatenate([slots, np.empty_like(slots)])
                weights = weight_buffers[t] = np.concatenate([weights, np.empty_like(weights)])
            slots[n] = slot
            weights[n] = w
            df[t] = n + 1
            self._slots[t] = slots[: n + 1]
            self._weights[t] = weights[: n + 1]
            ids.append(t)
            raw.append(w)
            w2 = w * w
            a += w2
            b += w2 * s
            c += w2 * s * s
        if ids:
            self._item_terms[slot] = np.array(ids, dtype=np.int32)
            self._item_weights[slot] = np.array(raw)
        self._a[slot], self._b[slot], self._c[slot] = a, b, c

    def _set_df(self, t: int, n: int) -> None:
        self._df[t] = n
        self._slots[t] = self._slot_buffers[t][:n]
        self._weights[t] = self._weight_buffers[t][:n]

    def _new_term(self, term: str) -> int:
        slots = np.empty(_INITIAL_POSTINGS, dtype=np.int32)
        weights = np.empty(_INITIAL_POSTINGS)
        if self._free_terms:
            t = heapq.heappop(self._free_terms)
            self._terms[t] = term
            self._slot_buffers[t], self._weight_buffers[t] = slots, weights
        else:
            t = len(self._terms)
            self._terms.append(term)
            self._df.append(0)
            self._slot_buffers.append(slots)
            self._weight_buffers.append(weights)
            self._slots.append(slots[:0])
            self._weights.append(weights[:0])
        self._vocab[term] = t
        return t

    def _unindex(self, slot: int) -> None:
        for t in self._item_terms[slot].tolist():
            self._mark_stale(t)
            # A search instead of stored positions: removals are rarer than the memory a
            # position per posting would take.
            p = int(np.flatnonzero(self._slots[t] == slot)[0])
            n = self._df[t] - 1
            slots, weights = self._slot_buffers[t], self._weight_buffers[t]
            if p != n:  # move the last posting into the hole
                slots[p], weights[p] = slots[n], weights[n]
            if n == 0:
                self._df[t] = 0
                self._free_term(t)
                continue
            if len(slots) > 4 * n and len(slots) > _INITIAL_POSTINGS:
                self._slot_buffers[t] = slots[: 2 * n].copy()
                self._weight_buffers[t] = weights[: 2 * n].copy()
            self._set_df(t, n)
        self._item_terms[slot] = _NO_TERMS
        self._item_weights[slot] = _NO_WEIGHTS
        self._a[slot] = self._b[slot] = self._c[slot] = 0.0

    def _free_term(self, t: int) -> None:
        del self._vocab[self._terms[t]]
        self._terms[t] = ""
        self._stale.pop(t, None)
        self._slot_buffers[t] = self._slots[t] = _NO_SLOTS
        self._weight_buffers[t] = self._weights[t] = _NO_WEIGHTS
        heapq.heappush(self._free_terms, t)

    def _refresh(self) -> float:
        """Bring the B and C sums up to date with df; return L = ln(1 + N) + 1."""
        stale = self._stale
        if stale:
            terms = list(stale)
            lens = [self._df[t] for t in terms]
            old = np.fromiter(stale.values(), dtype=np.float64, count=len(terms))
            new = np.log1p(np.array(lens, dtype=np.float64))
            slots = np.concatenate([self._slots[t] for t in terms])
            w2 = np.concatenate([self._weights[t] for t in terms]) ** 2
            d1 = w2 * np.repeat(new - old, lens)
            d2 = w2 * np.repeat(new * new - old * old, lens)
            if len(self._ids) > _SCAN_ALL_BELOW * slots.size:
                np.add.at(self._b, slots, d1)
                np.add.at(self._c, slots, d2)
            else:
                size = len(self._ids)
                self._b[:size] += np.bincount(slots, weights=d1, minlength=size)
                self._c[:size] += np.bincount(slots, weights=d2, minlength=size)
            stale.clear()
        return math.log1p(len(self._index)) + 1.0

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
        slot = self._index.get(item_id)
        if slot is None:
            # Re-inserted last, so the bound drops the id clicked least recently.
            self._pending[item_id] = self._pending.pop(item_id, 0) + 1
            if len(self._pending) > self.max_items:
                del self._pending[next(iter(self._pending))]
            return
        self._clicks[slot] += 1
        if self._new[slot] and self._clicks[slot] >= self.new_item_max_interactions:
            self._new[slot] = False
            del self._arrivals[item_id]

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
            self._fill_arrivals(out, history, exclude, k)
        return out

    def _rank(
        self, history: Sequence[str], exclude: Collection[str], k: int,
        context: Context | None, new_only: bool,
    ) -> Ranked:
        check_k(k)
        recent, seen = self._history_slots(history)
        interests = _interests_of(context)
        if k == 0 or not self._index:
            return Ranked([], [], no_reasons)
        big_l = self._refresh()
        query, sources = self._query(recent, interests, big_l)
        if not query:
            return Ranked([], [], no_reasons)
        terms = list(query)
        lens = [self._df[t] for t in terms]
        factors = np.fromiter(query.values(), dtype=np.float64, count=len(terms))
        if len(terms) > self.max_query_terms or sum(lens) > self.max_query_postings:
            terms, lens, factors = self._strongest(terms, lens, factors)
        slots_of, weights_of = self._slots, self._weights
        slots = np.concatenate([slots_of[t] for t in terms])
        contrib = np.concatenate([weights_of[t] for t in terms])
        contrib *= np.repeat(factors, lens)
        size = len(self._ids)
        cand: np.ndarray | None = None  # None: scores has one entry per slot
        if size <= _DENSE_BELOW * slots.size:
            # Most slots are touched: score them all.
            scores = np.bincount(slots, weights=contrib, minlength=size)
            scores *= self._inverse_norms(big_l)
            if seen:
                scores[seen] = 0.0
        elif size <= _SCAN_ALL_BELOW * slots.size:
            # One sum per slot, then the touched ones: cheaper than sorting the postings.
            sums = np.bincount(slots, weights=contrib, minlength=size)
            if seen:
                sums[seen] = 0.0
            cand = np.flatnonzero(sums > 0.0)  # raw weights and factors are > 0
            scores = sums[cand] * self._inverse_norms(big_l)[cand]
        else:
            cand, inverse = np.unique(slots, return_inverse=True)
            scores = np.bincount(inverse, weights=contrib)
            if self._inv_norms is not None:
                scores *= self._inv_norms[cand]
            else:  # no pass over every slot to refill the cache
                norms = np.sqrt(
                    (big_l * self._a[cand] - 2.0 * self._b[cand]) * big_l + self._c[cand]
                )
                scores = np.where(self._blocked[cand], 0.0, scores / norms)
            if seen:  # the history items among the candidates (cand is sorted)
                wanted = np.array(seen)
                at = np.minimum(np.searchsorted(cand, wanted), cand.size - 1)
                scores[at[cand[at] == wanted]] = 0.0
        # A zero score is no match: blocked, already seen or, for rank_new, not new.
        if new_only:
            scores *= self._new[:size] if cand is None else self._new[cand]
        picked, picked_scores = self._pick(scores, cand, exclude, k)
        ids = self._ids

        def explain(positions: Sequence[int]) -> list[tuple[str, str]]:
            factor_of = dict(zip(terms, factors.tolist(), strict=True))
            return [(self._reason(picked[p], factor_of, sources), self.strategy)
                    for p in positions]

        return Ranked([ids[c] for c in picked], picked_scores, explain)

    def _strongest(
        self, terms: list[int], lens: list[int], factors: np.ndarray
    ) -> tuple[list[int], list[int], np.ndarray]:
        """At most ``max_query_terms`` query terms, the ones worth most per unit of item weight
        first (ties: lower term id), skipping those whose postings would take the total past
        ``max_query_postings`` (the best term is always kept)."""
        order = np.lexsort((np.array(terms), -factors))
        first = order[: self.max_query_terms].tolist()
        if sum(lens[j] for j in first) <= self.max_query_postings:
            kept = first  # the common case: the strongest terms all fit the budget
            return [terms[j] for j in kept], [lens[j] for j in kept], factors[kept]
        kept = []
        budget = self.max_query_postings
        for j in order.tolist():
            if lens[j] <= budget or not kept:
                kept.append(j)
                budget -= lens[j]
                if len(kept) == self.max_query_terms:
                    break
        return [terms[j] for j in kept], [lens[j] for j in kept], factors[kept]

    def _history_slots(
        self, history: Sequence[str]
    ) -> tuple[list[tuple[int, int]], list[int]]:
        """The slots of the last ``history_window`` distinct known items of ``history``, most
        recent first, paired with their ages; and the slots of all its known items."""
        if isinstance(history, str):
            raise ValueError("history must be a sequence of item ids, not one string")
        index = self._index
        recent: dict[str, int] = {}  # item -> age
        seen: list[int] = []
        for item_id in reversed(history):
            # Inlined check_item_id: every history item is looked up, so every one is checked.
            if type(item_id) is not str or not item_id:
                check_item_id(item_id)
            slot = index.get(item_id)
            if slot is not None:
                seen.append(slot)
            if len(recent) < self.history_window and item_id not in recent:
                recent[item_id] = len(recent)
        known = [(index[i], age) for i, age in recent.items() if i in index]
        return known, seen

    def _query(
        self, recent: list[tuple[int, int]], interests: Mapping[str, float], big_l: float
    ) -> tuple[dict[int, float], dict[int, tuple[float, str | int]]]:
        """Query term -> q_t * idf_t / |q| (what one unit of raw item weight scores), and
        term -> (largest single contribution to q_t, interest key or history slot)."""
        vocab, df, log1p = self._vocab, self._df, math.log1p
        q: dict[int, float] = {}
        idf: dict[int, float] = {}
        sources: dict[int, tuple[float, str | int]] = {}
        if interests and self.interest_weight > 0:
            for key, value in interests.items():
                if type(key) is not str:
                    continue
                if type(value) is not float:
                    if not _is_number(value):
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
            if q:
                scale = self.interest_weight / math.sqrt(sum(v * v for v in q.values()))
                for t, v in q.items():
                    q[t] = v * scale
                    sources[t] = (v * scale, sources[t][1])
        item_terms, item_weights = self._item_terms, self._item_weights
        known = [(slot, self.recency_decay**age) for slot, age in recent if item_terms[slot].size]
        total = sum(r for _, r in known)
        a, b, c = self._a, self._b, self._c
        for slot, r in known:
            norm = math.sqrt(
                (big_l * float(a[slot]) - 2.0 * float(b[slot])) * big_l + float(c[slot])
            )
            scale = r / total / norm
            for t, w in zip(
                item_terms[slot].tolist(), item_weights[slot].tolist(), strict=True
            ):
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
        if q:
            scale = 1.0 / math.sqrt(sum(v * v for v in q.values()))
            for t, v in q.items():
                q[t] = v * idf[t] * scale
        return q, sources

    def _inverse_norms(self, big_l: float) -> np.ndarray:
        """1 / |item vector| per slot, 0 for free and unavailable slots; cached until the
        catalogue changes."""
        inv = self._inv_norms
        if inv is None:
            size = len(self._ids)
            a, b, c = self._a[:size], self._b[:size], self._c[:size]
            ok = (a > 0) & ~self._blocked[:size]
            inv = np.zeros(size)
            inv[ok] = 1.0 / np.sqrt(((big_l * a - 2.0 * b) * big_l + c)[ok])
            self._inv_norms = inv
        return inv

    def _pick(
        self, scores: np.ndarray, cand: np.ndarray | None, exclude: Collection[str], k: int
    ) -> tuple[list[int], list[float]]:
        excluded = as_lookup(exclude) if exclude else ()
        catalogue = self.catalogue
        ids = self._ids
        picked: list[int] = []
        picked_scores: list[float] = []
        done = 0
        want = k if not excluded and catalogue is None else 2 * k + 8
        while True:
            # A longer prefix of the same order: only the entries past ``done`` are new.
            best, best_scores, more = _top(scores, cand, want)
            for c, s in zip(best[done:].tolist(), best_scores[done:].tolist(), strict=True):
                item_id = ids[c]
                if item_id in excluded:
                    continue
                if catalogue is not None and catalogue.is_unavailable(item_id):
                    continue
                picked.append(c)
                picked_scores.append(s)
                if len(picked) == k:
                    return picked, picked_scores
            if not more:
                return picked, picked_scores
            done = best.size
            want *= 4  # many excluded items at the top: look further

    def _reason(
        self, c: int, factor_of: dict[int, float], sources: dict[int, tuple[float, str | int]]
    ) -> str:
        best_t, best = -1, -1.0
        for t, w in zip(self._item_terms[c].tolist(), self._item_weights[c].tolist(), strict=True):
            f = factor_of.get(t)
            if f is not None and f * w > best:
                best_t, best = t, f * w
        source = sources[best_t][1]
        if isinstance(source, str):
            reason = f"matches your interest in {source}"
        else:
            reason = f"like {self._titles[source] or self._ids[source]} you viewed"
        return "new: " + reason if self._new[c] else reason

    def _fill_arrivals(
        self, out: list[ScoredItem], history: Sequence[str], exclude: Collection[str], k: int
    ) -> None:
        excluded = as_lookup(exclude) if exclude else ()
        taken = set(history)
        taken.update(s.item_id for s in out)
        catalogue, index, blocked = self.catalogue, self._index, self._blocked
        for item_id in reversed(self._arrivals):
            if item_id in taken or item_id in excluded or blocked[index[item_id]]:
                continue
            if catalogue is not None and catalogue.is_unavailable(item_id):
                continue
            out.append(ScoredItem(item_id, 0.0, "new arrival", self.strategy))
            if len(out) == k:
                return

    # -- pickling ---------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        # Views would be pickled as copies detached from their buffers: rebuilt on load.
        del state["_slots"], state["_weights"]
        state["_inv_norms"] = None
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        buffers = state.pop("_buffers", None)
        self.__dict__.update(state)
        if isinstance(buffers, list):  # pickled when postings were (slot, weight) rows
            self._slot_buffers, self._weight_buffers = [], []
            for rows, n in zip(buffers, self._df, strict=True):
                slots, weights = np.empty(len(rows), dtype=np.int32), np.empty(len(rows))
                slots[:n], weights[:n] = rows[:n, 0], rows[:n, 1]  # past n: never written
                self._slot_buffers.append(slots)
                self._weight_buffers.append(weights)
        self._slots = [b[:n] for b, n in zip(self._slot_buffers, self._df, strict=True)]
        self._weights = [b[:n] for b, n in zip(self._weight_buffers, self._df, strict=True)]

    # -- inspection -------------------------------------------------------------------------

    def vector(self, item_id: str) -> dict[str, float]:
        """The item's unit TF-IDF vector as term -> weight ({} if unknown or without terms)."""
        slot = self._index.get(item_id)
        if slot is None or not self._item_terms[slot].size:
            return {}
        big_l = self._refresh()
        raw = {
            self._terms[t]: w * (big_l - math.log1p(self._df[t]))
            for t, w in zip(
                self._item_terms[slot].tolist(), self._item_weights[slot].tolist(), strict=True
            )
        }
        norm = math.sqrt(sum(v * v for v in raw.values()))
        return {term: v / norm for term, v in raw.items()}

    def df(self, term: str) -> int:
        """How many indexed items have ``term`` (a word, or ``category_term(name)``)."""
        t = self._vocab.get(term)
        return 0 if t is None else self._df[t]

    def is_new(self, item_id: str) -> bool:
        """True for an indexed item with fewer than ``new_item_max_interactions``."""
        slot = self._index.get(item_id)
        return slot is not None and bool(self._new[slot])

    def title(self, item_id: str) -> str:
        """The indexed title, or the id when unknown or empty."""
        slot = self._index.get(item_id)
        return (self._titles[slot] if slot is not None else "") or item_id

    @property
    def n_terms(self) -> int:
        """Distinct terms indexed (at most ``max_terms``)."""
        return len(self._vocab)

    @property
    def ignored_terms(self) -> int:
        """Term occurrences not indexed because the vocabulary was full."""
        return self._ignored_terms

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def __len__(self) -> int:
        return len(self._index)


def _interests_of(context: Context | None) -> Mapping[str, float]:
    if context is None:
        return {}
    if not isinstance(context, Context):
        raise ValueError(f"context must be a Context or None, got {context!r}")
    return context.interests


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _top(
    scores: np.ndarray, cand: np.ndarray | None, want: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """The ``want`` best slots with a score > 0 by score then lower slot, their scores, and
    whether more have a score > 0; ``scores[i]`` is slot ``cand[i]``'s (slot i's if None)."""
    # Comparisons first: numpy finds the non-zero entries of a bool array much faster.
    at = np.flatnonzero(scores > 0.0)
    positive = at.size
    if positive > want:
        # Everything that can round to the cut or above: ties at the cut are all kept, so
        # the order does not depend on ``want``. Only the positive scores are partitioned:
        # numpy's partition slows down several times on the many tied zeros.
        values = scores[at]
        cut = np.partition(values, positive - want)[positive - want]
        at = at[values >= cut - _TIE]
    slots = at if cand is None else cand[at]
    kept = np.round(scores[at], _SCORE_DECIMALS)
    order = np.lexsort((slots, -kept))[:want]
    return slots[order], kept[order], positive > want
