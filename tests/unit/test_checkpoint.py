"""Model checkpoints: versioned, bounded, atomic, signed; a bad file is refused before it
is unpickled and the previous good one loads; rollback moves newer versions aside."""

from __future__ import annotations

import hashlib
import logging
import pickle
import struct
from pathlib import Path

import orjson
import pytest

from models.engine import Engine, EngineConfig
from streams.checkpoint import (
    FAILURE_REASONS,
    HEADER_BYTES,
    MAGIC,
    Checkpointer,
    CheckpointError,
    seal,
    signing_key,
    unseal,
)

SECRET = b"checkpoint-test-secret-0123456789"


def trained(items: str) -> Engine:
    e = Engine(EngineConfig(top_k=3))
    e.catalogue.upsert("a", "Alien", ["scifi"])
    for n, item in enumerate(items):
        e.process("click", f"u{n % 2}", item, n, event_id=str(n), fingerprint="",
                  profile=None, dedupe=None)
    return e


def three_versions(directory: Path) -> Checkpointer:
    """Versions 1, 2, 3 learned from 2, 4 and 6 events."""
    cp = Checkpointer(directory, secret=SECRET)
    for items in ("ab", "abcd", "abcdef"):
        cp.save(trained(items))
    return cp


def restore(cp: Checkpointer) -> tuple[int | None, Engine, list[str]]:
    failures: list[str] = []
    fresh = Engine()
    return cp.restore_latest(fresh, on_failure=failures.append), fresh, failures


def test_save_restore_round_trip(tmp_path: Path) -> None:
    e = trained("abcabcab")
    cp = Checkpointer(tmp_path / "cp", secret=SECRET)
    version, path, size = cp.save(e)
    assert version == 1 and path.name == "models-00000001.ckpt"
    assert size == path.stat().st_size and path.read_bytes()[:8] == MAGIC
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
    cp = Checkpointer(tmp_path, keep=2, secret=SECRET)
    for _ in range(5):
        cp.save(e)
    assert [v for v, _ in cp.versions()] == [4, 5]
    assert not list(tmp_path.glob("*.tmp"))


def test_saving_needs_the_key(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="PERSONA_SECRET_KEY"):
        Checkpointer(tmp_path).save(trained("ab"))


def test_truncated_newest_falls_back_to_previous(tmp_path: Path) -> None:
    cp = three_versions(tmp_path)
    newest = cp.versions()[-1][1]
    newest.write_bytes(newest.read_bytes()[:-100])
    version, fresh, failures = restore(cp)
    assert (version, fresh.updates, failures) == (2, 4, ["truncated"])
    newest.write_bytes(newest.read_bytes()[:40])  # not even a whole header
    assert restore(cp)[2] == ["truncated"]


def test_flipped_byte_falls_back_to_previous(tmp_path: Path) -> None:
    cp = three_versions(tmp_path)
    newest = cp.versions()[-1][1]
    blob = bytearray(newest.read_bytes())
    blob[HEADER_BYTES + len(blob[HEADER_BYTES:]) // 2] ^= 0x01
    newest.write_bytes(bytes(blob))
    version, fresh, failures = restore(cp)
    assert (version, fresh.updates, failures) == (2, 4, ["corrupt"])


def test_wrong_key_falls_back_to_a_file_signed_with_the_right_one(tmp_path: Path) -> None:
    cp = three_versions(tmp_path)
    Checkpointer(tmp_path, secret=b"another-secret-key-0123456789").save(trained("abcdefgh"))
    version, fresh, failures = restore(cp)
    assert (version, fresh.updates, failures) == (3, 6, ["bad_signature"])


def test_all_bad_starts_cold_and_says_so(tmp_path: Path, caplog) -> None:
    three_versions(tmp_path)
    other = Checkpointer(tmp_path, secret=b"another-secret-key-0123456789")
    with caplog.at_level(logging.WARNING, logger="streams.checkpoint"):
        version, fresh, failures = restore(other)
    assert version is None and fresh.updates == 0
    assert failures == ["bad_signature"] * 3
    assert "none of the 3 model checkpoints" in caplog.text
    assert "starting with cold models" in caplog.text
    assert caplog.text.count("refusing model checkpoint") == 3
    assert SECRET.decode() not in caplog.text


class _Planted:
    """A pickle that runs code when loaded: what a tampered checkpoint would hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def test_tampered_file_is_refused_before_it_is_unpickled(tmp_path: Path) -> None:
    cp = three_versions(tmp_path)
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Planted(marker))
    pickle.loads(evil)  # the payload does run code when unpickled ...
    assert marker.exists()
    marker.unlink()
    # ... so an attacker who rewrites a file and its SHA-256 (but has no key) is refused.
    head = MAGIC + struct.pack(">Q", len(evil)) + hashlib.sha256(evil).digest()
    (tmp_path / "models-00000004.ckpt").write_bytes(head + b"\0" * 32 + evil)
    # and an old-style unsigned pickle is refused too
    (tmp_path / "models-00000005.pkl").write_bytes(evil)
    version, _, failures = restore(cp)
    assert version == 3 and failures == ["unsigned", "bad_signature"]
    assert not marker.exists()


def test_signed_but_not_a_checkpoint_is_invalid(tmp_path: Path) -> None:
    cp = three_versions(tmp_path)
    (tmp_path / "models-00000004.ckpt").write_bytes(seal(pickle.dumps({"format": 99}), SECRET))
    assert restore(cp)[2] == ["invalid"]


def test_unseal_reasons() -> None:
    blob = seal(b"payload", SECRET)
    assert unseal(blob, SECRET) == b"payload"
    assert unseal(blob, None) == b"payload"  # structure only
    reasons = []
    for bad, key in ((b"", SECRET), (blob[:50], SECRET), (blob[:-1], SECRET),
                     (blob[:-1] + b"X", SECRET), (blob, b"other-secret-0123456789"),
                     (b"\x80\x05plain pickle" + b"." * 100, SECRET)):
        with pytest.raises(CheckpointError) as exc:
            unseal(bad, key)
        reasons.append(exc.value.reason)
    assert reasons == ["truncated", "truncated", "truncated", "corrupt", "bad_signature",
                       "unsigned"]
    assert set(reasons) < set(FAILURE_REASONS)
    # the MAC key is derived from the secret, not the secret itself
    assert signing_key(SECRET) != SECRET and len(signing_key(SECRET)) == 32


def test_nothing_to_restore(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="streams.checkpoint"):
        assert restore(Checkpointer(tmp_path / "none", secret=SECRET))[0] is None
    assert "no model checkpoint" in caplog.text


def test_restore_refuses_foreign_pickles() -> None:
    with pytest.raises(ValueError):
        Engine().restore(pickle.dumps({"format": 99}))
    with pytest.raises(ValueError):
        Engine().restore(pickle.dumps({"format": 1, "recommender": 1, "popularity": 2,
                                       "catalogue": 3}))


def test_unsigned_older_files_are_refused_until_adopted(tmp_path: Path) -> None:
    legacy = trained("abcabc")
    (tmp_path / "models-00000001.pkl").write_bytes(legacy.snapshot())
    cp = Checkpointer(tmp_path, secret=SECRET)
    assert [i.status for i in cp.describe()] == ["unsigned"]
    assert restore(cp)[::2] == (None, ["unsigned"])
    path = cp.adopt(1)
    assert path.name == "models-00000001.ckpt"
    assert (tmp_path / "rolled-back" / "models-00000001.pkl").exists()
    version, fresh, failures = restore(cp)
    assert (version, fresh.updates, failures) == (1, 6, [])
    with pytest.raises(CheckpointError):
        cp.adopt(1)  # the .pkl is gone


def test_describe_reports_each_file(tmp_path: Path) -> None:
    cp = three_versions(tmp_path)
    newest = cp.versions()[-1][1]
    newest.write_bytes(newest.read_bytes()[:-1])
    infos = cp.describe()
    assert [(i.version, i.status, i.rolled_back) for i in infos] == [
        (1, "ok", False), (2, "ok", False), (3, "truncated", False)]
    assert all(i.size > HEADER_BYTES and i.mtime > 0 for i in infos[:2])
    # without the key the structure is still checked, the signature is not
    keyless = Checkpointer(tmp_path)
    assert [i.status for i in keyless.describe()] == ["unchecked", "unchecked", "truncated"]


def test_rollback_moves_newer_versions_aside(tmp_path: Path) -> None:
    cp = three_versions(tmp_path)
    target, moved = cp.rollback()  # default: the newest verified before the newest
    assert (target, moved) == (2, [3])
    assert (tmp_path / "rolled-back" / "models-00000003.ckpt").exists()
    assert [v for v, _ in cp.versions()] == [1, 2]
    version, fresh, _ = restore(cp)  # a stopped worker: loads it at start
    assert (version, fresh.updates) == (2, 4)
    assert cp.pending_rollback() is None
    assert cp.rollback_outcome()["ok"] is True  # type: ignore[index]
    # new versions never reuse a rolled-back number
    assert cp.save(trained("abcdefgh"))[0] == 4
    target, moved = cp.rollback(to=1)
    assert (target, moved) == (1, [2, 4])
    # roll forward again: a rolled-back version comes back, newer ones go aside
    assert cp.rollback(to=3) == (3, [])
    assert [v for v, _ in cp.versions()] == [1, 3]
    assert restore(cp)[0] == 3


def test_rollback_refuses_what_does_not_verify(tmp_path: Path) -> None:
    cp = three_versions(tmp_path)
    older = cp.versions()[0][1]
    older.write_bytes(older.read_bytes()[:-1])
    with pytest.raises(CheckpointError) as exc:
        cp.rollback(to=1)
    assert exc.value.reason == "truncated"
    with pytest.raises(CheckpointError, match="no signed checkpoint version 9"):
        cp.rollback(to=9)
    with pytest.raises(CheckpointError, match="PERSONA_SECRET_KEY"):
        Checkpointer(tmp_path).rollback(to=2)
    assert [v for v, _ in cp.versions()] == [1, 2, 3]  # nothing moved
    assert cp.pending_rollback() is None
    single = Checkpointer(tmp_path / "one", secret=SECRET)
    single.save(trained("ab"))
    with pytest.raises(CheckpointError, match="no verified checkpoint older"):
        single.rollback()


def test_running_worker_applies_a_rollback(tmp_path: Path) -> None:
    cp = three_versions(tmp_path)
    running = Engine()
    assert cp.restore_latest(running) == 3 and running.updates == 6
    assert cp.apply_rollback(running) is None  # nothing pending
    cp.rollback(to=1)
    # the worker's periodic save raced the command: that version must go aside too
    cp.save(trained("abcdefghij"))
    assert cp.apply_rollback(running) == 1
    assert running.updates == 2
    assert [v for v, _ in cp.versions()] == [1]
    assert cp.pending_rollback() is None
    outcome = cp.rollback_outcome()
    assert outcome is not None and outcome["ok"] and outcome["version"] == 1


def test_running_worker_reports_a_failed_rollback(tmp_path: Path) -> None:
    cp = three_versions(tmp_path)
    cp.rollback(to=2)
    (tmp_path / "models-00000002.ckpt").unlink()  # gone before the worker got to it
    running = Engine()
    with pytest.raises(CheckpointError):
        cp.apply_rollback(running)
    assert running.updates == 0 and cp.pending_rollback() is None
    outcome = cp.rollback_outcome()
    assert outcome is not None and outcome["ok"] is False and "gone" in outcome["detail"]


def test_a_garbled_rollback_request_is_dropped(tmp_path: Path) -> None:
    cp = three_versions(tmp_path)
    cp.rollback_request.write_bytes(b"{not json")
    assert cp.pending_rollback() is None and not cp.rollback_request.exists()
    for garbled in ({"version": "2"}, {"version": True}, [2]):
        cp.rollback_request.write_bytes(orjson.dumps(garbled))
        assert cp.pending_rollback() is None and not cp.rollback_request.exists()



def test_a_rollback_while_running_keeps_the_live_catalogue(tmp_path: Path) -> None:
    """The models go back; the catalogue (titles, availability, deletions: what the items
    topic says now) does not, so nothing deleted or withdrawn since comes back."""
    cp = Checkpointer(tmp_path, secret=SECRET)
    running = Engine(EngineConfig(top_k=5, exploration=0.0))
    for item in "abcdef":
        running.upsert_item(item, f"Title {item}", ["c"], "words")
    for n, item in enumerate("abcdefabcab"):
        running.process("click", f"u{n % 3}", item, n, event_id=str(n), fingerprint="",
                        profile=None, dedupe=None)
    version, _, _ = cp.save(running)
    learned = running.updates
    assert {"a", "b"} <= set(running.recommend(None, 5).item_ids)
    # since the checkpoint: "a" deleted, "b" withdrawn, "g" added, "c" retitled
    running.delete_item("a")
    running.upsert_item("b", "Title b", ["c"], "words", available=False)
    running.upsert_item("g", "Title g", ["c"], "words")
    running.upsert_item("c", "Renamed c", ["c"], "words")
    for n, item in enumerate("cdefg"):
        running.process("click", "u9", item, 100 + n, event_id=f"x{n}", fingerprint="",
                        profile=None, dedupe=None)
    cp.save(running)
    cp.rollback(to=version)
    assert cp.apply_rollback(running) == version
    assert running.updates == learned  # the models are the checkpoint's
    cat = running.catalogue
    assert "a" not in cat and cat.is_unavailable("a")
    assert cat.is_unavailable("b") and not cat.is_available("b")
    assert cat.is_available("g") and cat.title("c") == "Renamed c"
    assert running.content.title("c") == "Renamed c" and "g" in running.content
    assert "a" not in running.content
    for strategy in ("hybrid", "cooccurrence", "mf", "popularity", "trending", "content"):
        served = running.recommend({"r": ["d"], "i": {"c": 1.0}}, 6, strategy=strategy)
        assert not {"a", "b"} & set(served.item_ids), strategy
    # every model ranks against the live catalogue (one object, not the checkpoint's)
    assert all(getattr(m, "catalogue", cat) is cat
               for m in running.hybrid.components.values())
    # at start (nothing live yet) the checkpoint's catalogue loads, as before
    fresh = Engine(EngineConfig(top_k=5))
    assert cp.restore_latest(fresh) == version and fresh.catalogue.is_available("a")
