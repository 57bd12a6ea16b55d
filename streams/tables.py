"""Every Faust table, declared once. Keys are pseudonymous user ids, never raw ids."""

from __future__ import annotations

import time

import faust

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


def _table(name: str, **kwargs) -> faust.Table:  # type: ignore[no-untyped-def]
    """Declare a table as ``app.Table`` does, with ``_Table``."""
    return app.tables.add(_Table(app, name=name, beacon=app.tables.beacon, **kwargs))


# One record per user: {"p": profile dict (models.profile.UserProfile.to_dict),
# "d": dedupe window (models.dedupe), "t": wall-clock ms of the last write (for the
# retention sweep, PERSONA_PROFILE_TTL_DAYS), "o": [partition, offset] of the last
# events-topic message applied (redeliveries, ``already_applied``)}. One record, so
# all change in one changelog write: a crash can never leave the dedupe window out of
# step with the profile. Changelog-backed, so a restarted worker recovers them exactly; an erased or
# expired user's record is deleted (a changelog tombstone).
profiles = _table(
    "profiles",
    default=None,
    schema=_SCHEMA,
    partitions=settings.partitions,
    extra_topic_configs=_CHANGELOG_CONFIG,
    options=settings.table_store_options(),
    help="Per-user state keyed by pseudonymous user id: profile and dedupe window.",
)


def stored_profile(record: dict | None) -> dict | None:
    """The profile dict inside a stored record (None for an unknown user)."""
    return None if record is None else record.get("p")


def make_record(profile: dict, dedupe: list, now_ms: int | None = None,
                at: tuple[int, int] | None = None) -> dict:
    """A ``profiles`` record, stamped with the time of this write (``now_ms``, default now).

    Wall-clock, not the events' own time: a replay of old events (MovieLens is from
    1998) is fresh activity, and must not be expired by the next sweep. ``at`` is the
    (partition, offset) of the events-topic message this write applies ("o"): see
    ``already_applied``."""
    record = {"p": profile, "d": dedupe,
              "t": int(time.time() * 1000) if now_ms is None else int(now_ms)}
    if at is not None:
        record["o"] = [int(at[0]), int(at[1])]
    return record


def already_applied(record: dict | None, partition: int, offset: int) -> bool:
    """True if ``record`` already holds the events-topic message at (partition, offset).

    One user's events are all on one partition of the events topic, in offset order,
    and the record keeps the position of the last message applied to it, written in the
    same table write as the change itself. So a message redelivered after a crash or a
    rebalance is recognized exactly, however many of the user's events were replayed:
    the event-id window (``d``) stays for duplicates the producers send. A record from
    another partition (the topic was repartitioned) proves nothing.

    >>> already_applied({"o": [3, 41]}, 3, 41), already_applied({"o": [3, 41]}, 3, 42)
    (True, False)
    >>> already_applied({"o": [3, 41]}, 2, 7), already_applied(None, 0, 0)
    (False, False)
    """
    at = None if record is None else record.get("o")
    return (isinstance(at, list) and len(at) == 2 and at[0] == partition
            and isinstance(at[1], int) and offset <= at[1])


def touched_ms(record: dict | None) -> int | None:
    """When a record was last written (None: unknown, e.g. written before "t" existed)."""
    t = None if record is None else record.get("t")
    return t if isinstance(t, int) and not isinstance(t, bool) else None


# The ads agent's durable state (models.bidding.Bidder records): per-request decisions
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
