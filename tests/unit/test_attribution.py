"""Attribution arithmetic on hand-made sequences, and through the engine."""

from __future__ import annotations

from typing import Any

from models.engine import Engine, EngineConfig
from models.marketing.attribution import attribute, remember
from models.users.profile import UserProfile

H = 3_600_000


def test_by_id_within_the_window_one_click_per_recommendation() -> None:
    served: list[list[Any]] = []
    remember(served, "r1", "hybrid", "A", 0, ["a", "b"], keep=3)
    remember(served, "r2", "popularity", "B", 10, ["c"], keep=3)
    first = attribute(served, "click", "r1", "a", 5, window_ms=H, by_item=False)
    assert first is not None and (first.strategy, first.variant, first.by) == ("hybrid", "A", "id")
    assert first.first_click
    again = attribute(served, "click", "r1", "b", 6, window_ms=H, by_item=False)
    assert again is not None and not again.first_click  # a second click: no second credit
    buy = attribute(served, "purchase", "r2", "c", 20, window_ms=H, by_item=False)
    assert buy is not None and (buy.strategy, buy.variant, buy.first_click) == (
        "popularity", "B", False)
    assert attribute(served, "click", "r2", "c", 10 + H + 1, window_ms=H, by_item=False) is None
    assert attribute(served, "click", "nope", "a", 5, window_ms=H, by_item=False) is None
    assert attribute(served, "click", None, "a", 5, window_ms=H, by_item=False) is None


def test_by_item_credits_the_newest_list_holding_the_item() -> None:
    served: list[list[Any]] = []
    remember(served, "r1", "hybrid", "A", 0, ["a", "b"], keep=3)
    remember(served, "r2", "mf", "A", 10, ["b"], keep=3)
    got = attribute(served, "click", None, "b", 20, window_ms=H, by_item=True)
    assert got is not None and (got.recommendation_id, got.by) == ("r2", "item")
    # an unknown recommendation_id falls back to the item when by_item is on
    got = attribute(served, "click", "gone", "a", 20, window_ms=H, by_item=True)
    assert got is not None and got.recommendation_id == "r1"
    assert attribute(served, "click", None, "zzz", 20, window_ms=H, by_item=True) is None


def test_remember_is_bounded_and_idempotent() -> None:
    served: list[list[Any]] = []
    for n in range(7):
        remember(served, f"r{n}", "hybrid", "A", n, ["x"], keep=3)
    remember(served, "r6", "hybrid", "A", 6, ["x"], keep=3)  # a redelivery: same id
    assert [e[0] for e in served] == ["r4", "r5", "r6"]
    remember(served, "r7", "hybrid", "A", 7, ["x"], keep=0)
    assert served == []


def test_engine_credits_a_click_to_the_list_it_names_and_the_profile_keeps_it() -> None:
    e = Engine(EngineConfig(top_k=3, exploration=0.0))
    prof = None
    for n, item in enumerate("abcab"):
        res = e.process("click", "u", item, n * 1000, event_id=f"e{n}", fingerprint="",
                        profile=prof, dedupe=None, serve_id=f"rec{n}", variant="B")
        prof = res.profile
    assert res.attributed is None  # no recommendation_id, by_item off
    stored = UserProfile.from_dict(prof or {})
    assert [r[0] for r in stored.served_recs] == [f"rec{n}" for n in range(5)]
    res = e.process("purchase", "u", "c", 9_000, event_id="p1", fingerprint="", profile=prof,
                    dedupe=None, amount=5.0, recommendation_id="rec3", serve_id="rec9")
    assert res.attributed is not None
    assert (res.attributed.recommendation_id, res.attributed.variant) == ("rec3", "B")
    assert res.attributed.strategy == stored.served_recs[3][1]
    res = e.process("click", "u", "d", 9_500, event_id="c1", fingerprint="",
                    profile=res.profile, dedupe=None, recommendation_id="rec3")
    assert res.attributed is not None and res.attributed.first_click
    again = e.process("click", "u", "e", 9_600, event_id="c2", fingerprint="",
                      profile=res.profile, dedupe=None, recommendation_id="rec3")
    assert again.attributed is not None and not again.attributed.first_click
    # the clicked mark survives the stored form
    marks = {r[0]: r[5] for r in UserProfile.from_dict(again.profile or {}).served_recs}
    assert marks["rec3"] is True and marks["rec4"] is False
