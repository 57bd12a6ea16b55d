"""Keyed pseudonymization: stable, keyed, opaque, well-formed, and a bounded cache."""

from __future__ import annotations

import hashlib
import hmac
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.users.privacy import DEFAULT_CACHE_SIZE, MIN_KEY_BYTES, Pseudonymizer, pseudonymize

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


def test_matches_truncated_hmac_sha256() -> None:
    expected = "u" + hmac.new(KEY, b"alice", hashlib.sha256).hexdigest()[:32]
    assert pseudonymize("alice", KEY) == expected


def test_stable_across_calls_and_instances() -> None:
    assert pseudonymize("alice", KEY) == pseudonymize("alice", KEY)
    assert Pseudonymizer(KEY)("alice") == Pseudonymizer(KEY)("alice") == pseudonymize("alice", KEY)


def test_keyed() -> None:
    assert pseudonymize("alice", KEY) != pseudonymize("alice", OTHER_KEY)
    assert Pseudonymizer(KEY)("alice") != Pseudonymizer(OTHER_KEY)("alice")


def test_distinct_ids_get_distinct_pseudonyms() -> None:
    ids = [f"user-{i}" for i in range(5000)] + ["123", "alice", "Alice", "alice "]
    assert len({pseudonymize(u, KEY) for u in ids}) == len(ids)


@given(st.text(max_size=64))
def test_format(user_id: str) -> None:
    out = pseudonymize(user_id, KEY)
    assert len(out) == 33 and out[0] == "u"
    assert set(out[1:]) <= set(string.hexdigits.lower())


@pytest.mark.parametrize("user_id", ["alice@example.com", "user-98765", "Jos\u00e9", "+15550100"])
def test_raw_id_never_appears_in_output(user_id: str) -> None:
    out = Pseudonymizer(KEY)(user_id)
    assert user_id not in out and user_id.lower() not in out


@pytest.mark.parametrize("key", [b"", b"short", b"x" * (MIN_KEY_BYTES - 1)])
def test_short_key_rejected(key: bytes) -> None:
    with pytest.raises(ValueError):
        Pseudonymizer(key)
    with pytest.raises(ValueError):
        pseudonymize("alice", key)


def test_key_of_minimum_length_accepted() -> None:
    assert Pseudonymizer(b"x" * MIN_KEY_BYTES)("alice").startswith("u")


def test_wrong_types_rejected() -> None:
    with pytest.raises(TypeError):
        Pseudonymizer("a string key of 16+ chars")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        pseudonymize(123, KEY)  # type: ignore[arg-type]


def test_cache_is_bounded_and_clearable() -> None:
    p = Pseudonymizer(KEY, cache_size=4)
    for i in range(10):
        p(f"user-{i}")
    p("user-9")
    info = p.cache_info()
    assert info.maxsize == 4 and info.currsize == 4 and info.hits == 1
    p.clear()
    assert p.cache_info().currsize == 0
    assert Pseudonymizer(KEY).cache_info().maxsize == DEFAULT_CACHE_SIZE


def test_instances_do_not_share_a_cache() -> None:
    a, b = Pseudonymizer(KEY), Pseudonymizer(OTHER_KEY)
    a("alice")
    assert b("alice") == pseudonymize("alice", OTHER_KEY)
    assert b.cache_info().hits == 0


def test_bad_cache_size_rejected() -> None:
    with pytest.raises(ValueError):
        Pseudonymizer(KEY, cache_size=0)


def test_repr_hides_the_key() -> None:
    assert "k" * 16 not in repr(Pseudonymizer(KEY))
