"""The readable shape of a stored profile, for the HTTP view and the CLI."""

from __future__ import annotations

from models.users.profile import UserProfile


def profile_summary(stored: dict) -> dict:
    """A stored profile dict as named fields (the table keeps a compact form)."""
    p = UserProfile.from_dict(stored)
    return {
        "clicks": p.clicks,
        "purchases": p.purchases,
        "spend": p.spend,
        "interests": p.interests,
        "interest_ts_ms": p.interest_ts_ms,
        "recent_items": p.recent_items,
        "seen_items": len(p.seen),
        "purchased_items": len(p.purchased),
        "first_seen_ms": p.first_seen_ms,
        "last_seen_ms": p.last_seen_ms,
    }
