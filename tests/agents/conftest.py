"""Agent tests: the real Faust app and agents, driven by ``Agent.test_context()``.

Settings are read when ``streams.app`` is imported, so the environment is set first.
Sends to Kafka topics are captured instead (no broker here: tests/integration has one).
"""

from __future__ import annotations

import asyncio
import os
import tempfile

import pytest

os.environ.setdefault("PERSONA_SECRET_KEY", "agent-test-secret-key-0123456789")
os.environ.setdefault("PERSONA_DATA_DIR", tempfile.mkdtemp(prefix="persona-agent-tests-"))
# A campaign for the ads agent to bid for.
_campaigns = os.path.join(os.environ["PERSONA_DATA_DIR"], "campaigns.json")
with open(_campaigns, "w", encoding="utf-8") as _fh:
    _fh.write('{"campaigns": [{"campaign_id": "books", "max_bid": 1.0}]}')
os.environ.setdefault("PERSONA_CAMPAIGNS_FILE", _campaigns)
os.environ.setdefault("PERSONA_AD_PACING", "false")
# The tests use fixed timestamps while test_context() stamps each message with the wall
# clock: no age limit here (test_ingest_catalogue.py switches it on where it is tested).
os.environ.setdefault("PERSONA_MAX_EVENT_AGE_S", "0")

from faust.topics import Topic  # noqa: E402

from streams.app import app  # noqa: E402


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
