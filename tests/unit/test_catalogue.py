"""Catalogue: upserts, deletes (tombstones), availability, bounds and validation."""

from __future__ import annotations

import pickle

import pytest

from models.recommenders.catalogue import Catalogue, Item


def test_upsert_get_and_accessors() -> None:
    c = Catalogue()
    c.upsert("i1", "Toy Story", ["Animation", "Comedy", "Animation", ""])
    assert c.get("i1") == Item("i1", "Toy Story", ("Animation", "Comedy"), True)
    assert c.title("i1") == "Toy Story"
    assert c.categories("i1") == ("Animation", "Comedy")
    assert c.is_available("i1") and not c.is_unavailable("i1")
    assert "i1" in c and len(c) == 1


def test_unknown_items() -> None:
    c = Catalogue()
    assert c.get("nope") is None
    assert c.title("nope") == "nope" and c.categories("nope") == ()
    assert not c.is_available("nope") and not c.is_unavailable("nope")
    assert "nope" not in c and 3 not in c


def test_empty_title_falls_back_to_id() -> None:
    c = Catalogue()
    c.upsert("i1", "")
    assert c.title("i1") == "i1"


def test_upsert_replaces_and_tracks_availability() -> None:
    c = Catalogue()
    c.upsert("i1", "Old", ["A"])
    c.upsert("i1", "New", ["B"], available=False)
    assert c.title("i1") == "New" and c.categories("i1") == ("B",)
    assert not c.is_available("i1") and c.is_unavailable("i1")
    assert set(c.unavailable()) == {"i1"} and len(c) == 1
    c.upsert("i1", "New", ["B"], available=True)
    assert c.is_available("i1") and set(c.unavailable()) == set()


def test_delete_leaves_a_tombstone() -> None:
    c = Catalogue()
    c.upsert("i1", "Toy Story")
    c.delete("i1")
    assert c.get("i1") is None and "i1" not in c and len(c) == 0
    assert c.title("i1") == "i1" and c.is_unavailable("i1") and not c.is_available("i1")
    c.delete("never-known")
    assert c.is_unavailable("never-known")
    c.upsert("i1", "Back")
    assert c.is_available("i1") and not c.is_unavailable("i1") and len(c) == 1


def test_bounded_evicts_least_recently_written() -> None:
    c = Catalogue(max_items=3)
    for n in range(3):
        c.upsert(f"i{n}", f"t{n}", available=n != 1)
    c.upsert("i0", "t0 again")  # rewriting refreshes i0
    c.upsert("i3", "t3")
    assert len(c) == 3 and "i1" not in c and not c.is_unavailable("i1")
    c.delete("i9")
    c.upsert("i4", "t4")
    assert [i for i in ("i0", "i2", "i3", "i4") if i in c] == ["i3", "i4"]
    assert c.is_unavailable("i9") and len(c) == 2


@pytest.mark.parametrize(
    "args",
    [("", "t"), (None, "t"), (7, "t"), ("i", None), ("i", "t", "Comedy"), ("i", "t", [1])],
)
def test_bad_input_rejected(args: tuple[object, ...]) -> None:
    with pytest.raises(ValueError):
        Catalogue().upsert(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize("max_items", [0, -1, 1.5, True])
def test_bad_max_items_rejected(max_items: object) -> None:
    with pytest.raises(ValueError):
        Catalogue(max_items=max_items)  # type: ignore[arg-type]


def test_pickles() -> None:
    c = Catalogue(max_items=5)
    c.upsert("i1", "Toy Story", ["Animation"])
    c.delete("i2")
    d = pickle.loads(pickle.dumps(c))
    assert d.get("i1") == c.get("i1") and d.is_unavailable("i2") and len(d) == 1
