"""Erasure and retention, pure: the bidder forgets a user's stored ad features but keeps the
money exact; no checkpoint holds anything keyed by user; the rate-limit and retention
profile helpers."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from models.ads.bidding import AdCandidate, AdRequest, Bidder, Campaign
from models.ads.pctr import PctrModel
from models.engine import Engine, EngineConfig
from models.marketing.segments import Segmenter
from models.users.profile import (
    UserProfile,
    apply_click,
    apply_counted,
    is_expired,
    opted_out_profile,
)
from streams.checkpoint import AdModels, Checkpointer, Pickled

T0 = 1_760_000_000_000
VIEW = {"i": [["fiction", 1.0]], "r": 1, "f": 2, "s": "s1"}  # a known user's ad view


class Table:
    """The ads table: writes applied in order, values through JSON like a changelog."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def apply(self, writes) -> None:  # type: ignore[no-untyped-def]
        for key, value in writes:
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = json.dumps(value)

    def items(self) -> list[tuple[str, dict]]:
        return [(k, json.loads(v)) for k, v in self.data.items()]


def bidder() -> Bidder:
    return Bidder({"c1": Campaign("c1", max_bid=1.0, daily_budget=100.0)},
                  pctr=PctrModel(prior_ctr=0.01), window_ms=600_000, retention_ms=60_000,
                  pacing=False)


def request(rid: str, user: str, view: dict, ts: int = T0) -> AdRequest:
    return AdRequest(rid, user, ts, "top", 0.0, [AdCandidate("a1", "c1", 20.0)], view=view)


def money(b: Bidder) -> tuple[float, float]:
    return b.spend("c1"), b.reserved("c1")


def test_forget_user_drops_features_and_user_id_but_keeps_the_money_exact() -> None:
    b, table = bidder(), Table()
    for rid, user in (("r1", "ugone"), ("r2", "ugone"), ("r3", "ustay")):
        d, writes = b.decide(request(rid, user, VIEW))
        assert d.ad_id == "a1"
        table.apply(writes)
    for eid, rid in (("e1", "r1"), ("e3", "r3"), ("e4", "r2")):
        out, writes = b.on_event(eid, rid, "a1", "impression", T0 + 1_000, cost=0.05)
        table.apply(writes)
    assert "ugone" in table.data["r:r1"] and table.items()[0][1]["x"]
    before = money(b)

    writes = b.forget_user("ugone")
    table.apply(writes)
    assert [k for k, _ in writes] == ["r:r1", "r:r2"]
    for key in ("r:r1", "r:r2"):
        rec = json.loads(table.data[key])
        assert rec["x"] is None and "u" not in rec
        assert rec["bid"] > 0 and rec["ad"] == "a1"  # the decision and its money stay
    assert "ugone" not in json.dumps(table.data)
    assert json.loads(table.data["r:r3"])["u"] == "ustay"  # other users untouched
    assert money(b) == before and b.forget_user("ugone") == []  # idempotent

    # the erased user's request still charges exactly, and teaches the model nothing
    learned = b.pctr.n_updates  # type: ignore[attr-defined]
    out, writes = b.on_event("e2", "r1", "a1", "click", T0 + 2_000, cost=0.05)
    table.apply(writes)
    assert out.outcome == "applied" and out.spend == pytest.approx(0.05) and out.labels == ()
    assert b.spend("c1") == pytest.approx(before[0] + 0.05)
    labels, writes = b.advance(T0 + 3_600_000)  # every window closes
    table.apply(writes)
    # the other user's shown, unclicked ad is a negative; the erased user's teach nothing
    assert [(lb.request_id, lb.y) for lb in labels] == [("r3", 0)]
    assert b.pctr.n_updates == learned + 1  # type: ignore[attr-defined]
    assert b.reserved("c1") == 0.0


def test_forget_user_finds_the_records_after_a_restart() -> None:
    b, table = bidder(), Table()
    for rid in ("r1", "r2"):
        table.apply(b.decide(request(rid, "ugone", VIEW))[1])
    restarted = bidder()
    restarted.load(table.items())  # the index is rebuilt from the stored records
    before = money(restarted)
    table.apply(restarted.forget_user("ugone"))
    assert "ugone" not in json.dumps(table.data)
    assert money(restarted) == before
    again = bidder()
    again.load(table.items())
    assert money(again) == before and again.forget_user("ugone") == []


def test_only_profile_features_are_stored_with_a_user_id() -> None:
    b = bidder()
    _, writes = b.decide(request("known", "uk", VIEW))
    assert writes[-1][1]["u"] == "uk" and writes[-1][1]["x"]
    _, writes = b.decide(request("unknown", "un", {}))  # no profile: contextual features
    assert "u" not in writes[-1][1] and writes[-1][1]["x"]
    _, writes = b.decide(request("optout", "uo", {"np": True}))  # opted out: nothing kept
    assert "u" not in writes[-1][1] and writes[-1][1]["x"] is None
    assert b.forget_user("un") == [] and b.forget_user("uo") == []
    # old records; an expired record leaves the index with it
    b.advance(T0 + 3_600_000)
    assert b.n_records == 0 and b.forget_user("uk") == []


def test_a_checkpoint_holds_no_pseudonym_after_learning_from_the_user(tmp_path: Path) -> None:
    user = "u3c0ffee3c0ffee3c0ffee3c0ffee3c0f"  # a pseudonym, as ingest makes them
    engine = Engine(EngineConfig(top_k=3, exploration=0.0))
    engine.upsert_item("i1", "Dune", ["fiction"], "a desert planet")
    for n, item in enumerate(["i5", "i6", "i7", "i8"]):  # someone else, first
        engine.process("click", "uother", item, T0, event_id=f"o{n}", fingerprint="",
                       profile=None, dedupe=None)
    profile: dict | None = None
    dedupe = None
    for n, item in enumerate(["i1", "i2", "i3", "i1", "i4"]):
        r = engine.process("click", user, item, T0 + n, event_id=f"e{n}", fingerprint="",
                           profile=profile, dedupe=dedupe,
                           serve_id=f"r{n}")
        profile, dedupe = r.profile, r.dedupe
    # the user is in the hybrid's memory (the last list served), a user-keyed structure
    assert user in engine.hybrid._pending
    assert user.encode() in pickle.dumps(engine.hybrid._pending)  # the scan can see one
    holder = type("Holder", (), {})()
    holder.model = Segmenter(k=2)
    prof = UserProfile.from_dict(profile or {})
    for n in range(30):
        holder.model.learn_one(prof, T0 + n)
    holder.model.assign(None, prof, T0)
    b = bidder()
    b.decide(request("q1", user, VIEW))
    b.on_event("x1", "q1", "a1", "impression", T0 + 1)
    b.on_event("x2", "q1", "a1", "click", T0 + 2)  # pCTR learns from the user's features
    assert b.pctr.n_updates == 1  # type: ignore[attr-defined]

    cp = Checkpointer(tmp_path, secret=b"erase-test-secret-0123456789")
    _, path, _ = cp.save(engine, {"ads": AdModels(b),
                                  "segments": Pickled(holder, Segmenter)})
    blob = path.read_bytes()
    assert len(blob) > 1000
    for form in (user.encode(), user.upper().encode(), user[1:].encode(),
                 bytes.fromhex(user[1:])):
        assert form not in blob


def test_apply_counted_counts_and_learns_nothing() -> None:
    p = apply_click(UserProfile(), "i1", 1_000, ["a"], half_life_ms=3_600_000)
    q = apply_counted(p, "click", 500)  # late: last_seen never goes back
    assert (q.clicks, q.first_seen_ms, q.last_seen_ms) == (2, 500, 1_000)
    assert (q.recent_items, q.seen, q.interests) == (p.recent_items, p.seen, p.interests)
    assert p.clicks == 1  # not modified
    q = apply_counted(q, "purchase", 2_000, 3.5)
    assert (q.purchases, q.spend, q.purchased, q.last_seen_ms) == (1, 3.5, [], 2_000)
    for bad in (("view", 1, 0.0), ("click", -1, 0.0), ("purchase", 1, float("nan")),
                ("purchase", 1, -2.0)):
        with pytest.raises(ValueError):
            apply_counted(p, *bad)  # type: ignore[arg-type]


def test_retention_selection() -> None:
    day = 86_400_000
    active = apply_click(UserProfile(), "i", 10 * day, half_life_ms=day).to_dict()
    cutoff = 20 * day
    # the write time decides when known; the event time only when it is not
    assert is_expired(active, 19 * day, cutoff) and not is_expired(active, 21 * day, cutoff)
    assert is_expired(active, None, cutoff) and not is_expired(active, None, 5 * day)
    # a replay of old events written now is fresh activity
    assert not is_expired(active, cutoff, cutoff)
    # opt-out flags are kept however old; so is a record with no known activity
    assert not is_expired(opted_out_profile().to_dict(), 0, cutoff)
    assert not is_expired({"v": 1}, None, cutoff)
    assert not is_expired(None, 0, cutoff)
