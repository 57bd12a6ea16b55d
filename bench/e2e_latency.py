"""Event-to-recommendation latency through the real local Kafka and a worker process.

Starts its own broker and worker on free loopback ports, warms the models with a
MovieLens prefix, then publishes clicks with kafka-python at a fixed rate and times each
one until its recommendation arrives on the `recommendations` topic. Bounded in count
and time; stops everything it started. Prints the figures and the machine.

    .venv/bin/python -m bench.e2e_latency [--rate 100] [--count 500] [--warmup 5000]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.broker import LocalBroker, ensure_topics, free_port
from streams.replay import make_producer, movielens_events, movielens_items, publish
from streams.settings import Settings
from streams.worker_proc import WorkerProcess


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=100.0, help="clicks per second")
    ap.add_argument("--count", type=int, default=500, help="timed clicks (max 20,000)")
    ap.add_argument("--warmup", type=int, default=5000, help="MovieLens events first")
    args = ap.parse_args()
    count = min(args.count, 20_000)

    base = Settings.from_env()
    tmp = Path(tempfile.mkdtemp(prefix="persona-bench-"))
    (tmp / "kafka").mkdir()
    lib = LocalBroker.from_settings(base).fetch()
    (tmp / "kafka" / lib.name).symlink_to(lib, target_is_directory=True)
    s = Settings.from_env({**os.environ, "PERSONA_DATA_DIR": str(tmp),
                           "PERSONA_BROKER_PORT": str(free_port())})
    broker = LocalBroker.from_settings(s, name="bench")
    worker = None
    try:
        t0 = time.monotonic()
        broker.start(timeout=120)
        broker_s = time.monotonic() - t0
        ensure_topics(broker.bootstrap, s.created_topics(), s.partitions)
        worker = WorkerProcess(
            env={"PERSONA_BOOTSTRAP": broker.bootstrap, "PERSONA_DATA_DIR": str(tmp),
                 "PERSONA_SECRET_KEY": "bench-secret-key-0123456789",
                 "PERSONA_LOG_LEVEL": "warning",
                 # MovieLens timestamps are from 1997-98: replaying history.
                 "PERSONA_MAX_EVENT_AGE_S": "0"},
            web_port=free_port(), log_path=tmp / "worker.log")
        worker.start()
        worker.wait_ready(120)
        producer = make_producer(broker.bootstrap)
        publish(producer, movielens_items(s.topics) + movielens_events(s.topics, args.warmup))
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            m = worker.metrics()
            done = sum(v for k, v in m.items() if k.startswith("persona_events_total{")
                       and 'outcome="accepted"' in k and "items" not in k)
            if done >= args.warmup:
                break
            time.sleep(0.2)

        # Consumer positioned at the end before the timed clicks start.
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None,
                                 enable_auto_commit=False, fetch_max_wait_ms=5)
        tps = [TopicPartition(s.topics.recommendations, p)
               for p in consumer.partitions_for_topic(s.topics.recommendations)]
        consumer.assign(tps)
        consumer.seek_to_end()
        for tp in tps:
            consumer.position(tp)
        sent_at: dict[str, float] = {}
        latencies: list[float] = []
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                for records in consumer.poll(timeout_ms=50).values():
                    now = time.perf_counter()
                    for r in records:
                        eid = orjson.loads(r.value).get("trigger_event_id", "")
                        if eid in sent_at:
                            latencies.append(now - sent_at[eid])

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        fast = KafkaProducer(bootstrap_servers=broker.bootstrap, acks=1, linger_ms=0)
        interval = 1.0 / args.rate
        next_t = time.perf_counter()
        for i in range(count):
            ev = {"event_id": f"lat-{i}", "user_id": f"ml-{1 + i % 900}",
                  "item_id": str(1 + (i * 7) % 1600), "ts": int(time.time() * 1000)}
            now = time.perf_counter()
            if next_t > now:
                time.sleep(next_t - now)
            next_t += interval
            sent_at[ev["event_id"]] = time.perf_counter()
            fast.send(s.topics.clicks, key=ev["user_id"].encode(), value=orjson.dumps(ev))
            fast.flush()
        wait_until = time.monotonic() + 30
        while len(latencies) < count and time.monotonic() < wait_until:
            time.sleep(0.05)
        stop.set()
        reader.join(5)
        consumer.close()
        fast.close()
        producer.close()

        lat = sorted(latencies)

        def pct(p: float) -> float:  # nearest rank
            return lat[min(len(lat) - 1, max(0, math.ceil(p * len(lat)) - 1))]

        print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
              f"Python {platform.python_version()}, Kafka {s.kafka_version}")
        print(f"broker start to ready: {broker_s:.1f} s")
        print(f"timed clicks: {count} at {args.rate:g}/s after {args.warmup} warm-up events; "
              f"recommendations received: {len(lat)}")
        if lat:
            print(f"latency publish->recommendation: p50 {1000 * statistics.median(lat):.1f} ms, "
                  f"p99 {1000 * pct(0.99):.1f} ms, p99.9 {1000 * pct(0.999):.1f} ms, "
                  f"max {1000 * lat[-1]:.1f} ms; within 1 s: "
                  f"{sum(1 for x in lat if x < 1.0) / count:.4f}")
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
