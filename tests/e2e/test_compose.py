"""docker-compose.yml is validated by Debian's docker-compose (no Docker engine needed)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose(*args: str, secret: str | None) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is missing: ./run test installs Debian's docker-compose package"
    env = {k: v for k, v in os.environ.items() if k != "PERSONA_SECRET_KEY"}
    if secret is not None:
        env["PERSONA_SECRET_KEY"] = secret
    return subprocess.run([exe, "-f", str(ROOT / "docker-compose.yml"), "config", *args],
                          env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_compose_file_is_valid() -> None:
    res = _compose("-q", secret="compose-test-secret-0123456789")
    assert res.returncode == 0, res.stderr


def test_compose_refuses_to_run_without_a_secret_key() -> None:
    res = _compose("-q", secret=None)
    assert res.returncode != 0
    assert "PERSONA_SECRET_KEY" in res.stderr


def test_compose_shape() -> None:
    res = _compose(secret="compose-test-secret-0123456789")
    assert res.returncode == 0, res.stderr
    text = res.stdout
    # the same Kafka release as the local broker, and the services the issue names
    assert f"image: apache/kafka:{Settings().kafka_version}" in text
    for service in ("kafka:", "worker:", "prometheus:", "topics:"):
        assert re.search(rf"^  {service}", text, re.M), service
    # every published port is bound to loopback on the host
    ports = re.findall(r"^    - (\S+:\d+:\d+(?:/\w+)?)$", text, re.M)
    assert len(ports) == 4 and all(p.startswith("127.0.0.1:") for p in ports), ports
    assert "ops/prometheus/prometheus.yml" in text
    assert (ROOT / "ops" / "Dockerfile").is_file()
