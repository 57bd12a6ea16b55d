"""Sharing item-level learning between workers as summed deltas (models/sync.py,
Engine.learn_shared).

An engine applying another's delta ranks as that engine does; two engines that each
process half of a stream (split by user, as partitions split it) and exchange deltas serve
with the quality of one engine that processed all of it; no delta carries a user's id,
vector or item sequence.
"""

from __future__ import annotations

import base64
import hashlib

import numpy as np
import orjson
import pytest

from models.engine import Engine, EngineConfig
from models.recommenders.cooc_counts import CoocCounts
from models.recommenders.cooccurrence import ItemCooccurrence
from models.recommenders.mf import ImplicitMF, decode_vector, encode_vector
from models.recommenders.popularity import Popularity
from models.sync import FORMAT, Outbox, decode_batch
from streams.offline.datasets import load_movielens_100k, load_movielens_items

N_EVENTS = 3000
# Events of the two-halves quality check (the first of ML-100K, in time order).
N_QUALITY = 10_000


@pytest.fixture(scope="module")
def stream() -> list[tuple[str, str, str, int]]:
    """(kind, user, item, ts ms) of the first MovieLens events, in time order."""
    return _events(N_EVENTS)


def _events(n: int) -> list[tuple[str, str, str, int]]:
    return [("purchase" if rating >= 4 else "click", f"u{user}", item, int(ts) * 1000)
            for user, item, rating, ts in load_movielens_100k()[:n]]


@pytest.fixture(scope="module")
def catalogue() -> dict[str, tuple[str, list[str]]]:
    return {i: (t, list(g)) for i, (t, g) in load_movielens_items().items()}


def _engine(catalogue: dict[str, tuple[str, list[str]]], sync: bool = False) -> Engine:
    e = Engine(EngineConfig())
    for item_id, (title, genres) in catalogue.items():
        e.upsert_item(item_id, title, genres)
    if sync:
        e.sync = Outbox(min_users=1)
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


def _full(e: Engine, item: str) -> bool:
    """Whether the item's co-occurrence row holds as many neighbours as it may."""
    c = _cooc(e)
    return len(c.neighbours(item)) >= c.max_neighbours


def _assert_same_ranking(a: Engine, b: Engine, histories: list[list[str]],
                         strategy: str) -> None:
    """The same top 10 by score, position by position, and the same items but for near
    ties (scores within float32 rounding may order them either way).

    Tolerance: a co-occurrence row that is full (``max_neighbours``) is order-dependent:
    a new pair displaces the weakest, which learning event by event may later bring back
    from zero, while a summed delta adds the pair's whole count at once (more of it
    kept). Histories touching a full row are held to the same lists only (at most 5%
    differ), not to the same scores."""
    differ = 0
    for h in histories:
        ra = a.strategy(strategy).rank(h, exclude=(), k=10)
        rb = b.strategy(strategy).rank(h, exclude=(), k=10)
        if not any(_full(a, i) for i in h):
            assert [s.score for s in rb] == pytest.approx([s.score for s in ra], rel=1e-4)
        differ += [s.item_id for s in rb] != [s.item_id for s in ra]
    assert differ <= 0.05 * len(histories), strategy


def test_an_engine_applying_anothers_deltas_ranks_as_it_does(stream, catalogue) -> None:
    """B learns nothing itself and applies A's deltas, drained every 250 events: B's
    item models rank as A's. Co-occurrence, popularity and trending scores agree to float
    rounding (counts summed in another order; co-occurrence rows hold float32), the
    factor model's rows to float32 rounding (deltas summed in float64 from float32 rows),
    so the top 10 lists are the same but for near ties; the bandit's statistics agree."""
    a, b = _engine(catalogue, sync=True), _engine(catalogue)
    profiles: dict[str, dict | None] = {}
    for n, (kind, user, item, ts) in enumerate(stream, start=1):
        r = a.process(kind, user, item, ts, event_id=f"e{n}", fingerprint="",
                      profile=profiles.get(user), dedupe=None, serve=False)
        profiles[user] = r.profile
        if n % 250 == 0:
            raw = a.drain_sync("wa", n)
            assert raw is not None
            assert b.learn_shared(decode_batch(raw)) == 250
    assert b.updates == a.updates == N_EVENTS
    items = sorted({item for _, _, item, _ in stream})
    histories = [[i] for i in items[:150]] + [items[k:k + 5] for k in range(0, 300, 5)]
    for strategy in ("cooccurrence", "popularity", "trending", "content"):
        _assert_same_ranking(a, b, histories, strategy)
    for item in items[:300]:
        if not _full(a, item):
            assert _cooc(b).neighbours(item) == pytest.approx(_cooc(a).neighbours(item),
                                                              rel=1e-5)
        assert _trending(b).score(item) == pytest.approx(_trending(a).score(item), rel=1e-9)
    mf_a, mf_b = a.hybrid.components["mf"], b.hybrid.components["mf"]
    assert isinstance(mf_a, ImplicitMF) and isinstance(mf_b, ImplicitMF)
    for item in items:
        fa, ba = mf_a.item_factors(item)  # type: ignore[misc]
        fb, bb = mf_b.item_factors(item)  # type: ignore[misc]
        assert np.allclose(fa, fb, atol=1e-5) and bb == pytest.approx(ba, abs=1e-5)
    users = [p for p in profiles.values() if p][:50]
    for p in users:
        assert b.recommend(p, 10, strategy="mf").item_ids == \
            a.recommend(p, 10, strategy="mf").item_ids
    for arm, stats in a.bandit.stats().items():
        assert b.bandit.stats()[arm]["observations"] == pytest.approx(stats["observations"])
        assert b.bandit.stats()[arm]["estimate"] == pytest.approx(stats["estimate"])
    assert b._explored == a._explored


def test_two_engines_exchanging_deltas_serve_with_the_quality_of_one(catalogue) -> None:
    """Each of two engines learns the events of its users (half of the first 10,000 of
    ML-100K) and applies the other's deltas every 200 events: recall@10 of the lists
    served is within 2% of one engine learning all of them; without sharing it is not."""
    events = _events(N_QUALITY)
    one = _replay([_engine(catalogue)], events, share=False)
    two = _replay([_engine(catalogue, sync=True), _engine(catalogue, sync=True)], events,
                  share=True, every=200)
    assert one > 0.05
    assert two == pytest.approx(one, rel=0.02)


def test_a_delta_holds_no_users_id_vector_or_item_sequence(catalogue) -> None:
    """Five users' events, the last user's ten in a row: the encoded delta holds no user
    id (raw or pseudonymous), no user's factor vector (encoded or as numbers), and item
    ids in sorted order only, never a user's sequence."""
    e = _engine(catalogue, sync=True)
    assert e.sync is not None
    e.sync.min_users = 5
    users = ["raw-user-7@example.com", "pseudo0123456789abcdef", "u3", "u4", "u5"]
    sequence = ["50", "181", "9", "300", "1", "127", "742", "64", "22", "1000"]
    profiles: dict[str, dict | None] = {}
    n = 0
    for user in users[::-1]:  # the others first: the factor model then knows negatives
        for item in (sequence if user == users[0] else ["7", "8", "11", "12", "13"]):
            n += 1
            r = e.process("purchase", user, item, 1_000 * n, event_id=f"e{n}",
                          fingerprint="", profile=profiles.get(user), dedupe=None, amount=5.0)
            profiles[user] = r.profile
        if user != users[0]:  # fewer than five users' events: nothing leaves yet
            assert e.drain_sync("w1", n) is None
    raw = e.drain_sync("w1", n)
    assert raw is not None
    for user in users[:2]:
        assert user.encode() not in raw
    vector = profiles[users[0]]["ms"]["mf"]  # type: ignore[index]
    assert vector.encode() not in raw
    user = decode_vector(vector, 32)
    assert user is not None
    user_numbers = {round(float(x), 5) for x in user[:-1]} - {0.0}
    ids, deltas = decode_batch(raw).factors["mf"]
    assert ids and user_numbers
    assert not {round(float(x), 5) for x in deltas.ravel()} & user_numbers
    assert user[:-1].astype("<f4").tobytes()[:8] not in base64.b64decode(
        orjson.loads(raw)["f"]["mf"][1])
    d = orjson.loads(raw)
    assert d["i"] == sorted(d["i"])
    quoted = b",".join(orjson.dumps(i) for i in sequence[:3])
    assert quoted not in raw
    assert set(d) == {"v", "o", "q", "n", "i", "l", "p", "sp", "x", "b", "bs", "f", "w"}
    assert encode_vector  # the codec the profile's vector was written with


def test_an_old_format_batch_is_refused() -> None:
    old = orjson.dumps({"v": 1, "o": "w1", "q": 1, "l": [["i1", ["i0"], 1.0, None, None,
                                                           "", None, None]]})
    with pytest.raises(ValueError, match="format"):
        decode_batch(old)


def _delta() -> bytes:
    box = Outbox(min_users=1)
    box.record("b", ["a"], 1.0, "s1", arm="hybrid", hit=True, user="u")
    raw = box.drain("w1", 1, [[0.5, 0.5]], {"mf": (["a"], np.ones((1, 33)))})
    assert raw is not None
    return raw


def _raw(**changes) -> bytes:
    d = orjson.loads(_delta())
    d.update(changes)
    return orjson.dumps(d)


def test_codec_round_trip() -> None:
    batch = decode_batch(_delta())
    assert (batch.origin, batch.seq, batch.events, batch.items) == ("w1", 1, 1, ["a", "b"])
    assert batch.cooccurrence == {"b": 1.0} and batch.popularity == {"b": 1.0}
    assert batch.pairs[0].tolist() == [0] and batch.pairs[1].tolist() == [1]
    assert batch.segments == {"s1": (1, {"b": 1.0})}
    assert batch.bandit_steps == 1 and batch.bandit == {"hybrid": (1.0, 1.0)}
    assert batch.factors["mf"][0] == ["a"] and batch.factors["mf"][1].shape == (1, 33)
    assert batch.blend == [[0.5, 0.5]] and batch.entries > 0


def _b(values: list, dtype: str) -> str:
    return base64.b64encode(np.array(values, dtype=dtype).tobytes()).decode()


IDX, F8, F4 = "<i4", "<f8", "<f4"


@pytest.mark.parametrize("bad", [
    b"not json", b"[]", _raw(v=FORMAT + 1), _raw(v=1), _raw(q="1"), _raw(o=""),
    _raw(o="x" * 300), _raw(n=-1), _raw(i=["a", "a"]), _raw(i=["a", ""]),
    _raw(l=[_b([1], IDX), _b([0.0], F8), _b([1.0], F8), _b([1.0], F8), _b([1], IDX)]),
    _raw(l=[_b([5], IDX), _b([1.0], F8), _b([1.0], F8), _b([1.0], F8), _b([1], IDX)]),
    _raw(l=[_b([1], IDX), _b([1.0], F8), _b([np.inf], F8), _b([1.0], F8), _b([1], IDX)]),
    _raw(l=[_b([1], IDX), _b([1.0], F8), _b([1.0], F8), _b([1.0], F8), _b([0], IDX)]),
    _raw(l=[_b([1], IDX), _b([1.0], F8), _b([1.0], F8), _b([1.0], F8)]),
    _raw(l=[[1], [1.0], [1.0], [1.0], [1]]), _raw(p=[_b([0], IDX), _b([0], IDX), _b([1.0], F8)]),
    _raw(p=[_b([0], IDX), _b([1], IDX), _b([-1.0], F8)]),
    _raw(p=[_b([0], IDX), _b([2], IDX), _b([1.0], F8)]),
    _raw(p=[_b([0], IDX), _b([1], IDX), _b([np.nan], F8)]),
    _raw(p=[_b([0], IDX), _b([1], IDX), _b([1.0, 2.0], F8)]),
    _raw(p=[_b([0], IDX), _b([1], IDX), "!!!!"]), _raw(p=[_b([0], IDX), _b([1], IDX), "AAA"]),
    _raw(p=[[0], [1], [1.0]]), _raw(p=[_b([0], IDX), _b([1], IDX)]),
    _raw(sp={"s1": [1, [9], [1.0]]}), _raw(sp={"s1": [1, [1], [0.0]]}),
    _raw(f={"mf": [_b([0], IDX), _b([1.0] * 33, F4), 32]}),
    _raw(f={"mf": [_b([0, 1], IDX), _b([1.0] * 33, F4), 33]}),
    _raw(f={"mf": [_b([0], IDX), _b([np.inf] * 33, F4), 33]}),
    _raw(f={"mf": [_b([0], IDX), _b([1.0] * 33, F4), "33"]}),
    _raw(b=[1, {"hybrid": [1.0, "x"]}]), _raw(bs=[[0, 1, [1.0, "x"]]]),
], ids=lambda b: b[:60].decode(errors="replace"))
def test_malformed_batches_are_refused_whole(bad: bytes) -> None:
    with pytest.raises(ValueError):
        decode_batch(bad)


def test_non_finite_numbers_never_reach_a_model() -> None:
    raw = _delta()
    assert b'"w":[[0.5,0.5]]' in raw
    with pytest.raises(ValueError):
        decode_batch(raw.replace(b'"w":[[0.5,0.5]]', b'"w":[[NaN,0.5]]'))
    box = Outbox(min_users=1)
    box.record("b", ["a"], 1.0, None, user="u")
    raw = box.drain("w1", 1, None, {"mf": (["a"], np.full((1, 33), np.inf))})
    assert raw is not None
    with pytest.raises(ValueError):
        decode_batch(raw)


def test_a_delta_that_does_not_fit_is_applied_where_it_fits(catalogue) -> None:
    """Unknown arms, a factor block of the wrong width and a blend step for no context
    are left out; the counts still apply."""
    e = _engine(catalogue)
    box = Outbox(min_users=1)
    box.record("1", [], 1.0, None, arm="no-such-arm", hit=True, blend=(9, (1.0,)), user="u")
    raw = box.drain("w2", 1, None, {"mf": (["1"], np.ones((1, 3)))})
    assert raw is not None
    assert e.learn_shared(decode_batch(raw)) == 1
    assert e.popularity.overall.score("1") > 0 and e.updates == 1
    assert "no-such-arm" not in e.bandit.stats()


def test_remote_changes_are_not_sent_back(catalogue) -> None:
    """What an engine applied from another is not in its own next delta."""
    a, b = _engine(catalogue, sync=True), _engine(catalogue, sync=True)
    a.process("click", "u", "1", 1, event_id="e1", fingerprint="", profile=None,
              dedupe=None, serve=False)
    b.process("click", "v", "2", 1, event_id="e2", fingerprint="", profile=None,
              dedupe=None, serve=False)
    raw = a.drain_sync("wa", 1)
    assert raw is not None
    b.learn_shared(decode_batch(raw))
    back = decode_batch(b.drain_sync("wb", 1) or b"")
    assert set(back.popularity) == {"2"} and back.events == 1
    assert all(i != "1" for i in back.factors["mf"][0])


def test_summed_pairs_fill_and_displace_as_learning_them_would() -> None:
    """``CoocCounts.add_weighted_pairs``: existing pairs add, new ones take empty slots
    heaviest first, then displace the weakest pair of a full row if no stronger."""
    c = CoocCounts(max_items=10, max_neighbours=3)
    for x in "abcdef":
        c.add(x)
    f32 = np.float32

    def pairs(rows: list[int], cols: list[int], w: list[float]) -> None:
        c.add_weighted_pairs(np.array(rows), np.array(cols), np.array(w, dtype=f32))

    pairs([0, 0, 0, 1], [1, 2, 3, 0], [1.0, 2.0, 3.0, 4.0])
    assert c.nb[0].tolist() == [3, 2, 1] and c.co[0].tolist() == [3.0, 2.0, 1.0]
    assert dict(c.neighbours(1)) == {0: 4.0}
    pairs([0, 0], [2, 4], [1.0, 1.5])  # 2 adds up; 4 displaces 1 (1.0 <= 1.5)
    assert dict(c.neighbours(0)) == {3: 3.0, 2: 3.0, 4: 1.5}
    pairs([0], [5], [0.5])  # weaker than every pair of the full row: not kept
    assert dict(c.neighbours(0)) == {3: 3.0, 2: 3.0, 4: 1.5}
    pairs([0], [2], [0.5])
    pairs([0, 0], [5, 1], [3.25, 4.0])  # two new ones displace the two weakest
    assert dict(c.neighbours(0)) == {1: 4.0, 5: 3.25, 2: 3.5}
