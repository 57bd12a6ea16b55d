"""Every Kafka topic persona reads or writes, declared once (names from settings)."""

from __future__ import annotations

from datetime import timedelta

from streams.app import app, settings

t = settings.topics
_n = settings.partitions

# Input topics: raw bytes in and out, so the agents decode (and dead-letter) themselves.
clicks = app.topic(t.clicks, key_type=bytes, value_type=bytes, partitions=_n)
purchases = app.topic(t.purchases, key_type=bytes, value_type=bytes, partitions=_n)
items = app.topic(t.items, key_type=bytes, value_type=bytes, partitions=_n)
ad_requests = app.topic(t.ad_requests, key_type=bytes, value_type=bytes, partitions=_n)
ad_events = app.topic(t.ad_events, key_type=bytes, value_type=bytes, partitions=_n)
privacy = app.topic(t.privacy, key_type=bytes, value_type=bytes, partitions=_n)
control = app.topic(t.control, key_type=bytes, value_type=bytes, partitions=_n)

# Internal: validated events keyed by the pseudonymous user id, sent to the user's home
# partition (streams/placement.py), so one user's events (whatever key and partitioner
# the producer used) reach one profile owner: those not applied where they arrived, and
# the retention sweep's expiries.
events = app.topic(
    settings.events_topic, key_type=bytes, value_type=bytes, partitions=_n, internal=True
)

# What the profile agent reads: the input topics that name a user, applied where they
# arrive when on the user's home partition, and the events topic for the rest
# (streams/placement.py). One agent, so partition p of all five is one worker's.
profile_inputs = app.topic(t.clicks, t.purchases, t.ad_requests, t.privacy,
                           settings.events_topic, key_type=bytes, value_type=bytes,
                           partitions=_n)

# Internal, ONE partition: ad requests (with the user's ad view, after the profile
# agent), ad events, control commands and clock ticks, in one order for one owner, so
# budgets are exact and global and the kill switch lives in one place (docs/ads.md).
ads = app.topic(settings.ads_topic, key_type=bytes, value_type=bytes, partitions=1,
                internal=True)

# Internal broadcast: every worker's summed item-level deltas (models/sync.py). Every
# worker reads all of its partitions outside the consumer group, from the end at start
# (streams/agents/modelsync.py), so an hour of retention is plenty.
model_updates = app.topic(settings.model_updates_topic, key_type=bytes, value_type=bytes,
                          partitions=_n, internal=True, retention=timedelta(hours=1))

# Topics the agents consume: /ready waits until each has partitions assigned here. Not
# the one-partition ads topic: with several workers only one of them owns it.
SOURCE_TOPICS = (t.clicks, t.purchases, t.items, t.ad_requests, t.ad_events, t.privacy,
                 t.control, settings.events_topic)

# Output topics.
recommendations = app.topic(t.recommendations, key_type=bytes, value_type=bytes, partitions=_n)
ad_bids = app.topic(t.ad_bids, key_type=bytes, value_type=bytes, partitions=_n)
segments = app.topic(t.segments, key_type=bytes, value_type=bytes, partitions=_n)
audiences = app.topic(t.audiences, key_type=bytes, value_type=bytes, partitions=_n)
dead_letters = app.topic(t.dead_letters, key_type=bytes, value_type=bytes, partitions=_n)
