"""TF-IDF over item text for content ranking: what a term is, an item's raw term weights,
the index of postings, document frequencies and norms kept up online, and query scores."""

from __future__ import annotations

import functools
import heapq
import math
import re
from typing import Any

import numpy as np

CATEGORY_PREFIX = "cat:"
# Words too common in titles and descriptions to say anything about an item. Short on
# purpose: IDF already discounts frequent words; this only drops the glue.
STOP_WORDS = frozenset(
    "an and are as at be but by for from has have he her his if in into is it its no not "
    "of on or our she so than that the their them then there these they this to was we "
    "were what when which who will with you your".split()
)
_WORD = re.compile(r"\w+")  # str patterns are Unicode-aware: "café", "東京" are words
_INITIAL_POSTINGS = 4
NO_TERMS = np.empty(0, dtype=np.int32)
NO_WEIGHTS = np.empty(0)
# score_slots scores every item while the catalogue has at most _DENSE_BELOW slots per
# posting it reads, sums the postings into one entry per slot and keeps the touched ones
# up to _SCAN_ALL_BELOW, else sorts the postings; refresh likewise sums its updates over
# every slot up to _SCAN_ALL_BELOW (the same result each way).
_DENSE_BELOW = 2
_SCAN_ALL_BELOW = 8


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


def term_weights(
    title: str, categories: tuple[str, ...], description: str, *, max_chars: int,
    category_weight: float, description_weight: float,
) -> dict[str, float]:
    """An item's raw term weights: ``category_weight`` per category, ``1 + ln(count)`` per
    title word, the same times ``description_weight`` per description word (summed when a
    word is in both); each text cut at ``max_chars``.

    >>> term_weights("Toy Story", ("Comedy",), "toy toy", max_chars=100,
    ...              category_weight=3.0, description_weight=0.5)
    {'cat:comedy': 3.0, 'toy': 1.8465735902799727, 'story': 1.0}
    """
    terms: dict[str, float] = {}
    for cat in categories:
        term = category_term(cat[:max_chars])
        if term != CATEGORY_PREFIX:
            terms[term] = category_weight
    fields = [(title, 1.0)]
    if description_weight > 0:
        fields.append((description, description_weight))
    for text, weight in fields:
        counts: dict[str, int] = {}
        for word in tokenize(text[:max_chars]):
            counts[word] = counts.get(word, 0) + 1
        for word, n in counts.items():
            terms[word] = terms.get(word, 0.0) + weight * (1.0 + math.log(n))
    return terms


def _split_rows(
    rows: list[np.ndarray], df: list[int]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each term's postings as slot and weight buffers, from one array of (slot, weight)
    rows per term (the layout of older checkpoints)."""
    slot_buffers, weight_buffers = [], []
    for term_rows, n in zip(rows, df, strict=True):
        slots, weights = np.empty(len(term_rows), dtype=np.int32), np.empty(len(term_rows))
        slots[:n], weights[:n] = term_rows[:n, 0], term_rows[:n, 1]  # past n: never written
        slot_buffers.append(slots)
        weight_buffers.append(weights)
    return slot_buffers, weight_buffers


class TfidfIndex:
    """Items' raw term weights by slot (the caller's numbering; ``add_slot`` makes room for
    the next one), the postings of each term, and each item's norm.

    ``idf_t = ln((1 + N) / (1 + df_t)) + 1`` over the N items the caller says there are.
    At most ``max_terms`` distinct terms: while full, new terms are not indexed
    (``ignored_terms`` counts them). Read ``vocab`` (term -> id), ``df``, ``item_terms``,
    ``item_weights`` and the postings ``slots`` and ``weights`` (views, one per term id),
    never write them.

    >>> ix = TfidfIndex(max_terms=10, capacity=2)
    >>> for slot, terms in enumerate([{"cat:comedy": 3.0, "toy": 1.0}, {"toy": 2.0}]):
    ...     ix.add_slot(2); ix.add(slot, terms)
    >>> big_l = ix.refresh(2)
    >>> ix.document_frequency("toy"), {t: round(w, 3) for t, w in ix.vector(0, big_l).items()}
    (2, {'cat:comedy': 0.973, 'toy': 0.231})
    """

    # What a ContentTfidf checkpoints, flat, each under "_" + its name without the leading
    # underscore: the keys its checkpoints have always had, so older ones still load.
    STATE = ("item_terms", "item_weights", "_a", "_b", "_c", "vocab", "_terms", "_free_terms",
             "df", "_slot_buffers", "_weight_buffers", "_stale", "ignored_terms", "_inv_norms")

    def __init__(self, max_terms: int, capacity: int) -> None:
        self.max_terms = max_terms
        # Each item's terms and raw weights (tf x field weight), as arrays: dicts would take
        # several times the memory.
        self.item_terms: list[np.ndarray] = []
        self.item_weights: list[np.ndarray] = []
        # With s_t = ln(1 + df_t) and L = ln(1 + N) + 1, idf_t = L - s_t, so an item's squared
        # norm sum_t w_t^2 (L - s_t)^2 is L^2 A - 2 L B + C: a change of N costs nothing and a
        # change of df_t only touches the items posted under t (at the next refresh).
        self._a = np.zeros(capacity)  # sum_t w_t^2
        self._b = np.zeros(capacity)  # sum_t w_t^2 s_t
        self._c = np.zeros(capacity)  # sum_t w_t^2 s_t^2
        # Terms: postings are slots (int32) and raw weights (float64) in growable buffers,
        # one pair per term; slots and weights hold views of their first df_t entries
        # (rebuilt after unpickling). Two flat arrays, not one of (slot, weight) rows:
        # scoring reads them whole, and numpy works on contiguous ints several times faster.
        self.vocab: dict[str, int] = {}
        self._terms: list[str] = []  # "" marks a free term id
        self._free_terms: list[int] = []  # heap: lowest free id reused first
        self.df: list[int] = []
        self._slot_buffers: list[np.ndarray] = []
        self._weight_buffers: list[np.ndarray] = []
        self.slots: list[np.ndarray] = []
        self.weights: list[np.ndarray] = []
        # Terms whose df changed since the last refresh -> the s_t the B and C sums hold.
        self._stale: dict[int, float] = {}
        self.ignored_terms = 0
        self._inv_norms: np.ndarray | None = None  # see inverse_norms

    # -- checkpoints ------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """What a checkpoint holds, by checkpoint key (views and caches left out)."""
        # The norm sums caught up first (what the next ranking would do anyway): else a
        # snapshot would differ by whether a read happened to rank between a catalogue
        # change and it, and a read must leave the models' snapshot as it was.
        self.refresh(len(self.item_terms))
        state = {"_" + name.lstrip("_"): getattr(self, name) for name in self.STATE}
        state["_inv_norms"] = None
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TfidfIndex:
        """The index ``state`` holds (and ``max_terms``), taking its keys out of it."""
        ix = cls.__new__(cls)
        ix.max_terms = state["max_terms"]
        rows = state.pop("_buffers", None)  # pickled when postings were (slot, weight) rows
        if rows is not None:
            state["_slot_buffers"], state["_weight_buffers"] = _split_rows(rows, state["_df"])
        for name in cls.STATE:
            setattr(ix, name, state.pop("_" + name.lstrip("_")))
        ix.slots = [b[:n] for b, n in zip(ix._slot_buffers, ix.df, strict=True)]
        ix.weights = [b[:n] for b, n in zip(ix._weight_buffers, ix.df, strict=True)]
        return ix

    # -- writing ----------------------------------------------------------------------------

    def add_slot(self, capacity: int) -> None:
        """Make room for the next slot (``len(item_terms)``), growing the per-slot arrays
        to ``capacity`` when they are full."""
        size = len(self.item_terms)
        if size == self._a.size:
            extra = capacity - size
            self._a = np.concatenate([self._a, np.zeros(extra)])
            self._b = np.concatenate([self._b, np.zeros(extra)])
            self._c = np.concatenate([self._c, np.zeros(extra)])
        self.item_terms.append(NO_TERMS)
        self.item_weights.append(NO_WEIGHTS)

    def add(self, slot: int, terms: dict[str, float]) -> None:
        """Post ``slot`` (holding no terms) under each of ``terms`` (term -> raw weight)."""
        self._inv_norms = None
        ids: list[int] = []
        raw: list[float] = []
        a = b = c = 0.0
        vocab, df, stale = self.vocab, self.df, self._stale
        slot_buffers, weight_buffers = self._slot_buffers, self._weight_buffers
        for term, w in terms.items():
            t = vocab.get(term)
            if t is None:
                if len(vocab) >= self.max_terms:
                    self.ignored_terms += 1
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
            self.slots[t] = slots[: n + 1]
            self.weights[t] = weights[: n + 1]
            ids.append(t)
            raw.append(w)
            w2 = w * w
            a += w2
            b += w2 * s
            c += w2 * s * s
        if ids:
            self.item_terms[slot] = np.array(ids, dtype=np.int32)
            self.item_weights[slot] = np.array(raw)
        self._a[slot], self._b[slot], self._c[slot] = a, b, c

    def remove(self, slot: int) -> None:
        """Take ``slot`` out of the postings of its terms; it then holds no terms."""
        self._inv_norms = None
        for t in self.item_terms[slot].tolist():
            if t not in self._stale:
                self._stale[t] = math.log1p(self.df[t])
            # A search instead of stored positions: removals are rarer than the memory a
            # position per posting would take.
            p = int(np.flatnonzero(self.slots[t] == slot)[0])
            n = self.df[t] - 1
            slots, weights = self._slot_buffers[t], self._weight_buffers[t]
            if p != n:  # move the last posting into the hole
                slots[p], weights[p] = slots[n], weights[n]
            if n == 0:
                self.df[t] = 0
                self._free_term(t)
                continue
            if len(slots) > 4 * n and len(slots) > _INITIAL_POSTINGS:
                self._slot_buffers[t] = slots[: 2 * n].copy()
                self._weight_buffers[t] = weights[: 2 * n].copy()
            self.df[t] = n
            self.slots[t] = self._slot_buffers[t][:n]
            self.weights[t] = self._weight_buffers[t][:n]
        self.item_terms[slot] = NO_TERMS
        self.item_weights[slot] = NO_WEIGHTS
        self._a[slot] = self._b[slot] = self._c[slot] = 0.0

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
            self.df.append(0)
            self._slot_buffers.append(slots)
            self._weight_buffers.append(weights)
            self.slots.append(slots[:0])
            self.weights.append(weights[:0])
        self.vocab[term] = t
        return t

    def _free_term(self, t: int) -> None:
        del self.vocab[self._terms[t]]
        self._terms[t] = ""
        self._stale.pop(t, None)
        self._slot_buffers[t] = self.slots[t] = NO_TERMS
        self._weight_buffers[t] = self.weights[t] = NO_WEIGHTS
        heapq.heappush(self._free_terms, t)

    # -- reading ----------------------------------------------------------------------------

    def refresh(self, n_items: int) -> float:
        """Bring the B and C sums up to date with df; return L = ln(1 + N) + 1 for N =
        ``n_items``."""
        stale = self._stale
        if stale:
            terms = list(stale)
            lens = [self.df[t] for t in terms]
            old = np.fromiter(stale.values(), dtype=np.float64, count=len(terms))
            new = np.log1p(np.array(lens, dtype=np.float64))
            slots = np.concatenate([self.slots[t] for t in terms])
            w2 = np.concatenate([self.weights[t] for t in terms]) ** 2
            d1 = w2 * np.repeat(new - old, lens)
            d2 = w2 * np.repeat(new * new - old * old, lens)
            size = len(self.item_terms)
            if size > _SCAN_ALL_BELOW * slots.size:
                np.add.at(self._b, slots, d1)
                np.add.at(self._c, slots, d2)
            else:
                self._b[:size] += np.bincount(slots, weights=d1, minlength=size)
                self._c[:size] += np.bincount(slots, weights=d2, minlength=size)
            stale.clear()
        return math.log1p(n_items) + 1.0

    def norm(self, slot: int, big_l: float) -> float:
        """|item vector| of ``slot`` (after ``refresh``, which gave ``big_l``)."""
        a, b, c = float(self._a[slot]), float(self._b[slot]), float(self._c[slot])
        return math.sqrt((big_l * a - 2.0 * b) * big_l + c)

    def inverse_norms(self, blocked: np.ndarray, big_l: float) -> np.ndarray:
        """1 / |item vector| per slot, 0 for slots without terms and ``blocked`` ones;
        cached until the next ``add`` or ``remove`` (the caller changes N and ``blocked``
        only along with one of those)."""
        inv = self._inv_norms
        if inv is None:
            size = len(self.item_terms)
            a, b, c = self._a[:size], self._b[:size], self._c[:size]
            ok = (a > 0) & ~blocked[:size]
            inv = np.zeros(size)
            inv[ok] = 1.0 / np.sqrt(((big_l * a - 2.0 * b) * big_l + c)[ok])
            self._inv_norms = inv
        return inv

    def divide_by_norms(
        self, sums: np.ndarray, cand: np.ndarray, blocked: np.ndarray, big_l: float
    ) -> np.ndarray:
        """``sums[i]`` over the norm of slot ``cand[i]`` (slots with terms), 0 where blocked;
        by the cached inverses if there are, with no pass over every slot to refill them."""
        if self._inv_norms is not None:
            sums *= self._inv_norms[cand]
            return sums
        norms = np.sqrt((big_l * self._a[cand] - 2.0 * self._b[cand]) * big_l + self._c[cand])
        return np.where(blocked[cand], 0.0, sums / norms)

    def vector(self, slot: int, big_l: float) -> dict[str, float]:
        """The unit TF-IDF vector of ``slot`` as term -> weight ({} without terms)."""
        if not self.item_terms[slot].size:
            return {}
        raw = {
            self._terms[t]: w * (big_l - math.log1p(self.df[t]))
            for t, w in zip(
                self.item_terms[slot].tolist(), self.item_weights[slot].tolist(), strict=True
            )
        }
        norm = math.sqrt(sum(v * v for v in raw.values()))
        return {term: v / norm for term, v in raw.items()}

    def document_frequency(self, term: str) -> int:
        """How many indexed items have ``term``."""
        t = self.vocab.get(term)
        return 0 if t is None else self.df[t]


def score_slots(
    index: TfidfIndex, terms: list[int], lens: list[int], factors: np.ndarray,
    blocked: np.ndarray, seen: list[int], big_l: float,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Each item's cosine with a query: ``terms`` with their posting counts ``lens`` and
    ``factors`` (what one unit of raw item weight under the term scores: q_t * idf_t /
    |q|), 0 for ``blocked`` and ``seen`` slots; and the slot of each score, or None when
    there is one score per slot."""
    # intp from the start: bincount would otherwise copy the int32 postings to convert.
    slots = np.concatenate([index.slots[t] for t in terms], dtype=np.intp)
    contrib = np.concatenate([index.weights[t] for t in terms])
    contrib *= np.repeat(factors, lens)
    size = len(index.item_terms)
    if size <= _DENSE_BELOW * slots.size:
        # Most slots are touched: score them all.
        scores = np.bincount(slots, weights=contrib, minlength=size)
        scores *= index.inverse_norms(blocked, big_l)
        if seen:
            scores[seen] = 0.0
        return scores, None
    if size <= _SCAN_ALL_BELOW * slots.size:
        # One sum per slot, then the touched ones: cheaper than sorting the postings.
        sums = np.bincount(slots, weights=contrib, minlength=size)
        if seen:
            sums[seen] = 0.0
        cand = np.flatnonzero(sums > 0.0)  # raw weights and factors are > 0
        return sums[cand] * index.inverse_norms(blocked, big_l)[cand], cand
    cand, inverse = np.unique(slots, return_inverse=True)
    scores = index.divide_by_norms(np.bincount(inverse, weights=contrib), cand, blocked, big_l)
    if seen:  # the history items among the candidates (cand is sorted)
        wanted = np.array(seen)
        at = np.minimum(np.searchsorted(cand, wanted), cand.size - 1)
        scores[at[cand[at] == wanted]] = 0.0
    return scores, cand
