"""Security against the real local Apache Kafka, with real worker processes:

* the HTTP surface: loopback only, Faust's table/router/debug pages answer 404, and
  /users/... needs the bearer token (401 without or with a wrong one, 403 while the worker
  has none, 200 with it);
* Kafka SASL (PLAIN over SASL_PLAINTEXT): a broker with a SASL listener; a worker and the
  ``persona`` CLI create topics, produce and consume through it with the right password,
  and fail clearly (never printing the password) with a wrong one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
from faust.web.base import DEBUG_BLUEPRINTS, DEFAULT_BLUEPRINTS, OPTIONAL_BLUEPRINTS
from mode.utils.imports import symbol_by_name

import streams.local.broker as broker_module
from models.users.privacy import pseudonymize
from streams.local.broker import ensure_topics, free_port
from streams.local.worker_proc import WorkerProcess, http_get

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SECRET = "security-it-secret-key-0123456789"
TOKEN = "security-it-api-token-0123456789"
PASSWORD = "sasl-pa55word-never-printed"
TOPIC_KINDS = ("clicks", "purchases", "items", "ad_requests", "ad_events", "privacy",
               "control", "recommendations", "ad_bids", "segments", "audiences",
               "dead_letters")


def topic_env(sfx: str) -> dict[str, str]:
    env = {f"PERSONA_TOPIC_{k.upper()}": f"{k.replace('_', '-')}-{sfx}" for k in TOPIC_KINDS}
    env["PERSONA_APP_ID"] = f"persona-sec-{sfx}"
    return env


def persona(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("PERSONA_")}
    full.update(env)
    full["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "streams.cli.main", *args], env=full, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} write them) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            addr, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # LISTEN
                found.add(addr)
    return found


def faust_page_paths(key: str) -> list[str]:
    """Every path Faust's own blueprints (tables, router, graph, stats, performance) serve
    when enabled, from faust.web.base itself, with a real table name and key filled in."""
    paths = []
    for prefix, ref in (*DEFAULT_BLUEPRINTS, *DEBUG_BLUEPRINTS, *OPTIONAL_BLUEPRINTS):
        for route in symbol_by_name(ref).routes:
            path = prefix + route.uri.replace("{name}", "profiles").replace("{key}", key)
            if path != "/":  # Faust's always-on index, checked separately
                paths.append(path)
    return paths


def test_http_surface(kafka_broker, tmp_path: Path) -> None:
    sfx = uuid.uuid4().hex[:8]
    env = {**topic_env(sfx), "PERSONA_BOOTSTRAP": kafka_broker.bootstrap,
           "PERSONA_SECRET_KEY": SECRET, "PERSONA_API_TOKEN": TOKEN,
           "PERSONA_DATA_DIR": str(tmp_path), "PERSONA_SESSION_TIMEOUT_S": "6",
           "PERSONA_LOG_LEVEL": "info"}
    s_env = {k: v for k, v in env.items() if k.startswith("PERSONA_TOPIC_")}
    names = list(s_env.values()) + [f"persona-sec-{sfx}-events"]
    counts = {n: 4 for n in names} | {f"persona-sec-{sfx}-ads": 1}
    ensure_topics(kafka_broker.bootstrap, list(counts), counts)
    worker = WorkerProcess(env=env, web_port=free_port(), log_path=tmp_path / "worker.log")
    worker.start()
    try:
        worker.wait_ready(timeout=120)
        # loopback only: one listener, on 127.0.0.1, none on 0.0.0.0 or ::
        assert listening_addresses(worker.web_port) == {"0100007F"}

        # one user with a profile, so a leak would have something to show
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
        ev = {"event_id": "e1", "user_id": "alice-raw", "item_id": "i1",
              "ts": int(time.time() * 1000)}
        producer.send(env["PERSONA_TOPIC_CLICKS"], key=b"alice-raw", value=orjson.dumps(ev))
        producer.flush()
        producer.close()
        user = pseudonymize("alice-raw", SECRET.encode())
        deadline = time.monotonic() + 60
        while worker.get_json("/users/alice-raw/profile")[0] != 200:
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.5)

        # Faust's pages that list tables, keys, routes and topology: all 404
        paths = faust_page_paths(user)
        assert "/table/profiles/" in paths and f"/router/profiles/{user}/" in paths
        for path in [*paths, "/table", "/router", "/table/profiles", "/router/profiles"]:
            status, body = http_get(worker.base_url + path)
            assert status == 404, (path, status)
            assert b"alice" not in body and user.encode() not in body, path
        assert worker.get_json("/")[1] == {"status": "OK"}  # Faust's index, no stats

        # open: health, readiness, metrics, segments (no user data)
        for path in ("/health", "/ready", "/metrics", "/segments"):
            assert http_get(worker.base_url + path)[0] == 200, path

        # /users/...: 401 without the token or with a wrong one, 200 with it
        for path in ("/users/alice-raw/recommendations?k=3", "/users/alice-raw/profile"):
            url = worker.base_url + path
            for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"},
                            {"Authorization": f"Basic {TOKEN}"},
                            {"Authorization": f"Bearer {TOKEN[:-1]}"}):
                status, body = http_get(url, headers=headers)
                assert status == 401, (path, headers)
                detail = orjson.loads(body)
                assert detail["error"] == "unauthorized" and user not in body.decode()
            import urllib.error
            import urllib.request

            with pytest.raises(urllib.error.HTTPError) as exc:
                urllib.request.urlopen(url, timeout=5)  # loopback
            assert exc.value.code == 401
            assert exc.value.headers["WWW-Authenticate"].startswith("Bearer realm=")
            status, body = http_get(url, headers={"Authorization": f"Bearer {TOKEN}"})
            assert status == 200, path
            assert orjson.loads(body)["user_id"] == user
        # the token never reaches the log
        assert TOKEN not in worker.log_path.read_text()
    finally:
        assert worker.stop() == 0


# ------------------------------------------------------------------ SASL


def sasl_listener(port: int, users: dict[str, str]):  # type: ignore[no-untyped-def]
    """render_server_properties plus a SASL_PLAINTEXT listener on ``port`` that accepts
    ``users`` with mechanism PLAIN (the broker's own traffic stays on PLAINTEXT)."""
    original = broker_module.render_server_properties

    def render(host: str, plain_port: int, controller_port: int, log_dir: Path) -> str:
        lines = []
        for line in original(host, plain_port, controller_port, log_dir).splitlines():
            key = line.partition("=")[0]
            if key in ("listeners", "advertised.listeners"):
                line += f",SASL_PLAINTEXT://{host}:{port}"
            elif key == "listener.security.protocol.map":
                line += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
            lines.append(line)
        accounts = " ".join(f'user_{u}="{p}"' for u, p in users.items())
        lines += ["sasl.enabled.mechanisms=PLAIN",
                  "listener.name.sasl_plaintext.plain.sasl.jaas.config="
                  f"org.apache.kafka.common.security.plain.PlainLoginModule required {accounts};"]
        return "\n".join(lines) + "\n"

    return render


def test_kafka_sasl_plain(kafka_broker_factory, monkeypatch, tmp_path: Path) -> None:
    sasl_port = free_port()
    monkeypatch.setattr(broker_module, "render_server_properties",
                        sasl_listener(sasl_port, {"persona": PASSWORD}))
    broker = kafka_broker_factory()
    broker.start(timeout=120)
    sfx = uuid.uuid4().hex[:8]
    base = {**topic_env(sfx), "PERSONA_BOOTSTRAP": f"127.0.0.1:{sasl_port}",
            "PERSONA_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "PERSONA_KAFKA_SASL_MECHANISM": "PLAIN",
            "PERSONA_KAFKA_SASL_USERNAME": "persona", "PERSONA_DATA_DIR": str(tmp_path),
            "PERSONA_SECRET_KEY": SECRET}
    good = {**base, "PERSONA_KAFKA_SASL_PASSWORD": PASSWORD}
    bad = {**base, "PERSONA_KAFKA_SASL_PASSWORD": "not-the-password"}
    printed: list[str] = []

    # --- the right password: topics, a worker, produce, consume, all through SASL
    res = persona("topics", "create", env=good)
    printed += [res.stdout, res.stderr]
    assert res.returncode == 0, res.stderr
    assert "created 15 topic(s)" in " ".join(res.stderr.split())
    worker = WorkerProcess(env={**good, "PERSONA_SESSION_TIMEOUT_S": "6",
                                "PERSONA_LOG_LEVEL": "info", "PERSONA_API_TOKEN": ""},
                           web_port=free_port(), log_path=tmp_path / "worker.log")
    worker.start()
    try:
        worker.wait_ready(timeout=120)
        # this worker has no API token: /users/... is forbidden, and says why
        status, body = worker.get_json("/users/u1/recommendations")
        assert status == 403 and "PERSONA_API_TOKEN" in body["detail"]
        events = tmp_path / "clicks.jsonl"
        now_ms = int(time.time() * 1000)
        events.write_text("".join(
            orjson.dumps({"event_id": f"e{n}", "user_id": f"user-{n % 3}", "item_id":
                          f"item-{n % 7}", "ts": now_ms + n}).decode() + "\n"
            for n in range(20)))
        res = persona("produce", str(events), "--topic", good["PERSONA_TOPIC_CLICKS"],
                      env=good)
        printed += [res.stdout, res.stderr]
        assert res.returncode == 0, res.stderr
        res = persona("consume", good["PERSONA_TOPIC_RECOMMENDATIONS"], "--from-beginning",
                      "--max", "20", "--timeout", "60", "--raw", env=good)
        printed += [res.stdout, res.stderr]
        assert res.returncode == 0, res.stderr
        recs = [orjson.loads(line) for line in res.stdout.splitlines()]
        assert len(recs) == 20
        assert {r["user_id"] for r in recs} == {
            pseudonymize(f"user-{i}", SECRET.encode()) for i in range(3)}
    finally:
        assert worker.stop() == 0
    log = worker.log_path.read_text()
    assert "Authentication failed" not in log and PASSWORD not in log

    # --- a wrong password: every client fails, clearly, without printing any password
    for args in (("produce", str(events), "--topic", bad["PERSONA_TOPIC_CLICKS"]),
                 ("consume", bad["PERSONA_TOPIC_CLICKS"], "--max", "1", "--timeout", "5"),
                 ("topics", "create")):
        started = time.monotonic()
        res = persona(*args, env=bad)
        took = time.monotonic() - started
        printed += [res.stdout, res.stderr]
        err = " ".join(res.stderr.split())
        assert res.returncode == 1, (args, res.stderr)
        # the broker often just closes the socket on a failed login, so kafka-python
        # cannot always say "Authentication failed": the settings to check are named
        assert "cannot reach Kafka" in err and "PERSONA_KAFKA_SASL_PASSWORD" in err, err
        assert "Traceback" not in res.stderr
        assert took < 60, (args, took)
    wrong_worker = WorkerProcess(env={**bad, "PERSONA_LOG_LEVEL": "info"},
                                 web_port=free_port(), log_path=tmp_path / "wrong.log")
    wrong_worker.start()
    try:
        deadline = time.monotonic() + 90
        while wrong_worker.alive():
            assert not wrong_worker.ready(), "a worker with a wrong password got ready"
            assert time.monotonic() < deadline, wrong_worker.log_tail()
            time.sleep(0.5)
        assert wrong_worker.proc is not None and wrong_worker.proc.returncode != 0
    finally:
        wrong_worker.stop()
    log = wrong_worker.log_path.read_text()
    assert "Authentication failed" in log
    for text in [*printed, log]:
        assert PASSWORD not in text and "not-the-password" not in text
