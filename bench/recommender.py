"""Speed and quality of the recommenders over the whole MovieLens 100K stream
(docs/quality.md, Protocol).

Prequential protocol: for each rating in timestamp order, rank the top 10 for the user
(excluding everything they rated before), count a hit if the rated item is among them,
then learn. Timings cover ``rank`` + ``learn_one`` (plus a few microseconds of replay
bookkeeping), one process, no broker. Run from the repository root:
``python -m bench.recommender``.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable

import numpy as np

from models.recommenders.base import Recommender, prequential
from models.recommenders.catalogue import Catalogue
from models.recommenders.cooccurrence import ItemCooccurrence
from models.recommenders.popularity import Popularity
from streams.offline.datasets import load_movielens_100k, load_movielens_items

K = 10
# Reference recall@10 on the same protocol (docs/quality.md, Protocol).
REFERENCE = {"popularity": 0.0756, "cooccurrence": 0.1655}


def measure(model: Recommender, events: list[tuple[str, str]]) -> tuple[float, np.ndarray]:
    """Recall@K and the per-event seconds of one prequential pass."""
    clock = time.perf_counter
    seconds = np.empty(len(events))
    hits = 0
    replay = prequential(model, events, k=K)
    for n in range(len(events)):
        start = clock()
        hit = next(replay)
        seconds[n] = clock() - start
        hits += hit
    return hits / len(events), seconds


def main() -> None:
    rows = load_movielens_100k()
    events = [(user, item) for user, item, _, _ in rows]
    catalogue = Catalogue()
    for item_id, (title, genres) in load_movielens_items().items():
        catalogue.upsert(item_id, title, genres)

    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}")
    print(f"data: MovieLens 100K, {len(events):,} events, {len({u for u, _ in events})} users, "
          f"{len({i for _, i in events})} items; recall@{K}, prequential\n")
    models: list[tuple[str, str, Callable[[], Recommender]]] = [
        ("popularity (half-life 20k events)", "popularity", lambda: Popularity()),
        ("popularity (no decay)", "popularity", lambda: Popularity(half_life=None)),
        ("cooccurrence (defaults, titles)", "cooccurrence",
         lambda: ItemCooccurrence(fallback=Popularity(), catalogue=catalogue)),
        ("cooccurrence (recency_decay=1)", "cooccurrence",
         lambda: ItemCooccurrence(fallback=Popularity(), recency_decay=1.0)),
        ("cooccurrence (max_neighbours=2048)", "cooccurrence",
         lambda: ItemCooccurrence(fallback=Popularity(), max_neighbours=2048, recency_decay=1.0)),
    ]
    print(f"{'model':38} {'recall@10':>9} {'ref':>7} {'events/s':>9} {'mean us':>8} "
          f"{'p50 us':>7} {'p99 us':>7}")
    for name, kind, make in models:
        recall, seconds = measure(make(), events)
        us = seconds * 1e6
        print(f"{name:38} {recall:9.4f} {REFERENCE[kind]:7.4f} {1 / seconds.mean():9,.0f} "
              f"{us.mean():8.1f} {np.percentile(us, 50):7.1f} {np.percentile(us, 99):7.1f}")

    # Scale: a synthetic Zipf-like stream touching ~100,000 items (recall is meaningless
    # here), to show the per-event cost and memory at the default max_items.
    rng = np.random.default_rng(0)
    n_events = 200_000
    items = (rng.zipf(1.05, n_events) % 500_000).tolist()
    users = rng.integers(0, n_events // 50, n_events).tolist()
    synthetic = [(f"u{u}", f"i{i}") for u, i in zip(users, items, strict=True)]
    model = ItemCooccurrence(fallback=Popularity())
    _, seconds = measure(model, synthetic)
    us = seconds * 1e6
    print(f"\nscale: synthetic {n_events:,} events over {len(model):,} known items: "
          f"{1 / seconds.mean():,.0f} events/s, mean {us.mean():.1f} us, "
          f"p99 {np.percentile(us, 99):.1f} us, numpy state {model.nbytes / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
