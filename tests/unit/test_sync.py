"""Sharing item-level learning between workers (models/sync.py, Engine.learn_shared).

Two engines that each process half of a stream (split by user, as partitions split it)
and apply each other's learn batches must end with the item-level state of one engine
that processed the whole stream: exactly, for the counts, when the batches are applied
at once; and with the same quality when they arrive later, in batches.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import orjson
import pytest

from models.engine import Engine, EngineConfig
from models.recommenders.cooccurrence import ItemCooccurrence
from models.recommenders.popularity import Popularity
from models.sync import FORMAT, LearnStep, Outbox, decode_batch, encode_batch, segment_input
from models.users.profile import UserProfile
from streams.offline.datasets import load_movielens_100k, load_movielens_items

N_EVENTS = 3000


@pytest.fixture(scope="module")
def stream() -> list[tuple[str, str, str, int]]:
    """(kind, user, item, ts ms) of the first MovieLens events, in time order."""
    return [("purchase" if rating >= 4 else "click", f"u{user}", item, int(ts) * 1000)
            for user, item, rating, ts in load_movielens_100k()[:N_EVENTS]]


@pytest.fixture(scope="module")
def catalogue() -> dict[str, tuple[str, list[str]]]:
    return {i: (t, list(g)) for i, (t, g) in load_movielens_items().items()}


def _engine(catalogue: dict[str, tuple[str, list[str]]], sync: bool = False) -> Engine:
    e = Engine(EngineConfig())
    for item_id, (title, genres) in catalogue.items():
        e.upsert_item(item_id, title, genres)
    if sync:
        e.sync = Outbox()
    return e


def _owner(user: str, n: int = 2) -> int:
    """Which of ``n`` workers owns the user (a stable hash, like a partitioner)."""
    return int.from_bytes(hashlib.blake2b(user.encode(), digest_size=4).digest(), "big") % n


def _replay(engines: list[Engine], stream, *, share: bool, every: int = 1) -> float:
    """Process each event on its owner's engine; with ``share``, pass every engine's
    drained batch to the others every ``every`` events. Returns recall@10 of the lists
    served (a hit: the item was in the list served after the user's previous event)."""
    profiles: dict[str, dict | None] = {}
    served: dict[str, list[str]] = {}
    hits = 0
    for n, (kind, user, item, ts) in enumerate(stream, start=1):
        e = engines[_owner(user, len(engines))]
        hits += item in served.get(user, ())
        r = e.process(kind, user, item, ts, event_id=f"e{n}", fingerprint="",
                      profile=profiles.get(user), dedupe=None,
                      amount=9.99 if kind == "purchase" else 0.0)
        profiles[user] = r.profile
        served[user] = [s.item_id for s in r.items]
        if share and n % every == 0:
            _exchange(engines)
    if share:
        _exchange(engines)
    return hits / len(stream)


def _exchange(engines: list[Engine]) -> None:
    for j, e in enumerate(engines):
        assert e.sync is not None
        raw = e.drain_sync(f"w{j}", 1)
        if raw is None:
            continue
        batch = decode_batch(raw)
        for k, other in enumerate(engines):
            if k != j:
                other.learn_shared(batch)


def _cooc(e: Engine) -> ItemCooccurrence:
    c = e.hybrid.components["cooccurrence"]
    assert isinstance(c, ItemCooccurrence)
    return c


def _trending(e: Engine) -> Popularity:
    t = e.hybrid.components["trending"]
    assert isinstance(t, Popularity)
    return t


@pytest.fixture(scope="module")
def one(stream, catalogue) -> tuple[Engine, float]:
    e = _engine(catalogue)
    return e, _replay([e], stream, share=False)


@pytest.fixture(scope="module")
def shared_at_once(stream, catalogue) -> tuple[list[Engine], float]:
    two = [_engine(catalogue, sync=True), _engine(catalogue, sync=True)]
    return two, _replay(two, stream, share=True, every=1)


def test_two_engines_sharing_at_once_hold_the_counts_of_one(stream, one, shared_at_once
                                                          ) -> None:
    one_engine, _ = one
    two, _ = shared_at_once
    items = sorted({item for _, _, item, _ in stream})
    for e in two:
        assert e.updates == one_engine.updates == N_EVENTS
        # Co-occurrence, popularity (overall), trending, content counts: the same steps in
        # the same order, so the same floats.
        for item in items[:200]:
            assert _cooc(e).neighbours(item) == pytest.approx(_cooc(one_engine).neighbours(item))
            assert e.popularity.overall.score(item) == pytest.approx(
                one_engine.popularity.overall.score(item))
            assert _trending(e).score(item) == pytest.approx(_trending(one_engine).score(item))
    # The bandit's rewards and the new-item showings are global too: both engines hold
    # every one of them, in the same order.
    for arm, stats in two[0].bandit.stats().items():
        assert stats == pytest.approx(two[1].bandit.stats()[arm])
    assert sum(s["observations"] for s in two[0].bandit.stats().values()) > 0
    assert two[0]._explored == two[1]._explored and two[0]._explored


def test_blend_weights_take_the_same_steps_on_both_engines(shared_at_once) -> None:
    two, _ = shared_at_once
    w0, w1 = two[0].hybrid.weights(), two[1].hybrid.weights()
    assert two[0].hybrid.updates == two[1].hybrid.updates > 0
    for context, row in w0.items():
        assert row == pytest.approx(w1[context], abs=1e-9)


def test_item_factors_learn_from_every_event_on_both_engines(stream, one, shared_at_once
                                                           ) -> None:
    """Each engine's item factors learned from all events: their biases (how often an
    item was chosen over others) agree with one engine's."""
    mf_one = one[0].hybrid.components["mf"]
    items = sorted({i for _, _, i, _ in stream})
    for e in shared_at_once[0]:
        mf = e.hybrid.components["mf"]
        assert len(mf) == len(mf_one)  # type: ignore[arg-type]
        a = np.array([mf.item_factors(i)[1] for i in items])  # type: ignore[attr-defined]
        b = np.array([mf_one.item_factors(i)[1] for i in items])  # type: ignore[attr-defined]
        assert np.corrcoef(a, b)[0, 1] > 0.9


def test_sharing_keeps_the_quality_of_one_engine_and_not_sharing_loses_it(
        stream, catalogue, one, shared_at_once) -> None:
    recall_one = one[1]
    assert recall_one > 0.05
    assert shared_at_once[1] == pytest.approx(recall_one, rel=0.01)
    # Batches arriving up to 50 events late: the order differs, the quality does not.
    late = [_engine(catalogue, sync=True), _engine(catalogue, sync=True)]
    recall_late = _replay(late, stream, share=True, every=50)
    assert recall_late == pytest.approx(recall_one, rel=0.05)
    for context, row in late[0].hybrid.weights().items():  # blends kept together
        assert row == pytest.approx(late[1].hybrid.weights()[context], abs=0.05)
    alone = _replay([_engine(catalogue), _engine(catalogue)], stream, share=False)
    assert alone < 0.9 * recall_late


def test_a_batch_names_no_user(catalogue) -> None:
    e = _engine(catalogue, sync=True)
    profile = None
    users = ["raw-user-7@example.com", "pseudo0123456789abcdef"]
    for n, user in enumerate(users * 5):
        r = e.process("purchase", user, str(1 + n), 1_000 * n, event_id=f"e{n}",
                      fingerprint="", profile=profile, dedupe=None, amount=5.0)
        profile = r.profile
        assert e.sync is not None
        e.sync.note_segment(UserProfile.from_dict(r.profile or {}), 1_000 * n)
    assert e.sync is not None
    raw = e.sync.drain("w1", 1)
    assert raw is not None and b"\"1\"" in raw
    for user in users:
        assert user.encode() not in raw
    d = orjson.loads(raw)
    assert set(d) == {"v", "o", "q", "l", "x", "s"}
    assert all(set(fields) <= set("cpimfl") for _, fields in d["s"])


def test_codec_round_trip() -> None:
    step = LearnStep("i1", ("i0", "i2"), 3.0, "AACAPwAAAMA=", "s2", "hybrid", False,
                     (1, (0.01, -0.02)))
    prof = UserProfile(clicks=3, purchases=1, spend=9.5, interests={"Drama": 2.0},
                       first_seen_ms=5, last_seen_ms=9)
    raw = encode_batch("w9", 3, [step], ["i7"], [(42, segment_input(prof))])
    batch = decode_batch(raw)
    assert (batch.origin, batch.seq, batch.steps, batch.explored) == ("w9", 3, [step], ["i7"])
    ts, got = batch.segments[0]
    assert ts == 42 and (got.clicks, got.purchases, got.spend, got.interests) == (
        3, 1, 9.5, {"Drama": 2.0})
    assert (got.first_seen_ms, got.last_seen_ms, got.recent_items) == (5, 9, [])


def _raw(**changes) -> bytes:
    d = orjson.loads(encode_batch("w1", 1, [LearnStep("i1", ("i0",), 1.0)]))
    d.update(changes)
    return orjson.dumps(d)


@pytest.mark.parametrize("bad", [
    b"not json", b"[]", _raw(v=FORMAT + 1), _raw(q="1"), _raw(o=""), _raw(o="x" * 300),
    _raw(l=[["i1", ["i0"], 0.0, None, None, "", None, None]]),
    _raw(l=[["i1", ["i0"], 1e300, None, None, "", None, None]]),
    _raw(l=[["i1", "i0", 1.0, None, None, "", None, None]]),
    _raw(l=[["", [], 1.0, None, None, "", None, None]]),
    _raw(l=[["i1", [], 1.0, None, None, "", "yes", None]]),
    _raw(l=[["i1", [], 1.0, None, None, "", None, [0, [1.0, "x"]]]]),
    _raw(l=[["i1", [], 1.0, None, None, "", None]]),
    _raw(x=[3]),
    _raw(s=[[1, {"c": 1, "r": ["i1"]}]]),
    _raw(s=[[1, {"i": {"Drama": "x"}}]]),
], ids=lambda b: b[:60].decode(errors="replace"))
def test_malformed_batches_are_refused_whole(bad: bytes) -> None:
    with pytest.raises(ValueError):
        decode_batch(bad)


def test_non_finite_numbers_never_reach_a_model() -> None:
    raw = encode_batch("w1", 1, [LearnStep("i1", (), 1.0)]).replace(b"1.0", b"NaN")
    with pytest.raises(ValueError):
        decode_batch(raw)
    step = LearnStep("i1", (), 1.0, blend=(0, (math.inf,)))
    with pytest.raises(ValueError):
        decode_batch(encode_batch("w1", 1, [step]).replace(b"null]]]", b"1e999]]]"))


def test_a_step_that_does_not_fit_is_skipped_and_the_rest_applied(catalogue) -> None:
    e = _engine(catalogue)
    steps = [LearnStep("1", (), 1.0, user_vector="garbage", arm="no-such-arm", hit=True,
                       blend=(9, (1.0,))),
             LearnStep("2", ("2",), 1.0),  # the item in its own history: fine
             LearnStep("3", (), 1.0, blend=(0, (0.1,) * 5))]
    batch = decode_batch(encode_batch("w2", 1, steps))
    assert e.learn_shared(batch) == 3
    assert e.popularity.overall.score("1") > 0 and e.updates == 3
