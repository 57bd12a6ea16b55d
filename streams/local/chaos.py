"""Chaos driver: sequenced test events, faults on processes we started, and the check that
nothing was lost or counted twice after them (docs/reliability.md).

A :class:`Rig` owns a topic set, an app id and the worker processes of one run.
:class:`EventStream` sends clicks and purchases for a few users at a bounded rate, in a
thread, each with a per-user sequence number in its ``event_id``. After the faults,
:func:`wait_caught_up` waits (bounded) until the worker's consumer group has no lag on the
input and events topics, and :func:`check` compares what the worker kept (the latest
``profiles`` changelog record of each user, the ``recommendations`` topic) with a
recomputation from the source topics. The scenarios at the bottom are what
``tests/integration/test_chaos_fast.py`` and ``tests/chaos/`` run.

Every wait is bounded; every signal goes to a process this module started, by its PID.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from models.users.privacy import pseudonymize
from streams.local.broker import LocalBroker, ensure_topics, free_port
from streams.local.worker_proc import WorkerProcess, http_get

SECRET = "chaos-test-secret-key-0123456789abcdef"
API_TOKEN = "chaos-test-api-token-0123456789"
# Every topic the worker reads or writes (Settings.topics), renamed per rig.
TOPIC_KEYS = ("clicks", "purchases", "items", "ad_requests", "ad_events", "privacy",
              "control", "recommendations", "ad_bids", "segments", "audiences",
              "dead_letters")


class ChaosError(RuntimeError):
    """A scenario could not be carried out (not a failed check: see Report.problems)."""


def _client_logs_quiet() -> None:
    # kafka-python logs every refused connection at ERROR while the broker is down.
    import logging

    logging.getLogger("kafka").setLevel(logging.CRITICAL)


# ---------------------------------------------------------------------------------------------
# The rig: topics, environment, worker processes


@dataclass
class Rig:
    """One run's topics (suffixed with ``tag``), app id and worker processes."""

    bootstrap: str
    home: Path
    session_timeout_s: float = 6.0
    partitions: int = 4
    extra_env: dict[str, str] = field(default_factory=dict)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    secret: str = SECRET
    workers: dict[str, WorkerProcess] = field(default_factory=dict)

    @property
    def app_id(self) -> str:
        return f"persona-chaos-{self.tag}"

    @property
    def topics(self) -> dict[str, str]:
        return {k: f"{k.replace('_', '-')}-{self.tag}" for k in TOPIC_KEYS}

    @property
    def events_topic(self) -> str:
        return f"{self.app_id}-events"

    @property
    def changelog_topic(self) -> str:
        return f"{self.app_id}-profiles-changelog"

    def setup(self) -> Rig:
        """Create the topics up front (as ``persona topics create`` does)."""
        counts = {name: self.partitions for name in self.topics.values()}
        counts[self.events_topic] = self.partitions
        counts[f"{self.app_id}-ads"] = 1
        ensure_topics(self.bootstrap, list(counts), counts, timeout=60.0)
        return self

    def env(self, name: str) -> dict[str, str]:
        env = {f"PERSONA_TOPIC_{k.upper()}": v for k, v in self.topics.items()}
        env.update({
            "PERSONA_BOOTSTRAP": self.bootstrap,
            "PERSONA_APP_ID": self.app_id,
            "PERSONA_SECRET_KEY": self.secret,
            "PERSONA_API_TOKEN": API_TOKEN,
            "PERSONA_DATA_DIR": str(self.home / name),
            "PERSONA_PARTITIONS": str(self.partitions),
            "PERSONA_SESSION_TIMEOUT_S": str(self.session_timeout_s),
            "PERSONA_LOG_LEVEL": "info",
        })
        env.update(self.extra_env)
        return env

    def worker(self, name: str = "w1") -> WorkerProcess:
        """The worker called ``name`` (own data dir and web port, kept across restarts)."""
        if name not in self.workers:
            (self.home / name).mkdir(parents=True, exist_ok=True)
            self.workers[name] = WorkerProcess(
                env=self.env(name), web_port=free_port(),
                log_path=self.home / name / "worker.log",
            )
        return self.workers[name]

    def running_worker(self, name: str = "w1", timeout: float = 120) -> WorkerProcess:
        """``worker(name)``, started and ready if it was not running."""
        w = self.worker(name)
        if not w.alive():
            w.start()
            w.wait_ready(timeout=timeout)
        return w

    def close(self) -> None:
        """Stop every worker of this rig still running (continuing a stopped one first)."""
        for w in self.workers.values():
            if w.alive():
                assert w.proc is not None
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.proc.pid, signal.SIGCONT)
                w.stop(timeout=20.0)

    def user_key(self, raw_user: str) -> str:
        return pseudonymize(raw_user, self.secret.encode("utf-8"))


def kill9(worker: WorkerProcess) -> None:
    """SIGKILL a worker this rig started (by its PID) and reap it."""
    if worker.proc is None or worker.proc.poll() is not None:
        raise ChaosError("kill9: the worker is not running")
    os.kill(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait(10)


def terminate(worker: WorkerProcess, timeout: float = 30.0) -> tuple[int | None, float]:
    """SIGTERM a worker and wait for it (SIGKILL after ``timeout``): (exit code, seconds)."""
    if worker.proc is None or worker.proc.poll() is not None:
        raise ChaosError("terminate: the worker is not running")
    started = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    try:
        worker.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        worker.proc.kill()
        worker.proc.wait(10)
        return None, time.monotonic() - started
    return worker.proc.returncode, time.monotonic() - started


def _log_from_signal(worker: WorkerProcess, limit: int = 60) -> str:
    """The worker log's lines from its last "Signal received" on (at most ``limit``, the
    last ones): where a slow stop spent its time. The log holds no user ids."""
    try:
        lines = worker.log_path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(no log: {exc})"
    start = max((i for i, line in enumerate(lines) if "Signal received" in line), default=0)
    return "\n".join(line[:200] for line in lines[start:][-limit:])


# ---------------------------------------------------------------------------------------------
# Sequenced events


@dataclass
class EventStream:
    """``n_events`` clicks and purchases for ``n_users`` users at about ``rate`` events/s.

    Users are ``chaos-<label>-<j>``; the k-th event of user j has ``event_id``
    ``<label>.<j>.<k>`` (k counts from 0, per user), so a gap or a duplicate names the
    user and the place. ``ts`` is the current epoch milliseconds at send time. Sent from
    a thread by one idempotent kafka-python producer (``acks=all``).
    """

    bootstrap: str
    topics: dict[str, str]
    n_events: int
    n_users: int
    rate: float
    label: str = "a"
    purchase_share: float = 0.25
    seed: int = 0
    acked: int = 0
    failed: int = 0
    attempted: int = 0
    error: str | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _acked_ids: set[str] = field(default_factory=set, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def user(self, j: int) -> str:
        return f"chaos-{self.label}-{j:03d}"

    @property
    def users(self) -> list[str]:
        return [self.user(j) for j in range(self.n_users)]

    def events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(topic key, event) in send order; ``ts`` is filled in at send time."""
        rng = random.Random(self.seed)
        seq = [0] * self.n_users
        for _ in range(self.n_events):
            j = rng.randrange(self.n_users)
            ev: dict[str, Any] = {"event_id": f"{self.label}.{j}.{seq[j]}",
                                  "user_id": self.user(j),
                                  "item_id": f"item-{rng.randrange(300)}"}
            seq[j] += 1
            if rng.random() < self.purchase_share:
                ev.update(price=round(rng.uniform(1.0, 50.0), 2),
                          quantity=rng.randint(1, 3), currency="EUR")
                yield "purchases", ev
            else:
                yield "clicks", ev

    def start(self) -> EventStream:
        self._thread = threading.Thread(target=self._run, name=f"chaos-{self.label}",
                                        daemon=True)
        self._thread.start()
        return self

    def _on_ack(self, event_id: str) -> Callable[[Any], None]:
        def ok(_md: Any) -> None:
            with self._lock:
                self.acked += 1
                self._acked_ids.add(event_id)

        return ok

    def _on_fail(self, _exc: BaseException) -> None:
        with self._lock:
            self.failed += 1

    def _run(self) -> None:
        _client_logs_quiet()
        try:
            producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                     linger_ms=5, client_id=f"chaos-{self.label}",
                                     max_block_ms=60_000, delivery_timeout_ms=120_000)
        except Exception as exc:  # report, do not kill the thread silently
            self.error = f"producer: {type(exc).__name__}: {exc}"
            return
        started = time.monotonic()
        try:
            for i, (kind, ev) in enumerate(self.events()):
                if self._stop.is_set():
                    break
                delay = started + i / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                ev["ts"] = int(time.time() * 1000)
                fut = producer.send(self.topics[kind], key=ev["user_id"].encode(),
                                    value=orjson.dumps(ev))
                fut.add_callback(self._on_ack(ev["event_id"]))
                fut.add_errback(self._on_fail)
                self.attempted += 1
            producer.flush(timeout=150)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            producer.close(timeout=10)

    @property
    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def wait_acked(self, n: int, timeout: float) -> None:
        """Block until ``n`` events are acknowledged (or the stream ended)."""
        deadline = time.monotonic() + timeout
        while self.acked < n and not self.done:
            if time.monotonic() > deadline:
                raise ChaosError(f"only {self.acked} of {n} events acknowledged in {timeout}s")
            time.sleep(0.05)

    def join(self, timeout: float) -> None:
        if self._thread is None:
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(30)
            raise ChaosError(f"event stream {self.label} did not finish in {timeout}s")
        if self.error:
            raise ChaosError(f"event stream {self.label} failed: {self.error}")

    def acked_ids(self) -> set[str]:
        with self._lock:
            return set(self._acked_ids)


# ---------------------------------------------------------------------------------------------
# Reading back: topics to their end, consumer group lag


def read_topic(bootstrap: str, topic: str, timeout: float = 120.0) -> list[Any]:
    """Every record of ``topic`` up to its end offsets now (no consumer group)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             client_id="chaos-reader", max_partition_fetch_bytes=4 << 20)
    try:
        deadline = time.monotonic() + timeout
        parts = consumer.partitions_for_topic(topic)
        metadata_until = min(deadline, time.monotonic() + 10.0)
        while not parts and time.monotonic() < metadata_until:
            time.sleep(0.2)  # metadata not loaded yet, or the topic is still being made
            parts = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts or ())]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[Any] = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise ChaosError(f"reading {topic} to its end took over {timeout}s")
            for records in consumer.poll(timeout_ms=500, max_records=5000).values():
                out.extend(r for r in records if r.offset < end[TopicPartition(r.topic,
                                                                               r.partition)])
        return out
    finally:
        consumer.close()


def _offsets(bootstrap: str, group: str, topics: list[str], *, ends: bool
             ) -> tuple[list[TopicPartition], dict, dict, dict]:
    """The partitions of ``topics``, the group's committed offsets on them, and (with
    ``ends``) their end and start offsets."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             client_id="chaos-lag")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="chaos-lag")
    try:
        tps = [TopicPartition(t, p) for t in topics
               for p in sorted(consumer.partitions_for_topic(t) or ())]
        committed = admin.list_group_offsets({group: tps}).get(group, {})
        end = consumer.end_offsets(tps) if ends else {}
        start = consumer.beginning_offsets(tps) if ends else {}
    finally:
        admin.close()
        consumer.close()
    return tps, committed, end, start


def group_lag(bootstrap: str, group: str, topics: Iterable[str]) -> dict[str, int]:
    """Per topic, end offsets minus the group's committed offsets, summed over partitions
    (a partition the group never committed counts from its start offset)."""
    topics = list(topics)
    tps, committed, end, start = _offsets(bootstrap, group, topics, ends=True)
    lag: dict[str, int] = dict.fromkeys(topics, 0)
    for tp in tps:
        meta = committed.get(tp)
        offset = meta.offset if meta is not None and meta.offset >= 0 else start[tp]
        lag[tp.topic] += max(0, end[tp] - offset)
    return lag


def committed_total(bootstrap: str, group: str, topics: Iterable[str]) -> int:
    """The group's committed offsets on ``topics``, summed: it grows while the group
    makes progress."""
    _, committed, _, _ = _offsets(bootstrap, group, list(topics), ends=False)
    return sum(max(0, m.offset) for m in committed.values())


def input_committed(rig: Rig, timeout: float = 60.0) -> int:
    """``committed_total`` on the input topics, retried while the group coordinator is
    still loading (just after a broker start)."""
    _client_logs_quiet()
    deadline = time.monotonic() + timeout
    while True:
        try:
            return committed_total(rig.bootstrap, rig.app_id,
                                   [rig.topics["clicks"], rig.topics["purchases"]])
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def wait_progress(rig: Rig, since: int, timeout: float) -> float:
    """Wait until the group commits past ``since`` (a ``committed_total``) on the input
    topics; the seconds it took."""
    _client_logs_quiet()
    topics = [rig.topics["clicks"], rig.topics["purchases"]]
    started = time.monotonic()
    while True:
        with contextlib.suppress(Exception):  # broker still coming up: poll again
            if committed_total(rig.bootstrap, rig.app_id, topics) > since:
                return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise ChaosError(f"group {rig.app_id} committed nothing new in {timeout}s")
        time.sleep(0.2)


def wait_caught_up(rig: Rig, timeout: float, stable_polls: int = 2) -> float:
    """Wait until the group has no lag on clicks, purchases and the events topic in
    ``stable_polls`` consecutive polls a second apart; the seconds it took."""
    _client_logs_quiet()
    topics = [rig.topics["clicks"], rig.topics["purchases"], rig.events_topic]
    started = time.monotonic()
    zero = 0
    last: dict[str, int] | Exception = {}
    while True:
        try:
            last = group_lag(rig.bootstrap, rig.app_id, topics)
            zero = zero + 1 if not any(last.values()) else 0
        except Exception as exc:  # broker briefly unreachable: keep polling until the bound
            last, zero = exc, 0
        if zero >= stable_polls:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise ChaosError(f"consumer group {rig.app_id} still behind after {timeout}s: "
                             f"{last}")
        time.sleep(1.0)


def scrape(worker: WorkerProcess) -> dict[str, float]:
    """The worker's /metrics now ({} if it does not answer)."""
    try:
        return worker.metrics()
    except Exception:
        return {}


def deduped(metrics: dict[str, float]) -> int:
    """Events the profile agent dropped as duplicates since that worker started."""
    return int(sum(v for k, v in metrics.items()
                   if k.startswith("persona_events_total{") and 'outcome="duplicate"' in k))


# ---------------------------------------------------------------------------------------------
# The check


@dataclass
class Report:
    """What a scenario sent, what the worker kept, and what differs.

    ``lost`` and ``double_counted`` compare each user's profile counts (latest changelog
    record) with a recomputation from the source topics; the ``recs_*`` fields hold the
    recommendations topic against one recommendation id per accepted event.
    """

    scenario: str = ""
    sent: int = 0  # acknowledged by the broker
    send_failed: int = 0
    source_events: int = 0  # distinct event ids in the source topics
    source_copies: int = 0  # extra copies of an event id in the source topics
    acked_missing: int = 0  # acknowledged but not in the source topics (should be 0)
    processed: int = 0  # events counted in the profiles (clicks + purchases)
    lost: int = 0
    double_counted: int = 0
    users: int = 0
    users_missing: int = 0
    spend_mismatches: int = 0
    recs_distinct: int = 0  # distinct recommendation ids
    recs_missing: int = 0  # accepted events without a recommendation
    recs_conflicting: int = 0  # events with more than one distinct recommendation id
    recs_unexpected: int = 0  # recommendations for events not in the source topics
    rec_redeliveries: int = 0  # extra copies of a recommendation id (same id re-emitted)
    ingest_redeliveries: int = 0  # extra copies of an event id on the events topic
    deduped_seen: int = 0  # duplicates the profile agent dropped (scraped, a lower bound)
    faults: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    date: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        return (f"{self.scenario}: sent {self.sent}, processed {self.processed}, lost "
                f"{self.lost}, double-counted {self.double_counted}, recommendation "
                f"redeliveries {self.rec_redeliveries}, ingest redeliveries "
                f"{self.ingest_redeliveries}, deduped (seen) {self.deduped_seen}; "
                f"problems: {self.problems or 'none'}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _json(value: bytes | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def latest_by_key(bootstrap: str, topic: str) -> dict[str, dict[str, Any] | None]:
    """The latest value of each key of a table's changelog (None: deleted). Faust writes
    str keys JSON-encoded (with quotes)."""
    latest: dict[str, dict[str, Any] | None] = {}
    for rec in read_topic(bootstrap, topic):
        key = rec.key.decode("utf-8", "replace")
        with contextlib.suppress(orjson.JSONDecodeError):
            decoded = orjson.loads(rec.key)
            if isinstance(decoded, str):
                key = decoded
        latest[key] = _json(rec.value)
    return latest


def check(rig: Rig, streams: list[EventStream], report: Report | None = None) -> Report:
    """Compare the worker's profiles and recommendations with the source topics."""
    _client_logs_quiet()
    rep = report or Report()
    ours = {u for s in streams for u in s.users}
    rep.sent = sum(s.acked for s in streams)
    rep.send_failed = sum(s.failed for s in streams)
    # --- recomputation from the source topics: distinct event ids per user
    expected: dict[str, dict[str, Any]] = {u: {"clicks": set(), "purchases": set(),
                                               "spend": 0.0} for u in ours}
    event_user: dict[str, str] = {}
    copies = 0
    for kind in ("clicks", "purchases"):
        for rec in read_topic(rig.bootstrap, rig.topics[kind]):
            ev = _json(rec.value)
            if ev is None or ev.get("user_id") not in ours:
                continue
            e = expected[ev["user_id"]]
            if ev["event_id"] in event_user:
                copies += 1
                continue
            event_user[ev["event_id"]] = ev["user_id"]
            e[kind].add(ev["event_id"])
            if kind == "purchases":
                e["spend"] += float(ev["price"]) * int(ev["quantity"])
    rep.source_events = len(event_user)
    rep.source_copies = copies
    rep.acked_missing = len(set().union(*(s.acked_ids() for s in streams)) - set(event_user))
    # --- redeliveries from ingest to the profile agent
    on_events = Counter()
    for rec in read_topic(rig.bootstrap, rig.events_topic):
        ev = _json(rec.value)
        if ev is not None and ev.get("event_id") in event_user:
            on_events[ev["event_id"]] += 1
    rep.ingest_redeliveries = sum(n - 1 for n in on_events.values() if n > 1)
    # --- the profiles the worker kept: the latest changelog record per key
    latest = latest_by_key(rig.bootstrap, rig.changelog_topic)
    rep.users = len(ours)
    for u in sorted(ours):
        e = expected[u]
        stored = latest.get(rig.user_key(u))
        prof = (stored or {}).get("p") or {}
        if not prof and (e["clicks"] or e["purchases"]):
            rep.users_missing += 1
        for kind, short in (("clicks", "c"), ("purchases", "p")):
            got, want = int(prof.get(short, 0)), len(e[kind])
            rep.processed += got
            rep.lost += max(0, want - got)
            rep.double_counted += max(0, got - want)
        spend = float(prof.get("m", 0.0))
        if abs(spend - e["spend"]) > 1e-6 * max(1.0, e["spend"]):
            rep.spend_mismatches += 1
    # --- recommendations: one distinct id per accepted event
    ids_by_event: dict[str, set[str]] = defaultdict(set)
    copies_by_id: Counter[str] = Counter()
    user_mismatch = 0
    keys = {u: rig.user_key(u) for u in ours}
    for rec in read_topic(rig.bootstrap, rig.topics["recommendations"]):
        r = _json(rec.value)
        if r is None:
            continue
        trigger = r.get("trigger_event_id")
        if trigger not in event_user:
            if isinstance(trigger, str) and trigger.split(".")[0] in {s.label for s in streams}:
                rep.recs_unexpected += 1
            continue
        ids_by_event[trigger].add(r["recommendation_id"])
        copies_by_id[r["recommendation_id"]] += 1
        if r.get("user_id") != keys[event_user[trigger]]:
            user_mismatch += 1
    rep.recs_distinct = len(copies_by_id)
    rep.recs_missing = sum(1 for ev in event_user if not ids_by_event.get(ev))
    rep.recs_conflicting = sum(1 for ids in ids_by_event.values() if len(ids) > 1)
    rep.rec_redeliveries = sum(n - 1 for n in copies_by_id.values())
    # --- verdict
    checks = [
        (rep.send_failed == 0 and rep.acked_missing == 0,
         f"producer: {rep.send_failed} sends failed, {rep.acked_missing} acked not on topic"),
        (rep.source_events == rep.sent - rep.acked_missing,
         f"{rep.source_events} distinct events on the source topics, {rep.sent} acked"),
        (rep.lost == 0, f"{rep.lost} events missing from the profiles"),
        (rep.double_counted == 0, f"{rep.double_counted} events counted twice"),
        (rep.users_missing == 0, f"{rep.users_missing} users have no profile"),
        (rep.spend_mismatches == 0, f"{rep.spend_mismatches} users' spend differs"),
        (rep.recs_missing == 0, f"{rep.recs_missing} events without a recommendation"),
        (rep.recs_conflicting == 0,
         f"{rep.recs_conflicting} events with several recommendation ids"),
        (rep.recs_unexpected == 0, f"{rep.recs_unexpected} recommendations for unknown events"),
        (user_mismatch == 0, f"{user_mismatch} recommendations for the wrong user"),
    ]
    rep.problems += [msg for ok, msg in checks if not ok]
    return rep


# ---------------------------------------------------------------------------------------------
# Scenarios


def _stamp(rep: Report, name: str) -> float:
    rep.scenario = name
    rep.date = datetime.now(UTC).isoformat(timespec="seconds")
    return time.monotonic()


def _restart(rig: Rig, name: str, rep: Report, fault: dict[str, Any],
             ready_timeout: float = 120.0) -> None:
    w = rig.worker(name)
    w.start()
    fault["ready_s"] = round(w.wait_ready(timeout=ready_timeout), 2)
    rep.faults.append(fault)


def _finish(rig: Rig, streams: list[EventStream], rep: Report, started: float,
            catch_up_timeout: float) -> Report:
    for s in streams:
        s.join(timeout=300)
    rep.timings["catch_up_s"] = round(wait_caught_up(rig, catch_up_timeout), 2)
    rep.deduped_seen += sum(deduped(scrape(w)) for w in rig.workers.values() if w.alive())
    check(rig, streams, rep)
    rep.seconds = round(time.monotonic() - started, 1)
    return rep


def scenario_kill9(rig: Rig, kills: int, n_events: int, n_users: int, rate: float,
                   label: str = "k", dwell_s: float = 1.5,
                   catch_up_timeout: float = 180.0) -> Report:
    """kill -9 the worker ``kills`` times while events flow, restarting it each time;
    each kill comes at least ``dwell_s`` after the previous restart was ready, so the
    worker is processing (and committing) when it dies."""
    rep = Report()
    started = _stamp(rep, f"kill -9 x{kills}")
    w = rig.running_worker("w1")
    stream = EventStream(rig.bootstrap, rig.topics, n_events, n_users, rate,
                         label=label).start()
    for i in range(kills):
        # Spread the kills over the stream; each after the previous restart is ready.
        stream.wait_acked(n_events * (i + 1) // (kills + 1), timeout=300)
        time.sleep(dwell_s)
        rep.deduped_seen += deduped(scrape(w))
        fault = {"kind": "kill -9", "at_acked": stream.acked}
        kill9(w)
        _restart(rig, "w1", rep, fault)
    return _finish(rig, [stream], rep, started, catch_up_timeout)


def scenario_sigstop(rig: Rig, n_events: int, n_users: int, rate: float,
                     pause_s: float | None = None, label: str = "s",
                     catch_up_timeout: float = 180.0) -> Report:
    """SIGSTOP the worker longer than the session timeout mid-stream, then SIGCONT: the
    same process must rejoin its group by itself and go on."""
    rep = Report()
    started = _stamp(rep, "SIGSTOP > session timeout")
    pause = pause_s if pause_s is not None else rig.session_timeout_s * 2 + 2
    w = rig.running_worker("w1")
    assert w.proc is not None
    pid = w.proc.pid
    stream = EventStream(rig.bootstrap, rig.topics, n_events, n_users, rate,
                         label=label).start()
    stream.wait_acked(n_events // 3, timeout=300)
    joins = _joins(w)
    os.kill(pid, signal.SIGSTOP)
    time.sleep(pause)
    before = input_committed(rig)
    os.kill(pid, signal.SIGCONT)
    fault = {"kind": "SIGSTOP", "paused_s": pause, "at_acked": stream.acked}
    # Progress again: the group (which dropped the member) has it back and it commits.
    fault["progress_s"] = round(wait_progress(rig, before, timeout=120), 2)
    rep.faults.append(fault)
    _finish(rig, [stream], rep, started, catch_up_timeout)
    if not w.alive() or w.proc is None or w.proc.pid != pid:
        rep.problems.append("the worker did not survive SIGSTOP/SIGCONT")
    if _joins(w) <= joins:
        rep.problems.append("the worker never rejoined its group: was the pause longer "
                            "than the session timeout?")
    return rep


def _joins(worker: WorkerProcess) -> int:
    """Group joins the worker has logged so far (aiokafka: "Joined group ...")."""
    try:
        return worker.log_path.read_text(errors="replace").count("Joined group")
    except OSError:
        return 0


def scenario_two_workers(rig: Rig, n_events: int, n_users: int, rate: float,
                         label: str = "t", catch_up_timeout: float = 180.0) -> Report:
    """Two workers in one group; kill -9 one mid-stream: the other takes its partitions
    and recovers their state from the changelog."""
    rep = Report()
    started = _stamp(rep, "two workers, kill -9 one")
    a, b = rig.worker("w1"), rig.worker("w2")
    for w in (a, b):
        if not w.alive():
            w.start()
    a.wait_ready(timeout=120)
    b.wait_ready(timeout=120)
    stream = EventStream(rig.bootstrap, rig.topics, n_events, n_users, rate,
                         label=label).start()
    stream.wait_acked(n_events // 2, timeout=300)
    rep.deduped_seen += deduped(scrape(b))
    kill9(b)
    t0 = time.monotonic()
    fault: dict[str, Any] = {"kind": "kill -9 one of two", "at_acked": stream.acked}
    # The survivor owns every partition once the group rebalanced.
    deadline = t0 + 120
    while True:
        status, body = a.get_json("/ready")
        if status == 200 and body.get("assigned_partitions", 0) >= _sole_owner(rig):
            break
        if time.monotonic() > deadline:
            raise ChaosError(f"survivor never took all partitions: {status} {body}")
        time.sleep(0.2)
    fault["takeover_s"] = round(time.monotonic() - t0, 2)
    rep.faults.append(fault)
    return _finish(rig, [stream], rep, started, catch_up_timeout)


def _sole_owner(rig: Rig) -> int:
    """Partitions a worker holds at least once it owns every stream partition: the eight
    topics its agents read (streams.topics.SOURCE_TOPICS). With two workers each holds
    about half of those (plus changelog and standby partitions), so fewer."""
    return 8 * rig.partitions


def scenario_broker_restart(rig: Rig, broker: LocalBroker, n_events: int, n_users: int,
                            rate: float, down_s: float = 5.0, label: str = "b",
                            catch_up_timeout: float = 240.0) -> Report:
    """Stop the broker mid-stream (controlled shutdown), keep it down ``down_s``, start
    it again on the same port and log dir: the worker must reconnect by itself."""
    rep = Report()
    started = _stamp(rep, "broker stop/start")
    w = rig.running_worker("w1")
    assert w.proc is not None
    pid = w.proc.pid
    stream = EventStream(rig.bootstrap, rig.topics, n_events, n_users, rate,
                         label=label).start()
    stream.wait_acked(n_events // 3, timeout=300)
    fault: dict[str, Any] = {"kind": "broker stop/start", "at_acked": stream.acked}
    t0 = time.monotonic()
    broker.stop(timeout=30)
    fault["stop_s"] = round(time.monotonic() - t0, 2)
    time.sleep(down_s)
    t1 = time.monotonic()
    broker.start(timeout=120)
    fault["broker_start_s"] = round(time.monotonic() - t1, 2)
    before = input_committed(rig)
    # The same worker process commits again: it reconnected by itself.
    fault["progress_s"] = round(wait_progress(rig, before, timeout=180), 2)
    rep.faults.append(fault)
    _finish(rig, [stream], rep, started, catch_up_timeout)
    if not w.alive() or w.proc is None or w.proc.pid != pid:
        rep.problems.append("the worker exited: it did not reconnect by itself")
    return rep


@dataclass
class ReadyTrace:
    """What /ready answered while a worker started: (seconds since start, status)."""

    samples: list[tuple[float, int]] = field(default_factory=list)

    @property
    def first_ok_s(self) -> float | None:
        return next((t for t, s in self.samples if s == 200), None)

    @property
    def not_ready(self) -> int:
        return sum(1 for _, s in self.samples if s == 503)


def start_tracing_ready(worker: WorkerProcess, timeout: float = 120.0,
                        on_ready: Callable[[], None] | None = None) -> ReadyTrace:
    """Start ``worker`` and poll /ready every 20 ms until it answers 200; ``on_ready``
    runs at once then (to read state the moment the worker calls itself ready)."""
    trace = ReadyTrace()
    worker.start()
    t0 = time.monotonic()
    while True:
        status, _ = http_get(worker.base_url + "/ready", timeout=1.0)
        trace.samples.append((round(time.monotonic() - t0, 3), status))
        if status == 200:
            if on_ready is not None:
                on_ready()
            return trace
        if not worker.alive():
            raise ChaosError(f"worker exited while starting:\n{worker.log_tail()}")
        if time.monotonic() - t0 > timeout:
            raise ChaosError(f"worker not ready in {timeout}s")
        time.sleep(0.02)


def scenario_graceful(rig: Rig, n_events: int, n_users: int, rate: float,
                      label: str = "g", max_redelivered: int = 10,
                      catch_up_timeout: float = 180.0) -> Report:
    """SIGTERM mid-stream: exit 0 within 10 s; offsets committed, so the restart
    redelivers at most the few events in flight at the signal (``max_redelivered``; the
    dedupe drops them); /ready stays 503 until the tables are recovered (profiles read
    over HTTP the moment /ready first says 200 hold all the changelog had)."""
    rep = Report()
    started = _stamp(rep, "SIGTERM and restart")
    w = rig.running_worker("w1")
    stream = EventStream(rig.bootstrap, rig.topics, n_events, n_users, rate,
                         label=label).start()
    stream.wait_acked(n_events // 2, timeout=300)
    code, seconds = terminate(w, timeout=30.0)
    rep.faults.append({"kind": "SIGTERM", "at_acked": stream.acked, "exit_code": code,
                       "exit_s": round(seconds, 2)})
    rep.timings["sigterm_exit_s"] = round(seconds, 2)
    if code != 0:
        rep.problems.append(f"SIGTERM: exit code {code}")
    if seconds > 10.0:
        rep.problems.append(f"SIGTERM: exit took {seconds:.1f}s (over 10s)")
    if code != 0 or seconds > 10.0:
        rep.problems.append("worker log from the signal on:\n" + _log_from_signal(w))
    # Let the stream finish while the worker is down: the restart has a backlog, and
    # the changelog holds every profile written so far.
    stream.join(timeout=300)
    changelog = latest_by_key(rig.bootstrap, rig.changelog_topic)
    users = [u for s in [stream] for u in s.users]
    at_ready: dict[str, tuple[int, int] | None] = {}

    def read_profiles() -> None:
        for u in users:
            status, body = w.get_json(f"/users/{u}/profile")
            if status not in (200, 404):
                raise ChaosError(f"/users/.../profile answered {status}: {body}")
            p = body.get("profile") if status == 200 else None
            at_ready[u] = None if p is None else (p["clicks"], p["purchases"])

    trace = start_tracing_ready(w, on_ready=read_profiles)
    rep.timings["restart_ready_s"] = trace.first_ok_s or -1.0
    rep.timings["ready_503_answers"] = trace.not_ready
    # Every profile read at the first 200 holds at least what the changelog held before
    # the restart: nothing served from a half-recovered table.
    behind = 0
    for u in users:
        stored = (changelog.get(rig.user_key(u)) or {}).get("p") or {}
        want = (int(stored.get("c", 0)), int(stored.get("p", 0)))
        got = at_ready.get(u) or (0, 0)
        if want != (0, 0) and (got[0] < want[0] or got[1] < want[1]):
            behind += 1
    rep.timings["profiles_behind_at_ready"] = behind
    if behind:
        rep.problems.append(f"{behind} profiles incomplete when /ready first said 200")
    _finish(rig, [stream], rep, started, catch_up_timeout)
    rep.timings["redelivered_after_sigterm"] = rep.deduped_seen
    if rep.deduped_seen > max_redelivered:
        rep.problems.append(f"{rep.deduped_seen} events redelivered after a clean SIGTERM: "
                            "were offsets committed at shutdown?")
    return rep


# ---------------------------------------------------------------------------------------------
# Results: JSON lines from the chaos run, rendered into docs/reliability.md

DOC_START = "<!-- chaos-results:start (written by `./run chaos`) -->"
DOC_END = "<!-- chaos-results:end -->"


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    return (f"{model or platform.processor() or 'unknown CPU'}, {os.cpu_count()} cores{mem}, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}")


def record(path: Path, rep: Report) -> None:
    """Append a report as one JSON line (the chaos run's output)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as fh:
        fh.write(orjson.dumps({**rep.to_dict(), "ok": rep.ok}) + b"\n")


def _fault_text(faults: list[dict[str, Any]]) -> str:
    parts = []
    for f in faults:
        extra = ", ".join(f"{k} {v}" for k, v in f.items()
                          if k not in ("kind", "at_acked", "exit_code", "exit_s"))
        parts.append(f"{f['kind']} ({extra})" if extra else f["kind"])
    if len(parts) > 2 and len(set(f["kind"] for f in faults)) == 1:
        ready = [f.get("ready_s") for f in faults if f.get("ready_s") is not None]
        rs = f"; ready again after {min(ready)}-{max(ready)} s" if ready else ""
        return f"{faults[0]['kind']} x{len(faults)}{rs}"
    return "; ".join(parts)


def render(reports: list[dict[str, Any]], kafka_version: str = "") -> str:
    """The results section's body: a table of every scenario of the last run."""
    date = max((r["date"] for r in reports), default="")
    lines = [
        f"Last run: {date[:10]} on {machine()}"
        + (f", Apache Kafka {kafka_version}" if kafka_version else "") + ".",
        "",
        "| scenario | sent | processed | lost | double-counted | recs missing | "
        "rec redeliveries | ingest redeliveries | deduped (seen) | faults | catch-up s | "
        "run s | ok |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in reports:
        extra = ""
        t = r.get("timings", {})
        if "sigterm_exit_s" in t:
            code = r["faults"][0].get("exit_code") if r["faults"] else None
            extra = (f": exit code {code} in {t['sigterm_exit_s']} s; restart: /ready 503 x"
                     f"{t.get('ready_503_answers')}, then 200 at {t.get('restart_ready_s')} s "
                     f"with {t.get('profiles_behind_at_ready')} profiles behind")
        lines.append(
            f"| {r['scenario']} | {r['sent']} | {r['processed']} | {r['lost']} | "
            f"{r['double_counted']} | {r['recs_missing']} | {r['rec_redeliveries']} | "
            f"{r['ingest_redeliveries']} | {r['deduped_seen']} | "
            f"{_fault_text(r['faults'])}{extra} | {t.get('catch_up_s', '')} | "
            f"{r['seconds']} | {'yes' if r['ok'] else 'NO: ' + '; '.join(r['problems'])} |"
        )
    return "\n".join(lines)


def write_doc(results: Path, doc: Path, kafka_version: str = "") -> None:
    """Replace the text between the chaos markers of ``doc`` with the table of ``results``."""
    reports = [orjson.loads(line) for line in results.read_bytes().splitlines() if line.strip()]
    if not reports:
        raise ChaosError(f"{results} holds no results")
    text = doc.read_text()
    if DOC_START not in text or DOC_END not in text:
        raise ChaosError(f"{doc} lacks the chaos results markers")
    head, rest = text.split(DOC_START, 1)
    _, tail = rest.split(DOC_END, 1)
    doc.write_text(f"{head}{DOC_START}\n{render(reports, kafka_version)}\n{DOC_END}{tail}")


def main(argv: list[str]) -> int:
    """``python -m streams.local.chaos write-doc RESULTS.jsonl DOC.md [KAFKA_VERSION]``."""
    if len(argv) not in (3, 4) or argv[0] != "write-doc":
        sys.stderr.write(f"usage: {main.__doc__}\n")
        return 2
    write_doc(Path(argv[1]), Path(argv[2]), argv[3] if len(argv) == 4 else "")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
