"""Memory per user profile in the worker's profiles table, at 10k, 100k and 1M users.

Target (issue 7): at most 2 KB of resident memory per profile at 1M users.

1. Generate. N users' records are built the way the profile agent builds them, with
   the default ``Settings.from_env().engine_config()``, and written (changelog bytes,
   as Faust's JSON codec writes them) to a temp file. ``--mode engine`` runs every event
   through ``Engine.process`` (dedupe, profile, learn, serve) plus the segmenter, as the
   agent does: too slow for 1M users (1.5k events/s on a busy 2-core box). ``--mode
   fast`` (default) runs the same per-user steps without the item models' learning and
   ranking: ``models.users.dedupe.check_and_add``, ``models.marketing.attribution.attribute``,
   ``apply_click``/``apply_purchase``, the real ``ImplicitMF.learn_one`` on the user's
   ``model_state`` (on their first and last event: it makes and leaves the stored value;
   between, it changes values, never the size), then a served list of ``top_k``
   catalogue items, ``note_served`` and ``remember`` (what ``Engine.process`` does after
   ranking). The stored record has the same fields with the same sizes; only which
   items were served differs (all item ids have one length). ``--mode both`` prints the
   two side by side (the smoke test checks they agree within 5%). ``--jobs`` processes
   generate ranges of users (default one per CPU).
2. Measure. For each in-memory form a fresh subprocess reads the file the way a worker
   recovers its table from the changelog (JSON decode, then the memory store's dict and
   its key -> partition dict) and prints its RSS (VmRSS after a gc) at every checkpoint:
   one growing process per form; per profile = (RSS - RSS before the first record) / n.
   Forms: ``head`` (Faust's memory store as it was: the decoded Python objects, dedupe
   entries as [key, fingerprint] pairs), ``dict`` (the same with today's one-string
   dedupe entries, ``models.users.dedupe``) and ``compact`` (what the profiles table keeps now,
   ``models.users.compact.CompactValues``: the JSON bytes, decoded on read).

Events per user follow a Zipf law (P(n) ~ n^-2, 1 <= n <= ``--max-events``, 1000): 61%
of users have 1 event, 89% at most 5, mean 4.55; one in 560 fills the dedupe window
(256) and one in 3,800 has 700+ events, about what fills ``seen`` (500 distinct
items). Items: a catalogue of ``--items`` ids of 8 characters (``it000042``), 1-3 of 18
categories each, popularity Zipf (s = 1); 20% of events re-click one of the user's
recent items, 10% click an item of the list served last (with its recommendation id),
5% are purchases.

Run from the repository root: ``python -m bench.memory_profiles [--users 1000000]``;
``--quick`` stops at 100k users.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import multiprocessing as mp
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from faust.serializers import codecs
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from models.engine import STRATEGIES, Engine, EngineConfig
from models.marketing.attribution import attribute, remember
from models.marketing.segments import Segmenter
from models.recommenders.base import Context
from models.recommenders.catalogue import Catalogue
from models.recommenders.mf import ImplicitMF
from models.users.compact import CompactValues, decode, encode, make_record, raw_touched_ms
from models.users.dedupe import KEY_CHARS, check_and_add
from models.users.privacy import pseudonymize
from models.users.profile import UserProfile, apply_click, apply_purchase, is_expired, note_served
from streams.settings import Settings

TARGET_BYTES = 2048  # per profile at 1M users (issue 7)
CHECKPOINTS = (10_000, 100_000, 1_000_000)
FORMS = ("head", "dict", "compact")
CATEGORIES = ["Action", "Adventure", "Animation", "Children", "Comedy", "Crime",
              "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical",
              "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]
BASE_TS = 1_760_000_000_000
KEY = b"memory-profiles-bench-key-0123456789"
_HEADER = struct.Struct("<BHI")  # partition, key length, value length
console = Console(width=110, highlight=False)


def rss_bytes() -> int:
    """Resident set size now (VmRSS), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def machine() -> str:
    return (f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"numpy {np.__version__}, orjson {orjson.__version__}")


def zipf_cdf(n: int, s: float) -> np.ndarray:
    w = np.arange(1, n + 1, dtype=np.float64) ** -s
    return np.cumsum(w) / w.sum()


class Pool:
    """Pre-drawn random numbers, consumed in order (numpy per call would dominate)."""

    def __init__(self, rng: np.random.Generator, item_cdf: np.ndarray, size: int = 1 << 20):
        self.rng, self.item_cdf, self.size = rng, item_cdf, size
        self._refill()

    def _refill(self) -> None:
        self.u = self.rng.random(self.size).tolist()
        self.items = np.searchsorted(self.item_cdf, self.rng.random(self.size)).tolist()
        self.i = self.j = 0

    def uniform(self) -> float:
        if self.i >= self.size:
            self._refill()
        self.i += 1
        return self.u[self.i - 1]

    def item(self) -> int:
        if self.j >= self.size:
            self._refill()
        self.j += 1
        return self.items[self.j - 1]


class Generator:
    """Users' event streams and the records the profile agent would store for them."""

    def __init__(self, mode: str, n_items: int, seed: int) -> None:
        self.mode = mode
        self.settings = Settings.from_env()
        self.cfg: EngineConfig = self.settings.engine_config()
        rng = np.random.default_rng(seed)
        self.item_ids = [f"it{n:06d}" for n in range(n_items)]
        self.catalogue = Catalogue(max_items=self.cfg.max_items)
        self.engine: Engine | None = None
        if mode == "engine":
            self.engine = Engine(self.cfg)
            self.catalogue = self.engine.catalogue
        for n, item in enumerate(self.item_ids):
            cats = [CATEGORIES[(n * 7 + j * 5) % len(CATEGORIES)] for j in range(1 + n % 3)]
            if self.engine is not None:
                self.engine.upsert_item(item, f"Item {n}", cats, f"about {' '.join(cats)}")
            else:
                self.catalogue.upsert(item, f"Item {n}", cats)
        self.mf = ImplicitMF(max_items=self.cfg.max_items, seed=self.cfg.seed)
        k = self.settings.segments
        self.segmenter = Segmenter(k=k) if (k and mode == "engine") else None
        self.segment_names = [f"s{j}" for j in range(k)]
        self.pool = Pool(rng, zipf_cdf(n_items, 1.0))
        self.offset = 0
        self._lists: list[list[str]] = []

    def _draw_item(self, recent: list[str], last: list[str], last_id: str | None
                   ) -> tuple[str, str | None]:
        u = self.pool.uniform()
        if u < 0.10 and last:
            return last[int(self.pool.uniform() * len(last))], last_id
        if u < 0.30 and recent:
            return recent[int(self.pool.uniform() * len(recent))], None
        return self.item_ids[self.pool.item()], None

    def _served(self) -> list[str]:
        """A list the hybrid could serve: ``top_k`` distinct catalogue items, drawn by
        popularity from a few thousand such lists (which ones does not change a size)."""
        if not self._lists:
            top_k = self.cfg.top_k
            for _ in range(4096):
                out: list[str] = []
                while len(out) < top_k:
                    item = self.item_ids[self.pool.item()]
                    if item not in out:
                        out.append(item)
                self._lists.append(out)
        return self._lists[int(self.pool.uniform() * len(self._lists))]

    def user(self, j: int, n_events: int) -> tuple[int, str, dict]:
        """(partition, key, record) of user ``j`` after ``n_events`` events."""
        user = pseudonymize(str(j), KEY)
        partition = j % self.settings.partitions
        ts = BASE_TS + int(self.pool.uniform() * 86_400_000 * 30)
        cfg = self.cfg
        prof: UserProfile | dict | None = None if self.engine else UserProfile()
        dedupe: list[list[str]] | None = None
        last: list[str] = []
        last_id: str | None = None
        for k in range(n_events):
            ts += 1 + int(self.pool.uniform() * 1_200_000)
            recent = (prof.recent_items if isinstance(prof, UserProfile)
                      else (prof or {}).get("r", []))
            item, rec_id = self._draw_item(recent, last, last_id)
            purchase = self.pool.uniform() < 0.05
            amount = round(5.0 + 195.0 * self.pool.uniform(), 2) if purchase else 0.0
            event_id = f"{j}.{k}"
            fp = hashlib.blake2b(f"{event_id}|{item}|{amount}".encode(), digest_size=8).hexdigest()
            # The agent's recommendation id: "r" + 24 hex characters, a hash of user and event.
            serve_id = "r" + hashlib.blake2b(f"{user}\x00{event_id}".encode(),
                                             digest_size=12).hexdigest()
            kind = "purchase" if purchase else "click"
            if self.engine is not None:
                assert not isinstance(prof, UserProfile)
                res = self.engine.process(
                    kind, user, item, ts, event_id=event_id, fingerprint=fp, profile=prof,
                    dedupe=dedupe, amount=amount, recommendation_id=rec_id,
                    serve_id=serve_id, variant="default")
                if res.outcome != "accepted":
                    continue
                assert res.profile is not None
                prof, dedupe = res.profile, res.dedupe
                last, last_id = [s.item_id for s in res.items], serve_id
                if self.segmenter is not None:
                    p = UserProfile.from_dict(prof)
                    self.segmenter.learn_one(p, ts)
                    prof["sg"] = self.segmenter.assign(p.segment or None, p, ts)
                continue
            assert isinstance(prof, UserProfile)
            # Engine.process, step by step (its item models' learning and ranking aside).
            dedupe, outcome = check_and_add(dedupe, event_id, fp, cfg.dedup_window)
            if outcome != "new":
                continue
            if prof.served_recs:
                attribute(prof.served_recs, kind, rec_id, item, ts,
                          window_ms=cfg.attribution_window_ms, by_item=cfg.attribute_by_item)
            history, interests = prof.recent_items, prof.interests
            cats = self.catalogue.categories(item)
            if purchase:
                prof = apply_purchase(prof, item, ts, amount, cats, half_life_ms=cfg.half_life_ms,
                                      recent_max=cfg.recent_max, seen_max=cfg.seen_max)
            else:
                prof = apply_click(prof, item, ts, cats, half_life_ms=cfg.half_life_ms,
                                   recent_max=cfg.recent_max, seen_max=cfg.seen_max)
            if k == 0 or k == n_events - 1:
                # The real MF step creates the state (first event) and leaves the stored
                # value (last); between them it changes values, never the size (n_factors
                # float32, base64), and it is most of this loop's time.
                self.mf.learn_one(item, history, 3.0 if purchase else 1.0,
                                  Context(user_state=prof.model_state, interests=interests))
            else:
                prof.model_state = dict(prof.model_state)  # the copy apply_* would hand it
            u = self.pool.uniform()
            strategy = (cfg.strategy if u >= cfg.exploration
                        else STRATEGIES[int(u / cfg.exploration * len(STRATEGIES))])
            served = self._served()
            note_served(prof, served, strategy, 100 if cfg.max_repeats else 0)
            remember(prof.served_recs, serve_id, strategy, "default", ts, served,
                     cfg.attribution_keep)
            last, last_id = served, serve_id
        if isinstance(prof, UserProfile):
            if self.segment_names:
                prof.segment = self.segment_names[j % len(self.segment_names)]
            prof = prof.to_dict()
        self.offset += n_events
        assert prof is not None and dedupe is not None
        return partition, user, make_record(prof, dedupe, now_ms=BASE_TS,
                                            at=(partition, self.offset))


def _generate_range(mode: str, lo: int, counts: np.ndarray, path: Path, n_items: int,
                    seed: int, step: int, done: Any = None, slot: int = 0,
                    progress: Callable[[int], None] | None = None
                    ) -> tuple[np.ndarray, list[tuple[int, bytes]]]:
    """Write the records of users ``lo``.. (``counts`` events each) to ``path``; their
    value sizes and a sample of (events, value bytes), one user in ``step``."""
    gen = Generator(mode, n_items, seed)
    sizes = np.empty(len(counts), dtype=np.int64)
    sample: list[tuple[int, bytes]] = []
    with open(path, "wb") as out:
        for n, events in enumerate(counts.tolist()):
            j = lo + n
            partition, key, record = gen.user(j, events)
            value = encode(record)  # the bytes Faust's JSON codec writes to the changelog
            assert value is not None
            kb = key.encode()
            out.write(_HEADER.pack(partition, len(kb), len(value)))
            out.write(kb)
            out.write(value)
            sizes[n] = len(value)
            if j % step == 0:
                sample.append((events, value))
            if n % 1000 == 999:
                if done is not None:
                    done[slot] = n + 1
                if progress is not None:
                    progress(n + 1)
    if done is not None:
        done[slot] = len(counts)
    return sizes, sample


def _job(queue: Any, *args: Any) -> None:
    """A generator subprocess: ``_generate_range(*args)``, its result put on ``queue``."""
    queue.put(_generate_range(*args))


def generate(path: Path, mode: str, n_users: int, args: argparse.Namespace
             ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, bytes]], float]:
    """Write the users' changelog records to ``path``, in ``args.jobs`` processes (each
    a range of users, with its own random stream and models); (value sizes, event
    counts, a sample of (events, value bytes), seconds)."""
    counts = np.searchsorted(zipf_cdf(args.max_events, 2.0),
                             np.random.default_rng(args.seed).random(n_users)) + 1
    step = max(1, n_users // args.sample)
    jobs = max(1, min(args.jobs, n_users // 1000 or 1))
    bounds = np.linspace(0, n_users, jobs + 1).astype(int).tolist()
    start = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task(f"generate ({mode}, {jobs} processes)", total=n_users)
        if jobs == 1:
            sizes, sample = _generate_range(
                mode, 0, counts, path, args.items, args.seed + 1, step,
                progress=lambda n: progress.update(task, completed=n))
            return sizes, counts, sample, time.perf_counter() - start
        ctx = mp.get_context("spawn")
        done = ctx.Array("q", jobs)
        queues = [ctx.Queue() for _ in range(jobs)]
        parts = [path.with_suffix(f".{k}") for k in range(jobs)]
        procs = [ctx.Process(target=_job, daemon=True, args=(
            queues[k], mode, bounds[k], counts[bounds[k]:bounds[k + 1]], parts[k], args.items,
            args.seed + 1 + k, step, done, k)) for k in range(jobs)]
        results: list[Any] = [None] * jobs
        try:
            for proc in procs:
                proc.start()
            while any(r is None for r in results):
                for k in range(jobs):
                    if results[k] is None and not queues[k].empty():
                        results[k] = queues[k].get()
                if any(p.exitcode not in (None, 0) for p in procs):
                    raise RuntimeError("a generator process failed")
                progress.update(task, completed=sum(done[:]))
                time.sleep(0.2)
        finally:
            for proc in procs:  # only ours, by handle; on an error or ^C too
                if proc.pid is not None:
                    proc.join(timeout=0 if any(r is None for r in results) else 60)
                    if proc.is_alive():
                        proc.terminate()
    with open(path, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
            part.unlink()
    sizes = np.concatenate([r[0] for r in results])
    sample = [s for r in results for s in r[1]]
    return sizes, counts, sample, time.perf_counter() - start


def records(path: Path) -> Iterator[tuple[int, bytes, bytes]]:
    with open(path, "rb") as f:
        while header := f.read(_HEADER.size):
            partition, klen, vlen = _HEADER.unpack(header)
            yield partition, f.read(klen), f.read(vlen)


def load(path: Path, form: str, checkpoints: list[int]) -> None:
    """Child process: hold the records as a recovering worker's memory store would, and
    print one JSON line per checkpoint: {"n", "rss"}."""
    data: dict[str, Any] | CompactValues = CompactValues() if form == "compact" else {}
    key_partition: dict[str, int] = {}  # Faust's memory store keeps one per key too
    gc.collect()
    print(orjson.dumps({"n": 0, "rss": rss_bytes()}).decode(), flush=True)
    marks = set(checkpoints)
    n = rss = 0
    for partition, key, value in records(path):
        k = key.decode()
        # Recovery: the changelog's JSON codec decodes the value, the store keeps it.
        record = orjson.loads(value.decode())
        if form == "head":  # the dedupe window as it was kept before: [key, fingerprint] pairs
            record["d"] = [[e[:KEY_CHARS], e[KEY_CHARS:]] for e in record["d"]]
        data[k] = record
        key_partition[k] = partition
        n += 1
        if n in marks:
            gc.collect()
            rss = rss_bytes()
            print(orjson.dumps({"n": n, "rss": rss}).decode(), flush=True)
    # A full scan, as the retention sweep (streams.agents.profile.expire_messages) reads
    # every record: its fields "p" and "t".
    start = time.perf_counter()
    for record in data.values():
        if record is not None:
            is_expired(record.get("p"), record.get("t"), BASE_TS)
    scan = time.perf_counter() - start
    # The same pass skipping the records written since the cutoff by the "t" their bytes
    # start with (streams.tables.maybe_idle): here all of them, as in a sweep that finds
    # few idle profiles.
    start = time.perf_counter()
    if isinstance(data, CompactValues):
        for _, raw in data.raw_items():
            t = raw_touched_ms(raw)
            if t is None or t < BASE_TS:
                record = decode(raw)
                is_expired(record.get("p"), record.get("t"), BASE_TS)
    skip = time.perf_counter() - start if isinstance(data, CompactValues) else scan
    print(orjson.dumps({"n": n, "rss": rss, "scan_s": scan, "skip_s": skip}).decode(),
          flush=True)


def measure_rss(path: Path, form: str, checkpoints: list[int]
                ) -> tuple[dict[int, float], tuple[float, float]]:
    """RSS per profile (bytes) at each checkpoint, and the seconds of a full scan of
    the table (decoding every record; skipping the fresh ones undecoded), from a
    fresh subprocess."""
    cmd = [sys.executable, "-m", "bench.memory_profiles", "--load", str(path), "--form", form,
           "--checkpoints", ",".join(map(str, checkpoints))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert proc.stdout is not None
    base, out, scan = 0, {}, (float("nan"), float("nan"))
    with _progress() as progress:
        task = progress.add_task(f"load ({form})", total=checkpoints[-1])
        for line in proc.stdout:
            row = orjson.loads(line)
            if "scan_s" in row:
                scan = (row["scan_s"], row["skip_s"])
            elif row["n"] == 0:
                base = row["rss"]
            else:
                out[row["n"]] = (row["rss"] - base) / row["n"]
            progress.update(task, completed=row["n"])
    if proc.wait(timeout=600) != 0:
        raise RuntimeError(f"loader for {form} failed: exit {proc.returncode}")
    return out, scan


def deep_size(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of ``obj`` and everything it references (objects counted once)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        size += sum(deep_size(v, seen) for v in obj)
    return size


def breakdown(sample: list[tuple[int, bytes]]) -> list[tuple[str, float, float]]:
    """Per field: mean JSON bytes and mean Python bytes (deep size) per record."""
    json_b: dict[str, float] = {}
    py_b: dict[str, float] = {}
    for _, value in sample:
        rec = orjson.loads(value)
        fields = {f"p.{k}": v for k, v in rec["p"].items()}
        fields.update({k: v for k, v in rec.items() if k != "p"})
        for name, v in fields.items():
            key = name.split(".")[-1]
            json_b[name] = json_b.get(name, 0) + len(orjson.dumps(v)) + len(key) + 4
            py_b[name] = py_b.get(name, 0) + deep_size(v) + 8  # + the dict slot's pointer
    n = len(sample)
    return sorted(((k, json_b[k] / n, py_b[k] / n) for k in json_b), key=lambda r: -r[2])


def codec_cost(sample: list[tuple[int, bytes]]) -> dict[str, float]:
    """Microseconds per event, weighted by the events each user has (an upper bound: a
    record grows to its final size), of what the compact form adds and saves per event:
    ``decode`` (the read), ``encode`` (the write: the bytes go both to the store and to
    the changelog), and, for scale, the changelog encoding Faust's JSON codec did before
    (``faust encode``, no longer done) and ``UserProfile.from_dict`` + ``to_dict``,
    which every event does either way."""
    clock = time.perf_counter
    steps = {
        "decode": lambda rec, value: orjson.loads(value),
        "encode": lambda rec, value: encode(rec),
        "faust encode": lambda rec, value: codecs.dumps("json", rec),
        "from_dict + to_dict": lambda rec, value: UserProfile.from_dict(rec["p"]).to_dict(),
    }
    tot = dict.fromkeys(steps, 0.0)
    events = 0
    for n_events, value in sample:
        rec = orjson.loads(value)
        for name, step in steps.items():
            best = float("inf")
            for _ in range(5):
                t0 = clock()
                step(rec, value)
                best = min(best, clock() - t0)
            tot[name] += best * n_events
        events += n_events
    return {k: v / events * 1e6 for k, v in tot.items()}


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="stop at 100k users")
    ap.add_argument("--mode", choices=("fast", "engine", "both"), default="fast")
    ap.add_argument("--forms", default=",".join(FORMS), help="in-memory forms to measure")
    ap.add_argument("--items", type=int, default=10_000, help="catalogue size")
    ap.add_argument("--max-events", type=int, default=1000, help="most events of one user")
    ap.add_argument("--sample", type=int, default=2000, help="records for the breakdowns")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="generator processes (default: one per CPU)")
    ap.add_argument("--load", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--form", choices=FORMS, help=argparse.SUPPRESS)
    ap.add_argument("--checkpoints", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.load is not None:
        load(args.load, args.form, [int(c) for c in args.checkpoints.split(",")])
        return 0
    n_users = min(args.users, 100_000) if args.quick else args.users
    if n_users < 1:
        ap.error("--users must be >= 1")
    checkpoints = sorted({c for c in CHECKPOINTS if c < n_users} | {n_users})
    forms = [f for f in args.forms.split(",") if f]
    if not set(forms) <= set(FORMS):
        ap.error(f"--forms: choose from {', '.join(FORMS)}")
    modes = ["fast", "engine"] if args.mode == "both" else [args.mode]

    console.print(machine())
    console.print(f"target: <= {TARGET_BYTES:,} bytes of RSS per profile at 1,000,000 users "
                  f"(memory:// table store)")
    cfg = Settings.from_env().engine_config()
    console.print(f"users: {n_users:,}; events per user Zipf(2) in [1, {args.max_events}]; "
                  f"{args.items:,} items; caps: recent {cfg.recent_max}, seen {cfg.seen_max}, "
                  f"dedupe {cfg.dedup_window}, top_k {cfg.top_k}, "
                  f"attribution_keep {cfg.attribution_keep}")
    with tempfile.TemporaryDirectory(prefix="persona-memprof-") as tmp:
        for mode in modes:
            path = Path(tmp) / f"{mode}.bin"
            sizes, counts, sample, seconds = generate(path, mode, n_users, args)
            n_events = int(counts.sum())
            console.print(f"\n{mode} mode: {n_users:,} users, {n_events:,} events "
                          f"(mean {counts.mean():.2f}, p50 {int(np.median(counts))}, "
                          f"p99 {int(np.percentile(counts, 99))}, max {int(counts.max())}), "
                          f"generated in {seconds:.1f} s ({n_events / seconds:,.0f} events/s)")
            console.print(f"changelog bytes per record: mean {sizes.mean():,.0f}, "
                          f"p50 {np.percentile(sizes, 50):,.0f}, "
                          f"p99 {np.percentile(sizes, 99):,.0f}, max {sizes.max():,}")
            rows = breakdown(sample)
            total_json = sum(r[1] for r in rows)
            total_py = sum(r[2] for r in rows)
            console.print(f"fields (mean per record over {len(sample):,} sampled records):")
            console.print(f"  {'field':<6} {'JSON bytes':>10} {'Python bytes':>13} {'share':>6}")
            for name, jb, pb in rows:
                console.print(f"  {name:<6} {jb:>10,.0f} {pb:>13,.0f} {pb / total_py:>6.1%}")
            ms = next((r for r in rows if r[0] == "p.ms"), ("p.ms", 0.0, 0.0))
            console.print(f"per-user model state (p.ms, MF factors): {ms[1]:,.0f} JSON bytes "
                          f"({ms[1] / total_json:.1%}), {ms[2]:,.0f} Python bytes "
                          f"({ms[2] / total_py:.1%})")
            cost = codec_cost(sample[:500])
            console.print("per-event cost, us (event-weighted): "
                          + ", ".join(f"{k} {v:.2f}" for k, v in cost.items()))
            measured = {form: measure_rss(path, form, checkpoints) for form in forms}
            results = {form: m[0] for form, m in measured.items()}
            console.print(f"RSS per profile, bytes (one growing process per form; "
                          f"target {TARGET_BYTES:,} at 1M):")
            console.print("  " + f"{'users':>10}" + "".join(f" {f:>9}" for f in forms))
            for n in checkpoints:
                console.print("  " + f"{n:>10,}" + "".join(f" {results[f][n]:>9,.0f}"
                                                          for f in forms))
            for f in forms:
                last = results[f][checkpoints[-1]]
                verdict = ("meets" if last <= TARGET_BYTES else "misses")
                scale = "" if checkpoints[-1] >= 1_000_000 else f" (at {checkpoints[-1]:,})"
                console.print(f"{f}: {last:,.0f} bytes per profile{scale}: {verdict} the "
                              f"target")
            console.print("full-table scan (retention sweep), s per 1M records: "
                          + ", ".join(f"{f} {measured[f][1][0] / n_users * 1e6:.2f}"
                                      for f in forms))
            if "compact" in forms:
                console.print("  compact, skipping fresh records by their leading \"t\" "
                              "(streams.tables.maybe_idle): "
                              f"{measured['compact'][1][1] / n_users * 1e6:.2f}")
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
