"""Fixtures of the slow chaos tests (``./run chaos``): a rig per test, results recorded.

Each test appends its report as one JSON line to ``$PERSONA_CHAOS_RESULTS`` (``./run
chaos`` sets it and then writes the table in docs/reliability.md from it), or to a file
under pytest's tmp dir when run by hand.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.local.broker import LocalBroker
from streams.local.chaos import Report, Rig, record


@pytest.fixture
def rig(kafka_broker: LocalBroker, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(kafka_broker.bootstrap, tmp_path, session_timeout_s=6.0).setup()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture(scope="session")
def results_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("PERSONA_CHAOS_RESULTS", "").strip()
    return Path(env) if env else tmp_path_factory.mktemp("chaos") / "results.jsonl"


@pytest.fixture
def keep(results_path: Path) -> Callable[[Report], Report]:
    """Record a scenario's report (before the test asserts on it)."""

    def save(rep: Report) -> Report:
        record(results_path, rep)
        print(rep.summary())
        return rep

    return save
