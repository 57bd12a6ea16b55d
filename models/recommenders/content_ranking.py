"""Content ranking's last steps: the top k of the scores with deterministic ties, the
reason for each pick, and the new arrivals a list of new items is topped up with."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import numpy as np

from models.recommenders.base import ScoredItem
from models.recommenders.catalogue import Catalogue
from models.recommenders.content_items import ItemSlots
from models.recommenders.content_taste import Source
from models.recommenders.popularity import as_lookup
from models.recommenders.tfidf import TfidfIndex
from models.recommenders.topk import at_or_above, cut_value, sample_floor

# Scores are compared rounded, so float noise from the incremental norms cannot break a
# tie that exact arithmetic would make (identical items): ties go to the lower item index.
_SCORE_DECIMALS = 12
_TIE = 10.0**-_SCORE_DECIMALS


def top(
    scores: np.ndarray, cand: np.ndarray | None, want: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """The ``want`` best slots with a score > 0 by score then lower slot, their scores, and
    whether more have a score > 0; ``scores[i]`` is slot ``cand[i]``'s (slot i's if None).

    >>> slots, kept, more = top(np.array([0.5, 0.0, 0.9, 0.5]), None, 2)
    >>> slots.tolist(), kept.tolist(), more
    ([2, 0], [0.9, 0.5], True)
    """
    slots, kept, more = _top(scores, cand, want)
    if more is None:
        more = int(np.count_nonzero(scores > 0.0)) > want
    return slots, kept, more


def _top(
    scores: np.ndarray, cand: np.ndarray | None, want: int
) -> tuple[np.ndarray, np.ndarray, bool | None]:
    """``top``, with None for "more" when telling would take another pass over ``scores``."""
    # Everything that can round to the cut or above is kept: ties at the cut are all
    # kept, so the order does not depend on ``want``.
    more: bool | None
    floor = sample_floor(scores, want) if want < scores.size else None
    if floor is not None and floor > 0.0:
        # At least ``want`` scores > 0, and all the candidates are: no pass to find them.
        cut, at = at_or_above(scores, want, floor, _TIE)
        if cut - _TIE <= 0.0:
            at = at[scores[at] > 0.0]
        more = True if at.size > want else None
    else:
        # Comparisons first: numpy finds the non-zero entries of a bool array much faster.
        positives = scores > 0.0
        positive = int(np.count_nonzero(positives))
        more = positive > want
        if not more:
            at = np.flatnonzero(positives)
        elif 2 * positive >= scores.size:
            # Mostly positive: the cut of all scores is the cut of the positive ones, and
            # finding it there saves collecting them first.
            low = cut_value(scores, want) - _TIE
            at = np.flatnonzero(scores >= low if low > 0.0 else positives & (scores >= low))
        else:
            # Only the positive scores are partitioned: numpy's partition slows down
            # several times on many tied zeros.
            at = np.flatnonzero(positives)
            values = scores[at]
            at = at[values >= cut_value(values, want) - _TIE]
    slots = at if cand is None else cand[at]
    kept = scores[at].round(_SCORE_DECIMALS)
    order = np.lexsort((slots, -kept))[:want]
    return slots[order], kept[order], more


def pick(
    scores: np.ndarray, cand: np.ndarray | None, ids: list[str], exclude: Collection[str],
    k: int, catalogue: Catalogue | None,
) -> tuple[list[int], list[float]]:
    """The ``k`` best slots (``top``) whose item is neither in ``exclude`` nor unavailable
    in ``catalogue``, and their scores."""
    excluded = as_lookup(exclude) if exclude else ()
    unavailable = catalogue.unavailable() if catalogue is not None else ()
    picked: list[int] = []
    picked_scores: list[float] = []
    done = 0
    want = k if not excluded and catalogue is None else 2 * k + 8
    while True:
        # A longer prefix of the same order: only the entries past ``done`` are new.
        best, best_scores, more = _top(scores, cand, want)
        for c, s in zip(best[done:].tolist(), best_scores[done:].tolist(), strict=True):
            item_id = ids[c]
            if item_id in excluded or item_id in unavailable:
                continue
            picked.append(c)
            picked_scores.append(s)
            if len(picked) == k:
                return picked, picked_scores
        if more is None:
            more = int(np.count_nonzero(scores > 0.0)) > want
        if not more:
            return picked, picked_scores
        done = best.size
        want *= 4  # many excluded items at the top: look further


def explainer(
    tfidf: TfidfIndex, items: ItemSlots, picked: list[int], terms: list[int],
    factors: np.ndarray, sources: dict[int, Source], strategy: str,
) -> Callable[[Sequence[int]], list[tuple[str, str]]]:
    """The ``Ranked.explain`` of the ``picked`` slots: each one's reason comes from the
    query term contributing most to its score (valid until the model changes)."""

    def explain(positions: Sequence[int]) -> list[tuple[str, str]]:
        factor_of = dict(zip(terms, factors.tolist(), strict=True))
        return [(_reason(picked[p], factor_of, sources, tfidf, items), strategy)
                for p in positions]

    return explain


def _reason(
    c: int, factor_of: dict[int, float], sources: dict[int, Source], tfidf: TfidfIndex,
    items: ItemSlots,
) -> str:
    best_t, best = -1, -1.0
    for t, w in zip(tfidf.item_terms[c].tolist(), tfidf.item_weights[c].tolist(), strict=True):
        f = factor_of.get(t)
        if f is not None and f * w > best:
            best_t, best = t, f * w
    source = sources[best_t][1]
    if isinstance(source, str):
        reason = f"matches your interest in {source}"
    else:
        reason = f"like {items.titles[source] or items.ids[source]} you viewed"
    return "new: " + reason if items.new[c] else reason


def fill_arrivals(
    out: list[ScoredItem], items: ItemSlots, history: Sequence[str], exclude: Collection[str],
    k: int, catalogue: Catalogue | None, strategy: str,
) -> None:
    """Top ``out`` up to ``k`` with the most recently arrived new items not in it, in
    ``history`` or ``exclude``, nor unavailable (score 0.0, reason "new arrival")."""
    excluded = as_lookup(exclude) if exclude else ()
    taken = set(history)
    taken.update(s.item_id for s in out)
    index, blocked = items.index, items.blocked
    for item_id in reversed(items.arrivals):
        if item_id in taken or item_id in excluded or blocked[index[item_id]]:
            continue
        if catalogue is not None and catalogue.is_unavailable(item_id):
            continue
        out.append(ScoredItem(item_id, 0.0, "new arrival", strategy))
        if len(out) == k:
            return
