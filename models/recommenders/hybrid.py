"""The default strategy: a blend of strategies, with weights learned from what users chose."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence, Sized

import numpy as np

from models.checks import check_int, check_number
from models.recommenders.base import (
    Context,
    Ranked,
    Recommender,
    ScoredItem,
    check_history,
    check_item_id,
    check_k,
    check_weight,
    scored_items,
)

# History lengths that start the "sparse" and "regular" contexts: a user with no history
# is served very differently (popularity, content) from one with a long one (CF).
CONTEXT_BOUNDS = (1, 5)
CONTEXTS = ("new", "sparse", "regular")
# The leader fallback's memory: each learned list's hits count this much less per later
# list of the same context (about the last 500 lists), and a component must have this many
# (decayed) hits before its lead counts.
_HIT_DECAY = 0.998
_MIN_LEAD_HITS = 20.0
# A component's items get scores in [_FLOOR, 1] (min-max over its list): present in a
# list always counts for more than absent (0).
_FLOOR = 0.1


class Hybrid:
    """Blend the top candidates of several strategies; learn the blend online.

    ``rank`` asks every component for its top ``candidates`` items, rescales each
    component's scores to [0.1, 1] over its own list (0 when it did not list the item,
    so scales of different strategies never need to agree), and scores each candidate
    by ``sum_s w[c, s] * f_s``, where ``c`` is the request's context: "new" (no history),
    "sparse" (fewer than 5 items) or "regular". Each item's reason and strategy are those
    of the component with the largest term in its score: the explanation is what
    actually put it there. A component with a ``ranked`` method (the same list as
    ``rank``, as a ``Ranked`` whose reasons are made on demand) is asked through it, so
    only the items served are explained; others through ``rank``.

    The weights are learned from what was served (the candidates and their features are
    kept per ``context.user``, at most ``max_pending`` users): when that user's next
    event picks one of the candidates, each candidate ranked above it is a pairwise
    mistake, and the weights take a logistic-loss gradient step of size
    ``learning_rate`` toward ranking the chosen item first. Weights stay non-negative
    and sum to 1 per context (the ranking only depends on their ratios), starting equal:
    no strategy is preferred until users say so. ``learn_one`` also teaches every
    component, so do not teach them elsewhere.

    With ``fallback_margin`` set, the blend cannot fall far behind its best part: per
    context it counts (decayed, about the last 500 learned lists) how often each
    component's own top k, and the blend's, held the item the user chose next; while
    the leading component's hits exceed the blend's by more than the margin (relative)
    the hybrid serves that component's order first, the blend's after it, and keeps
    learning the weights and counting the blend's would-be hits, so it returns to the
    blend once the blend catches up. Off (``None``) by default.

    >>> from models.recommenders.popularity import Popularity
    >>> h = Hybrid({"popularity": Popularity(half_life=None),
    ...             "trending": Popularity(half_life=2.0)})
    >>> for item in ["a", "a", "a", "b", "b"]:
    ...     h.learn_one(item, [])
    >>> sorted((s.item_id, s.strategy, s.reason) for s in h.rank([], (), 2))
    [('a', 'popularity', 'popular'), ('b', 'trending', 'trending now')]
    >>> h.weights()["new"]
    {'popularity': 0.5, 'trending': 0.5}
    """

    def __init__(
        self,
        components: Mapping[str, Recommender],
        candidates: int = 50,
        learning_rate: float = 0.05,
        max_pending: int = 10_000,
        contexts: Mapping[str, Collection[str]] | None = None,
        fallback_margin: float | None = None,
    ) -> None:
        if not components:
            raise ValueError("a hybrid needs at least one component")
        for name in components:
            check_item_id(name)
        for label, value in (("candidates", candidates), ("max_pending", max_pending)):
            check_int(label, value, low=1)
        self.components = dict(components)
        self.candidates = candidates
        self.learning_rate = check_number("learning_rate", learning_rate, 0.0, plain=True)
        self.max_pending = max_pending
        self.fallback_margin = (None if fallback_margin is None else check_number(
            "fallback_margin", fallback_margin, 0.0, plain=True))
        self._names = list(self.components)
        n = len(self._names)
        # Which components take part in each context (default: all of them everywhere).
        self._active = np.ones((len(CONTEXTS), n), dtype=bool)
        for name, allowed in (contexts or {}).items():
            if name not in self.components:
                raise ValueError(f"contexts names an unknown component {name!r}")
            unknown = set(allowed) - set(CONTEXTS)
            if unknown:
                raise ValueError(f"unknown contexts {sorted(unknown)}; known: {CONTEXTS}")
            self._active[:, self._names.index(name)] = [c in allowed for c in CONTEXTS]
        self._weights = self._active / np.maximum(self._active.sum(axis=1, keepdims=True), 1)
        # user -> (candidate ids, feature rows, context index) of the latest list served.
        self._pending: OrderedDict[str, tuple[list[str], np.ndarray, int, int]] = OrderedDict()
        self.updates = 0  # blend-weight updates so far
        # Pending lists dropped for the max_pending bound (the worker exports it); a count
        # of this process, so snapshots leave it out.
        self.evictions = 0
        # (context index, weight step) the last learn_one took, None if it took none.
        self.last_blend_step: tuple[int, tuple[float, ...]] | None = None
        # Per context, the decayed hits of each component's own top k and of the blend's
        # (last column) on the lists learned from: what the leader fallback compares
        # (counted only while it is on).
        self._hits = np.zeros((len(CONTEXTS), n + 1))

    # -- serving ----------------------------------------------------------------------------

    def rank(
        self, history: Sequence[str], exclude: Collection[str], k: int,
        context: Context | None = None,
    ) -> list[ScoredItem]:
        """The ``k`` best blended candidates (none in ``history`` or ``exclude``)."""
        check_k(k)
        if k == 0:
            return []
        want = max(k, self.candidates)
        index: dict[str, int] = {}
        listings: list[tuple[int, list[int], Ranked]] = []
        c = self._context_index(history)
        components, names = self.components, self._names
        for s, active in enumerate(self._active[c].tolist()):
            if not active:
                continue
            listed = _ranked(components[names[s]], history, exclude, want, context)
            if not listed.ids:
                continue
            # setdefault evaluates len(index) first: a new item gets the next row.
            rows = [index.setdefault(item_id, len(index)) for item_id in listed.ids]
            listings.append((s, rows, listed))
        if not index:
            return []
        features = np.zeros((len(index), len(self._names)))
        for s, rows, listed in listings:
            features[rows, s] = self._rescale(listed.scores)
        terms = features * self._weights[c]
        blended = terms.sum(axis=1)
        leader = self._leader(c)
        if leader is None:
            order = np.argsort(-blended, kind="stable")[:k]  # ties: the first listed
            best = terms[order].argmax(axis=1)
        else:
            # The leading component's own order first, then the blend's for the rest.
            order = np.lexsort((-blended, -features[:, leader]))[:k]
            best = terms[order].argmax(axis=1)
            best[features[order, leader] > 0.0] = leader
        # A listed item's feature is >= _FLOOR > 0, an unlisted one's 0.
        unlisted = features[order, best] <= 0.0
        # Zero weight on all its components: its first listing explains it. (any() of k
        # Python bools costs a fraction of ndarray.any's call.)
        if any(unlisted.tolist()):
            best[unlisted] = (features[order[unlisted]] > 0.0).argmax(axis=1)
        # Reasons only for the items served, each from the listing that explains it (the
        # served positions grouped by listing in one pass, not one pass per listing).
        order_list = order.tolist()
        chosen: dict[int, list[int]] = {}
        for j, s in enumerate(best.tolist()):
            chosen.setdefault(s, []).append(j)
        explained: list[tuple[str, str]] = [("", "")] * len(order_list)
        for s, rows, listed in listings:
            served = chosen.get(s)
            if served:
                why = listed.explain([rows.index(order_list[j]) for j in served])
                for j, reason in zip(served, why, strict=True):
                    explained[j] = reason
        ids = list(index)
        out = scored_items([ids[r] for r in order_list], blended[order].tolist(), explained)
        if context is not None and context.user:
            self._remember(context.user, ids, features.astype(np.float32), c, len(out))
        return out

    def _leader(self, c: int) -> int | None:
        """The component whose own lists have lately hit more than the blend's by more than
        ``fallback_margin`` (relative) in context ``c``, if the fallback is on."""
        margin = self.fallback_margin
        if margin is None:
            return None
        hits = self._hits[c]
        n = len(self._names)
        s = int(hits[:n].argmax())
        if self._active[c, s] and hits[s] >= _MIN_LEAD_HITS and hits[s] > (1.0 + margin) * hits[n]:
            return s
        return None

    @staticmethod
    def _rescale(scores: Sequence[float] | np.ndarray) -> list[float]:
        # Plain floats: for a list of a few dozen scores, cheaper than numpy calls (and the
        # same IEEE arithmetic, so the same values).
        values: Sequence[float] = scores.tolist() if isinstance(scores, np.ndarray) else scores
        if not math.isfinite(sum(values)):  # a broken component: ignore what is not finite
            finite = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0,
                                   posinf=0.0, neginf=0.0)
            values = finite.tolist()
        lo, hi = min(values), max(values)
        if hi <= lo:
            return [1.0] * len(values)
        span, floor, rise = hi - lo, _FLOOR, 1.0 - _FLOOR  # locals: read once per value
        return [floor + rise * (v - lo) / span for v in values]

    @staticmethod
    def _context_index(history: Sequence[str]) -> int:
        return bisect_right(CONTEXT_BOUNDS, len(history))

    def _remember(
        self, user: str, ids: list[str], features: np.ndarray, c: int, k: int
    ) -> None:
        pending = self._pending
        pending[user] = (ids, features, c, k)
        pending.move_to_end(user)
        while len(pending) > self.max_pending:
            pending.popitem(last=False)
            self.evictions += 1

    # -- learning ---------------------------------------------------------------------------

    def learn_one(
        self, item_id: str, history: Sequence[str], weight: float = 1.0,
        context: Context | None = None,
    ) -> None:
        """Teach every component, then the blend (if this user was served a list)."""
        check_item_id(item_id)
        w = check_weight(weight)
        check_history(history)  # all of it, before any component learns anything
        self.last_blend_step = None
        for component in self.components.values():
            # Checked once here: a component with _learn_checked skips its own checks.
            learn = getattr(component, "_learn_checked", None)
            if learn is None:
                component.learn_one(item_id, history, weight, context)
            else:
                learn(item_id, history, w, context)
        if context is None or not context.user:
            return
        served = self._pending.pop(context.user, None)
        if served is not None:
            self._learn_blend(item_id, *served)

    def _learn_blend(
        self, item_id: str, ids: list[str], features: np.ndarray, c: int, k: int
    ) -> None:
        try:
            chosen = ids.index(item_id)
        except ValueError:
            return  # not among the candidates: says nothing about how to blend them
        w = self._weights[c]
        scores = features @ w
        if self.fallback_margin is not None:
            self._count_hits(features, scores, chosen, c, k)
        above = np.flatnonzero(scores >= scores[chosen])
        above = above[above != chosen]
        if not above.size or not self.learning_rate:
            return
        diffs = features[chosen] - features[above]  # one row per pairwise mistake
        margins = diffs @ w
        grad = (diffs / (1.0 + np.exp(margins))[:, None]).mean(axis=0)
        step = self.learning_rate * grad
        if self.apply_blend_step(c, step):
            self.last_blend_step = (c, tuple(float(g) for g in step))

    def _count_hits(
        self, features: np.ndarray, scores: np.ndarray, chosen: int, c: int, k: int
    ) -> None:
        """Would each component's own top k, and the blend's (``scores``), have held the
        chosen row? Ties go to the row listed first, as in ``rank``."""
        picked = features[chosen]
        above = (features > picked).sum(axis=0) + (features[:chosen] == picked).sum(axis=0)
        blend_above = (scores > scores[chosen]).sum() + (scores[:chosen] == scores[chosen]).sum()
        hits = self._hits[c]
        hits *= _HIT_DECAY
        hits[:-1] += (picked > 0.0) & (above < k)
        hits[-1] += int(blend_above) < k

    def apply_blend_step(self, c: int, step: Sequence[float]) -> bool:
        """Move context ``c``'s blend weights by ``step`` (one per component), kept
        non-negative and summing to 1; False (nothing changed) if the step does not fit.
        ``learn_one`` takes such steps and records the last in ``last_blend_step``, so
        another copy of the model (another worker's) can take the same one."""
        if not (0 <= c < len(CONTEXTS)) or len(step) != len(self._names):
            return False
        w = np.maximum(self._weights[c] + np.asarray(step, dtype=np.float64), 0.0)
        w *= self._active[c]
        total = w.sum()
        if not (total > 0 and np.isfinite(total)):
            return False
        self._weights[c] = w / total
        self.updates += 1
        return True

    def blend_matrix(self) -> list[list[float]]:
        """The blend weights as a (context x component) list of lists (a copy)."""
        return [[float(w) for w in row] for row in self._weights]

    def mix_blend(self, other: Sequence[Sequence[float]], share: float = 0.5) -> bool:
        """Move the blend weights ``share`` of the way to ``other`` (another copy's
        ``blend_matrix``), renormalized; False (nothing changed) if it does not fit.

        Two copies that take the same gradient steps from different weights drift apart
        (the steps are clipped at 0 and renormalized, which does not commute), and each
        serves its own users with its own blend; averaging keeps them together.

        >>> from models.recommenders.popularity import Popularity
        >>> a = Hybrid({"p": Popularity(), "t": Popularity(half_life=2.0)})
        >>> a.mix_blend([[1.0, 0.0]] * 3), a.weights()["new"]
        (True, {'p': 0.75, 't': 0.25})
        """
        if not 0.0 <= share <= 1.0:
            return False
        try:
            theirs = np.asarray(other, dtype=np.float64)
        except (TypeError, ValueError):
            return False
        if theirs.shape != self._weights.shape or not np.isfinite(theirs).all() \
                or (theirs < 0).any():
            return False
        mixed = ((1.0 - share) * self._weights + share * theirs) * self._active
        totals = mixed.sum(axis=1, keepdims=True)
        if not (totals > 0).all():
            return False
        self._weights = mixed / totals
        return True

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        # Checkpoints from before the leader fallback: off, no hits counted yet.
        self.__dict__.setdefault("fallback_margin", None)
        if "_hits" not in self.__dict__:
            self._hits = np.zeros((len(CONTEXTS), len(self._names) + 1))

    def __getstate__(self) -> dict:
        # What was last served to whom is transient (up to max_pending users' candidate
        # features, megabytes): checkpoints leave it out, and after a restore the blend
        # simply waits for each user's next list.
        state = self.__dict__.copy()
        state["_pending"] = OrderedDict()
        state["evictions"] = 0
        return state

    # -- inspection -------------------------------------------------------------------------

    def weights(self) -> dict[str, dict[str, float]]:
        """The blend weights per context: ``{context: {component: weight}}``."""
        return {
            ctx: {name: float(w) for name, w in zip(self._names, row, strict=True)}
            for ctx, row in zip(CONTEXTS, self._weights, strict=True)
        }

    def forget_user(self, user: str) -> None:
        """Drop what was last served to ``user`` (erasure)."""
        self._pending.pop(user, None)

    def __len__(self) -> int:
        """Items known to the component that knows most."""
        return max((len(c) for c in self.components.values() if isinstance(c, Sized)),
                   default=0)


def _ranked(
    component: Recommender, history: Sequence[str], exclude: Collection[str], k: int,
    context: Context | None,
) -> Ranked:
    """The component's ranking with lazy reasons (``Ranked``) if it offers one, else its
    ``rank`` list wrapped."""
    ranked = getattr(component, "ranked", None)
    if ranked is not None:
        result: Ranked = ranked(history, exclude, k, context)
        return result
    return Ranked.of(component.rank(history, exclude, k, context))
