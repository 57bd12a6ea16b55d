"""Pure parts of streams/local/broker.py: no JVM, no Maven, no network beyond binding 127.0.0.1."""

from __future__ import annotations

import re
import socket
import sys
from pathlib import Path

import pytest

import streams.local.broker as broker_mod
from streams.local.broker import (
    BrokerError,
    LocalBroker,
    free_port,
    log4j_version_for,
    new_cluster_id,
    render_server_properties,
)
from streams.settings import Settings


def _props(text: str) -> dict[str, str]:
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    return dict(ln.split("=", 1) for ln in lines)


def test_server_properties_single_node_kraft_on_loopback(tmp_path: Path) -> None:
    props = _props(render_server_properties("127.0.0.1", 19092, 19093, tmp_path / "data"))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    assert props["log.dirs"] == str(tmp_path / "data")
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
        "default.replication.factor",
        "min.insync.replicas",
        "offsets.topic.num.partitions",
        "transaction.state.log.num.partitions",
        "share.coordinator.state.topic.num.partitions",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["log.cleaner.dedupe.buffer.size"] == str(16 * 1024 * 1024)
    assert props["auto.create.topics.enable"] == "false"
    # Nothing binds a wildcard or non-loopback address.
    assert "0.0.0.0" not in str(props) and "localhost" not in str(props)


def test_cluster_id_format() -> None:
    ids = {new_cluster_id() for _ in range(500)}
    assert len(ids) == 500
    for cid in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cid), cid
        assert not cid.startswith("-")


def test_free_port_and_its_successor_are_bindable() -> None:
    port = free_port()
    assert 1024 <= port < 65535
    for p in (port, port + 1):
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))


@pytest.mark.parametrize(
    ("kafka", "log4j"),
    [("4.0.0", "2.24.3"), ("4.1.1", "2.24.3"), ("4.0.2", "2.25.3"), ("4.2.0", "2.25.3"),
     ("4.2.1", "2.25.4"), ("4.3.1", "2.25.4")],
)  # fmt: skip
def test_log4j_version_for(kafka: str, log4j: str) -> None:
    assert log4j_version_for(kafka) == log4j


@pytest.mark.parametrize("bad", ["3.9.1", "latest", ""])
def test_log4j_version_rejects_non_4x(bad: str) -> None:
    with pytest.raises(BrokerError):
        log4j_version_for(bad)


def test_from_settings_layout(tmp_path: Path) -> None:
    env = {"PERSONA_DATA_DIR": str(tmp_path), "PERSONA_BROKER_PORT": "19092"}
    settings = Settings.from_env(env)
    b = LocalBroker.from_settings(settings)
    assert (b.version, b.host, b.port) == (settings.kafka_version, "127.0.0.1", 19092)
    assert b.bootstrap == "127.0.0.1:19092"
    assert b.lib_dir == tmp_path / "kafka" / f"lib-{settings.kafka_version}"
    assert b.dir == tmp_path / "kafka" / "19092"
    assert b.data_dir == b.dir / "data" and b.pid_file == b.dir / "broker.pid"
    named = LocalBroker.from_settings(settings, port=20000, name="demo")
    assert named.dir == tmp_path / "kafka" / "demo" and named.port == 20000
    st = b.status()
    assert st["running"] is False and st["pid"] is None and st["port"] == 19092
    assert st["log"] == str(b.dir / "logs" / "server.log")


def test_java_command_runs_kafka_with_our_log4j_config(tmp_path: Path) -> None:
    b = LocalBroker(version="4.3.1", host="127.0.0.1", port=19092, home=tmp_path)
    cmd = b.java_command("/usr/bin/java")
    assert cmd[0] == "/usr/bin/java"
    assert cmd[-2:] == ["kafka.Kafka", str(b.properties_file)]
    assert f"{b.lib_dir}/*" in cmd and "-Xmx512m" in cmd
    cfg = next(a for a in cmd if a.startswith("-Dlog4j2.configurationFile="))
    assert Path(cfg.split("=", 1)[1]).is_file()


def test_log4j_config_has_a_console_appender_and_info_root() -> None:
    text = broker_mod.LOG4J_CONFIG.read_text()
    assert "appender.console.type = Console" in text
    assert "${sys:persona.log.level:-INFO}" in text


def test_start_rejects_non_loopback_host(tmp_path: Path) -> None:
    b = LocalBroker(version="4.3.1", host="0.0.0.0", port=19092, home=tmp_path)
    with pytest.raises(BrokerError, match="loopback"):
        b.start(timeout=1)


def test_start_fails_fast_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        b = LocalBroker(version="4.3.1", host="127.0.0.1", port=port, home=tmp_path)
        with pytest.raises(BrokerError, match="in use"):
            b.start(timeout=1)


def test_fetch_without_maven_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker_mod.shutil, "which", lambda name: None)
    b = LocalBroker(version="4.3.1", host="127.0.0.1", port=19092, home=tmp_path)
    with pytest.raises(BrokerError, match="mvn not found"):
        b.fetch()


def test_a_broker_that_dies_reports_its_log_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = LocalBroker(version="4.3.1", host="127.0.0.1", port=free_port(), home=tmp_path)
    b.lib_dir.mkdir(parents=True)
    (b.lib_dir / ".complete").write_text("fake\n")
    monkeypatch.setattr(broker_mod, "_java", lambda: sys.executable)
    monkeypatch.setattr(LocalBroker, "_format", lambda self, java: None)
    monkeypatch.setattr(
        LocalBroker,
        "java_command",
        lambda self, java="java": [
            sys.executable, "-c", "print('boom: bad config'); raise SystemExit(3)"
        ],
    )
    with pytest.raises(BrokerError, match="boom: bad config") as info:
        b.start(timeout=10)
    assert "exit code 3" in str(info.value)
    assert not b.pid_file.exists()
    b.stop()  # nothing to stop: no error
