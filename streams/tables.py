"""Every Faust table, declared once. Keys are pseudonymous user ids, never raw ids."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import faust
from faust.stores.memory import Store as MemoryStore

from models.checks import is_int
from models.users.compact import CompactValues, decode, encode, raw_touched_ms

# The record layout, declared there (positions: ``already_applied``).
from models.users.compact import advance as advance
from models.users.compact import already_applied as already_applied
from models.users.compact import make_record as make_record
from models.users.compact import partition_of as partition_of
from streams.app import app, settings

# Keys are str on both sides of the changelog; values are JSON (plain dicts and lists).
_SCHEMA = faust.Schema(key_type=str, key_serializer="raw", value_serializer="json")
# Changelogs are compacted; this bounds how long a superseded record (an erased user's old
# profile, a request's forgotten features) may wait for the log cleaner.
_CHANGELOG_CONFIG = {
    "max.compaction.lag.ms": str(int(settings.changelog_max_compaction_lag_s * 1000)),
}


class _Table(faust.Table):
    """``faust.Table`` without a startup race of faust-streaming 0.15.

    Before a table's first write Faust compares the partition counts of the source topic
    and the changelog in the consumer's metadata snapshot. A fresh app creates its
    changelogs at start, and the snapshot can still miss one for a moment: it then
    counts 0 partitions, Faust raises PartitionsMismatch, and the message becomes an
    internal_error dead letter (seen in integration runs). A changelog missing from the
    snapshot is not a mismatch: skip the check until it is there (a real mismatch is
    still refused).
    """

    def _verify_source_topic_partitions(self, source_topic: str) -> None:
        if not self.app.consumer.topic_partitions(self.changelog_topic_name):
            return
        super()._verify_source_topic_partitions(source_topic)


class _CompactTable(_Table):
    """``_Table`` whose values, in the memory:// store, are kept as their JSON bytes.

    Faust's memory store keeps each value as the Python objects written (or decoded from
    the changelog): 6.4 KB of RSS per profile at a million users, the largest part of
    a worker's memory. Here the store keeps the bytes instead (1.4 KB per profile,
    ``bench/memory_profiles.py``; ``models.users.compact.CompactValues``: the changelog's own
    JSON form) and decodes on every read, so a read is a fresh copy: change it and write
    it back, as a table write must be anyway. The changelog gets the same JSON as
    before, so a worker recovers the table whichever form wrote it. Other stores
    (rocksdb://) already keep bytes and are left as they are.
    """

    def _new_store(self):  # type: ignore[no-untyped-def]
        store = super()._new_store()
        if isinstance(store, MemoryStore):
            store.data = CompactValues()
        return store

    def __setitem__(self, key: Any, value: Any) -> None:
        values = getattr(self.data, "data", None)  # the memory store's mapping
        if value is None or not isinstance(values, CompactValues):
            super().__setitem__(key, value)
            return
        # What ManagedUserDict.__setitem__ does (on_key_set sends the changelog message,
        # then the store keeps the value), with the value encoded once: the changelog
        # gets the very bytes the store keeps (a heavy record costs ~9 us to encode).
        raw = encode(value)
        self.on_key_set(key, _Encoded(raw))
        values.set_raw(key, raw)

    def send_changelog(self, partition: int | None, key: Any, value: Any,
                       key_serializer: Any = None, value_serializer: Any = None) -> Any:
        if type(value) is _Encoded:
            value, value_serializer = value.raw, "raw"
        return super().send_changelog(partition, key, value, key_serializer,
                                      value_serializer)


class _Encoded:
    """A table value already in its changelog form (JSON bytes), on its way to it."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes | None) -> None:
        self.raw = raw


def _table(name: str, cls: type[_Table] = _Table,
           **kwargs) -> faust.Table:  # type: ignore[no-untyped-def]
    """Declare a table as ``app.Table`` does, with ``cls`` (a ``_Table``)."""
    return app.tables.add(cls(app, name=name, beacon=app.tables.beacon, **kwargs))


# One record per user (models.users.compact.make_record): {"p": profile dict (UserProfile.to_dict),
# "d": dedupe window (models.users.dedupe), "t": wall-clock ms of the last write (for the
# retention sweep, PERSONA_PROFILE_TTL_DAYS), "o": the user's home partition and the
# offset of the last message applied from each of ``SOURCES`` (redeliveries,
# ``already_applied``; the sweep's expiry goes to that partition)}. One record, so
# all change in one changelog write: a crash can never leave the dedupe window out of
# step with the profile. Changelog-backed, so a restarted worker recovers them exactly; an erased or
# expired user's record is deleted (a changelog tombstone).
profiles = _table(
    "profiles",
    _CompactTable,
    default=None,
    schema=_SCHEMA,
    partitions=settings.partitions,
    extra_topic_configs=_CHANGELOG_CONFIG,
    options=settings.table_store_options(),
    help="Per-user state keyed by pseudonymous user id: profile and dedupe window.",
)


# Erase markers (models.users.erasure.make_marker): {"t": wall-clock ms of the erase,
# "e": its event time} per user erased within PERSONA_ERASE_GRACE_S, so the user's older
# events still in flight are dropped. Apart from ``profiles``, so an erase still
# tombstones the profile record and a returning user's profile needs no marker in it.
# Same partitions as the events topic; written only by the profile agent.
erasures = _table(
    "erasures",
    default=None,
    schema=_SCHEMA,
    partitions=settings.partitions,
    extra_topic_configs=_CHANGELOG_CONFIG,
    options=settings.table_store_options(),
    help="Erase markers keyed by pseudonymous user id: the erase time, for a grace period.",
)


def stored_profile(record: dict | None) -> dict | None:
    """The profile dict inside a stored record (None for an unknown user)."""
    return None if record is None else record.get("p")


# The input topics whose messages the profile agent applies, by their place in a
# record's positions (``"o"``: [partition, offset on each of these in this order]; -1: none
# applied yet). The events topic comes first, so a record written before the others
# were applied directly ([partition, offset]) reads the same.
SOURCES = (settings.events_topic, settings.topics.clicks, settings.topics.purchases)


def touched_ms(record: dict | None) -> int | None:
    """When a record was last written (None: unknown, e.g. written before "t" existed)."""
    t = None if record is None else record.get("t")
    return t if is_int(t) else None


def maybe_idle(cutoff_ms: int) -> Iterator[tuple[str, dict]]:
    """(user, record) for every record of this worker's profiles table but those written
    at or after ``cutoff_ms``, which that cutoff cannot expire
    (``models.users.profile.is_expired``). One pass over the table: no await between two
    items (the table must not change during it).

    For the retention sweep: in the memory store a record written since the cutoff is
    skipped by the "t" its bytes start with (``models.users.compact.raw_touched_ms``), not
    decoded; a full decode of every record costs about 10x a scan of Python objects
    (``bench/memory_profiles.py``: seconds per million records).
    """
    values = getattr(profiles.data, "data", None)
    if isinstance(values, CompactValues):
        pairs: Iterator[tuple[str, dict | None]] = (
            (user, decode(raw)) for user, raw in values.raw_items()
            if raw is not None and not ((t := raw_touched_ms(raw)) is not None
                                        and t >= cutoff_ms))
    else:
        pairs = iter(profiles.items())
    for user, record in pairs:
        if record is not None and not ((t := touched_ms(record)) is not None
                                       and t >= cutoff_ms):
            yield user, record


# The ads agent's durable state (models.ads.bidding.Bidder records): per-request decisions
# with the features served, spend per campaign and day, the event clock, the kill switch.
# A request record names its (pseudonymous) user only while it holds features of their
# profile; erasure rewrites it without both (Bidder.forget_user).
# One partition, like its source topic: one owner, so spend is exact and global.
ads = _table(
    "ads",
    default=None,
    schema=_SCHEMA,
    partitions=1,
    extra_topic_configs=_CHANGELOG_CONFIG,
    options=settings.table_store_options(),
    help="Ad bidding state: request records, spend ledger, kill switch.",
)
