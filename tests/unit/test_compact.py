"""The profiles table's compact in-memory form (models.users.compact) and the dedupe window's
entry format (models.users.dedupe): same values as the changelog round trip, old records read."""

from __future__ import annotations

import math

from faust.serializers import codecs
from hypothesis import given, settings
from hypothesis import strategies as st

from models.engine import Engine, EngineConfig
from models.users.compact import CompactValues, decode, encode, make_record
from models.users.dedupe import check_and_add, event_key, fingerprint_key, keys

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_a_value_reads_back_as_the_changelog_round_trip_gives_it(value: object) -> None:
    # The bytes kept are the bytes Faust's JSON codec writes to the changelog, so a
    # worker reads the same whether it wrote the value or recovered it.
    raw = encode(value)
    if value is None:
        assert raw is None and decode(raw) is None
        return
    assert raw == codecs.dumps("json", value)
    assert decode(raw) == codecs.loads("json", codecs.dumps("json", value)) == value


def test_non_finite_floats_read_back_as_a_recovered_worker_reads_them() -> None:
    for bad in (math.nan, math.inf):
        assert decode(encode({"m": bad})) == codecs.loads("json", codecs.dumps("json",
                                                                                {"m": bad}))


def test_compact_values_is_a_mapping_whose_reads_are_copies() -> None:
    d = CompactValues()
    record = make_record({"v": 1, "r": ["i1"]}, [], now_ms=7, at=(0, 3))
    d["u"] = record
    d["gone"] = None  # a tombstone during recovery
    assert d["u"] == record and d["u"] is not d["u"]
    assert d["gone"] is None and len(d) == 2 and set(d) == {"u", "gone"}
    d["u"]["p"]["c"] = 5  # not written back: nothing stored changes
    assert d["u"] == record and d.raw("u") == encode(record)
    assert dict(d.raw_items()) == {"u": encode(record), "gone": None}
    d.update({"w": {"p": {}}})
    assert d.pop("w") == {"p": {}} and "w" not in d
    del d["gone"]
    assert list(d.items()) == [("u", record)]
    d.clear()
    assert len(d) == 0


def test_an_old_dedupe_window_is_read_and_rewritten_in_the_new_form() -> None:
    old = [[event_key(f"e{i}"), f"fp{i}"] for i in range(4)]  # as written before
    assert keys(old) == [event_key(f"e{i}") for i in range(4)]
    assert check_and_add(old, "e2", "fp2", window=4)[1] == "duplicate"
    assert check_and_add(old, "e2", "changed", window=4)[1] == "conflict"
    new, outcome = check_and_add(old, "e4", "fp4", window=4)
    assert outcome == "new" and keys(new) == [event_key(f"e{i}") for i in range(1, 5)]
    assert all(type(e) is str and len(e) == 32 for e in new)
    assert new[-1] == event_key("e4") + fingerprint_key("fp4")
    assert check_and_add(new, "e1", "fp1", window=4)[1] == "duplicate"
    assert check_and_add(new, "e1", "other", window=4)[1] == "conflict"


def test_corrupt_dedupe_entries_are_dropped_not_fatal() -> None:
    state = [event_key("a") + fingerprint_key("f"), "short", 7, [1], None,
             [event_key("b"), "g"]]
    assert keys(state) == [event_key("a"), event_key("b")]
    assert check_and_add(state, "b", "g", window=8)[1] == "duplicate"
    assert check_and_add(state, "c", "h", window=8) == (
        [event_key("a") + fingerprint_key("f"), event_key("b") + fingerprint_key("g"),
         event_key("c") + fingerprint_key("h")], "new")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 2)), max_size=80),
       st.integers(1, 12))
def test_the_window_answers_as_a_list_of_the_last_distinct_ids_would(
        events: list[tuple[int, int]], window: int) -> None:
    state: list | None = None
    reference: list[tuple[str, str]] = []  # (event id, fingerprint), oldest first
    for n, fp in events:
        eid, fingerprint = f"event-{n}", f"payload-{fp}"
        known = dict(reference)
        want = ("new" if eid not in known else
                "duplicate" if known[eid] == fingerprint else "conflict")
        state, got = check_and_add(state, eid, fingerprint, window)
        assert got == want
        if want == "new":
            reference = (reference + [(eid, fingerprint)])[-window:]
        assert keys(state) == [event_key(e) for e, _ in reference]


def test_a_record_written_before_still_drives_the_engine() -> None:
    # A stored record of the previous layout: dedupe entries as pairs.
    e = Engine(EngineConfig(top_k=2, strategy="cooccurrence", exploration=0.0))
    first = e.process("click", "u", "a", 1_000, event_id="e1", fingerprint="f1",
                      profile=None, dedupe=None)
    assert first.profile is not None and first.dedupe is not None
    old_dedupe = [[event_key("e1"), "f1"]]
    again = e.process("click", "u", "a", 1_000, event_id="e1", fingerprint="f1",
                      profile=first.profile, dedupe=old_dedupe)
    assert again.outcome == "duplicate"
    nxt = e.process("click", "u", "b", 2_000, event_id="e2", fingerprint="f2",
                    profile=first.profile, dedupe=old_dedupe)
    assert nxt.outcome == "accepted" and nxt.dedupe == first.dedupe + [
        event_key("e2") + fingerprint_key("f2")]
