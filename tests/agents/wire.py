"""What the agent tests of the events topic share: internal messages and metric reads."""

from __future__ import annotations

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
