"""The local Apache Kafka 4.x broker (KRaft, one combined broker+controller node) on the JVM.

The same code backs ``persona broker`` and the integration tests' ``kafka_broker`` fixture.
Facts it relies on are in docs/broker.md:

* jars: ``mvn dependency:copy-dependencies`` of ``ops/kafka/pom.xml`` (kafka_2.13 plus the
  log4j pieces its POM lacks), once per version, into ``<home>/lib-<version>/``;
* storage: ``kafka.tools.StorageTool format -t <cluster id> -c server.properties -g`` on the
  first start (static ``controller.quorum.voters``, so no ``--standalone``);
* broker: ``java ... kafka.Kafka server.properties``, detached, output to ``logs/server.log``;
  ready once the PLAINTEXT port accepts a connection and answers a Metadata request.

Layout under ``home`` (``settings.kafka_dir``, e.g. ``.persona/kafka``)::

    lib-<version>/            jars, shared by every broker of that version
    <name or port>/
        cluster.id            generated once: restarts reuse the same storage
        server.properties     rewritten on every start (the port may change)
        broker.pid
        data/                 the KRaft log dir (persistent across stop/start)
        logs/server.log       broker stdout+stderr (previous run: server.log.1)

This module must not import faust: the CLI uses it before any worker exists.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OPS_DIR = Path(__file__).resolve().parents[2] / "ops" / "kafka"
POM = OPS_DIR / "pom.xml"
LOG4J_CONFIG = OPS_DIR / "log4j2.properties"

# From bin/kafka-server-start.sh and kafka-run-class.sh, heap halved for a laptop / 2-core CI.
BROKER_JVM_FLAGS = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)
# Short-lived tools: C1 only starts faster.
TOOL_JVM_FLAGS = (
    "-Xmx256m",
    "-XX:TieredStopAtLevel=1",
    "-XX:+UseSerialGC",
    "-Djava.awt.headless=true",
)

READY_LINE = "Kafka Server started"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
NODE_ID = 1
_MAIN_CLASS = "kafka.Kafka"

# Broker processes this Python process launched, so stop() can reap them (no zombies).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started, stopped or reached."""


# ---------------------------------------------------------------------------------------------
# Pure helpers


def new_cluster_id() -> str:
    """A KRaft cluster id: URL-safe base64 of a random UUID, 22 chars, never starting with '-'.

    >>> cid = new_cluster_id()
    >>> len(cid), cid.startswith("-"), "=" in cid
    (22, False, False)
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cid.startswith("-"):
            return cid


def log4j_version_for(kafka_version: str) -> str:
    """The log4j2 release a Kafka release was built with (its POM may not say, see the pom).

    >>> log4j_version_for("4.1.1"), log4j_version_for("4.2.0"), log4j_version_for("4.3.1")
    ('2.24.3', '2.25.3', '2.25.4')
    """
    try:
        key = tuple(int(p) for p in kafka_version.split(".")[:3])
    except ValueError:
        raise BrokerError(f"Kafka version {kafka_version!r} is not like 4.3.1") from None
    if key < (4,):
        raise BrokerError(f"Kafka {kafka_version} is not supported: use a 4.x release (KRaft)")
    if key in {(4, 0, 0), (4, 0, 1), (4, 1, 0), (4, 1, 1)}:
        return "2.24.3"
    if key in {(4, 0, 2), (4, 1, 2), (4, 2, 0)}:
        return "2.25.3"
    return "2.25.4"


def render_server_properties(host: str, port: int, controller_port: int, log_dir: Path) -> str:
    """server.properties of a single combined broker+controller node on ``host``."""
    props = {
        "process.roles": "broker,controller",
        "node.id": NODE_ID,
        "controller.quorum.voters": f"{NODE_ID}@{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        # One broker: every replication factor and min ISR must be 1.
        "offsets.topic.replication.factor": 1,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        "default.replication.factor": 1,
        "min.insync.replicas": 1,
        # Internal topics default to 50 partitions; 1 is plenty locally.
        "offsets.topic.num.partitions": 1,
        "transaction.state.log.num.partitions": 1,
        "share.coordinator.state.topic.num.partitions": 1,
        "group.initial.rebalance.delay.ms": 0,
        # The cleaner's default 128 MiB dedupe buffer does not fit a 512 MiB heap comfortably.
        "log.cleaner.dedupe.buffer.size": 16 * 1024 * 1024,
        "num.network.threads": 2,
        "num.io.threads": 2,
        "num.partitions": 4,
        # persona and Faust create their topics explicitly through the admin API.
        "auto.create.topics.enable": "false",
    }
    lines = ["# Written by streams/local/broker.py on every start: edits are lost."]
    lines += [f"{k}={v}" for k, v in props.items()]
    return "\n".join(lines) + "\n"


def _port_free(host: str, port: int) -> bool:
    # SO_REUSEADDR like the JVM's server sockets, so TIME_WAIT leftovers do not count as taken.
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on ``host`` whose successor (the controller port) is free too."""
    for _ in range(200):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port < 65535 and _port_free(host, port + 1):
            return port
    raise BrokerError(f"found no free pair of TCP ports on {host}")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reap(pid: int) -> None:
    """Collect an exited child of ours so it does not linger as a zombie."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if not java:
        raise BrokerError(
            "java not found: the local Kafka broker needs Java 17+ "
            "(e.g. apt-get install openjdk-17-jre-headless, or set JAVA_HOME)"
        )
    return java


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------
# Client-side helpers (kafka-python 3.x)


@contextlib.contextmanager
def _admin(
    bootstrap: str, timeout: float, client: Mapping[str, Any] | None = None
) -> Iterator[Any]:
    """A kafka-python admin client; ``client`` adds keyword arguments (the security ones of
    ``Settings.kafka_client_kwargs()``)."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="persona-broker",
        bootstrap_timeout_ms=max(1000, int(timeout * 1000)),
        request_timeout_ms=max(1000, int(timeout * 1000)),
        **(client or {}),
    )
    try:
        yield admin
    finally:
        admin.close()


def _tcp_ready(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _split_bootstrap(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    if first.startswith("kafka://"):
        first = first[len("kafka://") :]
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        raise BrokerError(f"bootstrap {bootstrap!r} is not host:port")
    return host.strip("[]"), int(port)


def _wait_ready(
    bootstrap: str,
    deadline: float,
    alive: Callable[[], bool] | None = None,
    client: Mapping[str, Any] | None = None,
) -> None:
    host, port = _split_bootstrap(bootstrap)
    # The PLAINTEXT acceptor opens only once the broker is unfenced: poll it cheaply first.
    while not _tcp_ready(host, port):
        if alive is not None and not alive():
            raise BrokerError("the broker process exited")
        if time.monotonic() >= deadline:
            raise BrokerError(f"no Kafka broker accepts connections at {bootstrap}")
        time.sleep(0.1)
    last: Exception | None = None
    while True:
        remaining = deadline - time.monotonic()
        try:
            with _admin(bootstrap, max(1.0, remaining), client) as admin:
                admin.describe_cluster()
            return
        except Exception as exc:  # kafka-python raises many kinds; report the last one
            last = exc
        if alive is not None and not alive():
            raise BrokerError("the broker process exited")
        if time.monotonic() >= deadline:
            raise BrokerError(f"Kafka broker at {bootstrap} does not answer Metadata: {last}")
        time.sleep(0.2)


def wait_for_broker(
    bootstrap: str, timeout: float, client: Mapping[str, Any] | None = None
) -> None:
    """Block until the broker at ``bootstrap`` accepts a connection and answers Metadata
    (``client``: extra kafka-python arguments, e.g. ``Settings.kafka_client_kwargs()``)."""
    _wait_ready(bootstrap, time.monotonic() + timeout, client=client)


def ensure_topics(
    bootstrap: str,
    names: list[str],
    partitions: int | Mapping[str, int],
    replication: int = 1,
    timeout: float = 30.0,
    configs: dict[str, str] | None = None,
    client: Mapping[str, Any] | None = None,
    per_topic: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """Create the missing topics among ``names``; return those created (existing ones are fine).

    ``configs`` go to every topic created, ``per_topic[name]`` to that one as well.

    ``client`` adds kafka-python keyword arguments (``Settings.kafka_client_kwargs()``:
    SASL/TLS).

    Waits until metadata shows every partition of every named topic with a leader.
    Existing topics are left as they are (their partition count is not changed).
    ``partitions`` is one count for all, or a count per name.
    """
    import kafka.errors as Errors

    names = list(dict.fromkeys(names))
    if not names:
        return []
    deadline = time.monotonic() + timeout
    with _admin(bootstrap, timeout, client) as admin:
        existing = set(admin.list_topics())
        missing = [n for n in names if n not in existing]
        created: list[str] = []
        if missing:
            spec = {
                n: {
                    "num_partitions": partitions if isinstance(partitions, int)
                    else partitions[n],
                    "replication_factor": replication,
                    "configs": {k: str(v) for k, v in
                                {**(configs or {}), **(per_topic or {}).get(n, {})}.items()},
                }
                for n in missing
            }
            result = admin.create_topics(
                spec,
                timeout_ms=max(1000, int((deadline - time.monotonic()) * 1000)),
                raise_errors=False,
            )
            failed = []
            for topic in result["topics"]:
                code = topic["error_code"]
                if code == 0:
                    created.append(topic["name"])
                elif code != Errors.TopicAlreadyExistsError.errno:  # lost a race: fine
                    err = Errors.for_code(code).__name__
                    failed.append(f"{topic['name']}: {err} {topic.get('error_message') or ''}")
            if failed:
                raise BrokerError("could not create topics: " + "; ".join(failed))
        try:
            admin.wait_for_topics(
                names, timeout_ms=max(1000, int((deadline - time.monotonic()) * 1000))
            )
        except Errors.KafkaTimeoutError as exc:
            raise BrokerError(str(exc)) from None
    return created


# ---------------------------------------------------------------------------------------------
# The broker


@dataclass
class LocalBroker:
    """One local Kafka broker: ``home/<name or port>/`` holds its state, jars are shared."""

    version: str
    host: str
    port: int
    home: Path
    name: str | None = None
    # Where lib-<version>/ lives; default ``home``. The test fixture shares the project's cache.
    lib_home: Path | None = None

    @classmethod
    def from_settings(
        cls, settings: Any, port: int | None = None, name: str | None = None
    ) -> LocalBroker:
        return cls(
            version=settings.kafka_version,
            host=settings.broker_host,
            port=settings.broker_port if port is None else port,
            home=Path(settings.kafka_dir),
            name=name,
        )

    # -- paths --------------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def lib_dir(self) -> Path:
        return Path(self.lib_home or self.home) / f"lib-{self.version}"

    @property
    def dir(self) -> Path:
        return Path(self.home) / (self.name or str(self.port))

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def logs_dir(self) -> Path:
        return self.dir / "logs"

    @property
    def log_file(self) -> Path:
        return self.logs_dir / "server.log"

    @property
    def properties_file(self) -> Path:
        return self.dir / "server.properties"

    @property
    def pid_file(self) -> Path:
        return self.dir / "broker.pid"

    @property
    def cluster_id_file(self) -> Path:
        return self.dir / "cluster.id"

    # -- jars ---------------------------------------------------------------------------------
    def _lib_complete(self) -> bool:
        return (self.lib_dir / ".complete").is_file()

    def fetch(self, progress: Callable[[str], None] | None = None) -> Path:
        """Fetch the broker's jars with Maven, once per version; return the lib dir."""
        if self._lib_complete():
            return self.lib_dir
        log4j = log4j_version_for(self.version)
        with _locked(self.lib_dir.parent / f".lib-{self.version}.lock"):
            if self._lib_complete():  # another process fetched meanwhile
                return self.lib_dir
            mvn = shutil.which("mvn")
            if not mvn:
                raise BrokerError(
                    "mvn not found: fetching the Kafka broker's jars needs Maven 3.8+ "
                    "(e.g. apt-get install maven) and access to Maven Central"
                )
            _java()  # Maven needs it too: fail with the clear message
            if progress:
                progress(
                    f"Fetching Apache Kafka {self.version} jars from Maven Central into "
                    f"{self.lib_dir} (once per version)"
                )
            tmp = self.lib_dir.with_name(f"{self.lib_dir.name}.tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            cmd = [
                mvn, "-q", "-B", "-U", "-Dstyle.color=never", "-f", str(POM),
                "dependency:copy-dependencies", "-DincludeScope=runtime",
                f"-Dkafka.version={self.version}", f"-Dlog4j.version={log4j}",
                f"-DoutputDirectory={tmp}",
            ]  # fmt: skip
            t0 = time.monotonic()
            try:
                proc = subprocess.run(
                    cmd, cwd=str(OPS_DIR), stdin=subprocess.DEVNULL, capture_output=True,
                    text=True, timeout=900,
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                shutil.rmtree(tmp, ignore_errors=True)
                raise BrokerError(
                    "Maven did not finish fetching the Kafka jars in 15 minutes"
                ) from None
            jars = sorted(tmp.glob("*.jar")) if tmp.is_dir() else []
            if proc.returncode != 0 or not any(j.name.startswith("kafka_2.13-") for j in jars):
                shutil.rmtree(tmp, ignore_errors=True)
                out = _ANSI.sub("", proc.stdout + proc.stderr).strip()
                lines = [ln for ln in out.splitlines() if ln.strip() not in ("", "[ERROR]")]
                out = "\n".join(lines[-30:])
                raise BrokerError(
                    f"fetching Apache Kafka {self.version} with Maven failed "
                    f"(exit {proc.returncode}): is the version right and Maven Central "
                    f"reachable?\n{' '.join(cmd)}\n{out}"
                )
            size = sum(j.stat().st_size for j in jars)
            (tmp / ".complete").write_text(
                f"{len(jars)} jars, {size} bytes, {time.monotonic() - t0:.1f} s\n"
            )
            shutil.rmtree(self.lib_dir, ignore_errors=True)
            tmp.rename(self.lib_dir)
            if progress:
                progress(
                    f"Fetched {len(jars)} jars ({size / 1e6:.0f} MB) in "
                    f"{time.monotonic() - t0:.0f} s"
                )
        return self.lib_dir

    # -- process ------------------------------------------------------------------------------
    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _is_ours(self, pid: int) -> bool:
        """A live java process running kafka.Kafka with this broker's properties file."""
        _reap(pid)
        args = _cmdline(pid)  # empty for a zombie or a gone process
        return (
            bool(args)
            and Path(args[0]).name.startswith("java")
            and _MAIN_CLASS in args
            and str(self.properties_file) in args
        )

    def _running_pid(self) -> int | None:
        pid = self._read_pid()
        return pid if pid is not None and self._is_ours(pid) else None

    def java_command(self, java: str = "java") -> list[str]:
        return [
            java,
            *BROKER_JVM_FLAGS,
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp",
            f"{self.lib_dir}/*",
            _MAIN_CLASS,
            str(self.properties_file),
        ]

    def _check_host(self) -> None:
        try:
            loopback = ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise BrokerError(
                f"broker host {self.host!r} must be a loopback IP address such as 127.0.0.1 "
                "(the local broker is for this machine only; 'localhost' may resolve to ::1)"
            )

    def _cluster_id(self) -> str:
        try:
            cid = self.cluster_id_file.read_text().strip()
            if cid:
                return cid
        except OSError:
            pass
        cid = new_cluster_id()
        self.cluster_id_file.write_text(cid + "\n")
        return cid

    def _format(self, java: str) -> None:
        if (self.data_dir / "meta.properties").is_file():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            java, *TOOL_JVM_FLAGS,
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-Dpersona.log.level=WARN", "-Dpersona.log.target=SYSTEM_ERR",
            "-cp", f"{self.lib_dir}/*", "kafka.tools.StorageTool",
            "format", "-t", self._cluster_id(), "-c", str(self.properties_file), "-g",
        ]  # fmt: skip
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
        )
        if proc.returncode != 0:
            out = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
            raise BrokerError(f"formatting the KRaft storage in {self.data_dir} failed:\n{out}")

    def start(self, timeout: float = 60.0) -> None:
        """Start the broker (fetching jars and formatting storage if needed) and wait until ready.

        ``timeout`` bounds the wait for readiness (a first jar fetch is not counted).
        Does nothing but wait for readiness if this broker is already running.
        """
        self._check_host()
        self.dir.mkdir(parents=True, exist_ok=True)
        with _locked(self.dir / ".lock"):
            pid = self._running_pid()
            if pid is not None:
                _wait_ready(
                    self.bootstrap, time.monotonic() + timeout, lambda: self._is_ours(pid)
                )
                return
            self.pid_file.unlink(missing_ok=True)
            for port in (self.port, self.controller_port):
                if not _port_free(self.host, port):
                    raise BrokerError(
                        f"port {self.host}:{port} is in use: pick another broker port "
                        f"(PERSONA_BROKER_PORT; the controller uses port+1)"
                    )
            java = _java()
            self.fetch()
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            self.properties_file.write_text(
                render_server_properties(
                    self.host, self.port, self.controller_port, self.data_dir
                )
            )
            self._format(java)
            if self.log_file.exists():
                self.log_file.replace(self.log_file.with_name("server.log.1"))
            with open(self.log_file, "wb") as log:
                proc = subprocess.Popen(
                    self.java_command(java),
                    cwd=str(self.dir),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
            _CHILDREN[proc.pid] = proc
            self.pid_file.write_text(f"{proc.pid}\n")
            try:
                _wait_ready(
                    self.bootstrap, time.monotonic() + timeout, lambda: proc.poll() is None
                )
            except BrokerError as exc:
                if proc.poll() is None:  # alive but not ready in time: do not leave it behind
                    self._terminate(proc.pid, 10.0)
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(
                    f"Kafka {self.version} broker at {self.bootstrap} did not start: {exc} "
                    f"(exit code {proc.poll()}). Last lines of {self.log_file}:\n"
                    f"{_tail(self.log_file)}"
                ) from None

    def _terminate(self, pid: int, timeout: float) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + timeout
        while self._is_ours(pid) and time.monotonic() < end:
            time.sleep(0.1)
        if self._is_ours(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            end = time.monotonic() + 10.0
            while self._is_ours(pid) and time.monotonic() < end:
                time.sleep(0.05)
        child = _CHILDREN.pop(pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5.0)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (controlled shutdown), SIGKILL after ``timeout``; remove the pid file."""
        if not self.dir.is_dir():
            return
        with _locked(self.dir / ".lock"):
            pid = self._running_pid()
            if pid is not None:
                self._terminate(pid, timeout)
                if self._is_ours(pid):
                    raise BrokerError(f"broker process {pid} did not exit")
            self.pid_file.unlink(missing_ok=True)

    def status(self) -> dict[str, Any]:
        pid = self._running_pid()
        return {
            "running": pid is not None,
            "pid": pid,
            "port": self.port,
            "bootstrap": self.bootstrap,
            "log": str(self.log_file),
            "version": self.version,
            "dir": str(self.dir),
            "rss_bytes": _rss_bytes(pid) if pid is not None else None,
        }

    def wipe(self) -> None:
        """Delete the broker's data (topics, offsets); only when it is stopped."""
        if self._running_pid() is not None:
            raise BrokerError(f"broker at {self.bootstrap} is running: stop it before wiping")
        shutil.rmtree(self.data_dir, ignore_errors=True)
