"""Scale-out: one worker against two on 8 partitions, quality and throughput, real broker.

Starts its own Kafka broker on a free loopback port and, for each mode, a fresh topic set
and app id with one or two ``persona worker`` processes: ``one`` (one worker), ``two``
(two workers sharing item-level learning through the model-updates topic, the default),
``two-nosync`` (two workers, PERSONA_MODEL_SYNC=false: each learns only from its own
partitions) and ``one-nosync`` (one worker without publishing: the sync overhead). Each
mode publishes the MovieLens catalogue, waits until every worker holds all of it, then
replays the ratings as fast as the producer goes and reads the ``recommendations``
topic. Figures:

- recall@10 through the broker, the prequential protocol of docs/quality.md as the
  service sees it: an event is a hit if its item was in the last list the worker served
  that user before it (the recommendation triggered by the user's previous event); a
  user's first event has no list and counts as a miss;
- throughput: events / seconds from the first event produced to the last
  recommendation received; and the workers' CPU time per event (all workers together,
  from /proc), which other load on the machine disturbs far less.

Also times the sync path in-process (no broker, ``bench/sync.py``): summing what
``Engine.process`` learns, draining and encoding a delta, decoding and applying it on
another engine (``Engine.learn_shared``).
Bounded in time (``--timeout`` per mode); stops everything it starts.

    .venv/bin/python -m bench.scaleout [--events 100000] [--modes one,two,two-nosync]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from kafka import KafkaConsumer, TopicPartition
from rich.progress import Progress

from streams.cli.replay import Outgoing, make_producer, movielens_events, movielens_items, publish
from streams.local.broker import LocalBroker, free_port
from streams.local.chaos import Rig, machine
from streams.local.worker_proc import WorkerProcess
from streams.settings import Settings

# Topics the workers' agents read (streams.topics.SOURCE_TOPICS; not imported: that
# builds the Faust app).
SOURCE_TOPICS = 8
MODES = {  # mode: (workers, PERSONA_MODEL_SYNC)
    "one": (1, True),
    "two": (2, True),
    "two-nosync": (2, False),
    "one-nosync": (1, False),
}


@dataclass
class Run:
    mode: str
    workers: int
    events: int = 0
    recs: int = 0
    hits: int = 0
    seconds: float = 0.0
    catalogue: list[int] = field(default_factory=list)
    per_worker_events: list[int] = field(default_factory=list)
    sync: dict[str, float] = field(default_factory=dict)
    cpu_s: float = 0.0  # CPU seconds the workers used during the replay, all together
    timed_out: bool = False

    @property
    def recall(self) -> float:
        return self.hits / self.events if self.events else 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_event(self) -> float:
        """Worker CPU per event (all workers): robust to other load on the machine,
        unlike events/s."""
        return 1e6 * self.cpu_s / self.events if self.events else 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RecReader:
    """Every recommendation on the topic (all partitions, no group), by trigger event."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                      enable_auto_commit=False, fetch_max_wait_ms=50)
        parts: set[int] | None = None
        deadline = time.monotonic() + 30
        while not parts and time.monotonic() < deadline:
            parts = self.consumer.partitions_for_topic(topic)
            time.sleep(0.1)
        if not parts:
            raise RuntimeError(f"topic {topic} has no partitions")
        self.consumer.assign([TopicPartition(topic, p) for p in parts])
        self.consumer.seek_to_beginning()
        self.lists: dict[str, list[str]] = {}
        # Where each list was written: one user's lists share a partition (keyed by the
        # user), so their offsets give the order the worker applied the user's events.
        self.positions: dict[str, tuple[int, int]] = {}
        self.last_at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for records in self.consumer.poll(timeout_ms=100).values():
                now = time.monotonic()
                for r in records:
                    rec = orjson.loads(r.value)
                    eid = rec.get("trigger_event_id", "")
                    if eid not in self.lists:
                        self.lists[eid] = [i["item_id"] for i in rec.get("items", [])]
                        self.positions[eid] = (r.partition, r.offset)
                        self.last_at = now

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.consumer.close()


def _ready_split(workers: list[WorkerProcess], partitions: int, timeout: float) -> None:
    """Wait until every worker is ready and, together, they hold every partition of the
    topics their agents read (so no rebalance is pending when the replay starts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = []
        for w in workers:
            status, body = w.get_json("/ready")
            held.append(body.get("assigned_partitions", 0) if status == 200 else 0)
        if all(held) and sum(held) >= SOURCE_TOPICS * partitions:
            return
        time.sleep(0.3)
    raise RuntimeError("workers never split the partitions between them")


def _metric(m: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` carrying every one of ``labels``."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in m.items()
               if k.split("{", 1)[0] == name and all(w in k for w in want))


def _wait_catalogue(workers: list[WorkerProcess], n_items: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    sizes = [0] * len(workers)
    while time.monotonic() < deadline:
        sizes = [int(_metric(w.metrics(), "persona_catalogue_items")) for w in workers]
        if all(s >= n_items for s in sizes):
            break
        time.sleep(0.3)
    return sizes


def recall_hits(events: list[tuple[str, str, str]], lists: dict[str, list[str]],
                positions: dict[str, tuple[int, int]]) -> int:
    """Hits of the prequential protocol through the broker: ``events`` are (event id,
    user, item); an event hits if its item is in the list served after the same user's
    previous event, in the order the worker applied them (``positions``: each list's
    partition and offset). Clicks and purchases are separate topics, read side by side,
    so that order is not the order they were produced in, and by how much depends on
    the backlog. An event without a list (not applied in time) counts as a miss.

    >>> events = [("c1", "u", "a"), ("c2", "u", "b"), ("p1", "u", "c")]
    >>> lists = {"c1": ["c"], "p1": ["b"], "c2": []}
    >>> recall_hits(events, lists, {"c1": (0, 1), "p1": (0, 2), "c2": (0, 3)})
    2
    >>> recall_hits(events, lists, {"c1": (0, 1), "c2": (0, 2), "p1": (0, 3)})
    0
    """
    unplaced = (1 << 62, 0)
    by_user: dict[str, list[tuple[tuple[int, int], str, str]]] = {}
    for eid, user, item in events:
        by_user.setdefault(user, []).append((positions.get(eid, unplaced), eid, item))
    hits = 0
    for applied in by_user.values():
        applied.sort()
        for (_, before, _), (at, _, item) in zip(applied, applied[1:], strict=False):
            if at != unplaced and item in lists.get(before, ()):
                hits += 1
    return hits


def run_mode(bootstrap: str, home: Path, mode: str, n_events: int, partitions: int,
             timeout: float, items: list[Outgoing], events: list[Outgoing],
             progress: Progress) -> Run:
    n_workers, sync = MODES[mode]
    rig = Rig(bootstrap=bootstrap, home=home / mode, partitions=partitions,
              # A replay of history, as the evaluation replays it: no age limit, and no
              # per-user rate limit (MovieLens users rate in bursts of one second).
              extra_env={"PERSONA_MAX_EVENT_AGE_S": "0", "PERSONA_USER_RATE_PER_S": "0",
                         "PERSONA_LOG_LEVEL": "warning",
                         "PERSONA_MODEL_SYNC": "true" if sync else "false",
                         "PERSONA_CHECKPOINT_INTERVAL_S": "0"})
    run = Run(mode, n_workers)
    reader = None
    try:
        rig.setup()
        workers = [rig.worker(f"w{j + 1}") for j in range(n_workers)]
        for w in workers:
            w.start()
        for w in workers:
            w.wait_ready(timeout=180)
        _ready_split(workers, partitions, timeout=120)
        topics = rig.topics
        producer = make_producer(bootstrap)
        publish(producer, [Outgoing(topics["items"], o.key, o.value) for o in items])
        run.catalogue = _wait_catalogue(workers, len(items), timeout=120)
        reader = RecReader(bootstrap, topics["recommendations"])
        rename = {"clicks": topics["clicks"], "purchases": topics["purchases"]}
        batch = [Outgoing(rename[o.topic], o.key, o.value) for o in events[:n_events]]
        replay = [(d["event_id"], d["user_id"], d["item_id"])
                  for d in (orjson.loads(o.value) for o in batch)]
        task = progress.add_task(f"{mode}: recommendations", total=len(batch))
        pids = [w.proc.pid for w in workers if w.proc is not None]
        cpu0 = sum(cpu_seconds(pid) for pid in pids)
        t0 = time.monotonic()
        publish(producer, batch)
        producer.close()
        deadline = t0 + timeout
        while len(reader.lists) < len(batch) and time.monotonic() < deadline:
            progress.update(task, completed=len(reader.lists))
            time.sleep(0.25)
        progress.update(task, completed=len(reader.lists))
        run.timed_out = len(reader.lists) < len(batch)
        run.cpu_s = sum(cpu_seconds(pid) for pid in pids) - cpu0
        run.seconds = max(1e-9, reader.last_at - t0)
        run.events, run.recs = len(batch), len(reader.lists)
        run.hits = recall_hits(replay, reader.lists, reader.positions)
        metrics = [w.metrics() for w in workers]
        if sync and n_workers > 1:
            # The last deltas leave up to one interval after the last event: let the
            # other workers apply them before they are counted (bounded).
            settle = time.monotonic() + 10.0
            while time.monotonic() < settle and sum(
                    _metric(m, "persona_model_sync_steps_total", outcome="applied")
                    for m in metrics) < (n_workers - 1) * sum(
                    _metric(m, "persona_model_sync_steps_total", outcome="sent")
                    for m in metrics):
                time.sleep(0.25)
                metrics = [w.metrics() for w in workers]
        for m in metrics:
            run.per_worker_events.append(int(sum(
                _metric(m, "persona_events_total", topic=t, outcome="accepted")
                for t in ("clicks", "purchases"))))
            for kind, outcomes in (("batches", ("sent", "applied", "own")),
                                   ("steps", ("sent", "applied", "dropped"))):
                for outcome in outcomes:
                    key = f"{kind}_{outcome}"
                    run.sync[key] = run.sync.get(key, 0) + _metric(
                        m, f"persona_model_sync_{kind}_total", outcome=outcome)
    finally:
        if reader is not None:
            reader.close()
        rig.close()
    return run


def sync_overhead(n: int) -> dict[str, float]:
    """Microseconds per event of the sync path, in-process (``bench/sync.py``, one delta
    per 100 events): learning with the outbox on, recording, draining and encoding, and
    decoding and applying on another engine."""
    from bench.sync import measure

    return measure(n, 100)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000, help="MovieLens events per mode")
    ap.add_argument("--modes", default="one,two,two-nosync,one-nosync",
                    help=f"comma-separated, of {', '.join(MODES)}")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per mode, max")
    ap.add_argument("--overhead-events", type=int, default=20_000,
                    help="events of the in-process sync timing (0: skip)")
    ap.add_argument("--bootstrap", default="",
                    help="use this running broker instead of starting one (tests)")
    args = ap.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - set(MODES)
    if unknown:
        ap.error(f"unknown modes {sorted(unknown)}")
    n_events = max(1, min(args.events, 100_000))

    base = Settings.from_env()
    tmp = Path(tempfile.mkdtemp(prefix="persona-scaleout-"))
    s = Settings.from_env({**os.environ, "PERSONA_DATA_DIR": str(tmp),
                           "PERSONA_BROKER_PORT": str(free_port())})
    broker = None
    runs: list[Run] = []
    try:
        bootstrap = args.bootstrap
        if not bootstrap:
            (tmp / "kafka").mkdir()
            lib = LocalBroker.from_settings(base).fetch()
            (tmp / "kafka" / lib.name).symlink_to(lib, target_is_directory=True)
            broker = LocalBroker.from_settings(s, name="scaleout")
            broker.start(timeout=120)
            bootstrap = broker.bootstrap
        items = movielens_items(s.topics)
        events = movielens_events(s.topics, n_events)
        with Progress() as progress:
            for mode in modes:
                runs.append(run_mode(bootstrap, tmp, mode, n_events, args.partitions,
                                     args.timeout, items, events, progress))
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"machine: {machine()}; {platform.platform()}, numpy {np.__version__}, "
          f"Kafka {s.kafka_version}")
    print(f"MovieLens 100K: {n_events} events, {args.partitions} partitions, one broker; "
          "recall@10 through the broker (a user's first event counts as a miss)")
    print("| mode | workers | recall@10 | events/s | seconds | worker CPU us/event | recs | "
          "events per worker | catalogue per worker | sync steps sent / applied |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|---|")
    for r in runs:
        print(f"| {r.mode} | {r.workers} | {r.recall:.4f} | {r.rate:.0f} | {r.seconds:.1f} | "
              f"{r.cpu_us_per_event:.0f} | "
              f"{r.recs}{' (timed out)' if r.timed_out else ''} | "
              f"{' / '.join(map(str, r.per_worker_events))} | "
              f"{' / '.join(map(str, r.catalogue))} | "
              f"{r.sync.get('steps_sent', 0):.0f} / {r.sync.get('steps_applied', 0):.0f} |")
    by = {r.mode: r for r in runs}
    out: dict[str, Any] = {"runs": [r.__dict__ | {"recall": r.recall, "rate": r.rate,
                                                  "cpu_us_per_event": r.cpu_us_per_event}
                                    for r in runs]}
    if "one" in by and "two" in by and by["one"].recall:
        one, two = by["one"], by["two"]
        out["recall_ratio"] = two.recall / one.recall
        out["throughput_ratio"] = two.rate / one.rate if one.rate else 0.0
        print(f"two/one: recall {out['recall_ratio']:.4f} "
              f"({100 * (out['recall_ratio'] - 1):+.2f}%), "
              f"throughput {out['throughput_ratio']:.2f}x")
    if "two-nosync" in by and "one" in by and by["one"].recall:
        out["nosync_recall_ratio"] = by["two-nosync"].recall / by["one"].recall
        print(f"two without sharing / one: recall {out['nosync_recall_ratio']:.4f}")
    if "one" in by and "one-nosync" in by and by["one-nosync"].rate:
        out["one_sync_throughput_ratio"] = by["one"].rate / by["one-nosync"].rate
        out["one_sync_cpu_us"] = by["one"].cpu_us_per_event - by["one-nosync"].cpu_us_per_event
        print(f"one worker, sync on / off: throughput {out['one_sync_throughput_ratio']:.3f}x, "
              f"worker CPU {out['one_sync_cpu_us']:+.0f} us/event")
    if "two" in by and "two-nosync" in by:
        out["two_sync_cpu_us"] = by["two"].cpu_us_per_event - by["two-nosync"].cpu_us_per_event
        print(f"two workers, sync on / off: worker CPU {out['two_sync_cpu_us']:+.0f} us/event "
              "(all workers)")
    if args.overhead_events > 0:
        o = sync_overhead(args.overhead_events)
        out["overhead"] = o
        print(f"sync path in-process ({o['events']:.0f} events, one delta per 100, per "
              f"event): learn {o['learn_recording_us']:.0f} us; recording "
              f"{o['record_us']:+.1f} us; drain+encode {o['drain_us']:.1f} us; decode+apply "
              f"on another engine {o['apply_us']:.1f} us ({o['ratio']:.3f} of learning); "
              f"{o['bytes_per_event']:.0f} bytes")
    return out


if __name__ == "__main__":
    main()
