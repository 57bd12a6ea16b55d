"""The hybrid's leader fallback: on a stream where the blend keeps losing to one of its
parts, it serves that part, and follows the lead when another part takes it."""

from __future__ import annotations

import pickle
from collections.abc import Collection, Sequence

import numpy as np

from models.recommenders.base import Context, ScoredItem
from models.recommenders.hybrid import Hybrid


class Scripted:
    """A component that lists what the test sets in ``next``, all scored alike (so the
    blend's ties go to the component listed first)."""

    def __init__(self, strategy: str) -> None:
        self.strategy = strategy
        self.next: list[str] = []

    def rank(self, history: Sequence[str], exclude: Collection[str], k: int,
             context: Context | None = None) -> list[ScoredItem]:
        return [ScoredItem(item, 1.0, "scripted", self.strategy) for item in self.next[:k]]

    def learn_one(self, item_id: str, history: Sequence[str], weight: float = 1.0,
                  context: Context | None = None) -> None:
        pass


def replay(margin: float | None, phases: Sequence[tuple[str, int]]) -> list[float]:
    """Each phase: which component lists the user's next item, for how many events; the
    other lists ten decoys. The blend cannot learn (rate 0) and its ties go to component
    a: its top 1 always misses while b is the good part, always hits while a is.
    The served top 1's hit rate per phase."""
    a, b = Scripted("a"), Scripted("b")
    h = Hybrid({"a": a, "b": b}, learning_rate=0.0, fallback_margin=margin)
    rng = np.random.default_rng(0)
    ctx = Context(user="u")
    out = []
    for good, n in phases:
        served_hits = 0
        for t in range(n):
            target = f"t{good}{t}"
            decoys = [f"d{int(x)}" for x in rng.integers(0, 10**6, 10)]
            (a if good == "a" else b).next = [target]
            (b if good == "a" else a).next = decoys
            served = h.rank([], (), 1, ctx)
            served_hits += served[0].item_id == target
            h.learn_one(target, [], 1.0, ctx)
        out.append(served_hits / n)
    return out


def test_the_blend_alone_loses_to_its_best_part() -> None:
    assert replay(None, [("b", 600), ("a", 1500)]) == [0.0, 1.0]


def test_the_fallback_serves_the_leading_part_and_returns_to_the_blend() -> None:
    first, second = replay(0.05, [("b", 600), ("a", 1500)])
    # 20 hits before a lead counts; back to the blend once the old leader's hits decayed
    # below the blend's (about 250 lists).
    assert first >= 0.95
    assert 0.8 <= second < 1.0


def test_the_fallback_state_survives_a_checkpoint_and_old_ones_load() -> None:
    h = Hybrid({"a": Scripted("a"), "b": Scripted("b")}, fallback_margin=0.05)
    h._hits[2] = [30.0, 1.0, 2.0]
    back = pickle.loads(pickle.dumps(h))
    assert back._leader(2) == 0 and back.fallback_margin == 0.05
    old = h.__getstate__()
    del old["_hits"], old["fallback_margin"]
    restored = Hybrid.__new__(Hybrid)
    restored.__setstate__(old)
    assert restored._leader(2) is None and restored._hits.shape == (3, 3)


def test_a_restored_snapshot_keeps_the_configured_fallback() -> None:
    from models.engine import Engine, EngineConfig

    saved = Engine(EngineConfig(exploration=0.0)).snapshot()  # fallback off when saved
    on = Engine(EngineConfig(exploration=0.0, hybrid_fallback_margin=0.1))
    on.restore(saved)
    assert on.hybrid.fallback_margin == 0.1
    off = Engine(EngineConfig(exploration=0.0))
    off.restore(on.snapshot())
    assert off.hybrid.fallback_margin is None
