"""The one interface every recommender implements, and what ``rank`` returns."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple, Protocol, runtime_checkable

from models.checks import check_int, is_id, is_in_range, is_real


class ScoredItem(NamedTuple):
    """One recommended item: its score, a human-readable reason and the strategy behind it.

    A named tuple, not a dataclass: every list served builds these, and a tuple is several
    times cheaper to make. (A hybrid's components hand over ``Ranked`` lists instead, so
    only the items served get one.)

    >>> ScoredItem("i9", 0.5, "popular right now", "popularity").item_id
    'i9'
    """

    item_id: str
    score: float
    reason: str
    strategy: str


_new_scored = partial(tuple.__new__, ScoredItem)


def scored_items(
    ids: Sequence[str], scores: Sequence[float], explained: Sequence[tuple[str, str]]
) -> list[ScoredItem]:
    """``ScoredItem``s of aligned ids, scores and ``(reason, strategy)`` pairs, made in C
    loops (a named tuple's own constructor is a Python call per item).

    >>> scored_items(["a"], [0.5], [("popular", "popularity")])
    [ScoredItem(item_id='a', score=0.5, reason='popular', strategy='popularity')]
    """
    if not len(ids) == len(scores) == len(explained):
        raise ValueError(f"{len(ids)} ids, {len(scores)} scores and {len(explained)} reasons")
    if not ids:
        return []
    # Lengths checked above; the pairs unzip to the reasons and the strategies.
    reasons, strategies = zip(*explained, strict=True)
    return list(map(_new_scored, zip(ids, scores, reasons, strategies, strict=True)))


class Ranked:
    """A strategy's ranked list whose reasons are made only for the items that need one.

    A hybrid asks each strategy for its top candidates but serves only ``k`` of them, each
    explained by one strategy: making every candidate's reason (term searches, string
    formatting) cost more than ranking them. ``ids`` are best first, ``scores`` aligned
    with them (floats, a list or an array); ``explain(positions)`` returns the
    ``(reason, strategy)`` of the items at those positions.

    >>> r = Ranked(["a", "b"], [2.0, 1.0], lambda ps: [("popular", "popularity")] * len(ps))
    >>> r.items()[1]
    ScoredItem(item_id='b', score=1.0, reason='popular', strategy='popularity')
    >>> Ranked.of(r.items()).explain([0])
    [('popular', 'popularity')]
    """

    __slots__ = ("ids", "scores", "explain")

    def __init__(
        self, ids: list[str], scores: Sequence[float] | Any,
        explain: Callable[[Sequence[int]], list[tuple[str, str]]],
    ) -> None:
        self.ids = ids
        self.scores = scores
        self.explain = explain

    def items(self) -> list[ScoredItem]:
        """Every item as a ``ScoredItem``, best first (what ``rank`` returns)."""
        ids = self.ids
        if not ids:
            return []
        scores = self.scores
        floats = scores.tolist() if hasattr(scores, "tolist") else scores
        return scored_items(ids, floats, self.explain(range(len(ids))))

    @classmethod
    def of(cls, items: Sequence[ScoredItem]) -> Ranked:
        """A ``Ranked`` holding a list ``rank`` already made (reasons included)."""
        return cls([s.item_id for s in items], [s.score for s in items],
                   lambda positions: [(items[p].reason, items[p].strategy) for p in positions])


def no_reasons(positions: Sequence[int]) -> list[tuple[str, str]]:
    """The ``explain`` of an empty ``Ranked``."""
    return []


@dataclass(frozen=True, slots=True)
class Context:
    """What a strategy may know about a request besides the user's recent items.

    ``user_state`` is the user's own small model state, stored inside their profile (so
    it lives in the user-keyed table and is erased with it): a strategy that keeps
    per-user state (matrix-factorization factors) reads and writes it under its own key,
    with JSON-able values. ``interests`` are the profile's recency-weighted category
    scores, ``segment`` the user's segment if known, ``user`` the pseudonymous user id
    (only to join what was served to what the user then chose; never a raw id). A
    strategy ignores what it does not use; ``None`` context means an anonymous request.

    >>> Context(interests={"Comedy": 2.0}).segment is None
    True
    """

    user_state: dict[str, Any] | None = None
    interests: Mapping[str, float] = field(default_factory=dict)
    segment: str | None = None
    user: str | None = None


@runtime_checkable
class Recommender(Protocol):
    """Learn from one interaction at a time; rank items for a user's recent history.

    >>> from models.recommenders.popularity import Popularity
    >>> isinstance(Popularity(), Recommender)
    True
    """

    def learn_one(
        self, item_id: str, history: Sequence[str], weight: float = 1.0,
        context: Context | None = None,
    ) -> None:
        """Learn that a user with ``history`` (most recent last, before now) chose ``item_id``."""
        ...

    def rank(
        self, history: Sequence[str], exclude: Collection[str], k: int,
        context: Context | None = None,
    ) -> list[ScoredItem]:
        """Top ``k`` items for ``history``, best first, never in ``exclude`` or ``history``."""
        ...


def check_item_id(item_id: object) -> str:
    """Return ``item_id`` if it is a non-empty string of valid Unicode (``models.checks.is_id``),
    else raise ValueError. (Ingest also caps ids at 256 characters.)

    >>> check_item_id("i1")
    'i1'
    >>> check_item_id("i" + chr(0xD800))
    Traceback (most recent call last):
    ...
    ValueError: item ids must be non-empty strings of valid Unicode, got 'i\ud800'
    """
    if not is_id(item_id):
        raise ValueError(f"item ids must be non-empty strings of valid Unicode, got "
                         f"{repr(item_id)[:80]}")
    return item_id  # type: ignore[return-value]


# Largest weight one event may carry: far above any real event's (1 for a click, 3 for a
# purchase), far below what could overflow the float32 counts models keep.
MAX_WEIGHT = 1e6


def check_weight(weight: object) -> float:
    """Return ``weight`` as a float if it is in (0, MAX_WEIGHT], else raise ValueError.

    >>> check_weight(3)
    3.0
    """
    if not is_real(weight):
        raise ValueError(f"weight must be a number, got {weight!r}")
    w = float(weight)  # type: ignore[arg-type]
    # NaN fails both comparisons; one NaN would poison every score it touches.
    if not 0.0 < w <= MAX_WEIGHT:
        raise ValueError(f"weight must be finite, > 0 and <= {MAX_WEIGHT:g}, got {weight!r}")
    return w


def check_history(history: object) -> Sequence[str]:
    """Return ``history`` if it is a sequence of non-empty item-id strings, else raise.

    A single string is refused: it would be read as a history of one-letter items.

    >>> check_history(["a", "b"])
    ['a', 'b']
    """
    if isinstance(history, str) or not isinstance(history, Sequence):
        raise ValueError("history must be a sequence of item ids, not one string")
    for item_id in history:
        if type(item_id) is not str or not item_id:
            check_item_id(item_id)
    return history


def check_k(k: object) -> int:
    """Return ``k`` if it is an int >= 0, else raise ValueError.

    >>> check_k(10)
    10
    """
    if type(k) is int and k >= 0:  # every request asks: the common case, checked first
        return k
    return check_int("k", k, low=0)


def check_half_life(half_life: object) -> None:
    """Raise ValueError unless ``half_life`` (in events) is None or a finite number > 0.

    >>> check_half_life(None); check_half_life(0)
    Traceback (most recent call last):
    ...
    ValueError: half_life must be None or a finite number > 0, got 0
    """
    if half_life is not None and not is_in_range(half_life, 0.0, low_open=True, plain=True):
        raise ValueError(f"half_life must be None or a finite number > 0, got {half_life!r}")


def prequential(
    model: Recommender, events: Iterable[tuple[str, str]], k: int = 10, history_max: int = 50
) -> Iterator[bool]:
    """Replay ``(user, item)`` events test-then-train (docs/quality.md, Protocol),
    yielding hit or miss.

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
