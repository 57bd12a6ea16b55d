"""Checkpoint listing and rollback as an operator runs them, against a real worker.

A worker checkpoints every second while three batches of clicks (each with new items)
go in. ``persona checkpoints list`` shows the versions verified; ``persona rollback --to``
makes the running worker load an earlier one within seconds (its models shrink back to
what they held then), and a stop writes no new version over it. Then the chosen file is
corrupted: the restarted worker refuses it, counts it, and loads the previous good one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from streams.local.broker import ensure_topics, free_port
from streams.local.worker_proc import WorkerProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SECRET = "rollback-cli-secret-key-0123456789"
PER_BATCH = 60


def persona(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("PERSONA_")}
    full.update(env)
    full["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "streams.cli.main", *args], env=full, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def listing(env: dict[str, str]) -> dict:
    res = persona("checkpoints", "list", "--json", env=env)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def model_sizes(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k.startswith("persona_model_items{")}


def wait_for(check, timeout: float, what: str, worker: WorkerProcess):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}; worker log:\n{worker.log_tail()}"
        time.sleep(0.3)


def test_help_names_the_commands() -> None:
    res = persona("--help", env={})
    assert res.returncode == 0 and "rollback" in res.stdout and "checkpoints" in res.stdout
    res = persona("rollback", "--help", env={})
    assert res.returncode == 0
    text = " ".join(res.stdout.split())
    assert "--to" in text and "rolled-back/" in text and "--wait" in text
    assert "list" in persona("checkpoints", "--help", env={}).stdout


def test_list_and_rollback_need_the_key_and_a_target(tmp_path: Path) -> None:
    env = {"PERSONA_DATA_DIR": str(tmp_path)}
    res = persona("checkpoints", "list", env=env)
    assert res.returncode == 0 and "no model checkpoints" in res.stderr
    res = persona("rollback", env=env)
    assert res.returncode == 2 and "PERSONA_SECRET_KEY" in res.stderr
    res = persona("rollback", "--to", "3", env={**env, "PERSONA_SECRET_KEY": SECRET})
    assert res.returncode == 1 and "no signed checkpoint version 3" in res.stderr


def test_rollback_a_running_worker_and_fall_back_from_a_corrupt_file(
    tmp_path: Path, kafka_broker
) -> None:
    sfx = uuid.uuid4().hex[:8]
    topics = {k: f"{k.replace('_', '-')}-{sfx}" for k in
              ("clicks", "purchases", "items", "ad_requests", "ad_events", "privacy",
               "control", "recommendations", "ad_bids", "segments", "audiences",
               "dead_letters")}
    app_id = f"persona-rb-{sfx}"
    env = {f"PERSONA_TOPIC_{k.upper()}": v for k, v in topics.items()}
    env.update({"PERSONA_BOOTSTRAP": kafka_broker.bootstrap, "PERSONA_APP_ID": app_id,
                "PERSONA_SECRET_KEY": SECRET, "PERSONA_DATA_DIR": str(tmp_path),
                "PERSONA_CHECKPOINT_INTERVAL_S": "1", "PERSONA_CHECKPOINT_KEEP": "50",
                "PERSONA_SESSION_TIMEOUT_S": "6", "PERSONA_LOG_LEVEL": "info"})
    counts = {n: 4 for n in [*topics.values(), f"{app_id}-events"]} | {f"{app_id}-ads": 1}
    ensure_topics(kafka_broker.bootstrap, list(counts), counts)
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")

    def worker_process(name: str) -> WorkerProcess:
        return WorkerProcess(env=env, web_port=free_port(), log_path=tmp_path / f"{name}.log")

    sent = 0

    def batch(worker: WorkerProcess, prefix: str) -> tuple[int, dict[str, float]]:
        """Send clicks on new items; wait until learned and checkpointed (version stable)."""
        nonlocal sent
        now = int(time.time() * 1000)
        for n in range(PER_BATCH):
            ev = {"event_id": f"{prefix}{n}", "user_id": f"user-{n % 6}",
                  "item_id": f"{prefix}-item-{n % 12}", "ts": now + n}
            producer.send(topics["clicks"], key=ev["user_id"].encode(), value=orjson.dumps(ev))
        producer.flush()
        sent += PER_BATCH
        key = 'persona_events_total{outcome="accepted",topic="clicks"}'
        wait_for(lambda: worker.metrics().get(key) == sent, 60, f"{sent} clicks accepted",
                 worker)
        seen: list[float] = []

        def stable() -> bool:  # the same version on 6 scrapes in a row (~2 s)
            seen.append(worker.metrics()["persona_model_checkpoint_version"])
            return len(seen) >= 6 and len(set(seen[-6:])) == 1 and seen[-1] > 0

        wait_for(stable, 60, "a checkpoint after the batch", worker)
        return int(seen[-1]), model_sizes(worker.metrics())

    worker = worker_process("worker")
    worker.start()
    try:
        worker.wait_ready(timeout=120)
        va, sizes_a = batch(worker, "a")
        vb, sizes_b = batch(worker, "b")
        vc, sizes_c = batch(worker, "c")
        assert va < vb < vc
        assert sum(sizes_a.values()) < sum(sizes_b.values()) < sum(sizes_c.values())

        listed = listing(env)
        by_version = {c["version"]: c for c in listed["checkpoints"]}
        assert {va, vb, vc} <= set(by_version)
        assert all(c["status"] == "ok" and c["where"] == "current" for c in by_version.values())
        assert [v for v, c in by_version.items() if c["loads"]] == [vc]
        table = persona("checkpoints", "list", env=env)
        assert table.returncode == 0 and f"{vc}" in table.stdout and "ok" in table.stdout

        started = time.monotonic()
        res = persona("rollback", "--to", str(vb), "--wait", "30", env=env)
        took = time.monotonic() - started
        assert res.returncode == 0, res.stderr
        text = " ".join(res.stderr.split())
        assert f"rolled back to model checkpoint {vb}" in text
        assert f"the worker loaded version {vb} while running" in text
        m = worker.metrics()
        assert m["persona_model_checkpoint_version"] == vb
        assert m['persona_model_checkpoints_total{outcome="rolled_back"}'] == 1
        assert model_sizes(m) == sizes_b  # the models are what they were at vb
        listed = listing(env)
        aside = {c["version"] for c in listed["checkpoints"] if c["where"] == "rolled-back"}
        current = [c["version"] for c in listed["checkpoints"] if c["where"] == "current"]
        assert vc in aside and max(current) == vb and listed["pending_rollback"] is None
        time.sleep(2.5)  # a few checkpoint ticks: nothing learned, so nothing written
        assert max(c["version"] for c in listing(env)["checkpoints"]
                   if c["where"] == "current") == vb
    finally:
        assert worker.stop() == 0
    # a stop after the rollback writes no version over it
    listed = listing(env)
    current = sorted(c["version"] for c in listed["checkpoints"] if c["where"] == "current")
    assert current[-1] == vb and current[-2] >= va

    # --- a corrupt newest file: refused, counted, the previous good one loads
    newest = next(Path(c["file"]) for c in listed["checkpoints"]
                  if c["version"] == vb and c["where"] == "current")
    blob = bytearray(newest.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    newest.write_bytes(bytes(blob))
    assert {c["version"]: c["status"] for c in listing(env)["checkpoints"]}[vb] == "corrupt"
    worker = worker_process("restarted")
    worker.start()
    try:
        worker.wait_ready(timeout=120)
        m = worker.metrics()
        assert m['persona_model_checkpoint_load_failures_total{reason="corrupt"}'] == 1
        assert m["persona_model_checkpoint_version"] == current[-2]
        assert m['persona_model_checkpoints_total{outcome="restored"}'] == 1
        assert sum(model_sizes(m).values()) >= sum(sizes_a.values()) > 0  # warm
        log = worker.log_path.read_text()
        assert f"refusing model checkpoint {newest.name}: corrupt" in log
    finally:
        assert worker.stop() == 0
    producer.close()
    print(f"rollback via CLI: {took:.2f}s until the running worker had loaded it")
