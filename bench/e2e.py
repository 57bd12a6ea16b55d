"""End to end through the real local Kafka: a persona worker against a trivial Faust agent.

In one run, on one broker, one after the other, for each target:

- ``trivial``: ``bench.trivial_agent``, a Faust agent that consumes a bytes topic and
  produces each value to an output topic, built with persona's Faust settings;
- ``skeleton``: ``bench.skeleton_agent``, persona's message pattern for keyed input with
  no models (one agent reads each click, writes one table record and sends one output),
  same settings: the framework's floor for what persona does per event;
  ``skeleton-rekey`` (not in the default run) is the pattern before input was applied
  where it arrives (a first agent re-keys each click onto an internal topic);
  ``skeleton-take`` (not in the default run) reads through ``stream.take_events``
  (``--take N,SECONDS``), one table write per user per batch;
- ``persona``: a ``persona worker`` process (``streams.local.worker_proc.WorkerProcess``), its
  models warmed with a MovieLens prefix; input ``clicks``, output ``recommendations``
  (matched by ``trigger_event_id``).

A kafka-python producer (acks=1, linger 0) sends clicks at fixed rates for a window
each, stamping each event's send time; a kafka-python consumer of the output topic
matches each output to its event (``event_id`` / ``trigger_event_id``) and gives the
event-to-output latency (p50/p99/p99.9, nearest rank). Then:

- highest sustainable rate: doubling from the best fixed rate, then bisecting, one
  window per step. A rate is *sustainable* when the client managed >= 95% of it, every
  event got its output, and, timed to each output's Kafka timestamp (stamped by the
  target as it hands the output to its producer, so this Python client's own consumer
  is not what is measured): p99 < 1 s, the output rate over the window (outputs /
  (last output - first send)) >= 95% of the rate sent, and latency does not grow (the
  median of the last fifth of the window within 100 ms of the first fifth's). The
  p50/p99/p99.9 columns are the consumer's view: send to receipt here.
- burst: the target is paused (SIGSTOP), N events are published as fast as possible, it
  is resumed (SIGCONT), and the drain rate is N / (last output's Kafka timestamp -
  resume time): the worker's capacity with no client competing for the CPU.

CPU% of the target, the broker and this client are read from /proc over each window,
and the target's CPU ms per answered event: on a shared machine the rates move with
the other load, CPU per event much less (1000 / it = events/s on one free core). For
persona, the mean ms per message of its ingest and profile agents and the mean
input-to-profile lag come from its /metrics. ``--py-spy DIR`` records each target with
py-spy during its burst drain (collapsed stacks, for shares of where the time goes).
Loopback only; every process started here is stopped by its PID; bounded in time.

The last table gives each target's figures side by side with the ratios persona /
trivial, skeleton / trivial and persona / skeleton (with issue 16's targets for
persona / trivial). ``bench.hops`` prices each message of the skeleton separately.

    .venv/bin/python -m bench.e2e                 # ~5-6 min
    .venv/bin/python -m bench.e2e --quick         # ~1.5 min, smoke-sized
    .venv/bin/python -m bench.e2e --targets trivial,skeleton,skeleton-take --take 500,0.005
    .venv/bin/python -m bench.e2e --targets persona --rates 1000 --no-search --burst 0
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from streams.cli.replay import movielens_events, movielens_items
from streams.local.broker import LocalBroker, ensure_topics, free_port
from streams.local.chaos import Rig, machine
from streams.local.worker_proc import WorkerProcess, stop_process
from streams.settings import Settings

console = Console(stderr=True)
CLK_TCK = os.sysconf("SC_CLK_TCK")
N_USERS = 943  # MovieLens 100K users: the warm-up teaches the models about them
N_ITEMS = 1682
P99_LIMIT_S = 1.0
RATE_SHARE = 0.95
GROWTH_LIMIT_S = 0.100


# ---------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process (None if it is gone or unknown)."""
    if pid is None:
        return None
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class CpuMeter:
    """CPU% of a few processes between ``start`` and ``stop`` (100% = one core)."""

    pids: dict[str, int | None]
    seconds: dict[str, float | None] = field(default_factory=dict)  # CPU s, after stop
    _t0: float = 0.0
    _c0: dict[str, float | None] = field(default_factory=dict)

    def start(self) -> CpuMeter:
        self._t0 = time.monotonic()
        self._c0 = {k: cpu_seconds(p) for k, p in self.pids.items()}
        return self

    def stop(self) -> dict[str, float | None]:
        dt = max(1e-6, time.monotonic() - self._t0)
        out: dict[str, float | None] = {}
        for k, p in self.pids.items():
            c0, c1 = self._c0.get(k), cpu_seconds(p)
            self.seconds[k] = None if c0 is None or c1 is None else c1 - c0
            out[k] = None if c0 is None or c1 is None else round(100 * (c1 - c0) / dt, 1)
        return out


# ---------------------------------------------------------------------------- targets


@dataclass
class Target:
    """One system under test: where events go in, where outputs come out, its process."""

    name: str
    in_topic: str
    out_topic: str
    id_field: str
    pid: Callable[[], int | None]
    alive: Callable[[], bool]
    metrics: Callable[[], dict[str, float]] | None = None  # the worker's /metrics


class Reader:
    """A consumer of ``target.out_topic`` from its end: output id -> (receive time,
    Kafka timestamp of the output, seconds)."""

    def __init__(self, bootstrap: str, target: Target) -> None:
        self.id_field = target.id_field
        self.got: dict[str, tuple[float, float]] = {}
        self.other = 0
        self._stop = threading.Event()
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                      enable_auto_commit=False, fetch_max_wait_ms=5,
                                      max_poll_records=5000, client_id="bench-e2e-reader")
        parts = None
        deadline = time.monotonic() + 30
        while not parts and time.monotonic() < deadline:
            parts = self.consumer.partitions_for_topic(target.out_topic)
            if not parts:
                time.sleep(0.2)
        if not parts:
            raise RuntimeError(f"no partitions for {target.out_topic}")
        tps = [TopicPartition(target.out_topic, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        self.consumer.seek_to_end()
        for tp in tps:
            self.consumer.position(tp)
        self._thread = threading.Thread(target=self._run, name="bench-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        clock = time.perf_counter
        got = self.got
        key = self.id_field
        while not self._stop.is_set():
            for records in self.consumer.poll(timeout_ms=20).values():
                now = clock()
                for r in records:
                    try:
                        eid = orjson.loads(r.value).get(key)
                    except (orjson.JSONDecodeError, AttributeError, TypeError):
                        eid = None
                    if isinstance(eid, str) and eid not in got:
                        got[eid] = (now, r.timestamp / 1000.0)
                    else:
                        self.other += 1

    def count(self, ids: list[str]) -> int:
        got = self.got
        return sum(1 for e in ids if e in got)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.consumer.close()


def event_value(eid: str, i: int) -> tuple[bytes, bytes]:
    """(key, value) of the i-th bench click: MovieLens users and items, ts = now."""
    user = f"ml-{1 + i % N_USERS}"
    ev = {"event_id": eid, "user_id": user, "item_id": str(1 + (i * 7919) % N_ITEMS),
          "ts": int(time.time() * 1000)}
    return user.encode(), orjson.dumps(ev)


def pct(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    n = len(sorted_values)
    return sorted_values[min(n - 1, max(0, math.ceil(p * n) - 1))]


@dataclass
class Phase:
    """The figures of one window (or burst) against one target."""

    target: str
    kind: str  # "rate" or "burst"
    rate: float  # offered events/s (burst: 0)
    sent: int
    send_rate: float  # what the client managed
    answered: int
    out_rate: float  # outputs per second over the window
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    max_ms: float | None = None
    growth_ms: float | None = None  # median latency, last fifth minus first fifth
    # To the output's Kafka timestamp (stamped when the target hands it to its producer):
    # what the target does, without this client's consumer. The sustainability test
    # uses these, so a busy bench client does not pass for a slow target.
    p50_out_ms: float | None = None
    p99_out_ms: float | None = None
    growth_out_ms: float | None = None
    cpu: dict[str, float | None] = field(default_factory=dict)
    # persona only, from its /metrics over the window: mean ms per message in each agent
    # (persona_event_processing_seconds) and mean input-to-profile lag (event_lag).
    worker_ms: dict[str, float] = field(default_factory=dict)
    # CPU ms the target process used per answered event: less sensitive than rates to
    # other load on the machine (1000 / this = events/s the target could do on one core).
    cpu_ms_per_event: float | None = None
    sustainable: bool = False
    client_limited: bool = False
    note: str = ""


class Bench:
    def __init__(self, bootstrap: str, broker_pid: int | None, progress: Progress,
                 args: argparse.Namespace) -> None:
        self.bootstrap = bootstrap
        self.broker_pid = broker_pid
        self.progress = progress
        self.args = args
        self.phases: list[Phase] = []
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0,
                                      client_id="bench-e2e-paced")
        self.fast = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5,
                                  batch_size=256 * 1024, client_id="bench-e2e-burst")
        self._seq = 0
        self.sent_ids: dict[str, list[str]] = {}  # every id sent to each target

    def close(self) -> None:
        self.producer.close(timeout=10)
        self.fast.close(timeout=10)

    def _meter(self, target: Target) -> CpuMeter:
        return CpuMeter({"target": target.pid(), "broker": self.broker_pid,
                         "client": os.getpid()}).start()

    def _prefix(self, target: Target, what: str) -> str:
        self._seq += 1
        return f"{target.name[0]}{self._seq}{what}"

    def paced(self, target: Target, reader: Reader, rate: float, window: float,
              record: bool = True) -> Phase:
        """Send ``rate`` events/s for ``window`` seconds; wait for their outputs."""
        n = max(1, int(rate * window))
        prefix = self._prefix(target, "r")
        ids = [f"{prefix}-{i}" for i in range(n)]
        self.sent_ids.setdefault(target.name, []).extend(ids)
        sent_at: list[float] = [0.0] * n
        sent_wall: list[float] = [0.0] * n
        task = self.progress.add_task(f"{target.name} {rate:>7,.0f}/s", total=n)
        m0 = _scrape(target)
        meter = self._meter(target)
        clock = time.perf_counter
        send = self.producer.send
        topic = target.in_topic
        t0 = clock()
        i = shown = 0
        while i < n:
            due = min(n, int((clock() - t0) * rate) + 1)
            while i < due:
                key, value = event_value(ids[i], i)
                sent_at[i] = clock()
                sent_wall[i] = time.time()
                send(topic, key=key, value=value)
                i += 1
            if i - shown >= 64 or i == n:
                self.progress.update(task, completed=i)
                shown = i
            delay = t0 + i / rate - clock()
            if delay > 0:
                time.sleep(delay)
        t_end = clock()
        self.producer.flush(timeout=30)
        send_rate = n / max(1e-6, sent_at[-1] - sent_at[0]) if n > 1 else rate
        # Wait for the outputs: bounded; a backlog gets up to a window more to drain.
        deadline = t_end + max(3.0, min(30.0, window * 1.5))
        while reader.count(ids) < n and clock() < deadline and target.alive():
            time.sleep(0.1)
        cpu = meter.stop()
        self.progress.remove_task(task)
        phase = self._figures(target, "rate", rate, ids, sent_at, sent_wall, reader,
                              send_rate, cpu)
        phase.worker_ms = _worker_ms(m0, _scrape(target))
        phase.cpu_ms_per_event = _per_event(meter, phase.answered)
        phase.client_limited = send_rate < RATE_SHARE * rate
        if record:
            self.phases.append(phase)
        return phase

    def _figures(self, target: Target, kind: str, rate: float, ids: list[str],
                 sent_at: list[float], sent_wall: list[float], reader: Reader,
                 send_rate: float, cpu: dict[str, float | None]) -> Phase:
        got = reader.got
        lat: list[float] = []
        order: list[float] = []  # latencies in send order
        out: list[float] = []  # to the output's Kafka timestamp, in send order
        last_out = 0.0
        for eid, t, wall in zip(ids, sent_at, sent_wall, strict=True):
            hit = got.get(eid)
            if hit is None:
                continue
            d = hit[0] - t
            lat.append(d)
            order.append(d)
            out.append(max(0.0, hit[1] - wall))
            last_out = max(last_out, hit[1])
        n = len(ids)
        # Outputs per second over the window, by the outputs' own timestamps.
        span = last_out - sent_wall[0]
        out_rate = len(lat) / span if lat and span > 0 else 0.0
        phase = Phase(target=target.name, kind=kind, rate=rate, sent=n,
                      send_rate=round(send_rate, 1), answered=len(lat),
                      out_rate=round(out_rate, 1), cpu=cpu)
        if lat:
            lat.sort()
            phase.p50_ms = round(1000 * pct(lat, 0.50), 2)
            phase.p99_ms = round(1000 * pct(lat, 0.99), 2)
            phase.p999_ms = round(1000 * pct(lat, 0.999), 2)
            phase.max_ms = round(1000 * lat[-1], 2)
        if out:
            s_out = sorted(out)
            phase.p50_out_ms = round(1000 * pct(s_out, 0.50), 2)
            phase.p99_out_ms = round(1000 * pct(s_out, 0.99), 2)
        phase.growth_ms = _growth(order)
        phase.growth_out_ms = _growth(out)
        phase.sustainable = (
            len(lat) == n
            and send_rate >= RATE_SHARE * rate
            and phase.p99_out_ms is not None and phase.p99_out_ms < 1000 * P99_LIMIT_S
            and out_rate >= RATE_SHARE * send_rate
            and (phase.growth_out_ms is None
                 or phase.growth_out_ms <= 1000 * GROWTH_LIMIT_S)
        )
        return phase

    def search(self, target: Target, reader: Reader, known: list[Phase],
               budget_s: float) -> float | None:
        """Highest sustainable rate: double from the best known one, then bisect."""
        a = self.args
        lo = max((p.rate for p in known if p.sustainable), default=0.0)
        hi = min((p.rate for p in known if not p.sustainable and not p.client_limited),
                 default=None)
        started = time.monotonic()
        for _ in range(a.max_steps):
            if time.monotonic() - started > budget_s:
                break
            if hi is None:
                rate = min(a.max_rate, 2 * lo if lo else a.rates[0])
                if rate <= lo:
                    break
            else:
                if lo and hi / lo <= 1.15:
                    break
                rate = _nice(math.sqrt(max(lo, hi / 4) * hi))
                if rate <= lo or rate >= hi:
                    break
            p = self.paced(target, reader, rate, a.window)
            p.note = "search"
            if p.client_limited:
                p.note = "search: client-limited"
                break
            if p.sustainable:
                lo = rate
            else:
                hi = rate
                if not self.caught_up(reader, target):
                    p.note = "search: backlog not drained in 60 s; search stopped"
                    break
        return lo or None

    def caught_up(self, reader: Reader, target: Target, timeout: float = 60.0) -> bool:
        """Wait (bounded) until every event sent to the target has its output, so a
        backlog left by an unsustainable window does not slow the next one."""
        ids = self.sent_ids.get(target.name, [])
        deadline = time.monotonic() + timeout
        while reader.count(ids) < len(ids) and target.alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    def burst(self, target: Target, reader: Reader, n: int) -> Phase:
        """Pause the target, publish ``n`` as fast as possible, resume, time the drain."""
        prefix = self._prefix(target, "b")
        ids = [f"{prefix}-{i}" for i in range(n)]
        self.sent_ids.setdefault(target.name, []).extend(ids)
        pid = target.pid()
        assert pid is not None
        task = self.progress.add_task(f"{target.name} burst {n:,}", total=2 * n)
        os.kill(pid, signal.SIGSTOP)
        try:
            t0 = time.perf_counter()
            for i, eid in enumerate(ids):
                key, value = event_value(eid, i)
                self.fast.send(target.in_topic, key=key, value=value)
                if i % 1000 == 0:
                    self.progress.update(task, completed=i)
            self.fast.flush(timeout=60)
            publish_s = time.perf_counter() - t0
        finally:
            resumed_wall, resumed = time.time(), time.perf_counter()
            os.kill(pid, signal.SIGCONT)
        meter = self._meter(target)
        spy = self._py_spy(target, pid)
        deadline = resumed + max(30.0, n / 200)  # 50 s for the default 10,000
        done = 0
        while done < n and time.perf_counter() < deadline and target.alive():
            time.sleep(0.1)
            done = reader.count(ids)
            self.progress.update(task, completed=n + done)
        cpu = meter.stop()
        if spy is not None:  # py-spy writes its file on SIGINT
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(15)
            except subprocess.TimeoutExpired:
                stop_process(spy, 5.0)
        self.progress.remove_task(task)
        stamps = [reader.got[e][1] for e in ids if e in reader.got]
        recv = [reader.got[e][0] for e in ids if e in reader.got]
        drain = len(stamps) / max(1e-3, max(stamps) - resumed_wall) if stamps else 0.0
        phase = Phase(target=target.name, kind="burst", rate=0.0, sent=n,
                      send_rate=round(n / max(1e-6, publish_s), 1), answered=len(stamps),
                      out_rate=round(drain, 1), cpu=cpu,
                      cpu_ms_per_event=_per_event(meter, len(stamps)),
                      note=f"published in {publish_s:.2f} s while paused; last output "
                           f"received {max(recv, default=resumed) - resumed:.2f} s "
                           "after resume")
        self.phases.append(phase)
        return phase

    def _py_spy(self, target: Target, pid: int) -> subprocess.Popen | None:
        """``py-spy record`` of the target (collapsed stacks) while a burst drains."""
        if self.args.py_spy is None:
            return None
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.args.py_spy.mkdir(parents=True, exist_ok=True)
        out = self.args.py_spy / f"{target.name}.txt"
        return subprocess.Popen([exe, "record", "--pid", str(pid), "--format", "raw",
                                 "--rate", "200", "--output", str(out)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)

    def measure(self, target: Target) -> dict[str, Any]:
        a = self.args
        reader = Reader(self.bootstrap, target)
        try:
            # Settle: connections, first fetches, code paths warm (not recorded).
            self.paced(target, reader, min(200.0, a.rates[0]), 1.0, record=False)
            self.caught_up(reader, target, 30.0)
            fixed = []
            backlog = False
            for r in a.rates:
                p = self.paced(target, reader, r, a.window)
                fixed.append(p)
                if not p.sustainable and not self.caught_up(reader, target):
                    p.note = "backlog not drained in 60 s: no further windows"
                    backlog = True
                    break
            best = max((p.rate for p in fixed if p.sustainable), default=None)
            if a.search and not backlog:
                best = self.search(target, reader, fixed, a.search_budget)
            burst = (self.burst(target, reader, a.burst)
                     if a.burst and self.caught_up(reader, target) else None)
            # Completeness: every event sent to the target (settle phase included) has
            # its output by now, or within a bounded wait.
            ids = self.sent_ids.get(target.name, [])
            deadline = time.monotonic() + 60
            while (reader.count(ids) < len(ids) and time.monotonic() < deadline
                   and target.alive()):
                time.sleep(0.2)
            return {"max_sustainable": best, "drain": burst.out_rate if burst else None,
                    "cpu_ms_per_event": burst.cpu_ms_per_event if burst else None,
                    # Latency at the first fixed rate (the consumer's view, send to
                    # receipt), for the ratios: None if that window was not sustained.
                    "p99_ms": fixed[0].p99_ms if fixed and fixed[0].sustainable else None,
                    "sent": len(ids),
                    "missing": len(ids) - reader.count(ids),
                    "unmatched_outputs": reader.other}
        finally:
            reader.close()


def _growth(in_send_order: list[float]) -> float | None:
    """Median of the last fifth minus median of the first fifth, ms (None: too few)."""
    if len(in_send_order) < 10:
        return None
    fifth = len(in_send_order) // 5
    first, last = sorted(in_send_order[:fifth]), sorted(in_send_order[-fifth:])
    return round(1000 * (pct(last, 0.5) - pct(first, 0.5)), 2)


def _per_event(meter: CpuMeter, n: int) -> float | None:
    used = meter.seconds.get("target")
    return None if used is None or n <= 0 else round(1000 * used / n, 3)


def _scrape(target: Target) -> dict[str, float]:
    if target.metrics is None:
        return {}
    try:
        return target.metrics()
    except Exception:  # a busy worker may not answer in time: no figures, no failure
        return {}


def _worker_ms(m0: dict[str, float], m1: dict[str, float]) -> dict[str, float]:
    """Mean ms per message between two scrapes, per agent, and the mean event lag."""
    out = {}
    series = {agent: ("persona_event_processing_seconds_", f'{{agent="{agent}"}}')
              for agent in ("ingest", "profile")}
    series["lag"] = ("persona_event_lag_seconds_", "")
    for name, (prefix, labels) in series.items():
        total, count = f"{prefix}sum{labels}", f"{prefix}count{labels}"
        dn = m1.get(count, 0.0) - m0.get(count, 0.0)
        if m0 and m1 and dn > 0:
            out[name] = round(1000 * (m1.get(total, 0.0) - m0.get(total, 0.0)) / dn, 3)
    return out


def _nice(x: float) -> float:
    """Round to two significant figures (rates read better that way)."""
    if x <= 0:
        return 0.0
    mag = 10 ** (math.floor(math.log10(x)) - 1)
    return float(round(x / mag) * mag)


# ---------------------------------------------------------------------------- processes


@dataclass
class AgentProcess:
    """A bench agent module (``bench.trivial_agent``, ``bench.skeleton_agent``) in a child
    process (own session, stopped by its PID)."""

    module: str
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module],
                env={**os.environ, **self.env}, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        stop_process(self.proc, 20.0)


# The agent targets: module, prefix of its topic variables, id field of its outputs.
AGENTS: dict[str, tuple[str, str, str]] = {
    "trivial": ("bench.trivial_agent", "BENCH_TRIVIAL", "event_id"),
    "skeleton": ("bench.skeleton_agent", "BENCH_SKELETON", "trigger_event_id"),
    "skeleton-rekey": ("bench.skeleton_agent", "BENCH_SKELETON", "trigger_event_id"),
    "skeleton-take": ("bench.skeleton_agent", "BENCH_SKELETON", "trigger_event_id"),
}
# Each skeleton variant's settings (bench.skeleton_agent); --take adds its batch.
SKELETON_ENV: dict[str, dict[str, str]] = {
    "skeleton": {"BENCH_SKELETON_REKEY": "0"},
    "skeleton-rekey": {"BENCH_SKELETON_REKEY": "1"},
    "skeleton-take": {"BENCH_SKELETON_REKEY": "0"},
}


def wait_answering(bench: Bench, target: Target, timeout: float) -> float:
    """Send a probe every 0.5 s until one comes out of the target; seconds it took."""
    reader = Reader(bench.bootstrap, target)
    started = time.monotonic()
    try:
        k = 0
        while time.monotonic() - started < timeout:
            if not target.alive():
                raise RuntimeError(f"{target.name} exited early")
            eid = f"probe-{target.name}-{k}"
            key, value = event_value(eid, k)
            bench.producer.send(target.in_topic, key=key, value=value)
            bench.producer.flush(5)
            k += 1
            for _ in range(5):
                time.sleep(0.1)
                if any(e.startswith("probe-") for e in reader.got):
                    return time.monotonic() - started
        raise RuntimeError(f"{target.name} did not answer within {timeout:.0f} s")
    finally:
        reader.close()


def agent_target(bench: Bench, home: Path, partitions: int, session_s: float, tag: str,
                 name: str, kind: str, env: dict[str, str]) -> tuple[AgentProcess, Target]:
    """Target ``name``, one of ``AGENTS[kind]`` with ``env`` on top, not started: its
    topics exist, its process is ready to start."""
    module, topics_var, id_field = AGENTS[kind]
    in_topic, out_topic = f"bench-in-{name}-{tag}", f"bench-out-{name}-{tag}"
    app_id = f"bench-{name}-{tag}"
    # The skeleton's extra outputs (bench.hops) go to OUT-extra; its internal topic is
    # made here, as the rig makes persona's: an agent that subscribes before Faust has
    # declared it ignores it for good.
    ensure_topics(bench.bootstrap, [in_topic, out_topic, f"{out_topic}-extra",
                                    f"{app_id}-events"], partitions, timeout=60.0)
    (home / name).mkdir(parents=True, exist_ok=True)
    proc = AgentProcess(module, env={
        "PERSONA_BOOTSTRAP": bench.bootstrap, "PERSONA_APP_ID": app_id,
        "PERSONA_DATA_DIR": str(home / name), "PERSONA_PARTITIONS": str(partitions),
        "PERSONA_SESSION_TIMEOUT_S": str(session_s), "PERSONA_WEB_PORT": str(free_port()),
        "PERSONA_WEB_HOST": "127.0.0.1", "PERSONA_LOG_LEVEL": "warning",
        f"{topics_var}_IN": in_topic, f"{topics_var}_OUT": out_topic, **env},
        log_path=home / name / "agent.log")
    target = Target(name, in_topic, out_topic, id_field,
                    pid=lambda: proc.proc.pid if proc.proc else None, alive=proc.alive)
    return proc, target


def run_agent(bench: Bench, home: Path, partitions: int, session_s: float, tag: str,
              name: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Start one of ``AGENTS``, measure it, stop it."""
    proc, target = agent_target(bench, home, partitions, session_s, tag, name,
                                name, env or {})
    try:
        proc.start()
        ready_s = wait_answering(bench, target, 120)
        out = bench.measure(target)
        out["ready_s"] = round(ready_s, 1)
        return out
    except Exception:
        console.print(proc.log_path.read_text(errors="replace")[-3000:])
        raise
    finally:
        proc.stop()


def run_persona(bench: Bench, home: Path, partitions: int, session_s: float,
                warmup: int) -> dict[str, Any]:
    rig = Rig(bench.bootstrap, home, session_timeout_s=session_s, partitions=partitions,
              extra_env={
                  # MovieLens is from 1997-98: a replay of history.
                  "PERSONA_MAX_EVENT_AGE_S": "0",
                  # Bench users send far more than a person does; nothing is rate-limited
                  # (a limited event gets no recommendation).
                  "PERSONA_USER_RATE_PER_S": "1000000",
                  "PERSONA_USER_BURST": "10000000",
                  "PERSONA_LOG_LEVEL": "warning",
              }).setup()
    s = Settings.from_env(rig.env("w1"))
    worker: WorkerProcess = rig.worker("w1")

    def pid() -> int | None:
        return worker.proc.pid if worker.proc else None

    target = Target("persona", s.topics.clicks, s.topics.recommendations,
                    "trigger_event_id", pid=pid, alive=worker.alive, metrics=worker.metrics)
    try:
        worker.start()
        ready_s = worker.wait_ready(120)
        t0 = time.monotonic()
        if warmup:
            task = bench.progress.add_task(f"persona warm-up {warmup:,}", total=warmup)
            for m in movielens_items(s.topics) + movielens_events(s.topics, warmup):
                bench.fast.send(m.topic, key=m.key, value=m.value)
            bench.fast.flush(60)
            deadline = time.monotonic() + 240
            done = 0.0
            while time.monotonic() < deadline and done < warmup:
                m = worker.metrics()
                done = sum(v for k, v in m.items() if k.startswith("persona_events_total{")
                           and 'outcome="accepted"' in k and "items" not in k)
                bench.progress.update(task, completed=done)
                time.sleep(0.2)
            bench.progress.remove_task(task)
            if done < warmup:
                raise RuntimeError(f"warm-up: only {done:.0f} of {warmup} events applied")
        warm_s = time.monotonic() - t0
        wait_answering(bench, target, 60)
        out = bench.measure(target)
        out.update(ready_s=round(ready_s, 1), warmup_s=round(warm_s, 1))
        return out
    except Exception:
        console.print(worker.log_tail(60))
        raise
    finally:
        rig.close()


# ---------------------------------------------------------------------------- report


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:,.1f}"


def _ms2(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _cpu(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def report(result: dict[str, Any], out: Console) -> None:
    out.print(f"machine: {result['machine']}")
    out.print(f"versions: {result['versions']}")
    out.print(f"method: {result['method']}")
    table = Table(title="event -> output latency through the broker (ms); CPU% (100 = 1 "
                  "core) of target / broker / this client")
    for col in ("#", "target", "rate/s", "sent/s", "answered", "out/s", "p50", "p99",
                "p99.9", "max", "growth", "out p50/p99", "cpu t/b/c", "cpu ms/ev",
                "ing/prof/lag", "ok"):
        table.add_column(col, justify="left" if col == "target" else "right")
    notes = []
    for n, p in enumerate(result["phases"], start=1):
        cpu = "/".join(_cpu(p["cpu"].get(k)) for k in ("target", "broker", "client"))
        table.add_row(
            str(n), p["target"], "burst" if p["kind"] == "burst" else f"{p['rate']:,.0f}",
            f"{p['send_rate']:,.0f}", f"{p['answered']:,}/{p['sent']:,}",
            f"{p['out_rate']:,.0f}", _ms(p["p50_ms"]), _ms(p["p99_ms"]), _ms(p["p999_ms"]),
            _ms(p["max_ms"]), _ms(p["growth_ms"]),
            f"{_ms(p['p50_out_ms'])}/{_ms(p['p99_out_ms'])}", cpu, _ms2(p["cpu_ms_per_event"]),
            _worker(p["worker_ms"]),
            "yes" if p["sustainable"] else "-")
        if p["note"]:
            notes.append(f"  {n}: {p['note']}")
    out.print(table)
    for line in notes:
        out.print(line)
    summary = Table(title="per worker: max sustainable events/s and burst drain events/s")
    for col in ("target", "max sustainable", "burst drain", "cpu ms/ev (burst)", "sent",
                "missing", "ready s"):
        summary.add_column(col, justify="left" if col == "target" else "right")
    for name, t in result["targets"].items():
        summary.add_row(name, _rate(t.get("max_sustainable")), _rate(t.get("drain")),
                        _ms2(t.get("cpu_ms_per_event")), f"{t['sent']:,}",
                        f"{t['missing']:,}", str(t.get("ready_s", "-")))
    out.print(summary)
    if result.get("ratios"):
        out.print(ratio_table(result))


# The figures compared across targets, and issue 16's target for persona / trivial.
FIGURES = (("max_sustainable", "max sustainable events/s", ">= 0.5"),
           ("drain", "burst drain events/s", ">= 0.5"),
           ("cpu_ms_per_event", "worker CPU ms per event (burst)", "<= 3"),
           ("p99_ms", "p99 ms at {rate}/s (send to receipt)", "<= 1.5"))
RATIOS = (("persona", "trivial"), ("skeleton", "trivial"), ("persona", "skeleton"),
          ("skeleton-rekey", "trivial"), ("skeleton-rekey", "skeleton"),
          ("skeleton-take", "trivial"), ("skeleton-take", "skeleton"))


def ratios(targets: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """{"a / b": {figure: a's figure / b's}} for the pairs of ``RATIOS`` that ran."""
    out: dict[str, dict[str, float | None]] = {}
    for a, b in RATIOS:
        if a in targets and b in targets:
            out[f"{a} / {b}"] = {
                key: (round(x / y, 3) if (x := targets[a].get(key)) and
                      (y := targets[b].get(key)) else None)
                for key, _, _ in FIGURES}
    return out


def ratio_table(result: dict[str, Any]) -> Table:
    names = list(result["targets"])
    pairs = list(result["ratios"])
    table = Table(title="each target's figures and their ratios (same run, same broker)")
    for col in ("figure", *names, *pairs, "target (persona / trivial)"):
        table.add_column(col, justify="left" if col == "figure" else "right")
    rate = f"{result['args']['rates'][0]:,.0f}"
    for key, label, goal in FIGURES:
        vals = [result["targets"][n].get(key) for n in names]
        fmt = _ms2 if key == "cpu_ms_per_event" else _ms if key == "p99_ms" else _rate
        table.add_row(label.format(rate=rate), *(fmt(v) for v in vals),
                      *(_ms2(result["ratios"][p][key]) for p in pairs), goal)
    return table


def _worker(w: dict[str, float]) -> str:
    if not w:
        return "-"
    return "/".join("-" if k not in w else f"{w[k]:.2f}" for k in ("ingest", "profile", "lag"))


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _versions() -> str:
    import faust
    import kafka

    return (f"faust-streaming {faust.__version__}, kafka-python {kafka.__version__}, "
            f"Kafka {Settings.from_env().kafka_version}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="trivial,skeleton,persona",
                    help="comma-separated: trivial, skeleton, skeleton-rekey, skeleton-take, "
                         "persona "
                         "(default: trivial,skeleton,persona)")
    ap.add_argument("--take", default="500,0.005", metavar="N,SECONDS",
                    help="skeleton-take: stream.take_events(N, within=SECONDS)")
    ap.add_argument("--rates", default="100,1000", help="fixed rates, events/s")
    ap.add_argument("--window", type=float, default=6.0, help="seconds per rate")
    ap.add_argument("--search", action=argparse.BooleanOptionalAction, default=True,
                    help="search the highest sustainable rate")
    ap.add_argument("--max-steps", type=int, default=5, help="search steps per target")
    ap.add_argument("--max-rate", type=float, default=40_000.0)
    ap.add_argument("--search-budget", type=float, default=75.0,
                    help="seconds of search per target")
    ap.add_argument("--burst", type=int, default=10_000, help="burst size (0: none)")
    ap.add_argument("--warmup", type=int, default=5000, help="MovieLens events first")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--bootstrap", default="",
                    help="use this loopback broker (127.0.0.1:PORT) instead of starting one")
    ap.add_argument("--py-spy", type=Path, default=None, metavar="DIR",
                    help="record each target with py-spy during its burst drain "
                         "(collapsed stacks in DIR/<target>.txt)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--quick", action="store_true",
                    help="smoke-sized: rates 100,500 for 2 s, 1 search step, burst 1,500, "
                         "warm-up 500")
    args = ap.parse_args(argv)
    if args.quick:
        args.rates, args.window, args.max_steps = "100,500", 2.0, 1
        args.burst, args.warmup, args.search_budget = 1500, 500, 10.0
    args.rates = [float(r) for r in str(args.rates).split(",") if r.strip()]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not args.rates or any(not 0 < r <= 100_000 for r in args.rates):
        ap.error("--rates: each in (0, 100000]")
    if not set(args.targets) <= {*AGENTS, "persona"} or not args.targets:
        ap.error(f"--targets: some of {', '.join([*AGENTS, 'persona'])}")
    n, _, within = args.take.partition(",")
    if not (n.isdigit() and 1 <= int(n) <= 10_000 and _is_seconds(within)):
        ap.error("--take: N,SECONDS with N in [1, 10000], SECONDS in (0, 1]")
    if not 0.5 <= args.window <= 60 or not 0 <= args.burst <= 200_000:
        ap.error("--window in [0.5, 60], --burst in [0, 200000]")
    if not 0 <= args.warmup <= 100_000 or not 0 <= args.max_steps <= 20:
        ap.error("--warmup in [0, 100000], --max-steps in [0, 20]")
    if args.bootstrap and not args.bootstrap.startswith("127.0.0.1:"):
        ap.error("--bootstrap must be 127.0.0.1:PORT (loopback only)")
    return args


def _is_seconds(text: str) -> bool:
    try:
        return 0 < float(text) <= 1
    except ValueError:
        return False


@contextlib.contextmanager
def bench_broker(bootstrap: str | None, prefix: str) -> Iterator[tuple[Path, str, int | None]]:
    """(a scratch directory, the bootstrap, the broker's PID): the loopback broker given
    (``--bootstrap``; no PID), or a local one started here. On exit the broker started
    here is stopped and the scratch directory removed."""
    import logging

    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    home = Path(tempfile.mkdtemp(prefix=prefix))
    broker = None
    try:
        if bootstrap:
            yield home, bootstrap, None
            return
        base = Settings.from_env()
        broker = LocalBroker(version=base.kafka_version, host="127.0.0.1", port=free_port(),
                             home=home / "broker", lib_home=base.kafka_dir)
        with console.status("starting the local Kafka broker"):
            broker.start(timeout=120)
        yield home, broker.bootstrap, broker.status()["pid"]
    finally:
        if broker is not None:
            broker.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(home, ignore_errors=True)


def show(result: dict[str, Any], report: Callable[[dict[str, Any], Console], None],
         width: int, json_path: Path | None) -> None:
    """Print ``result`` through ``report`` at least ``width`` columns wide, with its
    elapsed time; also write it to ``json_path`` (None: not)."""
    out = Console(width=max(width, Console().width))
    report(result, out)
    out.print(f"elapsed: {result['elapsed_s']:.0f} s")
    if json_path is not None:
        json_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    session_s = 20.0  # a burst pauses the target for a second or two
    tag = os.urandom(4).hex()
    started = time.monotonic()
    with bench_broker(args.bootstrap, "persona-bench-e2e-") as (home, bootstrap, broker_pid):
        result: dict[str, Any] = {
            "machine": machine(), "versions": _versions(),
            "method": (f"windows of {args.window:g} s at fixed rates {args.rates}; "
                       f"sustainable (by output timestamps): all answered, p99 < "
                       f"{P99_LIMIT_S:g} s, out rate >= "
                       f"{RATE_SHARE:.0%} of sent, median growth <= "
                       f"{1000 * GROWTH_LIMIT_S:.0f} ms; burst {args.burst:,}; "
                       f"{args.partitions} partitions; persona warm-up {args.warmup:,} "
                       "MovieLens events"),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "targets": {},
        }
        with Progress(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
                      TimeElapsedColumn(), console=console, transient=True) as progress:
            bench = Bench(bootstrap, broker_pid, progress, args)
            try:
                for name in AGENTS:  # in the order of AGENTS: trivial first
                    if name in args.targets:
                        env = dict(SKELETON_ENV.get(name, {}))
                        if name == "skeleton-take":
                            env["BENCH_SKELETON_TAKE"] = args.take
                        result["targets"][name] = run_agent(
                            bench, home, args.partitions, session_s, tag, name, env)
                if "persona" in args.targets:
                    result["targets"]["persona"] = run_persona(
                        bench, home, args.partitions, session_s, args.warmup)
            finally:
                bench.close()
        result["phases"] = [asdict(p) for p in bench.phases]
        t = result["targets"]
        for key, src in (("ratio_sustainable", "max_sustainable"), ("ratio_drain", "drain")):
            a = t.get("persona", {}).get(src)
            b = t.get("trivial", {}).get(src)
            result[key] = round(a / b, 3) if a and b else None
        a = t.get("trivial", {}).get("cpu_ms_per_event")
        b = t.get("persona", {}).get("cpu_ms_per_event")
        result["ratio_cpu"] = round(a / b, 3) if a and b else None
        result["ratios"] = ratios(t)
        result["elapsed_s"] = round(time.monotonic() - started, 1)
        show(result, report, 190, args.json)
        return result


if __name__ == "__main__":
    main()
