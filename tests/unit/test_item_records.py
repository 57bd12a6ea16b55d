"""Validation of the ``items`` topic (catalogue upserts and deletions)."""

from __future__ import annotations

import orjson
import pytest

from streams.records import Item, ValidationError, decode_item


def _item(**over: object) -> bytes:
    d: dict[str, object] = {"item_id": "sku-1", "title": "Mug", "categories": ["home", "kitchen"]}
    d.update(over)
    return orjson.dumps({k: v for k, v in d.items() if v is not ...})


def test_valid_item_normalized() -> None:
    item_id, item = decode_item(b"sku-1", _item(title="  Cafe\u0301 mug ", price=12.5,
                                                 description="big", unknown=1))
    assert item_id == "sku-1"
    assert item == Item("sku-1", "Café mug", ("home", "kitchen"), "big", 12.5, True)


def test_missing_key_is_fine_and_duplicate_categories_collapse() -> None:
    _, item = decode_item(None, _item(categories=["a", "a", "b"], available=False))
    assert item is not None and item.categories == ("a", "b") and item.available is False


def test_tombstone_deletes_by_key() -> None:
    assert decode_item(b" sku-9 ", None) == ("sku-9", None)


ITEM_INVALID = [
    ("tombstone-without-key", None, "tombstone", None),
    ("key-mismatch", b"other", "key_mismatch", _item()),
    ("no-title", b"sku-1", "missing_field", _item(title=...)),
    ("title-not-string", b"sku-1", "wrong_type", _item(title=5)),
    ("categories-not-list", b"sku-1", "wrong_type", _item(categories="home")),
    ("too-many-categories", b"sku-1", "field_too_large",
     _item(categories=[str(i) for i in range(40)])),
    ("available-not-bool", b"sku-1", "wrong_type", _item(available="yes")),
    ("negative-price", b"sku-1", "bad_price", _item(price=-1)),
    ("bidi-title", b"sku-1", "bad_characters", _item(title="a\u202eb")),
]


@pytest.mark.parametrize(
    ("name", "key", "code", "raw"), ITEM_INVALID, ids=[c[0] for c in ITEM_INVALID]
)
def test_invalid_items(name: str, key: bytes | None, code: str, raw: bytes | None) -> None:
    with pytest.raises(ValidationError) as info:
        decode_item(key, raw)
    assert info.value.code == code
