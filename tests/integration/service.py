"""A persona worker process of its own for one integration test module: topics with a
fresh suffix on the session's real broker, a data dir, a catalogue already published.

Only what the privacy tests share lives here; other modules still build their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaProducer

from streams.local.broker import ensure_topics, free_port
from streams.local.worker_proc import WorkerProcess

INPUTS = ("clicks", "purchases", "items", "ad_requests", "ad_events", "privacy", "control")
OUTPUTS = ("recommendations", "ad_bids", "segments", "audiences", "dead_letters")
# Twelve items in two categories: enough for lists of a few items.
ITEMS = {f"item-{n}": ("Drama" if n % 2 else "Comedy") for n in range(12)}


@contextmanager
def running_service(bootstrap: str, data_dir: Path, prefix: str,
                    env: Mapping[str, str]) -> Iterator[dict[str, Any]]:
    """A ready worker with ``env`` (the PERSONA_* settings of the test) on topics of its
    own, and a kafka-python producer; stopped on exit. Yields ``worker``, ``topics`` (the
    settings' topic key -> name), ``bootstrap``, ``app_id``, ``data_dir``, ``producer``."""
    sfx = uuid.uuid4().hex[:8]
    names = {k: f"{k.replace('_', '-')}-{sfx}" for k in (*INPUTS, *OUTPUTS)}
    app_id = f"{prefix}-{sfx}"
    full = {f"PERSONA_TOPIC_{k.upper()}": v for k, v in names.items()}
    full.update({"PERSONA_BOOTSTRAP": bootstrap, "PERSONA_APP_ID": app_id,
                 "PERSONA_DATA_DIR": str(data_dir), "PERSONA_SESSION_TIMEOUT_S": "6"})
    full.update(env)
    counts = {n: 4 for n in [*names.values(), f"{app_id}-events"]}
    counts[f"{app_id}-ads"] = 1
    ensure_topics(bootstrap, list(counts), counts)
    worker = WorkerProcess(env=full, web_port=free_port(), log_path=data_dir / "worker.log")
    worker.start()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    try:
        worker.wait_ready(timeout=120)
        for item, category in ITEMS.items():
            producer.send(names["items"], key=item.encode(), value=orjson.dumps(
                {"item_id": item, "title": f"Title {item}", "categories": [category]}))
        producer.flush()
        yield {"worker": worker, "topics": names, "bootstrap": bootstrap, "app_id": app_id,
               "data_dir": data_dir, "producer": producer}
    finally:
        producer.close()
        worker.stop()
