"""Run a real Prometheus server as a child process on loopback, and query its HTTP API.

For integration tests and local checks: a generated config scraping given targets (one
job), optional rule files by absolute path, its TSDB in a directory of ours, every wait
bounded. Uses the ``prometheus`` binary on PATH (Debian's package ships it with promtool).
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from streams.local.worker_proc import http_get, stop_process


class PrometheusError(RuntimeError):
    """Prometheus did not start, died, or its API answered with an error."""


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector: its labels, value and the evaluation time (unix s)."""

    labels: dict[str, str]
    value: float
    ts: float


@dataclass
class PrometheusServer:
    """``prometheus`` on ``host:port`` scraping ``targets`` as job ``job``.

    ``home`` holds the generated config, the TSDB and the server's log.
    """

    home: Path
    port: int
    targets: Sequence[str]
    rule_files: Sequence[Path] = ()
    job: str = "persona"
    scrape_interval: str = "1s"
    evaluation_interval: str = "1s"
    host: str = "127.0.0.1"
    binary: str = "prometheus"
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.home / "prometheus.yml"

    @property
    def log_path(self) -> Path:
        return self.home / "prometheus.log"

    def config(self) -> dict[str, Any]:
        return {
            "global": {"scrape_interval": self.scrape_interval,
                       "scrape_timeout": self.scrape_interval,
                       "evaluation_interval": self.evaluation_interval},
            "rule_files": [str(Path(p).resolve()) for p in self.rule_files],
            "scrape_configs": [{"job_name": self.job, "metrics_path": "/metrics",
                                "static_configs": [{"targets": list(self.targets)}]}],
        }

    def command(self) -> list[str]:
        exe = shutil.which(self.binary)
        if exe is None:
            raise PrometheusError(
                f"{self.binary!r} not found: apt-get install --no-install-recommends prometheus")
        return [
            exe,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.home / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ]

    def start(self, timeout: float = 30.0) -> float:
        """Write the config, start the server, wait until /-/ready; return the seconds taken."""
        if not ipaddress.ip_address(self.host).is_loopback:
            raise PrometheusError(f"refusing to listen on non-loopback host {self.host}")
        if self.alive():
            raise PrometheusError("already running")
        self.home.mkdir(parents=True, exist_ok=True)
        # YAML is a superset of JSON: no YAML writer needed.
        self.config_file.write_text(json.dumps(self.config(), indent=2))
        cmd = self.command()
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        while time.monotonic() - started < timeout:
            if not self.alive():
                raise PrometheusError(f"prometheus exited early; log tail:\n{self.log_tail()}")
            if http_get(self.base_url + "/-/ready", timeout=1.0)[0] == 200:
                return time.monotonic() - started
            time.sleep(0.1)
        self.stop()
        raise PrometheusError(f"prometheus not ready after {timeout:.0f}s; log:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def api(self, path: str, params: dict[str, str] | None = None,
            timeout: float = 5.0) -> Any:
        """GET ``/api/v1/<path>``; the ``data`` member of a successful answer."""
        url = f"{self.base_url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body = http_get(url, timeout=timeout)
        try:
            doc = json.loads(body) if body else {}
        except ValueError:
            doc = {}
        if status != 200 or doc.get("status") != "success":
            raise PrometheusError(f"{path} answered {status}: {body[:500]!r}")
        return doc["data"]

    def query(self, expr: str, timeout: float = 5.0) -> list[Sample]:
        """Evaluate ``expr`` now (instant query); the resulting vector (empty if none)."""
        data = self.api("query", {"query": expr}, timeout=timeout)
        if data["resultType"] == "scalar":
            ts, value = data["result"]
            return [Sample({}, float(value), float(ts))]
        if data["resultType"] != "vector":
            raise PrometheusError(f"{expr!r} gave a {data['resultType']}, not a vector")
        return [Sample(dict(r["metric"]), float(r["value"][1]), float(r["value"][0]))
                for r in data["result"]]

    def last_scrape(self) -> float:
        """Unix time of the newest completed scrape over all active targets, 0 if none."""
        newest = 0.0
        for target in self.api("targets", {"state": "active"})["activeTargets"]:
            when = target.get("lastScrape") or ""
            if when.startswith("0001-"):  # Go's zero time: never scraped
                continue
            newest = max(newest, _rfc3339(when))
        return newest

    def wait_scrape_after(self, t: float, timeout: float = 15.0) -> float:
        """Block until a scrape started after unix time ``t`` has completed; its time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.last_scrape()
            if last > t:
                return last
            time.sleep(0.2)
        raise PrometheusError(f"no scrape after {t} within {timeout}s; log:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (Prometheus flushes and exits), SIGKILL after ``timeout``; the exit code."""
        return stop_process(self.proc, timeout)


def _rfc3339(text: str) -> float:
    """Go's RFC 3339 time ("2026-11-23T05:03:23.123456789Z") to unix seconds."""
    return datetime.fromisoformat(text).timestamp()  # 3.11: any digits, "Z" accepted
