"""Run a persona worker as a child process (for the demo and the integration tests)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


class WorkerError(RuntimeError):
    """The worker did not start, or died."""


def http_get(
    url: str, timeout: float = 2.0, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """GET a loopback URL; (status, body). Status 0 when nothing answers."""
    try:
        request = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # loopback
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0, b""


def stop_process(proc: subprocess.Popen | None, timeout: float) -> int | None:
    """Stop a child we started: SIGTERM, SIGKILL after ``timeout``; its exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format to {'name{labels}': value} (enough for our own metrics)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


@dataclass
class WorkerProcess:
    """``persona worker`` in a child process, with its environment and log file."""

    env: dict[str, str]
    web_port: int
    log_path: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "PERSONA_WEB_PORT": str(self.web_port)}
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli.main", "worker"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def ready(self) -> bool:
        status, _ = http_get(self.base_url + "/ready")
        return status == 200

    def wait_ready(self, timeout: float = 90.0) -> float:
        """Block until /ready answers 200; return the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if not self.alive():
                raise WorkerError(f"worker exited early; log tail:\n{self.log_tail()}")
            if self.ready():
                return time.monotonic() - started
            time.sleep(0.2)
        raise WorkerError(f"worker not ready after {timeout:.0f}s; log tail:\n{self.log_tail()}")

    def metrics(self) -> dict[str, float]:
        status, body = http_get(self.base_url + "/metrics")
        if status != 200:
            raise WorkerError(f"/metrics answered {status}")
        return parse_metrics(body.decode())

    @property
    def api_token(self) -> str:
        """The PERSONA_API_TOKEN the worker runs with ("" if none)."""
        return self.env.get("PERSONA_API_TOKEN", os.environ.get("PERSONA_API_TOKEN", "")).strip()

    def get_json(self, path: str, token: str | None = None) -> tuple[int, dict]:
        """GET ``path``; JSON body. Sends the worker's API token (or ``token``) as a bearer
        token, which ``/users/...`` needs."""
        token = self.api_token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        status, body = http_get(self.base_url + path, headers=headers)
        try:
            return status, json.loads(body) if body else {}
        except ValueError:
            return status, {}

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (Faust shuts down cleanly), SIGKILL after ``timeout``; the exit code."""
        return stop_process(self.proc, timeout)
