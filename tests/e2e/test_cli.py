"""The ``persona`` command as a user runs it: help, errors, broker, produce/consume, demo."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from models.users.privacy import pseudonymize
from streams.local.broker import ensure_topics, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SECRET = "cli-test-secret-key-0123456789"


def persona(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("PERSONA_")}
    full.update(env or {})
    full["COLUMNS"] = "120"
    return subprocess.run([sys.executable, "-m", "streams.cli.main", *args], env=full, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, input=input,
                          stdin=None if input is not None else subprocess.DEVNULL)


def test_help_lists_every_verb() -> None:
    res = persona("--help")
    assert res.returncode == 0
    for verb in ("broker", "topics", "worker", "produce", "consume", "demo", "pseudonymize",
                 "ads", "evaluate-ads"):
        assert verb in res.stdout
    assert "start" in persona("broker", "--help").stdout


def test_schema_verb_prints_a_topics_json_schema() -> None:
    res = persona("schema", "purchases")
    assert res.returncode == 0, res.stderr
    schema = json.loads(res.stdout)
    assert schema["title"] == "purchases" and "price" in schema["required"]
    assert persona("schema", "nope").returncode == 2


def test_worker_refuses_to_start_with_a_bad_campaigns_file(tmp_path: Path) -> None:
    # The runtime is built before Faust starts: the error names the file, exit code 2.
    bad = tmp_path / "campaigns.json"
    bad.write_text('{"campaigns": [{"campaign_id": "c", "max_bid": -1}]}', encoding="utf-8")
    res = persona("worker", env={"PERSONA_DATA_DIR": str(tmp_path),
                                 "PERSONA_SECRET_KEY": "cli-test-secret-key-0123456789",
                                 "PERSONA_CAMPAIGNS_FILE": str(bad)}, timeout=60)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "campaigns.json" in res.stderr


def test_worker_refuses_to_start_without_secret_key(tmp_path: Path) -> None:
    res = persona("worker", env={"PERSONA_DATA_DIR": str(tmp_path)}, timeout=60)
    assert res.returncode == 2
    assert "PERSONA_SECRET_KEY" in res.stderr


def test_bad_setting_is_a_clear_error(tmp_path: Path) -> None:
    res = persona("broker", "status", env={"PERSONA_BROKER_PORT": "ninety"})
    assert res.returncode == 2
    assert "PERSONA_BROKER_PORT" in res.stderr


def test_pseudonymize_matches_ingest(tmp_path: Path) -> None:
    res = persona("pseudonymize", " alice ", "42",
                  env={"PERSONA_SECRET_KEY": SECRET, "PERSONA_DATA_DIR": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    lines = [line.split("\t") for line in res.stdout.strip().splitlines()]
    assert lines[0][1] == pseudonymize("alice", SECRET.encode())
    assert lines[1][1] == pseudonymize("42", SECRET.encode())


def test_broker_commands(tmp_path: Path, kafka_broker) -> None:
    port = free_port()
    env = {"PERSONA_DATA_DIR": str(tmp_path), "PERSONA_BROKER_PORT": str(port)}
    # share the session's jar cache so nothing is fetched twice
    lib = kafka_broker.lib_dir
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / lib.name).symlink_to(lib, target_is_directory=True)
    assert persona("broker", "status", env=env).returncode == 1
    started = persona("broker", "start", env=env, timeout=180)
    try:
        assert started.returncode == 0, started.stderr
        status = persona("broker", "status", env=env)
        assert status.returncode == 0 and f"127.0.0.1:{port}" in status.stdout
        created = persona("topics", "create", env=env)
        assert created.returncode == 0, created.stderr
        assert "created 15 topic(s)" in created.stderr and "persona-events" in created.stderr
        assert "persona-model-updates" in created.stderr
        assert "persona-ads" in created.stderr
    finally:
        stopped = persona("broker", "stop", env=env, timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    assert persona("broker", "status", env=env).returncode == 1


def test_produce_jsonl_and_consume(tmp_path: Path, kafka_broker) -> None:
    topic = f"cli-{os.getpid()}"
    ensure_topics(kafka_broker.bootstrap, [topic], 4)
    path = tmp_path / "events.jsonl"
    events = [{"event_id": f"e{i}", "user_id": f"u{i % 3}", "item_id": "x", "ts": 1}
              for i in range(25)]
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n\nnot json\n")
    env = {"PERSONA_BOOTSTRAP": kafka_broker.bootstrap, "PERSONA_DATA_DIR": str(tmp_path)}
    res = persona("produce", str(path), "--topic", topic, "--rate", "500", env=env)
    assert res.returncode == 0, res.stderr
    assert "sent 26 events" in res.stderr
    res = persona("consume", topic, "--from-beginning", "--raw", "--max", "26", "--timeout", "20",
                  env=env)
    assert res.returncode == 0, res.stderr
    got = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(got) == 26
    got_ids = sorted(g["event_id"] for g in got if "event_id" in g)
    assert got_ids == sorted(e["event_id"] for e in events)
    assert persona("produce", str(tmp_path / "nope.jsonl"), "--topic", topic,
                   env=env).returncode == 1


def test_ads_kill_and_resume_write_the_control_topic(kafka_broker) -> None:
    from kafka import KafkaConsumer, TopicPartition

    from streams.records import decode_control

    topic = f"control-{os.getpid()}"
    ensure_topics(kafka_broker.bootstrap, [topic], 4)
    env = {"PERSONA_BOOTSTRAP": kafka_broker.bootstrap, "PERSONA_TOPIC_CONTROL": topic}
    killed = persona("ads", "kill", "--reason", "campaign audit", env=env)
    assert killed.returncode == 0, killed.stderr
    assert persona("ads", "resume", env=env).returncode == 0
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000)
    consumer.assign([TopicPartition(topic, p) for p in range(4)])
    got = sorted((decode_control(m.value) for m in consumer), key=lambda c: c.ts_ms)
    consumer.close()
    assert [(c.action, c.reason) for c in got] == [("ads_kill", "campaign audit"),
                                                   ("ads_resume", None)]
    unreachable = persona("ads", "kill", env={"PERSONA_BOOTSTRAP": f"127.0.0.1:{free_port()}"},
                          timeout=60)
    assert unreachable.returncode == 1 and "cannot send" in unreachable.stderr


def test_demo_runs_end_to_end(tmp_path: Path, kafka_broker) -> None:
    lib = kafka_broker.lib_dir
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / lib.name).symlink_to(lib, target_is_directory=True)
    # No exploration: 3,000 events are too few for the bandit to settle (early on,
    # popularity earns the most hits), and this test checks what the hybrid serves.
    env = {"PERSONA_DATA_DIR": str(tmp_path), "PERSONA_BROKER_PORT": str(free_port()),
           "PERSONA_EXPLORATION": "0"}
    res = persona("demo", "--limit", "3000", "--ad-requests", "240", env=env, timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    assert "demo summary" in out
    # the demo's A/B test: variant A serves popularity, B the hybrid
    served = re.findall(r"variant ([AB]), strategy (\w+)", " ".join(out.split()))
    assert served and all({"A": "popularity", "B": "hybrid"}[v] == s for v, s in served)
    report = " ".join(out[out.index("experiment demo-recs"):].split())
    assert "(control A)" in report and "lift" in report
    # one verdict line per comparison: significant, or how many users it would need
    assert re.search(r"B CTR: (.* significant at the 95% level|too small to conclude)",
                     report)
    summary = out[out.index("demo summary"):out.index("ad campaigns")]
    assert "3,005" in summary and "3,000" in summary  # replayed, accepted
    # MovieLens is never rate-limited, whichever input topic the worker reads first
    assert re.search(r"rate-limited \(counted, not learned, not served\)\s*│\s*0 │", summary)
    for code in ("not_utf8", "bad_timestamp", "bad_price", "missing_field", "not_object"):
        assert f"{code}: 1" in summary
    _check_ad_phase(out, requests=240)
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "demo").exists()  # the demo cleans up after itself


def table(out: str, title: str) -> dict[str, list[str]]:
    """The body rows of the rich table titled ``title``, keyed by their first cell."""
    rows: dict[str, list[str]] = {}
    for line in out[out.index(title):].splitlines()[1:]:
        if line.startswith("└"):
            break
        if line.startswith("│"):
            cells = [c.strip() for c in line.strip().strip("│").split("│")]
            rows[cells[0]] = cells[1:]
    assert rows, f"table {title!r} has no rows"
    return rows


def number(cell: str) -> float:
    return float(cell.replace(",", "").rstrip("%"))


def _check_ad_phase(out: str, requests: int) -> None:
    from streams.cli.adsim import demo_campaigns

    campaigns = {c["campaign_id"]: c for c in demo_campaigns()["campaigns"]}
    # columns: bids, mean bid, wins, win rate, spend, daily budget, used, budget left, pacing
    spend = table(out, "ad campaigns: auctions and spend")
    assert set(spend) == {*campaigns, "total"}
    assert number(spend["total"][0]) > 0 and number(spend["total"][2]) > 0  # bids, wins
    assert number(spend["total"][4]) > 0  # spend
    for cid, c in campaigns.items():
        row = spend[cid]
        assert number(row[2]) <= number(row[0])  # wins <= bids
        cost = number(row[4])
        assert cost <= c["daily_budget"] + 1e-9
        assert cost <= c.get("total_budget", float("inf")) + 1e-9
    # columns: wins, clicks, CTR, conversions, revenue, ROI
    ctr = table(out, "ad campaigns: clicks, conversions, return")["total"]
    assert ctr[0] == spend["total"][2]
    assert re.fullmatch(r"\d+\.\d%", ctr[2]), ctr  # a CTR figure
    assert "pCTR calibration" in out and "sample bids" in out
    outcomes = table(out, "ad requests by outcome")
    assert number(outcomes["bid"][0]) == number(spend["total"][0])
    assert sum(number(v[0]) for v in outcomes.values()) == requests
    phase = table(out, "ad phase summary")
    assert number(phase["ad requests published"][0]) == requests
    assert number(phase["answered on ad-bids (bid or no-bid)"][0]) == requests
    assert phase["ad events refused"] == ["0"]  # every event came inside its window


def test_demo_stops_everything_on_ctrl_c(tmp_path: Path, kafka_broker) -> None:
    import signal
    import time

    lib = kafka_broker.lib_dir
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / lib.name).symlink_to(lib, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONA_")}
    env.update({"PERSONA_DATA_DIR": str(tmp_path), "PERSONA_BROKER_PORT": str(free_port()),
                "COLUMNS": "120"})
    log = (tmp_path / "demo.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli.main", "demo", "--rate", "200"],
                            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while "published" not in (tmp_path / "demo.log").read_text():
            assert proc.poll() is None, (tmp_path / "demo.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "demo never started publishing"
            time.sleep(0.3)
        time.sleep(2)  # mid-replay
        pids = [int(p.read_text()) for p in tmp_path.glob("kafka/*/broker.pid")]
        assert pids, "the demo's broker writes a pid file"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    out = (tmp_path / "demo.log").read_text()
    assert "interrupted" in out and "worker stopped" in out and "broker stopped" in out
    for pid in pids:  # the broker process it started is gone
        assert not Path(f"/proc/{pid}").exists() or "kafka.Kafka" not in Path(
            f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    assert not (tmp_path / "demo").exists()
