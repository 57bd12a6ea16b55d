"""bench/scaleout.py's recall through the broker follows the order the worker applied
each user's events, not the order they were produced in."""

from __future__ import annotations

from bench.scaleout import recall_hits

EVENTS = [("c1", "u", "a"), ("c2", "u", "b"), ("p1", "u", "c"), ("c3", "v", "a")]
LISTS = {"c1": ["c"], "p1": ["b"], "c2": [], "c3": ["a"]}


def test_hits_follow_the_applied_order() -> None:
    # The purchase p1 (another topic) was applied between the two clicks.
    applied = {"c1": (0, 1), "p1": (0, 2), "c2": (0, 3), "c3": (1, 1)}
    assert recall_hits(EVENTS, LISTS, applied) == 2
    # Applied as produced: neither follows a list that holds it.
    produced = {"c1": (0, 1), "c2": (0, 2), "p1": (0, 3), "c3": (1, 1)}
    assert recall_hits(EVENTS, LISTS, produced) == 0


def test_an_event_without_a_list_is_a_miss_and_comes_last() -> None:
    applied = {"c1": (0, 1), "p1": (0, 2)}  # c2's list never came
    assert recall_hits(EVENTS, LISTS, applied) == 1
