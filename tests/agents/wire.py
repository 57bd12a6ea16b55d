"""What the agent tests of the events topic share: internal messages and metric reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson

from streams.runtime import current


def metric(name: str, **labels: str) -> float:
    """A sample of the installed runtime's metrics (0 when it has none yet)."""
    v = current().metrics.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def event_wire(eid: str, user: str, item: str, ts: int, kind: str = "click",
               **extra: Any) -> bytes:
    """A click or purchase as ingest puts it on the events topic (``user``: the
    pseudonym); ``extra``: more fields (price, quantity, rl ...)."""
    d = {"kind": kind, "event_id": eid, "user_id": user, "item_id": item, "ts": ts,
         "fp": f"fp-{eid}-{item}", "src": "clicks" if kind == "click" else "purchases"}
    d.update(extra)
    return orjson.dumps(d)


@asynccontextmanager
async def input_agent(topic: Any) -> AsyncIterator[Any]:
    """The profile agent in a test context, its messages arriving on ``topic`` (an input
    topic it reads: clicks, purchases, ad requests, privacy). With no broker here the
    topics' partition counts are unknown, so every valid message is re-keyed onto the
    events topic unless a test says otherwise (``streams.agents.profile.placement``)."""
    from streams.agents.profile import profile

    async with profile.test_context() as agent:
        agent.original_channel = topic  # the topic name its test messages carry
        yield agent
