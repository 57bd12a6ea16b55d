"""Every Faust table, declared once. Keys are pseudonymous user ids, never raw ids."""

from __future__ import annotations

import faust

from streams.app import app, settings

# Keys are str on both sides of the changelog; values are JSON (plain dicts and lists).
_SCHEMA = faust.Schema(key_type=str, key_serializer="raw", value_serializer="json")

# One record per user: {"p": profile dict (models.profile.UserProfile.to_dict),
# "d": dedupe window (models.dedupe)}. One record, so both change in one changelog
# write: a crash can never leave the dedupe window out of step with the profile.
# Changelog-backed, so a restarted worker recovers them exactly.
profiles = app.Table(
    "profiles",
    default=None,
    schema=_SCHEMA,
    partitions=settings.partitions,
    help="Per-user state keyed by pseudonymous user id: profile and dedupe window.",
)


def stored_profile(record: dict | None) -> dict | None:
    """The profile dict inside a stored record (None for an unknown user)."""
    return None if record is None else record.get("p")


# The ads agent's durable state (models.bidding.Bidder records): per-request decisions
# with the features served, spend per campaign and day, the event clock, the kill switch.
# One partition, like its source topic: one owner, so spend is exact and global.
ads = app.Table(
    "ads",
    default=None,
    schema=_SCHEMA,
    partitions=1,
    help="Ad bidding state: request records, spend ledger, kill switch (no user ids).",
)
