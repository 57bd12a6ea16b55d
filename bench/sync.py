"""Model sync cost in-process: applying another worker's events against learning them.

Engine A learns the first ``--events`` MovieLens events (``Engine.process`` without
serving: the learn path, with the sync outbox on) and drains one delta every ``--every``
events, as the worker does once per ``PERSONA_MODEL_SYNC_INTERVAL_S``; engine B decodes
and applies each delta (``Engine.learn_shared``); engine C learns the same events with
sync off. Each engine has its segmenter, which learns every profile as the worker's
profile agent has it do (``models.marketing.steps.group_step``; the sender's outbox sums
it per segment, the receiver learns the sums). The three take turns event by event.
Prints microseconds per event of the local learn (C), of recording the sums (A minus C),
of the sender's drain and encode, the sender's overhead as a share of the local learn,
the receiver's decode and apply per remote event, the ratio of a remote event's cost to
a local one's (target <= 10%), and the bytes per event on the topic.

    .venv/bin/python -m bench.sync [--events 20000] [--every 20,100,500]
"""

from __future__ import annotations

import argparse
import gc
import time

from models.engine import Engine
from models.marketing.segments import Segmenter
from models.marketing.steps import group_step
from models.sync import Outbox, decode_batch
from streams.offline.datasets import load_movielens_100k, load_movielens_items


def _engine(catalogue: dict[str, tuple[str, list[str]]]) -> Engine:
    e = Engine()
    for item_id, (title, genres) in catalogue.items():
        e.upsert_item(item_id, title, list(genres))
    return e


def measure(n: int, every: int) -> dict[str, float]:
    """Microseconds per event of each part of the sync path (see the module doc)."""
    rows = load_movielens_100k()[:n]
    catalogue = {i: (t, list(g)) for i, (t, g) in load_movielens_items().items()}
    events = [("purchase" if rating >= 4 else "click", user, item, int(ts) * 1000)
              for user, item, rating, ts in rows]

    plain, sender, receiver = _engine(catalogue), _engine(catalogue), _engine(catalogue)
    sender.sync = Outbox()
    segmenters = {id(e): Segmenter() for e in (plain, sender, receiver)}
    half_life = plain.config.half_life_ms

    def learn(engine: Engine, profiles: dict[str, dict | None], i: int, kind: str,
              user: str, item: str, ts: int) -> float:
        """``engine`` learns event ``i`` as the profile agent has it (the profile, every
        model, the segment step); the seconds it took."""
        t = time.perf_counter()
        profile = engine.process(kind, user, item, ts, event_id=str(i), fingerprint="",
                                 profile=profiles.get(user), dedupe=None, serve=False,
                                 amount=9.99 if kind == "purchase" else 0.0).profile
        assert profile is not None
        up = group_step(profile, None, ts, segmenter=segmenters[id(engine)], audiences={},
                        categories_of=engine.catalogue.categories, half_life_ms=half_life,
                        sync_outbox=engine.sync, user=user)
        if up.segment is not None:
            profile["sg"] = up.segment
        spent = time.perf_counter() - t
        profiles[user] = profile
        return spent

    # The three engines take turns event by event, so load from elsewhere on the machine
    # falls on each part alike and the ratios hold even when the absolute figures drift.
    profiles: dict[str, dict | None] = {}
    plain_profiles: dict[str, dict | None] = {}
    learning = recording = draining = applying = 0.0
    applied = sent = 0
    clock = time.perf_counter
    gc.collect()
    for i, (kind, user, item, ts) in enumerate(events, start=1):
        learning += learn(plain, plain_profiles, i, kind, user, item, ts)
        recording += learn(sender, profiles, i, kind, user, item, ts)
        if i % every == 0 or i == len(events):
            t = clock()
            raw = sender.drain_sync("bench", i)
            draining += clock() - t
            if raw is not None:
                sent += len(raw)
                t = clock()
                batch = decode_batch(raw)
                applied += receiver.learn_shared(batch)
                segmenters[id(receiver)].learn_sums(batch.segment_sums)
                applying += clock() - t
    # A delta waits for enough users' events (MIN_USERS): the last ones may not have
    # left, so the receiver's cost is per event it applied.
    if not applied:
        raise SystemExit(f"no delta left the sender in {len(events)} events: too few users")
    us = 1e6 / len(events)
    apply_us = applying * 1e6 / applied
    return {"events": float(len(events)), "every": float(every),
            "learn_us": learning * us, "learn_recording_us": recording * us,
            "record_us": (recording - learning) * us, "drain_us": draining * us,
            "apply_us": apply_us, "ratio": apply_us / (learning * us),
            "sender_ratio": (recording + draining - learning) / learning,
            "bytes_per_event": sent / applied}


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000, help="MovieLens events")
    ap.add_argument("--every", default="20,100,500",
                    help="comma-separated events per delta (one run each)")
    args = ap.parse_args(argv)
    out = []
    print("| events per delta | local learn us/event | recording us/event | "
          "drain+encode us/event | sender overhead / local | remote decode+apply us/event | "
          "remote / local | bytes/event |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for every in (int(x) for x in args.every.split(",")):
        m = measure(args.events, every)
        out.append(m)
        print(f"| {every} | {m['learn_us']:.0f} | {m['record_us']:+.1f} | "
              f"{m['drain_us']:.1f} | {m['sender_ratio']:.3f} | {m['apply_us']:.1f} | "
              f"{m['ratio']:.3f} | {m['bytes_per_event']:.0f} |")
    return out


if __name__ == "__main__":
    main()
