"""Every Kafka topic persona reads or writes, declared once (names from settings)."""

from __future__ import annotations

from streams.app import app, settings

t = settings.topics
_n = settings.partitions

# Input topics: raw bytes in and out, so the agents decode (and dead-letter) themselves.
clicks = app.topic(t.clicks, key_type=bytes, value_type=bytes, partitions=_n)
purchases = app.topic(t.purchases, key_type=bytes, value_type=bytes, partitions=_n)
items = app.topic(t.items, key_type=bytes, value_type=bytes, partitions=_n)

# Internal: validated events keyed by the pseudonymous user id, so one user's events
# (whatever key the producer used) reach one partition and one profile owner, in order.
events = app.topic(
    settings.events_topic, key_type=bytes, value_type=bytes, partitions=_n, internal=True
)

# Topics the agents consume: /ready waits until each has partitions assigned here.
SOURCE_TOPICS = (t.clicks, t.purchases, t.items, settings.events_topic)

# Output topics.
recommendations = app.topic(t.recommendations, key_type=bytes, value_type=bytes, partitions=_n)
dead_letters = app.topic(t.dead_letters, key_type=bytes, value_type=bytes, partitions=_n)
