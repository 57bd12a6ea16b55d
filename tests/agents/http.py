"""What the in-process view tests share: a stand-in request and an internal click."""

from __future__ import annotations

import orjson
from multidict import CIMultiDict, MultiDict


class FakeRequest:
    """What the views read of an aiohttp request: the query and the headers."""

    def __init__(self, **query: str) -> None:
        self.query = MultiDict(query)
        self.headers = CIMultiDict()


def click_wire(eid: str, user: str, item: str, ts: int) -> bytes:
    """A click as ingest puts it on the events topic (``user``: the pseudonym)."""
    return orjson.dumps({"kind": "click", "event_id": eid, "user_id": user, "item_id": item,
                         "ts": ts, "fp": f"fp-{eid}", "src": "clicks"})
