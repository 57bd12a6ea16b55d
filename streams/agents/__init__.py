"""Faust agents, one module each: I/O only, the logic lives in models/."""

from streams.agents import ingest, items, profile  # noqa: F401
