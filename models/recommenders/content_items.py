"""The items content ranking knows, by slot: ids, titles, availability, which are new, and
the bound on how many it keeps (the least recently written one goes first)."""

from __future__ import annotations

import heapq
from typing import Any

import numpy as np

_INITIAL_CAPACITY = 1024


class ItemSlots:
    """Item ids mapped to slots (small ints, the lowest free one reused first), with each
    slot's title, availability and interaction count.

    An item is new while it has fewer than ``new_item_max_interactions`` interactions;
    interactions with items not indexed yet are kept (for up to ``max_items`` ids, the
    least recently counted dropped first) and count once the item is. ``arrivals`` are
    the new items in order of first write. Read ``index``, ``ids``, ``titles``,
    ``blocked`` (free or unavailable), ``new`` and ``arrivals``, never write them.

    >>> s = ItemSlots(max_items=2, new_item_max_interactions=1)
    >>> s.count("b"); a, b = s.allocate("a"), s.allocate("b")
    >>> s.write("a", a, "A", available=True); s.write("b", b, "B", available=False)
    >>> s.oldest_if_full(), s.is_new("a"), s.is_new("b"), bool(s.blocked[b])
    ('a', True, False, True)
    >>> s.release("a"), s.allocate("c"), list(s.arrivals)
    (0, 0, ['c'])
    """

    # What a ContentTfidf checkpoints, flat, each under "_" + its name without the leading
    # underscore: the keys its checkpoints have always had, so older ones still load.
    STATE = ("index", "ids", "titles", "_free_slots", "blocked", "new", "_clicks", "pending",
             "arrivals")

    def __init__(self, max_items: int, new_item_max_interactions: int) -> None:
        self.max_items = max_items
        self.new_item_max_interactions = new_item_max_interactions
        # In write order (oldest first), so eviction is FIFO.
        self.index: dict[str, int] = {}
        self.ids: list[str] = []  # "" marks a free slot
        self.titles: list[str] = []
        self._free_slots: list[int] = []  # heap: lowest free slot reused first
        cap = self.initial_capacity(max_items)
        self.blocked = np.ones(cap, dtype=bool)
        self.new = np.zeros(cap, dtype=bool)
        self._clicks = np.zeros(cap, dtype=np.int64)
        self.pending: dict[str, int] = {}  # interactions with items not indexed (yet)
        self.arrivals: dict[str, None] = {}  # new items, in order of first write

    @staticmethod
    def initial_capacity(max_items: int) -> int:
        """How many slots the per-slot arrays start with."""
        return min(_INITIAL_CAPACITY, max_items)

    def state(self) -> dict[str, Any]:
        """What a checkpoint holds, by checkpoint key."""
        return {"_" + name.lstrip("_"): getattr(self, name) for name in self.STATE}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ItemSlots:
        """The slots ``state`` holds (and its bounds), taking their keys out of it."""
        slots = cls.__new__(cls)
        slots.max_items = state["max_items"]
        slots.new_item_max_interactions = state["new_item_max_interactions"]
        for name in cls.STATE:
            setattr(slots, name, state.pop("_" + name.lstrip("_")))
        return slots

    @property
    def capacity(self) -> int:
        """Slots the per-slot arrays hold now."""
        return int(self.blocked.size)

    def oldest_if_full(self) -> str | None:
        """The item one more would evict (the least recently written), or None."""
        return next(iter(self.index)) if len(self.index) >= self.max_items else None

    def allocate(self, item_id: str) -> int:
        """A slot for ``item_id`` (not indexed, to ``write`` next), taking over its pending
        interactions; slots past the arrays grow them (doubling, up to ``max_items``)."""
        if self._free_slots:
            slot = heapq.heappop(self._free_slots)
            self.ids[slot] = item_id
        else:
            slot = len(self.ids)
            if slot == self.blocked.size:
                self._grow(min(2 * slot, self.max_items))
            self.ids.append(item_id)
            self.titles.append("")
        clicks = self.pending.pop(item_id, 0)
        self._clicks[slot] = clicks
        is_new = clicks < self.new_item_max_interactions
        self.new[slot] = is_new
        if is_new:
            self.arrivals[item_id] = None
        return slot

    def _grow(self, cap: int) -> None:
        extra = cap - self.blocked.size
        self.blocked = np.concatenate([self.blocked, np.ones(extra, dtype=bool)])
        self.new = np.concatenate([self.new, np.zeros(extra, dtype=bool)])
        self._clicks = np.concatenate([self._clicks, np.zeros(extra, dtype=np.int64)])

    def write(self, item_id: str, slot: int, title: str, available: bool) -> None:
        """Set the item's title and availability; it becomes the most recently written."""
        self.index.pop(item_id, None)
        self.index[item_id] = slot
        self.titles[slot] = title
        self.blocked[slot] = not available

    def release(self, item_id: str) -> int:
        """Forget an indexed item (not its pending interactions); return its freed slot."""
        slot = self.index.pop(item_id)
        self.arrivals.pop(item_id, None)
        self.ids[slot] = self.titles[slot] = ""
        self.blocked[slot] = True
        self.new[slot] = False
        self._clicks[slot] = 0
        heapq.heappush(self._free_slots, slot)
        return slot

    def discard(self, item_id: str) -> int | None:
        """Forget an item and its pending interactions; its freed slot if it was indexed."""
        self.pending.pop(item_id, None)
        return self.release(item_id) if item_id in self.index else None

    def count(self, item_id: str, n: int = 1) -> None:
        """Count ``n`` interactions; an item stops being new at
        ``new_item_max_interactions``."""
        slot = self.index.get(item_id)
        if slot is None:
            # Re-inserted last, so the bound drops the id counted least recently.
            self.pending[item_id] = self.pending.pop(item_id, 0) + n
            if len(self.pending) > self.max_items:
                del self.pending[next(iter(self.pending))]
            return
        self._clicks[slot] += n
        if self.new[slot] and self._clicks[slot] >= self.new_item_max_interactions:
            self.new[slot] = False
            del self.arrivals[item_id]

    def is_new(self, item_id: str) -> bool:
        """True for an indexed item with fewer than ``new_item_max_interactions``."""
        slot = self.index.get(item_id)
        return slot is not None and bool(self.new[slot])

    def title(self, item_id: str) -> str:
        """The indexed title, or the id when unknown or empty."""
        slot = self.index.get(item_id)
        return (self.titles[slot] if slot is not None else "") or item_id

    def __len__(self) -> int:
        return len(self.index)
