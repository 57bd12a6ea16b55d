"""The one interface every recommender implements, and what ``rank`` returns."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class ScoredItem:
    """One recommended item: its score, a human-readable reason and the strategy behind it.

    >>> ScoredItem("i9", 0.5, "popular right now", "popularity").item_id
    'i9'
    """

    item_id: str
    score: float
    reason: str
    strategy: str


@runtime_checkable
class Recommender(Protocol):
    """Learn from one interaction at a time; rank items for a user's recent history.

    >>> from models.recommenders.popularity import Popularity
    >>> isinstance(Popularity(), Recommender)
    True
    """

    def learn_one(self, item_id: str, history: Sequence[str], weight: float = 1.0) -> None:
        """Learn that a user with ``history`` (most recent last, before now) chose ``item_id``."""
        ...

    def rank(self, history: Sequence[str], exclude: Collection[str], k: int) -> list[ScoredItem]:
        """Top ``k`` items for ``history``, best first, never in ``exclude`` or ``history``."""
        ...


def check_item_id(item_id: object) -> str:
    """Return ``item_id`` if it is a non-empty string, else raise ValueError.

    >>> check_item_id("i1")
    'i1'
    """
    if not isinstance(item_id, str) or not item_id:
        raise ValueError(f"item ids must be non-empty strings, got {item_id!r}")
    return item_id


def check_weight(weight: object) -> float:
    """Return ``weight`` as a float if it is finite and > 0, else raise ValueError.

    >>> check_weight(3)
    3.0
    """
    if isinstance(weight, bool) or not isinstance(weight, Real):
        raise ValueError(f"weight must be a number, got {weight!r}")
    w = float(weight)
    # NaN fails both comparisons; one NaN would poison every score it touches.
    if not 0.0 < w < float("inf"):
        raise ValueError(f"weight must be finite and > 0, got {weight!r}")
    return w


def check_k(k: object) -> int:
    """Return ``k`` if it is an int >= 0, else raise ValueError.

    >>> check_k(10)
    10
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be an int >= 0, got {k!r}")
    return k


def prequential(
    model: Recommender, events: Iterable[tuple[str, str]], k: int = 10, history_max: int = 50
) -> Iterator[bool]:
    """Replay ``(user, item)`` events test-then-train (DESIGN §7), yielding hit or miss.

    For each event: rank ``k`` items for the user's last ``history_max`` items, excluding
    everything the user interacted with before; a hit if the event's item is among them;
    then learn the event. The mean of the yielded values is recall@k.

    >>> from models.recommenders.popularity import Popularity
    >>> list(prequential(Popularity(), [("u1", "a"), ("u2", "a"), ("u2", "b")], k=1))
    [False, True, False]
    """
    history: dict[str, list[str]] = defaultdict(list)
    excluded: dict[str, set[str]] = defaultdict(set)
    for user, item in events:
        past = history[user]
        ranked = model.rank(past, excluded[user], k)
        yield any(s.item_id == item for s in ranked)
        model.learn_one(item, past)
        if item in excluded[user] and item in past:
            past.remove(item)  # like a profile's recent items: no duplicates
        past.append(item)
        if len(past) > history_max:
            del past[0]
        excluded[user].add(item)
