"""Agent tests: the real Faust app and agents, driven by ``Agent.test_context()``.

The agents use the runtime installed here, built from a ``Settings`` value (no
environment is read for it). Sends to Kafka topics are captured instead (no broker
here: tests/integration has one).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
from faust.topics import Topic

from streams.app import app
from streams.runtime import Runtime, install
from streams.settings import Settings

_data_dir = Path(tempfile.mkdtemp(prefix="persona-agent-tests-"))
# A campaign for the ads agent to bid for.
(_data_dir / "campaigns.json").write_text(
    '{"campaigns": [{"campaign_id": "books", "max_bid": 1.0}]}', encoding="utf-8")
SETTINGS = Settings.from_env({
    "PERSONA_SECRET_KEY": "agent-test-secret-key-0123456789",
    "PERSONA_DATA_DIR": str(_data_dir),
    "PERSONA_CAMPAIGNS_FILE": str(_data_dir / "campaigns.json"),
    "PERSONA_AD_PACING": "false",
    # The tests use fixed timestamps while test_context() stamps each message with the
    # wall clock: no age limit here (test_ingest_catalogue.py sets one where it is tested).
    "PERSONA_MAX_EVENT_AGE_S": "0",
    # A test reads the tables as soon as its put() returns: a batch must not wait for
    # more (tests/agents/test_profile_batches.py sets a wait where it is tested).
    "PERSONA_BATCH_WAIT_MS": "0",
})
# Installed before any test module is imported: modules may read ``current()`` at import.
RUNTIME = install(Runtime(SETTINGS))


@pytest.fixture(scope="session")
def loop():
    lp = asyncio.new_event_loop()
    asyncio.set_event_loop(lp)
    app.loop = lp
    yield lp
    lp.close()


@pytest.fixture
def sent(monkeypatch):
    """Every Topic.send during the test, as (topic name, key, value)."""
    out: list[tuple[str, bytes | None, bytes | None]] = []

    async def fake_send(self, *args, key=None, value=None, **kwargs):
        out.append((self.get_topic_name(), key, value))

    monkeypatch.setattr(Topic, "send", fake_send)
    return out
