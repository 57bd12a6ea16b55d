"""Events per second of the worker's in-process pipeline, learn path and full path.

One process, no broker, no Faust: each event goes the way the worker takes it, as the
message bytes through ``streams.records`` (decode, validate, ``to_wire``,
``wire_fingerprint``), the ingest checks that are pure (``UserRateLimiter``, the keyed
``Pseudonymizer``), then what the profile agent does (``streams.agents.profile``
``handle_event``): read the user's record from the table (a dict, as Faust's memory://
store holds it), ``Engine.process``, the segmenter (``update_groups``: learn, assign),
the drift monitor, then the record written back (``tables.make_record``) and encoded
for the changelog (JSON, as the table's value serializer does). The segmenter step is
done the cheaper way ``models`` offers where it exists (``Segmenter.learn_assign``, and
the parsed profile from ``Result.user_profile`` instead of a second ``from_dict``):
``update_groups`` should do the same. Prometheus counters and Faust are not included.

- learn path: ``Engine.process(..., serve=False)``: dedupe, profile, every model learns.
- full path: ``serve=True`` (the next top-10 over the catalogue, default engine settings
  from ``Settings.from_env().engine_config()``), plus one ad request per event bid over
  5 ads of 5 campaigns (``models.ads.pctr.user_view`` of the new profile, ``Bidder.decide``,
  the 1 s clock tick).

Workload: a warm service (a catalogue of ``--catalogue`` items with categories and text,
``--warmup`` events learned first), then ``--events`` timed events from ``--users`` users
with Zipf-like activity (returning users with a history, plus 5% never seen before),
Zipf item popularity (half of the picks within the user's favourite category, 1% new
items not in the catalogue) and 5% purchases. Message bytes are made before the clock
starts. The per-stage breakdown comes from a second, instrumented pass (timers around
each stage, each model's ``learn_one``, the profile codec), so it costs the main figures
nothing. Targets (issue 7): learn >= 70,000 events/s, full >= 10,000 events/s.

Run from the repository root: ``python -m bench.pipeline [--path learn|full|both]``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import math
import os
import platform
import pstats
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from models.ads.bidding import DAY_MS, AdCandidate, AdRequest, Bidder, Campaign
from models.ads.pctr import PctrModel, ad_features, user_view
from models.drift import monitor_for
from models.engine import Engine
from models.marketing.segments import Segmenter
from models.users.privacy import Pseudonymizer
from models.users.profile import UserProfile
from models.users.ratelimit import UserRateLimiter
from streams.messages import Click, Purchase
from streams.records import decode_click, decode_purchase, wire_fingerprint
from streams.settings import Settings


def to_wire(event: Click | Purchase) -> dict:
    """The event as a dict, its wire form (the agents send ``event.encode()``)."""
    return event.to_dict()


TARGETS = {"learn": 70_000.0, "full": 10_000.0}  # events/s, issue 7
CATEGORIES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller",
              "Documentary", "Animation", "Crime", "Fantasy", "War", "Western", "Musical",
              "Mystery", "Family", "Sport", "History", "Music", "Biography"]
WORDS = ("quiet storm river night city light dark heart road summer winter journey "
         "secret house war love family game king queen star ghost machine island "
         "mountain ocean fire ice dream shadow story last first little great").split()
BASE_TS = 1_760_000_000_000 - 1_760_000_000_000 % DAY_MS + 8 * 3_600_000  # 08:00 UTC
GAP_MS = 2  # event time between events: 500 events/s of event time
NEW_USER_SHARE = 0.05
NEW_ITEM_SHARE = 0.01
PURCHASE_SHARE = 0.05
TASTE_SHARE = 0.5  # picks within the user's favourite category
N_ADS = 5
console = Console()


# -- workload ---------------------------------------------------------------------------------


def zipf_weights(n: int, s: float, shift: float) -> np.ndarray:
    w = 1.0 / (np.arange(n) + 1.0 + shift) ** s
    return w / w.sum()


class Workload:
    """Message bytes of the events: users, items, purchases drawn as the docstring says."""

    def __init__(self, n_items: int, n_users: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        rng = self.rng
        self.n_items, self.n_users = n_items, n_users
        # Item i's categories: 1 to 3, the first its main one; popularity rank = a shuffle.
        self.main = rng.integers(0, len(CATEGORIES), n_items)
        self.item_cats = []
        for i in range(n_items):
            extra = rng.choice(len(CATEGORIES), int(rng.integers(0, 3)), replace=False)
            cats = dict.fromkeys([CATEGORIES[self.main[i]], *(CATEGORIES[c] for c in extra)])
            self.item_cats.append(list(cats))
        self.item_pop = zipf_weights(n_items, 1.0, 1.0)[rng.permutation(n_items)]
        self.by_cat = []
        for c in range(len(CATEGORIES)):
            members = np.flatnonzero(self.main == c)
            p = self.item_pop[members]
            self.by_cat.append((members, p / p.sum()))
        self.user_p = zipf_weights(n_users, 1.0, 50.0)
        self.user_taste = rng.integers(0, len(CATEGORIES), n_users)
        self.new_users = 0
        self.new_items = 0
        self.sent = 0

    def catalogue(self) -> Iterator[tuple[str, str, list[str], str]]:
        rng = self.rng
        for i in range(self.n_items):
            words = [WORDS[int(w)] for w in rng.integers(0, len(WORDS), 8)]
            cats = self.item_cats[i]
            yield (f"i{i}", f"The {words[0]} {words[1]} {i}", cats,
                   f"A {cats[0].lower()} story of {' '.join(words[2:])}.")

    def events(self, n: int) -> list[tuple[bytes, bool]]:
        """``n`` (message value, is purchase) pairs."""
        rng = self.rng
        users = rng.choice(self.n_users, n, p=self.user_p)
        fresh = rng.random(n) < NEW_USER_SHARE
        taste = rng.random(n) < TASTE_SHARE
        new_item = rng.random(n) < NEW_ITEM_SHARE
        buy = rng.random(n) < PURCHASE_SHARE
        anywhere = rng.choice(self.n_items, n, p=self.item_pop)
        out = []
        for k in range(n):
            if fresh[k]:
                self.new_users += 1
                user = f"new-user-{self.new_users}"
            else:
                user = f"user-{int(users[k])}"
            if new_item[k]:
                self.new_items += 1
                item = f"n{self.new_items}"
            elif taste[k] and not fresh[k]:
                members, p = self.by_cat[int(self.user_taste[users[k]])]
                item = f"i{int(members[np.searchsorted(np.cumsum(p), rng.random())])}" \
                    if len(members) else f"i{int(anywhere[k])}"
            else:
                item = f"i{int(anywhere[k])}"
            self.sent += 1
            ev: dict[str, Any] = {"event_id": f"e{self.sent}", "user_id": user, "item_id": item,
                                  "ts": BASE_TS + GAP_MS * self.sent}
            if buy[k]:
                ev.update(price=round(float(rng.uniform(1, 200)), 2),
                          quantity=int(rng.integers(1, 4)), currency="EUR")
            out.append((orjson.dumps(ev), bool(buy[k])))
        return out


# -- the worker -------------------------------------------------------------------------------


def make_bidder(rng: np.random.Generator, warm: int) -> tuple[Bidder, list[AdCandidate]]:
    """5 campaigns with one ad each (budgets large enough to bid all run), a pCTR model
    warmed on ``warm`` examples."""
    campaigns = {f"camp{c}": Campaign(f"camp{c}", max_bid=2.0, daily_budget=1e6,
                                      total_budget=1e7) for c in range(N_ADS)}
    ads = [AdCandidate(f"ad{c}", f"camp{c}", float(rng.uniform(0.5, 20.0)),
                       (CATEGORIES[c], CATEGORIES[c + 5])) for c in range(N_ADS)]
    model = PctrModel(prior_ctr=0.02)
    for n in range(warm):
        cats = rng.choice(len(CATEGORIES), 3, replace=False)
        view = {"i": [[CATEGORIES[int(c)], 0.333] for c in cats], "r": int(n % 8),
                "f": int(n % 6), "s": f"s{n % 6}"}
        ad = ads[n % N_ADS]
        x = ad_features(view, ad.ad_id, ad.campaign_id, ad.categories, "top",
                        (n // 100) % 24, None)
        model.learn_one(x, int(rng.random() < 0.03))
    return Bidder(campaigns, pctr=model, pcvr=PctrModel(prior_ctr=0.05)), ads


class Worker:
    """What one worker holds in process, from ``Settings.from_env()`` (defaults unless
    PERSONA_* variables say otherwise)."""

    def __init__(self, settings: Settings, seed: int, ad_warmup: int = 20_000) -> None:
        self.settings = settings
        self.engine = Engine(settings.engine_config())
        self.pseudonymize = Pseudonymizer(b"pipeline-bench-key-0123456789abcdef")
        self.limiter = UserRateLimiter(settings.user_rate_per_s, settings.user_burst,
                                       settings.rate_limit_users)
        self.segmenter = Segmenter(k=settings.segments) if settings.segments else None
        self.drift = monitor_for("recommender")
        self.table: dict[str, dict] = {}  # Faust's memory:// store: the values themselves
        self.bidder, self.ads = make_bidder(np.random.default_rng(seed), ad_warmup)
        self.half_life_ms = settings.interest_half_life_ms
        self.changelog_bytes = 0
        self.outcomes: dict[str, int] = {}
        self.bids = 0
        self.last_tick = 0

    def event(self, raw: bytes, purchase: bool, serve: bool) -> None:
        """Ingest, then the profile agent (then, on the full path, one ad request)."""
        ev = decode_purchase(raw) if purchase else decode_click(raw)
        wire = to_wire(ev)
        fp = wire_fingerprint(wire)
        user = self.pseudonymize(wire["user_id"])
        learn = self.limiter.allow(user, wire["ts"])
        stored = self.table.get(user) or {}
        amount = float(wire["price"]) * int(wire["quantity"]) if purchase else 0.0
        event_id = wire["event_id"]
        res = self.engine.process(
            wire["kind"], user, wire["item_id"], wire["ts"], event_id=event_id,
            fingerprint=fp, profile=stored.get("p"), dedupe=stored.get("d"), amount=amount,
            learn=learn, serve=serve and learn, serve_id=f"r{event_id}" if serve else "")
        self.outcomes[res.outcome] = self.outcomes.get(res.outcome, 0) + 1
        if res.outcome != "accepted" or res.profile is None or res.dedupe is None:
            return
        profile = res.profile
        if learn:
            self.groups(profile, getattr(res, "user_profile", None), wire["ts"])
            if res.hit is not None:
                self.drift.observe(res.hit)
        record = {"p": profile, "d": res.dedupe, "t": wire["ts"]}  # tables.make_record
        self.table[user] = record
        self.changelog_bytes += len(orjson.dumps(record))
        if serve:
            self.bid(user, profile, wire["ts"], event_id)

    def groups(self, profile: dict, prof: UserProfile | None, ts: int) -> None:
        """The segmenter part of ``update_groups`` (no audiences are configured), with
        the profile already parsed (``Result.user_profile``) when there is one."""
        if self.segmenter is None:
            return
        if prof is None:
            prof = UserProfile.from_dict(profile)
        learn_assign = getattr(self.segmenter, "learn_assign", None)
        if learn_assign is not None:  # one features pass (what the agent should call)
            segment = learn_assign(prof.segment or None, prof, ts)
        else:
            self.segmenter.learn_one(prof, ts)
            segment = self.segmenter.assign(prof.segment or None, prof, ts)
        if segment != prof.segment:
            prof.segment = profile["sg"] = segment

    def bid(self, user: str, profile: dict, ts: int, event_id: str) -> None:
        """One ad request for the user, as ``with_ad_view`` and the ads agent handle it."""
        view = user_view(UserProfile.from_dict(profile), ts, self.half_life_ms)
        req = AdRequest(f"q{event_id}", user, ts, "top", 0.01, tuple(self.ads),
                        {"device": "mobile"}, view)
        decision, _ = self.bidder.decide(req)
        self.bids += decision.bid is not None
        if ts - self.last_tick >= 1_000:
            self.bidder.advance(ts)
            self.last_tick = ts


# -- measuring --------------------------------------------------------------------------------


def run(w: Worker, events: list[tuple[bytes, bool]], serve: bool, label: str,
        progress: Progress) -> tuple[np.ndarray, float, float]:
    """Per-event (wall-clock) seconds of ``events`` through the worker, the CPU seconds
    of the whole run (robust to other processes on a shared machine) and the CPU seconds
    of it spent in the garbage collector."""
    in_gc = [0.0, 0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            in_gc[1] = time.process_time()
        else:
            in_gc[0] += time.process_time() - in_gc[1]

    clock = time.perf_counter
    gc.callbacks.append(on_gc)
    cpu = time.process_time()
    seconds = np.empty(len(events))
    task = progress.add_task(label, total=len(events))
    handle = w.event
    for n, (raw, purchase) in enumerate(events):
        start = clock()
        handle(raw, purchase, serve)
        seconds[n] = clock() - start
        if n % 2000 == 1999:
            progress.advance(task, 2000)
    cpu = time.process_time() - cpu
    gc.callbacks.remove(on_gc)
    progress.update(task, completed=len(events))
    return seconds, cpu, in_gc[0]


class Stages:
    """Seconds spent in each stage, by wrapping the stage's function while a pass runs."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._undo: list[Callable[[], None]] = []

    def timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        # CPU time: on a shared machine wall-clock stage times mostly measure the others.
        clock, spent, calls = time.process_time, self.spent, self.calls
        spent.setdefault(name, 0.0)
        calls.setdefault(name, 0)

        def wrapper(*args: Any, **kw: Any) -> Any:
            start = clock()
            try:
                return fn(*args, **kw)
            finally:
                spent[name] += clock() - start
                calls[name] += 1

        return wrapper

    def wrap(self, owner: Any, attr: str, name: str, *, on_class: bool = False) -> None:
        """Time ``owner.attr`` as stage ``name`` (an instance attribute, or the class's)."""
        own = vars(owner)
        had = attr in own
        original = own[attr] if on_class else getattr(owner, attr)
        if on_class and isinstance(original, classmethod):
            setattr(owner, attr, classmethod(self.timed(name, original.__func__)))
        else:
            setattr(owner, attr, self.timed(name, original))
        if had:  # a module's or class's own name, or an instance attribute: put it back
            self._undo.append(lambda: setattr(owner, attr, original))
        else:  # a bound method: drop the instance attribute that shadows it
            self._undo.append(lambda: delattr(owner, attr))

    def undo(self) -> None:
        for fn in reversed(self._undo):
            fn()
        self._undo.clear()


@contextmanager
def instrumented(w: Worker, serve: bool) -> Iterator[Stages]:
    """Timers around each stage of ``Worker.event`` (nested ones are subtracted later)."""
    me = sys.modules[Worker.__module__]  # the module-level names Worker.event calls
    st = Stages()
    for fn_name, stage in (("decode_click", "decode"), ("decode_purchase", "decode"),
                           ("to_wire", "decode"), ("wire_fingerprint", "decode"),
                           ("user_view", "bids")):
        st.wrap(me, fn_name, stage)
    st.wrap(w, "pseudonymize", "pseudonymize")
    st.wrap(w.limiter, "allow", "rate limit")
    st.wrap(UserProfile, "from_dict", "profile codec", on_class=True)
    st.wrap(UserProfile, "to_dict", "profile codec", on_class=True)
    e = w.engine
    st.wrap(e, "process", "engine.process")
    for name, comp in e.hybrid.components.items():
        # What the hybrid calls: the checked entry point where there is one.
        st.wrap(comp, "_learn_checked" if hasattr(comp, "_learn_checked") else "learn_one",
                f"learn: {name}")
    st.wrap(e.hybrid, "_learn_blend", "learn: hybrid blend")
    if serve:
        st.wrap(e, "_serve", "serve/rank")
        st.wrap(w.bidder, "decide", "bids")
        st.wrap(w.bidder, "advance", "bids")
    if w.segmenter is not None:
        for attr in ("learn_one", "assign", "learn_assign"):
            if hasattr(w.segmenter, attr):
                st.wrap(w.segmenter, attr, "segments")
    st.wrap(w.drift, "observe", "drift")
    try:
        yield st
    finally:
        st.undo()


def breakdown(st: Stages, n: int, total_s: float) -> list[tuple[str, float, float]]:
    """(stage, us per event, share of the total), nested stages taken out of their parent:
    codec, models and serving out of engine.process; the rest of the event is "other"."""
    us = {k: v / n * 1e6 for k, v in st.spent.items() if st.calls[k]}
    total_us = total_s / n * 1e6
    inner = sum(v for k, v in us.items() if k.startswith("learn") or k == "serve/rank")
    # from_dict runs inside engine.process once, and once more outside it (segments, bids):
    # its calls split evenly enough for a breakdown, to_dict runs inside.
    codec_in = us.get("profile codec", 0.0) * _inside_share(st)
    rows = []
    for k, v in us.items():
        if k == "engine.process":
            v = v - inner - codec_in
            k = "engine.process other (dedupe, apply_*, attribution)"
        rows.append((k, v, v / total_us))
    timers = sum(st.calls.values()) * timer_overhead_s() / n * 1e6
    rows.append(("(the timers themselves)", timers, timers / total_us))
    other = total_us - sum(v for _, v, _ in rows)
    rows.append(("other (table get/put, changelog JSON, glue)", other, other / total_us))
    rows.sort(key=lambda r: -r[1])
    return rows


def timer_overhead_s() -> float:
    """CPU seconds one timed call adds to its caller (the wrapper and its clock reads)."""
    def noop() -> None:
        return None

    timed = Stages().timed("calibration", noop)
    n = 20_000
    best = math.inf
    for _ in range(3):
        start = time.process_time()
        for _ in range(n):
            timed()
        mid = time.process_time()
        for _ in range(n):
            noop()
        best = min(best, ((mid - start) - (time.process_time() - mid)) / n)
    return max(0.0, best)


def _inside_share(st: Stages) -> float:
    # Calls: engine.process makes one from_dict and one to_dict per event; the worker one
    # more from_dict (segments) and, serving, one more (the ad view).
    n_events = max(1, st.calls.get("engine.process", 1))
    calls = max(1, st.calls.get("profile codec", 1))
    return min(1.0, 2 * n_events / calls)


def profile_pass(w: Worker, events: list[tuple[bytes, bool]], serve: bool) -> str:
    pr = cProfile.Profile(time.process_time)  # CPU time, as the breakdown
    handle = w.event
    pr.enable()
    for raw, purchase in events:
        handle(raw, purchase, serve)
    pr.disable()
    out = io.StringIO()
    pstats.Stats(pr, stream=out).sort_stats("tottime").print_stats(25)
    return out.getvalue()


def summary(seconds: np.ndarray, cpu_s: float, gc_s: float
            ) -> tuple[float, float, float, float, float]:
    """events/s (wall clock), p50 and p99 us, events/s of CPU time, share of it in gc."""
    us = seconds * 1e6
    rate = len(seconds) / float(seconds.sum())
    cpu_s = max(cpu_s, 1e-9)
    return (rate, float(np.percentile(us, 50)), float(np.percentile(us, 99)),
            len(seconds) / cpu_s, gc_s / cpu_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=None,
                        help="timed events per path (default 50,000 learn, 20,000 full)")
    parser.add_argument("--warmup", type=int, default=50_000, help="events learned first")
    parser.add_argument("--catalogue", type=int, default=10_000, help="catalogue items")
    parser.add_argument("--users", type=int, default=100_000, help="returning users")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--path", choices=("learn", "full", "both"), default="both")
    parser.add_argument("--profile", action="store_true",
                        help="also print cProfile's top 25 functions (by own time) per path")
    parser.add_argument("--breakdown-events", type=int, default=5_000,
                        help="events of the instrumented pass (per-stage breakdown)")
    args = parser.parse_args(argv)
    for name in ("warmup", "catalogue", "users", "breakdown_events"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.events is not None and args.events < 10:
        parser.error("--events must be at least 10")
    paths = ["learn", "full"] if args.path == "both" else [args.path]
    n_of = {"learn": args.events or 50_000, "full": args.events or 20_000}

    settings = Settings.from_env()
    cfg = settings.engine_config()
    console.print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
                  f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
                  f"numpy {np.__version__}; load average "
                  f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}; "
                  f"started {datetime.now(UTC).isoformat(timespec='seconds')}")
    console.print(f"settings: from the environment (defaults unless PERSONA_* set): strategy "
                  f"{cfg.strategy}, top_k {cfg.top_k}, exploration {cfg.exploration}, "
                  f"max_items {cfg.max_items:,}, segments {settings.segments}")
    wl = Workload(args.catalogue, args.users, args.seed)
    w = Worker(settings, args.seed, ad_warmup=min(20_000, args.warmup))
    console.print(f"workload: catalogue {args.catalogue:,} items, {args.users:,} users "
                  f"(Zipf activity, {NEW_USER_SHARE:.0%} of events from new users), Zipf "
                  f"items ({TASTE_SHARE:.0%} in the user's favourite category, "
                  f"{NEW_ITEM_SHARE:.0%} new items), {PURCHASE_SHARE:.0%} purchases; "
                  f"warm-up {args.warmup:,} events (learn path)")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    results: dict[str, tuple[float, float, float, float, float]] = {}
    tables: dict[str, list[tuple[str, float, float]]] = {}
    profiles: dict[str, str] = {}
    with Progress(*columns, console=console, transient=True) as progress:
        for item_id, title, cats, text in wl.catalogue():
            w.engine.upsert_item(item_id, title, cats, text)
        run(w, wl.events(args.warmup), False, "warm-up", progress)
        for path in paths:
            serve = path == "full"
            events = wl.events(n_of[path])
            gc.collect()
            seconds, cpu_s, gc_s = run(w, events, serve, f"{path} path", progress)
            results[path] = summary(seconds, cpu_s, gc_s)
            sample = wl.events(args.breakdown_events)
            with instrumented(w, serve) as st:
                _, total, _ = run(w, sample, serve, f"{path} breakdown", progress)
            tables[path] = breakdown(st, len(sample), total)
            if args.profile:
                profiles[path] = profile_pass(w, wl.events(args.breakdown_events), serve)

    n_users = len(w.table)
    console.print(f"state after the run: {n_users:,} profiles, {len(w.engine.catalogue):,} "
                  f"catalogue items, {w.engine.model_sizes['mf']:,} items in MF; "
                  f"outcomes {dict(sorted(w.outcomes.items()))}; "
                  f"mean changelog record {w.changelog_bytes / max(1, wl.sent):,.0f} bytes"
                  + (f"; bids {w.bids:,}" if "full" in paths else ""))
    console.print(f"\n{'path':6} {'events':>7} {'events/s':>9} {'p50 us':>8} {'p99 us':>8} "
                  f"{'target/s':>9} {'ratio':>6} {'cpu ev/s':>9} {'gc':>5}")
    for path in paths:
        rate, p50, p99, cpu_rate, gc_share = results[path]
        console.print(f"{path:6} {n_of[path]:7,} {rate:9,.0f} {p50:8.1f} {p99:8.1f} "
                      f"{TARGETS[path]:9,.0f} {rate / TARGETS[path]:6.2f} {cpu_rate:9,.0f} "
                      f"{gc_share:5.1%}")
    console.print("(events/s: wall clock, one event after the other; cpu ev/s: per second "
                  "of this process's CPU time, which other processes on the machine "
                  "disturb less; gc: share of that CPU time in the garbage collector)")
    for path in paths:
        console.print(f"\nwhere the time goes, {path} path ({args.breakdown_events:,} more "
                      f"events, CPU time of each stage; nested stages taken out):")
        for stage, us, share in tables[path]:
            console.print(f"  {stage:52} {us:8.1f} us {share:6.1%}")
    for path, text in profiles.items():
        console.print(f"\ncProfile, {path} path, {args.breakdown_events:,} events, top 25 by "
                      f"own CPU time:")
        console.print(text, markup=False, highlight=False, soft_wrap=True)
    ok = all(math.isfinite(v) for r in results.values() for v in r)
    console.print(f"finished {datetime.now(UTC).isoformat(timespec='seconds')}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
