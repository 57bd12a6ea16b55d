"""Attribution: credit a click or purchase to the recommendation (strategy, variant) that
led to it, from the few recommendations a profile remembers.

A profile keeps its latest served recommendations as ``[id, strategy, variant, ts_ms,
items, clicked]`` entries (newest last, JSON-able: they live in the profiles table). An
event carrying a ``recommendation_id`` is credited to that recommendation; with
``by_item``, an event without one (or with an unknown one) is credited to the newest
remembered recommendation that held its item. Either way only within ``window_ms`` of
the recommendation. A recommendation earns at most one click (so CTR is a share of
recommendations clicked); every attributed purchase counts as a conversion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

# Index of each field in a remembered entry.
_ID, _STRATEGY, _VARIANT, _TS, _ITEMS, _CLICKED = range(6)


@dataclass(frozen=True, slots=True)
class Attribution:
    """Which recommendation an event is credited to, and how it was matched.

    ``first_click`` is True for the first click credited to that recommendation.

    >>> served: list[list[Any]] = []
    >>> remember(served, "r1", "hybrid", "B", 1_000, ["i1", "i2"], keep=5)
    >>> attribute(served, "click", "r1", "i9", 2_000, window_ms=60_000, by_item=False)
    Attribution(recommendation_id='r1', strategy='hybrid', variant='B', by='id', first_click=True)
    >>> attribute(served, "click", None, "i2", 3_000, window_ms=60_000, by_item=True).by
    'item'
    >>> attribute(served, "click", "r1", "i1", 99_000, window_ms=60_000, by_item=True) is None
    True
    """

    recommendation_id: str
    strategy: str
    variant: str
    by: Literal["id", "item"]
    first_click: bool


def remember(
    served: list[list[Any]],
    recommendation_id: str,
    strategy: str,
    variant: str,
    ts_ms: int,
    items: Sequence[str],
    keep: int,
) -> None:
    """Add a served recommendation to ``served`` (in place), keeping the newest ``keep``.

    A recommendation id already remembered (a redelivered event re-serves the same id) is
    not added twice.
    """
    if keep <= 0:
        served.clear()
        return
    if any(entry[_ID] == recommendation_id for entry in served):
        return
    served.append([recommendation_id, strategy, variant, int(ts_ms), list(items), False])
    del served[:-keep]


def attribute(
    served: list[list[Any]],
    kind: str,
    recommendation_id: str | None,
    item_id: str,
    ts_ms: int,
    *,
    window_ms: float,
    by_item: bool,
) -> Attribution | None:
    """The recommendation a ``kind`` ("click" or "purchase") event is credited to, or None.

    Marks the recommendation clicked (in place) on its first credited click.
    """
    entry = None
    by: Literal["id", "item"] = "id"
    if recommendation_id is not None:
        entry = next((e for e in reversed(served) if e[_ID] == recommendation_id), None)
    if entry is None and by_item:
        entry = next((e for e in reversed(served) if item_id in e[_ITEMS]), None)
        by = "item"
    if entry is None or not 0 <= ts_ms - entry[_TS] <= window_ms:
        return None
    first_click = kind == "click" and not entry[_CLICKED]
    if first_click:
        entry[_CLICKED] = True
    return Attribution(entry[_ID], entry[_STRATEGY], entry[_VARIANT], by, first_click)
