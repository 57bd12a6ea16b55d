"""The bidder's durable state: request records, campaign spend and reservations in exact
integer micros, the event-time clock and the kill switch, as JSON table records.

Every mutating call returns the writes ``[(key, value_or_None)]`` the caller applies to
its table, in order (None deletes); ``Ledger.load`` rebuilds everything else
(reservations, pacing inputs, event-id index, expiry queues) from those records:

- ``"r:<request_id>"``: one request: ``ts``, window end ``end``, the decision (``ad``,
  ``c`` campaign, ``bid`` micros, ``p`` pCTR, ``q`` pCVR or None, ``why`` no-bid reason),
  the served features ``x`` (bids only, and not for opted-out users), ``paid`` micros
  charged so far, ``ev`` the applied event types with their event ids, ``open``, and
  ``u``, the pseudonymous user id, only while ``x`` holds features of the user's
  profile (so ``forget_user`` can find them; absent otherwise: no user id is stored
  for unknown or opted-out users). Erasure (``forget_user``) drops ``x`` and ``u`` and
  keeps the money fields: spend and reservations stay exact.
- ``"$spend:<campaign_id>"``: ``total`` micros, ``days`` {UTC day index: micros} for
  today and yesterday, ``last`` = [request_id, type, event_id] of its latest charge.
- ``"$clock"``: ``{"now": ms}``, the event-time clock.
- ``"$kill"``: ``{"on": bool, "ts": ms}``.

Reservations are not stored anywhere: a reservation *is* an open request record's
``bid - paid``, so the decision and its reservation are one write and cannot part; the
budget invariant ``spend + reserved <= budget`` then holds with no rounding slack.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from models.ads.campaigns import CampaignLimits
from models.ads.pctr import HASH_BITS
from models.ads.requests import EVENT_TYPES, Decision
from models.ads.units import DAY_MS, MAX_TS_MS, MICROS
from models.checks import check_probability, check_ts

Write = tuple[str, dict[str, Any] | None]


class RequestRecord:
    """One request record (the JSON form is ``to_json``)."""

    __slots__ = ("rid", "ts", "end", "ad", "cid", "bid", "p", "q", "why", "x", "paid", "ev",
                 "open", "u")

    def __init__(self, rid: str, ts: int, end: int, ad: str | None, cid: str | None, bid: int,
                 p: float | None, q: float | None, why: str | None,
                 x: tuple[int, ...] | None, paid: int, ev: dict[str, str], open_: bool,
                 u: str | None = None) -> None:
        self.rid = rid
        self.ts = ts
        self.end = end
        self.ad = ad
        self.cid = cid
        self.bid = bid
        self.p = p
        self.q = q
        self.why = why
        self.x = x
        self.paid = paid
        self.ev = ev
        self.open = open_
        self.u = u  # the user whose features x holds (None once forgotten, or no x)

    @classmethod
    def no_bid(cls, rid: str, ts: int, end: int, why: str) -> RequestRecord:
        """A request answered without a bid: closed from the start, it reserves nothing."""
        return cls(rid, ts, end, None, None, 0, None, None, why, None, 0, {}, False)

    def to_json(self) -> dict[str, Any]:
        d = {
            "ts": self.ts, "end": self.end, "ad": self.ad, "c": self.cid, "bid": self.bid,
            "p": self.p, "q": self.q, "why": self.why,
            "x": None if self.x is None else list(self.x), "paid": self.paid,
            "ev": dict(self.ev), "open": self.open,
        }
        if self.u is not None:
            d["u"] = self.u
        return d

    def write(self) -> Write:
        """The table write of this record as it is now."""
        return ("r:" + self.rid, self.to_json())

    @classmethod
    def from_json(cls, rid: str, v: Mapping[str, Any]) -> RequestRecord:
        x = v["x"]
        ev = v["ev"]
        if not isinstance(ev, Mapping) or not all(
            t in EVENT_TYPES and isinstance(e, str) for t, e in ev.items()
        ):
            raise ValueError(f"bad ev {ev!r}")
        for name in ("ad", "c", "why"):
            if v[name] is not None and not isinstance(v[name], str):
                raise ValueError(f"{name} must be a string or null, got {v[name]!r}")
        for name in ("p", "q"):
            if v[name] is not None:
                check_probability(name, v[name])
        # Stored features are learned on later: a bad index must fail here, not halfway
        # through a charge or a window close.
        if x is not None and not all(
            type(i) is int and 0 <= i < 1 << HASH_BITS for i in x
        ):
            raise ValueError("x must be feature indices")
        u = v.get("u")
        if u is not None and not isinstance(u, str):
            raise ValueError(f"u must be a string or absent, got {u!r}")
        return cls(
            rid, check_ts("ts", v["ts"], MAX_TS_MS), int(v["end"]), v["ad"], v["c"],
            int(v["bid"]), None if v["p"] is None else float(v["p"]),
            None if v["q"] is None else float(v["q"]), v["why"],
            None if x is None else tuple(int(i) for i in x), int(v["paid"]), dict(ev),
            bool(v["open"]), u,
        )

    def decision(self, user: str, replay: bool) -> Decision:
        bid = self.bid / MICROS if self.ad is not None else None
        return Decision(self.rid, user, self.ts, self.ad, self.cid, bid, self.p, self.why, replay)


class SpendRecord:
    """One campaign's spend record: total, per UTC day, and its latest charge.

    ``loaded_last`` is ``last`` as read from the table, until the campaign's next charge:
    only that one can be the replay of a call a crash cut after its spend write. A
    charge made in this process is never taken for a replay, even when a request id and
    an event id come back after their record was dropped.
    """

    __slots__ = ("total", "days", "last", "loaded_last")

    def __init__(self) -> None:
        self.total = 0
        self.days: dict[int, int] = {}
        self.last: list[str] | None = None
        self.loaded_last: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "days": {str(d): m for d, m in self.days.items()},
                "last": None if self.last is None else list(self.last)}

    @classmethod
    def from_json(cls, v: Mapping[str, Any]) -> SpendRecord:
        s = cls()
        s.total = int(v["total"])
        s.days = {int(d): int(m) for d, m in v["days"].items()}
        last = v["last"]
        s.last = None if last is None else [str(x) for x in last]
        s.loaded_last = s.last
        return s


class Ledger:
    """Request records, spend and reservations (micros), clock and kill switch.

    Records are kept ``retention_ms`` after their window (to recognise duplicates and
    late events), at most ``max_records`` of them (closed ones, oldest first, make room).

    >>> led = Ledger(retention_ms=0, max_records=10)
    >>> rec = RequestRecord("r1", 1_000, 5_000, "a1", "c1", 500_000, 0.1, None, None,
    ...                     None, 0, {}, True)
    >>> led.store(rec)[0], led.reserved("c1")
    ('r:r1', 500000)
    >>> charge, writes = led.apply_event(rec, "impression", "e1", 300_000, 60_000)
    >>> charge, [k for k, _ in writes], led.spent("c1"), led.reserved("c1")
    (300000, ['$spend:c1'], 300000, 200000)
    """

    def __init__(self, retention_ms: int, max_records: int) -> None:
        self.retention_ms = retention_ms
        self.max_records = max_records
        self.reset()

    def reset(self) -> None:
        """Forget everything (before a load)."""
        self.now = 0  # the event-time clock
        self.kill = False
        self.kill_ts = 0
        self._req: dict[str, RequestRecord] = {}
        self._open_q: list[tuple[int, str]] = []  # (window end, request id), lazy
        self._closed_q: list[tuple[int, str]] = []  # (retention end, request id), lazy
        self._n_open = 0
        self._events: dict[str, str] = {}  # event id -> request id, applied events only
        self._by_user: dict[str, set[str]] = {}  # user -> ids of their records holding x
        self._spend: dict[str, SpendRecord] = {}
        self._reserved: dict[str, int] = {}
        self._reserved_day: dict[tuple[str, int], int] = {}

    # -- reads ------------------------------------------------------------------------

    @property
    def n_records(self) -> int:
        return len(self._req)

    @property
    def n_open(self) -> int:
        return self._n_open

    @property
    def full(self) -> bool:
        """No room for another request record."""
        return len(self._req) >= self.max_records

    def record(self, rid: str) -> RequestRecord | None:
        return self._req.get(rid)

    def spent(self, cid: str, day: int | None = None) -> int:
        """Micros charged in total, or on UTC day index ``day``."""
        s = self._spend.get(cid)
        if s is None:
            return 0
        return s.total if day is None else s.days.get(day, 0)

    def reserved(self, cid: str, day: int | None = None) -> int:
        """Micros held by open bids in total, or by those of requests on UTC ``day``."""
        if day is None:
            return self._reserved.get(cid, 0)
        return self._reserved_day.get((cid, day), 0)

    def remaining(self, k: CampaignLimits, day: int) -> tuple[int | None, int]:
        """Micros left under the tighter budget after spend and reservations (None: no
        cap), and micros charged on UTC ``day`` if the campaign has a daily budget (what
        pacing reads; else 0)."""
        cid = k.campaign_id
        s = self._spend.get(cid)  # spent() inlined: this runs for every candidate
        left: int | None = None
        spent = 0
        if k.daily_m is not None:
            spent = 0 if s is None else s.days.get(day, 0)
            left = k.daily_m - spent - self._reserved_day.get((cid, day), 0)
        if k.total_m is not None:
            rest = k.total_m - (0 if s is None else s.total) - self._reserved.get(cid, 0)
            left = rest if left is None or rest < left else left
        return left, spent

    # -- requests ---------------------------------------------------------------------

    def make_room(self) -> list[Write]:
        """Drop closed records, earliest retention end first, until one more fits."""
        writes: list[Write] = []
        q = self._closed_q
        while q and len(self._req) >= self.max_records:
            expire, rid = heapq.heappop(q)
            if self._is_closed_entry(rid, expire):
                writes.append(self._drop(rid))
        return writes

    def store(self, rec: RequestRecord) -> Write:
        """Keep a new request record; an open one (a bid) reserves its amount."""
        if rec.open:
            assert rec.cid is not None
            self._hold(rec.cid, rec.ts // DAY_MS, rec.bid)
            heapq.heappush(self._open_q, (rec.end, rec.rid))
            self._n_open += 1
        self._req[rec.rid] = rec
        self._index_user(rec)
        if not rec.open:
            heapq.heappush(self._closed_q, (rec.end + self.retention_ms, rec.rid))
        return rec.write()

    def forget_user(self, user: str) -> list[Write]:
        """Drop the features and user id of ``user``'s records (rewritten, in id order)."""
        writes: list[Write] = []
        for rid in sorted(self._by_user.pop(user, ())):
            rec = self._req.get(rid)
            if rec is None or rec.u != user:
                continue
            rec.x, rec.u = None, None
            writes.append(rec.write())
        return writes

    # -- events -----------------------------------------------------------------------

    def refusal(self, event_id: str, rec: RequestRecord | None, ad_id: str, type: str,
                ts: int) -> str | None:
        """Why an event is not applied (an outcome of ``EVENT_OUTCOMES``), None if it is."""
        if event_id in self._events:
            return "duplicate"
        if rec is None:
            return "unknown_request"
        if rec.ad is None or rec.ad != ad_id:
            return "wrong_ad"
        if type in rec.ev:
            return "duplicate"
        if not rec.open or ts >= rec.end:
            return "late"
        return None

    def apply_event(self, rec: RequestRecord, type: str, event_id: str, cost_m: int,
                    window_ms: int) -> tuple[int, list[Write]]:
        """Charge an accepted event (its cost, at most what is left of the bid) and note
        it; an impression opens the attribution window of ``window_ms``. Returns the
        charge and the spend write (the caller writes the request record after it)."""
        assert rec.cid is not None
        writes: list[Write] = []
        charge = min(cost_m, rec.bid - rec.paid)
        if charge > 0:
            s = self._spend.get(rec.cid)
            if s is None:
                s = self._spend[rec.cid] = SpendRecord()
            mark = [rec.rid, type, event_id]
            replayed, s.loaded_last = s.loaded_last == mark, None
            if not replayed:  # else: charged before a crash cut this call's writes
                day = rec.ts // DAY_MS
                s.total += charge
                s.days[day] = s.days.get(day, 0) + charge
                s.last = mark
                writes.append(("$spend:" + rec.cid, s.to_json()))
            rec.paid += charge
            self._hold(rec.cid, rec.ts // DAY_MS, -charge)
        rec.ev[type] = event_id
        self._events[event_id] = rec.rid
        if type == "impression" and rec.ts + window_ms > rec.end:
            # Shown: the attribution window (clicks, conversions, their costs) opens.
            rec.end = rec.ts + window_ms
            heapq.heappush(self._open_q, (rec.end, rec.rid))
        return charge, writes

    # -- time -------------------------------------------------------------------------

    def close_due(self, t: int) -> Iterator[RequestRecord]:
        """Close each open record whose window ends by ``t`` (its unspent bid released),
        yielding it once closed: the caller learns from it and writes it."""
        q = self._open_q
        while q and q[0][0] <= t:
            end, rid = heapq.heappop(q)
            rec = self._req.get(rid)
            if rec is None or not rec.open or rec.end != end:
                continue  # a stale entry: the window was extended or the record dropped
            rec.open = False
            self._n_open -= 1
            assert rec.cid is not None
            self._hold(rec.cid, rec.ts // DAY_MS, rec.paid - rec.bid)
            heapq.heappush(self._closed_q, (rec.end + self.retention_ms, rec.rid))
            yield rec

    def tick(self, t: int) -> list[Write]:
        """After the closes: forget records past retention, drop spend days older than
        yesterday on a new day, and move the clock to ``t`` (its write comes last)."""
        writes: list[Write] = []
        q = self._closed_q
        while q and q[0][0] <= t:
            expire, rid = heapq.heappop(q)
            if self._is_closed_entry(rid, expire):
                writes.append(self._drop(rid))
        today = t // DAY_MS
        if today != self.now // DAY_MS:
            writes += self._trim_days(today)
        self.now = t
        writes.append(("$clock", {"now": t}))
        return writes

    def _trim_days(self, today: int) -> list[Write]:
        writes: list[Write] = []
        for cid, s in self._spend.items():
            old = [d for d in s.days if d < today - 1]
            if old:
                for d in old:
                    del s.days[d]
                writes.append(("$spend:" + cid, s.to_json()))
        for key in [k for k in self._reserved_day if k[1] < today - 1]:
            if self._reserved_day[key] == 0:
                del self._reserved_day[key]
        return writes

    def set_kill(self, on: bool, ts: int) -> list[Write]:
        """Turn the kill switch on or off, unless a later command is in force."""
        if ts < self.kill_ts:
            return []
        self.kill, self.kill_ts = on, ts
        return [("$kill", {"on": on, "ts": ts})]

    # -- recovery ---------------------------------------------------------------------

    def load(self, records: Iterable[tuple[str, Mapping[str, Any] | None]]) -> None:
        """Add the table's records (after ``reset``); other keys are ignored. A malformed
        record raises ValueError naming its key, and leaves the ledger half-loaded."""
        for key, v in records:
            if v is None:
                continue
            try:
                self._load_record(key, v)
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"record {key!r}: {exc!r}") from exc
        self._rebuild()

    def _load_record(self, key: str, v: Mapping[str, Any]) -> None:
        if key == "$kill":
            self.kill, self.kill_ts = bool(v["on"]), check_ts("ts", v["ts"], MAX_TS_MS)
        elif key == "$clock":
            self.now = check_ts("now", v["now"], MAX_TS_MS)
        elif key.startswith("$spend:"):
            self._spend[key[len("$spend:"):]] = SpendRecord.from_json(v)
        elif key.startswith("r:"):
            rec = RequestRecord.from_json(key[2:], v)
            self._req[rec.rid] = rec
            self._index_user(rec)

    def _rebuild(self) -> None:
        """The derived state: event index, reservations and queues, from the records."""
        for rid, rec in self._req.items():
            for eid in rec.ev.values():
                self._events[eid] = rid
            if rec.open:
                if rec.cid is None:
                    raise ValueError(f"record 'r:{rid}': open without a campaign")
                self._hold(rec.cid, rec.ts // DAY_MS, rec.bid - rec.paid)
                self._open_q.append((rec.end, rid))
                self._n_open += 1
            else:
                self._closed_q.append((rec.end + self.retention_ms, rid))
        heapq.heapify(self._open_q)
        heapq.heapify(self._closed_q)

    # -- internals --------------------------------------------------------------------

    def _hold(self, cid: str, day: int, delta: int) -> None:
        """Change what campaign ``cid`` has reserved (in total and on UTC ``day``)."""
        self._reserved[cid] = self._reserved.get(cid, 0) + delta
        key = (cid, day)
        self._reserved_day[key] = self._reserved_day.get(key, 0) + delta

    def _is_closed_entry(self, rid: str, expire: int) -> bool:
        rec = self._req.get(rid)
        return rec is not None and not rec.open and rec.end + self.retention_ms == expire

    def _drop(self, rid: str) -> Write:
        rec = self._req.pop(rid)
        self._unindex_user(rec)
        for eid in rec.ev.values():
            if self._events.get(eid) == rid:
                del self._events[eid]
        return ("r:" + rid, None)

    def _index_user(self, rec: RequestRecord) -> None:
        if rec.u is not None:
            self._by_user.setdefault(rec.u, set()).add(rec.rid)

    def _unindex_user(self, rec: RequestRecord) -> None:
        if rec.u is not None:
            rids = self._by_user.get(rec.u)
            if rids is not None:
                rids.discard(rec.rid)
                if not rids:
                    del self._by_user[rec.u]
