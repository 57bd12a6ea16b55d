"""Non-finite or absurd values never reach a model (property tests, Hypothesis).

Adversarial input (NaN, Infinity, 1e300, -0.0, huge or negative amounts and timestamps,
huge ids, Unicode tricks) goes through the public decode path (``streams.records``) into
the models the way the agents call them, and straight into the models where their API
allows. Afterwards every parameter of every model (walked: numpy arrays, floats in dicts,
lists and objects) is finite, every stored profile is strict JSON, and what the models
serve is finite.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from models.ads.bidding import AdCandidate, AdRequest, Bidder, Campaign
from models.ads.pctr import HASH_BITS, PctrModel, ad_features, hash_feature, user_view
from models.engine import Engine, EngineConfig
from models.marketing.segments import OnlineKMeans, Segmenter
from models.users.privacy import Pseudonymizer, pseudonymize
from models.users.profile import UserProfile
from streams.messages import AdRequestMsg
from streams.records import (
    ValidationError,
    decode_ad_request,
    decode_click,
    decode_item,
    decode_purchase,
    wire_fingerprint,
)


def to_wire(event):  # type: ignore[no-untyped-def]
    """The event's wire form as a dict (``encode()`` writes this as JSON)."""
    return event.to_dict()


ad_request_to_wire = AdRequestMsg.to_dict

KEY = b"model-safety-test-key-0123"
NOW = 1_760_000_000_000
PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# --- finiteness of everything a model holds --------------------------------------------------


def non_finite(obj: Any, path: str = "", seen: set[int] | None = None) -> Iterator[str]:
    """Paths of the non-finite numbers reachable from ``obj`` (numpy arrays, floats, and
    the dicts, lists, tuples, sets and object attributes holding them)."""
    seen = set() if seen is None else seen
    if isinstance(obj, (str, bytes, bool, int, type(None))) or callable(obj) and not hasattr(
            obj, "__dict__"):
        return
    if isinstance(obj, float):
        if not math.isfinite(obj):
            yield path
        return
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "fc" and obj.size and not np.isfinite(obj).all():
            yield f"{path}[{obj.dtype}]"
        elif obj.dtype == object:
            for i, v in enumerate(obj.ravel().tolist()):
                yield from non_finite(v, f"{path}[{i}]", seen)
        return
    if isinstance(obj, np.generic):
        if obj.dtype.kind in "fc" and not np.isfinite(obj):
            yield path
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from non_finite(k, f"{path}{{key}}", seen)
            yield from non_finite(v, f"{path}[{k!r}]", seen)
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        for i, v in enumerate(obj):
            yield from non_finite(v, f"{path}[{i}]", seen)
        return
    if type(obj).__module__.startswith(("models", "collections")):
        state = dict(getattr(obj, "__dict__", {}))
        for cls in type(obj).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if hasattr(obj, name):
                    state[name] = getattr(obj, name)
        if hasattr(obj, "items") and callable(obj.items):  # OrderedDict, deque-likes
            state["<items>"] = list(obj.items())
        for name, v in state.items():
            yield from non_finite(v, f"{path}.{name}", seen)


def assert_finite(obj: Any, what: str) -> None:
    bad = list(non_finite(obj, what))
    assert not bad, f"non-finite values in {bad[:5]}"


def test_the_finiteness_walk_finds_what_it_must() -> None:
    engine = Engine(EngineConfig(max_items=20))
    engine.process("click", "u", "i1", NOW, event_id="e", fingerprint="", profile=None,
                   dedupe=None)
    assert_finite(engine, "engine")
    engine.hybrid._weights[0, 0] = np.nan
    assert list(non_finite(engine, "engine")) == ["engine.hybrid._weights[float64]"]
    model = PctrModel()
    model._z[5] = math.inf
    assert list(non_finite(model, "m")) == ["m._z[5]"]


def strict_json(value: Any) -> bytes:
    """What a table write needs: JSON with no NaN or Infinity (orjson, Faust's codec, would
    write them as null) and no int beyond 64 bits (orjson refuses those)."""
    json.dumps(value, allow_nan=False)
    return orjson.dumps(value)


# --- adversarial raw messages ---------------------------------------------------------------


class Raw(str):
    """A JSON token written as is (NaN, Infinity, 1e999: not valid JSON numbers)."""


def encode(value: Any) -> str:
    """JSON text of ``value``, with non-finite floats as the tokens producers send."""
    if isinstance(value, Raw):
        return str(value)
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # escapes lone surrogates as \udXXX
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{encode(v)}" for k, v in value.items()) + "}"
    return "[" + ",".join(encode(v) for v in value) + "]"


WEIRD_IDS = [
    "a", "i1", " i1 ", "I1", "e\u0301", "\u00e9", "\u200b", "x\u200bx", "\u202eevil", "x\u0000",
    "\ud800", "\U0001f600", "x" * 256, "y" * 257, "", "   ", "0", "-0", "1e300", "NaN",
    "\u0661\u0662", "\ufeffbom", "\u2028", "a\tb",
]
NUMBERS = st.one_of(
    st.sampled_from([0, -0.0, 0.0, 1, -1, 0.5, 1e300, -1e300, 1e-300, 5e-324, 2**53, 2**63,
                     2**64, -(2**63), 10**30, 1e7, 1e7 + 1, 10_000, 10_001, NOW,
                     4_102_444_800_000, math.nan, math.inf, -math.inf,
                     Raw("1e999"), Raw("-1e999"), Raw("NaN"), Raw("Infinity")]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
)
IDS = st.one_of(st.sampled_from(WEIRD_IDS), st.text(max_size=12), st.integers(-5, 2**70),
                NUMBERS, st.none())
ITEM_IDS = st.one_of(st.sampled_from(["i1", "i2", "i3", "i4", "\u00e9", "e\u0301"]), IDS)
TIMESTAMPS = st.one_of(st.integers(NOW - 10**9, NOW + 10**9), NUMBERS,
                       st.sampled_from(["2025-10-09T10:00:00Z", "2025-10-09T10:00:00",
                                        "9999-12-31T23:59:59Z", "yesterday", "-1"]))


def mostly(draw: st.DrawFn, valid: st.SearchStrategy, adversarial: st.SearchStrategy) -> Any:
    """A valid value seven times in eight, else an adversarial one: enough events get
    through to exercise the models, and every field is attacked."""
    return draw(adversarial if draw(st.integers(0, 7)) == 0 else valid)


@st.composite
def behaviour_message(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["click", "purchase"]))
    fields: dict[str, Any] = {
        "event_id": mostly(draw, st.text("abcdef0123456789-", min_size=1, max_size=8), IDS),
        "user_id": mostly(draw, st.sampled_from(["u1", "u2", "u3", "\u00e9", "e\u0301"]), IDS),
        "item_id": mostly(draw, st.sampled_from(["i1", "i2", "i3", "i4", "i5", "\u00e9"]),
                          ITEM_IDS),
        "ts": mostly(draw, st.integers(NOW - 10**9, NOW + 10**9), TIMESTAMPS),
    }
    if kind == "purchase":
        fields["price"] = mostly(draw, st.floats(0.01, 1e7), NUMBERS)
        fields["quantity"] = mostly(draw, st.integers(1, 10_000), NUMBERS)
    if draw(st.booleans()):
        fields["context"] = draw(st.dictionaries(st.sampled_from(["page", "ip", "n", "\u200b"]),
                                                 NUMBERS, max_size=3))
    # a missing required field now and then
    for name in list(fields):
        if draw(st.integers(0, 60)) == 0:
            del fields[name]
    return kind, encode(fields).encode("utf-8", "surrogatepass")


@st.composite
def item_message(draw: st.DrawFn) -> tuple[bytes, bytes | None]:
    item_id = mostly(draw, st.sampled_from(["i1", "i2", "i3", "i4", "i5", "\u00e9"]), ITEM_IDS)
    key = item_id.encode("utf-8", "surrogatepass") if isinstance(item_id, str) else b"k"
    if draw(st.integers(0, 8)) == 0:
        return key, None  # a tombstone
    category = st.sampled_from(["Drama", "drama", "Sci-Fi", "\u00e9t\u00e9", "e\u0301te\u0301"])
    fields = {"item_id": item_id,
              "title": mostly(draw, st.text(max_size=30),
                              st.one_of(st.sampled_from(WEIRD_IDS), NUMBERS)),
              "categories": draw(st.lists(st.one_of(category, category, category, IDS),
                                          max_size=4)),
              "description": draw(st.one_of(st.none(), st.text(max_size=40))),
              "price": mostly(draw, st.none(), NUMBERS),
              "available": mostly(draw, st.booleans(), st.one_of(st.none(), NUMBERS))}
    return key, encode(fields).encode("utf-8", "surrogatepass")


def run_decoded(engine: Engine, segmenter: Segmenter, profiles: dict[str, dict],
                kind: str, raw: bytes) -> bool:
    """What ingest and the profile agent do with one behaviour message; True if accepted."""
    try:
        event = decode_click(raw) if kind == "click" else decode_purchase(raw)
    except ValidationError:
        return False
    wire = to_wire(event)
    user = pseudonymize(wire["user_id"], KEY)
    stored = profiles.get(user) or {}
    amount = float(wire["price"]) * int(wire["quantity"]) if kind == "purchase" else 0.0
    res = engine.process(kind, user, wire["item_id"], wire["ts"], event_id=wire["event_id"],
                         fingerprint=wire_fingerprint(wire), profile=stored.get("p"),
                         dedupe=stored.get("d"), amount=amount,
                         recommendation_id=wire.get("recommendation_id"),
                         serve_id=f"r-{wire['event_id']}")
    if res.outcome != "accepted":
        return True
    assert res.profile is not None
    prof = UserProfile.from_dict(res.profile)
    segmenter.learn_one(prof, wire["ts"])
    res.profile["sg"] = segmenter.assign(prof.segment or None, prof, wire["ts"])
    profiles[user] = {"p": res.profile, "d": res.dedupe}
    assert all(math.isfinite(s.score) for s in res.items), res.items
    return True


@PROPERTY
@given(st.lists(st.one_of(behaviour_message(), item_message()), min_size=1, max_size=25))
def test_decoded_adversarial_events_leave_every_model_finite(messages: list) -> None:
    engine = Engine(EngineConfig(max_items=8, top_k=3, exploration=0.5, seed=1))
    segmenter = Segmenter(k=2, warmup=3)
    profiles: dict[str, dict] = {}
    for message in messages:
        if isinstance(message[0], bytes):  # an item upsert or tombstone
            try:
                item_id, item = decode_item(*message)
            except ValidationError:
                continue
            if item is None:
                engine.delete_item(item_id)
            else:
                engine.upsert_item(item_id, item.title, item.categories,
                                   item.description or "", available=item.available)
        else:
            event("accepted" if run_decoded(engine, segmenter, profiles, *message)
                  else "refused")
    assert_finite(engine, "engine")
    assert_finite(segmenter, "segmenter")
    for user, stored in profiles.items():
        strict_json(stored)
        served = engine.recommend(stored["p"], 5, key="k", user=user)
        assert all(math.isfinite(s.score) for s in served.items)
        strict_json(user_view(UserProfile.from_dict(stored["p"]), NOW, 3_600_000.0))


# --- straight into the models ---------------------------------------------------------------

FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([-0.0, 1e300, -1e300, 1.7e308, 5e-324, 1e11, 1e12]))
BIG_INTS = st.one_of(st.integers(-(2**70), 2**70),
                     st.sampled_from([-1, 0, 2**53, 2**53 + 1, 2**63, 2**64, 10**30]))


@PROPERTY
@given(st.lists(st.tuples(st.sampled_from(["click", "purchase"]), st.sampled_from(WEIRD_IDS),
                          st.one_of(BIG_INTS, FLOATS), FLOATS, st.sampled_from(["u1", "u2"])),
                min_size=1, max_size=12))
def test_engine_refuses_absurd_values_or_stays_finite(calls: list) -> None:
    """Engine.process called directly: an absurd timestamp, amount or id is refused
    (ValueError or TypeError, nothing changed) or learned with everything still finite and
    the profile still strict JSON."""
    engine = Engine(EngineConfig(max_items=8, top_k=3, seed=2))
    profiles: dict[str, dict] = {}
    for n, (kind, item, ts, amount, user) in enumerate(calls):
        stored = profiles.get(user) or {}
        try:
            res = engine.process(kind, user, item, ts, event_id=str(n), fingerprint="",
                                 profile=stored.get("p"), dedupe=stored.get("d"),
                                 amount=amount)
        except (ValueError, TypeError):
            continue
        if res.outcome == "accepted":
            assert res.profile is not None
            strict_json(res.profile)
            profiles[user] = {"p": res.profile, "d": res.dedupe}
    assert_finite(engine, "engine")
    for user, stored in profiles.items():
        served = engine.recommend(stored["p"], 3, key="k", user=user)
        assert all(math.isfinite(s.score) for s in served.items)


CORRUPT_PROFILES = st.fixed_dictionaries({}, optional={
    "c": st.one_of(BIG_INTS, st.just(-5)), "p": BIG_INTS,
    "i": st.dictionaries(st.sampled_from(["Drama", "\u200b", ""]), FLOATS, max_size=3),
    "it": BIG_INTS, "m": FLOATS, "f": BIG_INTS, "l": BIG_INTS,
    "r": st.lists(st.sampled_from(WEIRD_IDS[:6]), max_size=3),
    "ms": st.dictionaries(st.sampled_from(["mf", "bmf"]),
                          st.one_of(st.text(max_size=200), NUMBERS), max_size=2),
})


@PROPERTY
@given(st.lists(CORRUPT_PROFILES, min_size=1, max_size=8), st.integers(0, 2**53))
def test_corrupt_stored_profiles_never_reach_a_model(profiles: list, now: int) -> None:
    """A stored profile is data and may be corrupt (NaN interests, infinite spend, a
    garbage factor vector): learning from it and serving it keep every model finite."""
    engine = Engine(EngineConfig(max_items=8, top_k=3, seed=3))
    segmenter = Segmenter(k=2, warmup=2)
    kmeans = OnlineKMeans(k=2, warmup=2)
    for n, stored in enumerate(profiles):
        try:
            prof = UserProfile.from_dict(stored)
        except (ValueError, TypeError, OverflowError):
            continue
        segmenter.learn_one(prof, now)
        segmenter.assign(None, prof, now)
        x = segmenter.features(prof, now)
        assert np.isfinite(x).all()
        kmeans.learn_one(x)
        try:
            engine.process("click", f"u{n}", f"i{n % 3}", NOW, event_id=str(n),
                           fingerprint="", profile=stored, dedupe=None)
        except (ValueError, TypeError, OverflowError):
            pass
        served = engine.recommend(stored, 3, key="k", user=f"u{n}")
        assert all(math.isfinite(s.score) for s in served.items)
        view = user_view(prof, now, 3_600_000.0)
        strict_json(view)
    assert_finite(engine, "engine")
    assert_finite(segmenter, "segmenter")
    assert_finite(kmeans, "kmeans")


# --- the click model ------------------------------------------------------------------------

VIEWS = st.fixed_dictionaries({}, optional={
    "i": st.lists(st.tuples(st.one_of(st.sampled_from(["Drama", "x" * 65, ""]), IDS), NUMBERS),
                  max_size=6),
    "r": NUMBERS, "f": NUMBERS, "s": IDS, "np": st.one_of(st.booleans(), NUMBERS),
})
CONTEXTS = st.one_of(st.none(), st.dictionaries(
    st.one_of(st.text(max_size=5), st.sampled_from(WEIRD_IDS)),
    st.one_of(NUMBERS, st.text(max_size=5), st.booleans()), max_size=4))


@PROPERTY
@given(st.lists(st.tuples(VIEWS, st.sampled_from(WEIRD_IDS), CONTEXTS, st.one_of(BIG_INTS, FLOATS),
                          st.one_of(st.sampled_from([0, 1, True, False]), BIG_INTS, FLOATS),
                          st.one_of(st.just(1.0), FLOATS)),
                min_size=1, max_size=20))
def test_pctr_learns_only_valid_examples_and_stays_finite(examples: list) -> None:
    model = PctrModel(prior_ctr=0.01)
    for view, ad_id, context, hour, y, weight in examples:
        x = ad_features(view, ad_id, "camp", ["Drama", ad_id], "top", hour, context)
        assert x == sorted(set(x)) and all(0 <= i < 2**HASH_BITS for i in x)
        p = model.predict_one(x)
        assert 0.0 < p < 1.0
        try:
            model.learn_one(x, y, weight)
        except ValueError:
            pass
        try:  # raw, unchecked indices straight in
            model.learn_one([0, hash_feature(ad_id), int(hour)], y)  # type: ignore[arg-type]
        except (ValueError, TypeError, OverflowError):
            pass
    assert_finite(model, "pctr")
    assert all(0.0 < p < 1.0 for p in model.predict_many([[0], [0, 1, 2], list(range(50))]))


def test_pctr_at_its_weight_limit_many_times_stays_finite() -> None:
    model = PctrModel()
    x = [0, 1, 2]
    for n in range(2_000):
        model.learn_one(x, n % 2, 1e6)
    assert_finite(model, "pctr")
    assert 0.0 < model.predict_one(x) < 1.0


@PROPERTY
@given(st.lists(st.tuples(st.text(max_size=6), NUMBERS, NUMBERS,
                          st.lists(st.tuples(st.sampled_from(["a1", "a2", "\u00e9"]),
                                             st.sampled_from(["c1", "nope"]), NUMBERS, NUMBERS),
                                   min_size=1, max_size=3), VIEWS),
                min_size=1, max_size=10))
def test_decoded_ad_requests_and_events_keep_the_bidder_finite(requests: list) -> None:
    """Ad requests through decode_ad_request, then an impression and a click for every bid
    and the windows closed: the pCTR model learns only from what passed validation."""
    bidder = Bidder({"c1": Campaign("c1", max_bid=5.0, daily_budget=1e6)},
                    pctr=PctrModel(prior_ctr=0.05), window_ms=60_000,
                    impression_window_ms=60_000)
    ts = NOW
    for n, (slot, floor, ts_raw, cands, view) in enumerate(requests):
        raw = encode({"request_id": f"r{n}", "user_id": "u", "ts": ts_raw if n % 2 else ts,
                      "slot": slot or "top", "floor_price": floor,
                      "candidates": [{"ad_id": a, "campaign_id": c, "value_per_click": v,
                                      "categories": ["Drama"], "value_per_conversion": w}
                                     for a, c, v, w in cands]})
        try:
            msg = decode_ad_request(raw.encode("utf-8", "surrogatepass"))
        except ValidationError:
            continue
        w = ad_request_to_wire(msg)
        try:
            req = AdRequest(w["request_id"], w["user_id"], int(w["ts"]), w["slot"],
                            float(w.get("floor_price", 0.0)),
                            tuple(AdCandidate(c["ad_id"], c["campaign_id"],
                                              float(c["value_per_click"]),
                                              tuple(c.get("categories", ())),
                                              c.get("value_per_conversion"))
                                  for c in w["candidates"]),
                            context=w.get("context"), view=view)
            decision, _ = bidder.decide(req)
        except ValueError:  # beyond the bidder's limits (a ts a day ahead of its clock)
            continue
        if decision.ad_id is not None:
            assert decision.bid is not None and math.isfinite(decision.bid)
            assert decision.pctr is not None and 0.0 < decision.pctr < 1.0
            for kind in ("impression", "click"):
                bidder.on_event(f"{kind}-{n}", f"r{n}", decision.ad_id, kind, req.ts_ms + 1)
        bidder.advance(req.ts_ms + 120_000)
    assert_finite(bidder, "bidder")


# --- bounds on what refuses ----------------------------------------------------------------


@pytest.mark.parametrize("amount", [math.nan, math.inf, -math.inf, -1.0, 1e300, 1.7e308])
def test_engine_refuses_non_finite_and_absurd_amounts(amount: float) -> None:
    engine = Engine(EngineConfig(max_items=8, top_k=3))
    with pytest.raises(ValueError):
        engine.process("purchase", "u", "i", NOW, event_id="e", fingerprint="", profile=None,
                       dedupe=None, amount=amount)
    assert engine.updates == 0 and len(engine.popularity) == 0


@pytest.mark.parametrize("ts", [-1, 2**53 + 1, 2**64, 10**30])
def test_engine_refuses_absurd_timestamps(ts: int) -> None:
    engine = Engine(EngineConfig(max_items=8, top_k=3))
    with pytest.raises(ValueError):
        engine.process("click", "u", "i", ts, event_id="e", fingerprint="", profile=None,
                       dedupe=None)
    assert engine.updates == 0 and len(engine.popularity) == 0


# --- bounded state under a flood of never-seen ids --------------------------------------------


def test_a_flood_of_never_seen_users_and_items_stays_within_every_bound() -> None:
    """Every per-user and per-item structure held in process memory has a bound, and a
    flood of new user ids (with new item ids among them) fills it and stops there: after
    the bounds are full, traced memory no longer grows (bench/memory_flood.py measures the
    same on RSS over a million ids)."""
    import tracemalloc

    from models.recommenders.cooccurrence import ItemCooccurrence
    from models.recommenders.mf import ImplicitMF
    from models.recommenders.popularity import SegmentPopularity
    from models.users.ratelimit import UserRateLimiter

    max_items = 200
    engine = Engine(EngineConfig(max_items=max_items, top_k=5, seed=4))
    engine.hybrid.max_pending = 300
    for i in range(50):
        engine.upsert_item(f"c{i}", f"item {i}", ["Drama" if i % 2 else "Comedy"])
    pseudonymize = Pseudonymizer(KEY, cache_size=500)
    limiter = UserRateLimiter(10.0, 100, max_users=400)
    segmenter = Segmenter(k=3, warmup=10)

    def flood(start: int, n: int) -> None:
        for k in range(start, start + n):
            item = f"new{k}" if k % 3 == 0 else f"c{k % 50}"
            user = pseudonymize(f"flood-user-{k}")
            limiter.allow(user, NOW + k)
            res = engine.process("click", user, item, NOW + k, event_id=f"e{k}",
                                 fingerprint="", profile=None, dedupe=None, serve_id=f"r{k}")
            assert res.profile is not None
            prof = UserProfile.from_dict(res.profile)
            segmenter.learn_one(prof, NOW + k)
            segmenter.assign(None, prof, NOW + k)

    def sizes() -> dict[str, int]:
        pop = engine.popularity
        assert isinstance(pop, SegmentPopularity)
        cooc = engine.hybrid.components["cooccurrence"]
        mf = engine.hybrid.components["mf"]
        assert isinstance(cooc, ItemCooccurrence) and isinstance(mf, ImplicitMF)
        return {
            "pseudonym cache": pseudonymize.cache_info().currsize,
            "rate limiter": len(limiter),
            "hybrid pending": len(engine.hybrid._pending),
            "popularity": len(pop),
            "segment popularity": max((len(p) for p in pop._segments.values()), default=0),
            "trending": len(engine.hybrid.components["trending"]),  # type: ignore[arg-type]
            "cooccurrence": len(cooc),
            "cooccurrence arrays": cooc.nbytes,
            "mf": len(mf),
            "mf arrays": mf.nbytes,
            "content pending": len(engine.content._pending),
            "explored": len(engine._explored),
            "catalogue": len(engine.catalogue),
        }

    flood(0, 2_000)  # fills every bound
    full = sizes()
    tracemalloc.start()
    flood(2_000, 800)
    before, _ = tracemalloc.get_traced_memory()
    flood(2_800, 1_600)
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    now = sizes()
    bounds = {"pseudonym cache": 500, "rate limiter": 400, "hybrid pending": 300,
              "popularity": max_items, "segment popularity": 10_000, "trending": max_items,
              "cooccurrence": max_items, "mf": max_items, "content pending": max_items,
              "explored": max_items, "catalogue": max_items}
    for name, bound in bounds.items():
        assert now[name] <= bound, (name, now[name], bound)
    for name in ("pseudonym cache", "rate limiter", "hybrid pending", "content pending"):
        assert now[name] == bounds[name], (name, now[name])  # full: the flood reached it
    # numpy state was allocated for max_items rows once and never grew
    assert now["cooccurrence arrays"] == full["cooccurrence arrays"]
    assert now["mf arrays"] == full["mf arrays"]
    print(f"flood of 4,400 new users (a third with new items): traced memory "
          f"{before / 2**20:.2f} MB -> {after / 2**20:.2f} MB over the last 1,600")
    assert after < 1.10 * before + 256 * 1024, (before, after)
