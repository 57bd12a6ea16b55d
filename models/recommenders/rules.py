"""Business rules applied to every ranked list before it is served."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from models.checks import check_int
from models.recommenders.base import ScoredItem
from models.recommenders.catalogue import Catalogue


@dataclass(frozen=True, slots=True)
class Rules:
    """What may be served. ``max_repeats``: an item already recommended that many times to
    the user (among their recently served items) is not recommended again (0: no cap).
    ``max_per_category``: at most that many items sharing a category in one list, for
    diversity (0: no cap); an item counts toward each of its categories.

    >>> Rules(max_repeats=3).max_per_category
    0
    """

    max_repeats: int = 0
    max_per_category: int = 0

    def __post_init__(self) -> None:
        for name in ("max_repeats", "max_per_category"):
            check_int(name, getattr(self, name), low=0)


def apply_rules(
    ranked: Iterable[ScoredItem],
    k: int,
    rules: Rules,
    *,
    catalogue: Catalogue | None = None,
    served_counts: Mapping[str, int] | None = None,
    categories: Collection[str] | None = None,
    taken: Collection[str] = (),
) -> list[ScoredItem]:
    """The first ``k`` items of ``ranked`` (best first) that pass every rule.

    Skipped: items in ``taken``, unavailable or deleted items, items outside the
    request's ``categories`` filter (if given), items over the repeat cap, and items
    whose category already has ``max_per_category`` items in the list.

    >>> c = Catalogue()
    >>> for i, cat in [("a", "Drama"), ("b", "Drama"), ("c", "Comedy"), ("d", "Drama")]:
    ...     c.upsert(i, i.upper(), [cat])
    >>> ranked = [ScoredItem(i, 1.0, "", "x") for i in "abcd"]
    >>> [s.item_id for s in apply_rules(ranked, 3, Rules(max_per_category=2), catalogue=c)]
    ['a', 'b', 'c']
    >>> [s.item_id for s in apply_rules(ranked, 3, Rules(max_repeats=2), catalogue=c,
    ...                                  served_counts={"a": 2}, categories={"Drama"})]
    ['b', 'd']
    """
    out: list[ScoredItem] = []
    if k <= 0:
        return out
    seen = set(taken)
    per_category: dict[str, int] = {}
    cap = rules.max_per_category
    repeats = rules.max_repeats
    wanted = set(categories) if categories else None
    unavailable = catalogue.unavailable() if catalogue is not None else ()
    counts = served_counts if repeats and served_counts else None
    # Most lists are served with neither a filter nor a cap: no category lookups then.
    by_category = wanted is not None or cap > 0
    for item in ranked:
        item_id = item.item_id
        if item_id in seen or item_id in unavailable:
            continue
        if counts is not None and counts.get(item_id, 0) >= repeats:
            continue
        if by_category:
            cats = catalogue.categories(item_id) if catalogue is not None else ()
            if wanted is not None and wanted.isdisjoint(cats):
                continue
            if cap:
                if any(per_category.get(cat, 0) >= cap for cat in cats):
                    continue
                for cat in cats:
                    per_category[cat] = per_category.get(cat, 0) + 1
        seen.add(item_id)
        out.append(item)
        if len(out) == k:
            break
    return out
