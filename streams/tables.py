"""Every Faust table, declared once. Keys are pseudonymous user ids, never raw ids."""

from __future__ import annotations

import faust

from streams.app import app, settings

# Keys are str on both sides of the changelog; values are JSON (plain dicts and lists).
_SCHEMA = faust.Schema(key_type=str, key_serializer="raw", value_serializer="json")

# Profile dicts (models.profile.UserProfile.to_dict); changelog-backed, so a restarted
# worker recovers them exactly.
profiles = app.Table(
    "profiles",
    default=None,
    schema=_SCHEMA,
    partitions=settings.partitions,
    help="User profiles keyed by pseudonymous user id.",
)

# Recent event ids per user (models.dedupe state), so redelivered events count once.
dedupe = app.Table(
    "dedupe",
    default=None,
    schema=_SCHEMA,
    partitions=settings.partitions,
    help="Recent event-id keys per pseudonymous user, for deduplication.",
)
