"""persona's I/O side. This package itself is the running worker (the Faust app, agents,
topics, tables, metrics, web views, runtime); ``cli``, ``offline`` and ``local`` are the
command, the replays without Kafka and the local rig (docs/architecture.md, Rooms)."""

__version__ = "0.1.0"
