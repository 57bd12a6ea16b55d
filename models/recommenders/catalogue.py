"""Item metadata the recommenders explain and filter with: titles, categories, availability."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from models.checks import check_int, is_unicode
from models.recommenders.base import check_item_id


def check_categories(categories: Iterable[str]) -> tuple[str, ...]:
    """Categories as a tuple of distinct non-empty strings, in first-seen order.

    >>> check_categories(["Drama", "", "Drama", "Crime"])
    ('Drama', 'Crime')
    """
    if isinstance(categories, str):
        raise ValueError("categories must be a collection of strings, not one string")
    cats: dict[str, None] = {}
    for cat in categories:
        if not isinstance(cat, str) or not is_unicode(cat):
            raise ValueError(f"categories must be strings of valid Unicode, got {cat!r}")
        if cat:
            cats[cat] = None
    return tuple(cats)


@dataclass(frozen=True, slots=True)
class Item:
    """One catalogue entry.

    >>> Item("i1", "Toy Story", ("Animation",), True).title
    'Toy Story'
    """

    item_id: str
    title: str
    categories: tuple[str, ...]
    available: bool


class Catalogue:
    """Bounded item metadata: the ``max_items`` most recently written entries are kept.

    A deleted item is remembered as a tombstone (it counts towards ``max_items`` but not
    ``len``) so recommenders that learned it before keep treating it as unavailable.

    >>> c = Catalogue(max_items=2)
    >>> c.upsert("i1", "Toy Story", ["Animation", "Comedy"])
    >>> c.title("i1"), c.categories("i1"), c.is_available("i1")
    ('Toy Story', ('Animation', 'Comedy'), True)
    >>> c.title("i404"), c.is_available("i404")
    ('i404', False)
    >>> c.delete("i1"); c.is_unavailable("i1"), len(c)
    (True, 0)
    """

    def __init__(self, max_items: int = 100_000) -> None:
        self.max_items = check_int("max_items", max_items, low=1)
        # None marks a tombstone; insertion order is write order, so eviction is FIFO.
        self._items: dict[str, Item | None] = {}
        self._unavailable: set[str] = set()
        self._live = 0

    def upsert(
        self, item_id: str, title: str, categories: Iterable[str] = (), available: bool = True
    ) -> None:
        """Add or replace an item; empty or duplicate categories are dropped, order kept."""
        check_item_id(item_id)
        if not isinstance(title, str) or not is_unicode(title):
            raise ValueError(f"title must be a string of valid Unicode, got {title!r:.80}")
        item = Item(item_id, title, check_categories(categories), bool(available))
        self._remove(item_id)
        self._items[item_id] = item
        self._live += 1
        if not item.available:
            self._unavailable.add(item_id)
        self._evict()

    def delete(self, item_id: str) -> None:
        """Forget an item's metadata; it stays unavailable until the tombstone is evicted."""
        check_item_id(item_id)
        self._remove(item_id)
        self._items[item_id] = None
        self._unavailable.add(item_id)
        self._evict()

    def get(self, item_id: str) -> Item | None:
        """The live entry for ``item_id``, or None if unknown or deleted."""
        return self._items.get(item_id)

    def title(self, item_id: str) -> str:
        """The item's title, or its id when the title is unknown or empty."""
        item = self._items.get(item_id)
        return item.title if item is not None and item.title else item_id

    def categories(self, item_id: str) -> tuple[str, ...]:
        """The item's categories, () when unknown."""
        item = self._items.get(item_id)
        return item.categories if item is not None else ()

    def is_available(self, item_id: str) -> bool:
        """True only for a known item marked available."""
        item = self._items.get(item_id)
        return item is not None and item.available

    def is_unavailable(self, item_id: str) -> bool:
        """True for an item known to be unavailable or deleted (unknown items are not)."""
        return item_id in self._unavailable

    def unavailable(self) -> AbstractSet[str]:
        """Read-only view of the ids known to be unavailable or deleted (do not mutate)."""
        return self._unavailable

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and self._items.get(item_id) is not None

    def __len__(self) -> int:
        return self._live

    def _remove(self, item_id: str) -> None:
        if item_id in self._items:
            if self._items.pop(item_id) is not None:
                self._live -= 1
            self._unavailable.discard(item_id)

    def _evict(self) -> None:
        while len(self._items) > self.max_items:
            self._remove(next(iter(self._items)))
