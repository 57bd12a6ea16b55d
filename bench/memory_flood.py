"""Memory under a flood of never-seen ids: does the worker's RSS stay flat?

In process, no broker: each event goes the way the worker takes it, as bytes through
``streams.records`` (decode), the ingest rate limiter, the keyed pseudonymizer, then
``Engine.process`` (dedupe, profile, learn, serve) and the segmenter and drift monitor
(what the profile agent does after it). Every event comes from a user id never seen
before; a share of them names an item id never seen before either.

Profiles are the store of record, not model memory: by default they go to a RocksDB
database on a temp dir, opened the way PERSONA_TABLE_STORE=rocksdb:// opens the worker's
tables (Faust's store, ``Settings.table_store_options``: its block cache and memtables
are in the RSS measured); ``--store none`` discards them instead (memory:// would keep
them all in RAM: that is the table, growing by design, not a model leak).

Before the flood, a warm-up fills every bounded structure the way a warm service has
them: ``--max-items`` distinct items learned (so the item models are at their cap), a
catalogue, users to fill the pseudonymizer cache, the rate limiter and the hybrid's
pending lists. RSS (VmRSS of /proc/self/status, after a gc) is printed at 10, 25, 50, 75
and 100% of ``--n`` ids; the target is the last within 10% of the first.

Run from the repository root: ``python -m bench.memory_flood [--n 1000000]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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


CHECKPOINTS = (0.10, 0.25, 0.50, 0.75, 1.00)
CATEGORIES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller",
              "Documentary", "Animation", "Crime", "Fantasy", "War"]
BASE_TS = 1_760_000_000_000
console = Console()


def rss_mb() -> float:
    """Resident set size now, in MB (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Store:
    """Where profiles go: Faust's RocksDB options on a temp dir, or nowhere."""

    def __init__(self, kind: str, settings: Settings) -> None:
        self.kind = kind
        self.dir: Path | None = None
        self.db = None
        self.writes = 0
        if kind == "rocksdb":
            from faust.stores.rocksdb import RocksDBOptions

            self.dir = Path(tempfile.mkdtemp(prefix="persona-flood-"))
            # The options the worker's tables get (Settings.table_store_options).
            options = RocksDBOptions(**settings.table_store_options())
            self.db = options.open(self.dir / "profiles")

    def get(self, user: str) -> dict | None:
        if self.db is None:
            return None
        raw = self.db.get(user.encode())
        return None if raw is None else orjson.loads(raw)

    def put(self, user: str, record: dict) -> None:
        self.writes += 1
        if self.db is not None:
            self.db.put(user.encode(), orjson.dumps(record))

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def disk_mb(self) -> float:
        if self.dir is None:
            return 0.0
        return sum(p.stat().st_size for p in self.dir.rglob("*") if p.is_file()) / 2**20


class Worker:
    """The in-process state one worker holds, built from default settings."""

    def __init__(self, settings: Settings, store: Store, serve: bool) -> None:
        self.settings = settings
        self.engine = Engine(settings.engine_config())
        self.pseudonymize = Pseudonymizer(b"memory-flood-bench-key-0123456789")
        self.limiter = UserRateLimiter(settings.user_rate_per_s, settings.user_burst,
                                       settings.rate_limit_users)
        self.segmenter = Segmenter(k=settings.segments) if settings.segments else None
        self.drift = monitor_for("recommender")
        self.store = store
        self.serve = serve
        self.accepted = 0

    def event(self, raw: bytes, purchase: bool) -> None:
        """What ingest and the profile agent do with one message value."""
        ev = decode_purchase(raw) if purchase else decode_click(raw)
        wire = to_wire(ev)
        user = self.pseudonymize(wire["user_id"])
        learn = self.limiter.allow(user, wire["ts"])
        stored = self.store.get(user) or {}
        amount = float(wire["price"]) * int(wire["quantity"]) if purchase else 0.0
        res = self.engine.process(
            wire["kind"], user, wire["item_id"], wire["ts"], event_id=wire["event_id"],
            fingerprint=wire_fingerprint(wire), profile=stored.get("p"),
            dedupe=stored.get("d"), amount=amount, learn=learn, serve=self.serve,
            serve_id=f"r{wire['event_id']}")
        if res.outcome != "accepted" or res.profile is None:
            return
        self.accepted += 1
        if self.segmenter is not None:
            prof = UserProfile.from_dict(res.profile)
            self.segmenter.learn_one(prof, wire["ts"])
            res.profile["sg"] = self.segmenter.assign(prof.segment or None, prof, wire["ts"])
        if res.hit is not None:
            self.drift.observe(res.hit)
        self.store.put(user, {"p": res.profile, "d": res.dedupe})

    def sizes(self) -> dict[str, int]:
        """How full each bounded structure is."""
        e = self.engine
        content = e.content
        return {
            "pseudonym cache": self.pseudonymize.cache_info().currsize,
            "rate limiter": len(self.limiter),
            "hybrid pending": len(e.hybrid._pending),
            "popularity": len(e.popularity),
            "cooccurrence": len(e.hybrid.components["cooccurrence"]),
            "mf": len(e.hybrid.components["mf"]),
            "content pending": len(content._pending),
            "catalogue": len(e.catalogue),
        }


def click(event_id: str, user: str, item: str, ts: int) -> bytes:
    return orjson.dumps({"event_id": event_id, "user_id": user, "item_id": item, "ts": ts})


def purchase(event_id: str, user: str, item: str, ts: int, rng: random.Random) -> bytes:
    return orjson.dumps({"event_id": event_id, "user_id": user, "item_id": item, "ts": ts,
                         "price": round(rng.uniform(1, 200), 2),
                         "quantity": rng.randint(1, 3), "currency": "EUR"})


def warm_up(w: Worker, rng: random.Random, catalogue_size: int, progress: Progress) -> int:
    """A warm service: a catalogue, ``max_items`` items learned, full caches. Returns the
    events sent."""
    max_items = w.engine.config.max_items
    for i in range(catalogue_size):
        cats = rng.sample(CATEGORIES, rng.randint(1, 3))
        w.engine.upsert_item(f"c{i}", f"Catalogue item {i} {cats[0].lower()}", cats,
                             f"A {cats[0].lower()} item, number {i}.")
    # Every item the models can hold, then users enough to fill the pseudonym cache, the
    # rate limiter and the hybrid's pending lists (the largest of them).
    users = max(w.pseudonymize.cache_info().maxsize or 0, w.limiter.max_users,
                w.engine.hybrid.max_pending)
    n = max(max_items, users)
    task = progress.add_task("warm-up", total=n)
    history: list[str] = []
    for k in range(n):
        item = f"w{k}" if k < max_items else f"c{rng.randrange(catalogue_size)}"
        raw = click(f"warm-{k}", f"warm-user-{k % users}", item, BASE_TS + k)
        w.event(raw, purchase=False)
        history.append(item)
        if k % 1000 == 999:
            progress.advance(task, 1000)
    progress.update(task, completed=n)
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="never-seen user ids")
    parser.add_argument("--new-item-share", type=float, default=0.1,
                        help="share of events naming a never-seen item id")
    parser.add_argument("--purchase-share", type=float, default=0.1)
    parser.add_argument("--catalogue", type=int, default=10_000, help="catalogue items")
    parser.add_argument("--max-items", type=int, default=None,
                        help="PERSONA_MAX_ITEMS (default: the setting's default, 100,000)")
    parser.add_argument("--store", choices=("rocksdb", "none"), default="rocksdb",
                        help="where profiles go (never counted as model state)")
    parser.add_argument("--no-serve", action="store_true",
                        help="learn only (the worker also serves a list per event)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.n < 10:
        parser.error("--n must be at least 10")
    rng = random.Random(args.seed)
    env = {"PERSONA_TABLE_STORE": "rocksdb://" if args.store == "rocksdb" else "memory://"}
    if args.max_items is not None:
        env["PERSONA_MAX_ITEMS"] = str(args.max_items)
    settings = Settings.from_env(env)
    store = Store(args.store, settings)
    w = Worker(settings, store, serve=not args.no_serve)
    cfg = w.engine.config
    console.print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, "
                  f"Python {platform.python_version()}; "
                  f"started {datetime.now(UTC).isoformat(timespec='seconds')}")
    console.print(f"settings: defaults, max_items {cfg.max_items:,}, strategy {cfg.strategy}, "
                  f"segments {settings.segments}, rate limiter {w.limiter.max_users:,} users, "
                  f"pseudonym cache {w.pseudonymize.cache_info().maxsize:,}, table cache "
                  f"{settings.table_cache_mb} MB; "
                  f"profiles: {args.store}; serve: {not args.no_serve}")
    console.print(f"{'point':>14} {'RSS MB':>8} {'s':>8}  bounded structures (entries)")

    def show(row: tuple) -> None:
        label, _, rss, secs, sizes = row
        console.print(f"{label:>14} {rss:8.1f} {secs:8.1f}  "
                      + ", ".join(f"{k} {v:,}" for k, v in sizes.items()))
        sys.stdout.flush()

    rows: list[tuple] = []
    marks = sorted({max(1, int(args.n * f)) for f in CHECKPOINTS})
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        started = time.perf_counter()
        warm = warm_up(w, rng, args.catalogue, progress)
        gc.collect()
        rows.append(("warm-up", warm, rss_mb(), time.perf_counter() - started, w.sizes()))
        show(rows[-1])
        task = progress.add_task("flood", total=args.n)
        flood_start = time.perf_counter()
        ts = BASE_TS + warm
        next_mark = 0
        for k in range(1, args.n + 1):
            item = (f"new-{k}" if rng.random() < args.new_item_share
                    else f"c{rng.randrange(args.catalogue)}")
            user = f"flood-{rng.getrandbits(64):016x}"
            ts += 1
            if rng.random() < args.purchase_share:
                w.event(purchase(f"f{k}", user, item, ts, rng), purchase=True)
            else:
                w.event(click(f"f{k}", user, item, ts), purchase=False)
            if k == marks[next_mark]:
                gc.collect()
                rows.append((f"{k:,} ids", k, rss_mb(), time.perf_counter() - flood_start,
                             w.sizes()))
                show(rows[-1])
                next_mark += 1
                if next_mark == len(marks):
                    break
            if k % 1000 == 0:
                progress.advance(task, 1000)
    elapsed = time.perf_counter() - flood_start
    first, last = rows[1][2], rows[-1][2]
    ratio = last / first
    console.print(f"\nflood: {args.n:,} never-seen user ids ({args.new_item_share:.0%} with a "
                  f"never-seen item), {w.accepted:,} events accepted in total, "
                  f"{args.n / elapsed:,.0f} events/s; profiles written {store.writes:,}"
                  + (f" ({store.disk_mb():.0f} MB on disk)" if store.dir else ""))
    console.print(f"RSS after warm-up {rows[0][2]:.1f} MB; at {rows[1][0]} {first:.1f} MB, "
                  f"at {rows[-1][0]} {last:.1f} MB: ratio {ratio:.3f} "
                  f"({'within' if abs(ratio - 1) <= 0.10 else 'OUTSIDE'} the 10% target); "
                  f"peak {peak_rss_mb():.1f} MB")
    console.print(f"finished {datetime.now(UTC).isoformat(timespec='seconds')}")
    store.close()
    return 0 if abs(ratio - 1) <= 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
