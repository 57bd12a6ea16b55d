"""Model checkpoints: versioned, bounded, atomic, and a bad newest file is skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.engine import Engine, EngineConfig
from streams.checkpoint import Checkpointer


def trained(items: str) -> Engine:
    e = Engine(EngineConfig(top_k=3))
    e.catalogue.upsert("a", "Alien", ["scifi"])
    for n, item in enumerate(items):
        e.process("click", f"u{n % 2}", item, n, event_id=str(n), fingerprint="",
                  profile=None, dedupe=None)
    return e


def test_save_restore_round_trip(tmp_path: Path) -> None:
    e = trained("abcabcab")
    cp = Checkpointer(tmp_path / "cp")
    version, path, size = cp.save(e)
    assert version == 1 and path.exists() and size == path.stat().st_size
    fresh = Engine(EngineConfig(top_k=3))
    assert cp.restore_latest(fresh) == 1
    assert fresh.updates == e.updates == 8
    ranked = e.recommend(None, 3).item_ids
    assert fresh.recommend(None, 3).item_ids == ranked and ranked
    assert fresh.catalogue.title("a") == "Alien"
    # the restored models still share the engine's catalogue and popularity
    for name in ("cooccurrence", "mf", "content", "trending"):
        assert fresh.strategy(name).catalogue is fresh.catalogue  # type: ignore[attr-defined]
    assert fresh.strategy("popularity") is fresh.popularity


def test_keeps_only_the_newest_versions(tmp_path: Path) -> None:
    e = trained("ab")
    cp = Checkpointer(tmp_path, keep=2)
    for _ in range(5):
        cp.save(e)
    assert [v for v, _ in cp.versions()] == [4, 5]
    assert not list(tmp_path.glob("*.tmp"))


def test_corrupt_newest_falls_back_to_previous(tmp_path: Path) -> None:
    cp = Checkpointer(tmp_path)
    cp.save(trained("ab"))
    _, newest, _ = cp.save(trained("abcd"))
    newest.write_bytes(b"not a pickle")
    fresh = Engine()
    assert cp.restore_latest(fresh) == 1
    assert fresh.updates == 2


def test_nothing_to_restore(tmp_path: Path) -> None:
    assert Checkpointer(tmp_path / "none").restore_latest(Engine()) is None


def test_restore_refuses_foreign_pickles() -> None:
    import pickle

    with pytest.raises(ValueError):
        Engine().restore(pickle.dumps({"format": 99}))
    with pytest.raises(ValueError):
        Engine().restore(pickle.dumps({"format": 1, "recommender": 1, "popularity": 2,
                                       "catalogue": 3}))
