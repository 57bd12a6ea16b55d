"""Business rules on a ranked list: each rule alone, all together, and the bounds on k."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from models.recommenders.base import ScoredItem
from models.recommenders.catalogue import Catalogue
from models.recommenders.rules import Rules, apply_rules

CATEGORIES = {
    "a": ["Drama", "Comedy"],
    "b": ["Drama"],
    "c": ["Comedy"],
    "d": ["Action", "Drama"],
    "e": ["Action"],
    "f": ["Horror"],
}


def catalogue() -> Catalogue:
    c = Catalogue()
    for item_id, cats in CATEGORIES.items():
        c.upsert(item_id, item_id.upper(), cats)
    return c


def ranked(ids: str = "abcdef") -> list[ScoredItem]:
    return [ScoredItem(i, 10.0 - n, f"reason {i}", "x") for n, i in enumerate(ids)]


def ids(items: list[ScoredItem]) -> str:
    return "".join(s.item_id for s in items)


def test_no_rules_keeps_the_order_and_the_items() -> None:
    out = apply_rules(ranked(), 4, Rules(), catalogue=catalogue())
    assert out == ranked()[:4]


def test_unavailable_and_deleted_items_are_skipped() -> None:
    c = catalogue()
    c.upsert("b", "B", ["Drama"], available=False)
    c.delete("d")
    assert ids(apply_rules(ranked(), 10, Rules(), catalogue=c)) == "acef"
    # unknown items are not unavailable
    assert ids(apply_rules(ranked("zab"), 10, Rules(), catalogue=c)) == "za"


def test_category_filter_keeps_items_with_any_wanted_category() -> None:
    c = catalogue()
    assert ids(apply_rules(ranked(), 10, Rules(), catalogue=c, categories={"Drama"})) == "abd"
    assert ids(apply_rules(ranked(), 10, Rules(), catalogue=c,
                           categories=["Comedy", "Horror"])) == "acf"
    assert apply_rules(ranked(), 10, Rules(), catalogue=c, categories={"Western"}) == []
    # an empty filter is no filter
    assert ids(apply_rules(ranked(), 10, Rules(), catalogue=c, categories=[])) == "abcdef"
    # items the catalogue does not know have no category: outside any filter
    assert ids(apply_rules(ranked("zab"), 10, Rules(), catalogue=c,
                           categories={"Drama"})) == "ab"


def test_repeat_cap() -> None:
    c = catalogue()
    counts = {"a": 2, "b": 1, "c": 5}
    assert ids(apply_rules(ranked(), 10, Rules(max_repeats=2), catalogue=c,
                           served_counts=counts)) == "bdef"
    assert ids(apply_rules(ranked(), 10, Rules(max_repeats=1), catalogue=c,
                           served_counts=counts)) == "def"
    # 0 means no cap; no counts means nothing was served before
    assert ids(apply_rules(ranked(), 10, Rules(max_repeats=0), catalogue=c,
                           served_counts=counts)) == "abcdef"
    assert ids(apply_rules(ranked(), 10, Rules(max_repeats=1), catalogue=c)) == "abcdef"


def test_per_category_cap_counts_every_category_of_an_item() -> None:
    c = catalogue()
    # a takes Drama and Comedy: b (Drama), c (Comedy) and d (Action+Drama) are over the cap
    assert ids(apply_rules(ranked(), 10, Rules(max_per_category=1), catalogue=c)) == "aef"
    # cap 2: a, b fill Drama; c fills Comedy; d is one Drama too many; e, f are fine
    assert ids(apply_rules(ranked(), 10, Rules(max_per_category=2), catalogue=c)) == "abcef"
    # a skipped item does not count toward its categories
    assert ids(apply_rules(ranked("dbae"), 10, Rules(max_per_category=1),
                           catalogue=c)) == "d"
    # items without categories are never capped
    assert ids(apply_rules(ranked("xyz"), 10, Rules(max_per_category=1), catalogue=c)) == "xyz"


def test_taken_items_are_skipped_and_do_not_count_toward_caps() -> None:
    c = catalogue()
    out = apply_rules(ranked(), 10, Rules(max_per_category=1), catalogue=c, taken={"a"})
    assert ids(out) == "bcef"  # b (Drama), c (Comedy), d over Drama, e, f
    assert ids(apply_rules(ranked(), 10, Rules(), taken=["b", "c", "zz"])) == "adef"


def test_duplicates_in_the_ranking_are_served_once() -> None:
    assert ids(apply_rules(ranked("ababc"), 10, Rules())) == "abc"


def test_all_rules_together() -> None:
    c = catalogue()
    c.upsert("e", "E", ["Action"], available=False)
    c.upsert("g", "G", ["Drama"])
    c.upsert("h", "H", ["Comedy", "Horror"])
    out = apply_rules(
        ranked("abcdefgh"), 3, Rules(max_repeats=2, max_per_category=1), catalogue=c,
        served_counts={"a": 2, "b": 1}, categories={"Drama", "Comedy", "Action"},
        taken={"c"},
    )
    # a: repeats; b: ok (Drama); c: taken; d: Drama full; e: unavailable;
    # f: outside the filter; g: Drama full; h: ok (Comedy; Horror is not filtered on)
    assert ids(out) == "bh"
    assert out[0] == ScoredItem("b", 9.0, "reason b", "x")


def test_without_a_catalogue_only_ids_rules_apply() -> None:
    rules = Rules(max_repeats=1, max_per_category=1)
    out = apply_rules(ranked(), 10, rules, served_counts={"c": 1}, taken={"a"})
    assert ids(out) == "bdef"


@pytest.mark.parametrize(("k", "expected"), [(0, ""), (-3, ""), (1, "a"), (3, "abc"),
                                             (6, "abcdef"), (100, "abcdef")])
def test_k_bounds(k: int, expected: str) -> None:
    assert ids(apply_rules(ranked(), k, Rules(), catalogue=catalogue())) == expected


def test_stops_reading_the_ranking_at_k() -> None:
    read: list[str] = []

    def stream() -> Iterator[ScoredItem]:
        for item in ranked():
            read.append(item.item_id)
            yield item

    assert ids(apply_rules(stream(), 2, Rules())) == "ab"
    assert read == ["a", "b"]


@pytest.mark.parametrize("kwargs", [{"max_repeats": -1}, {"max_per_category": -1},
                                    {"max_repeats": True}, {"max_per_category": 1.5},
                                    {"max_repeats": "2"}])
def test_bad_rules_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Rules(**kwargs)  # type: ignore[arg-type]
