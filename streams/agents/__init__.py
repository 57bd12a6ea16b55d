"""Faust agents, one module each: I/O only, the logic lives in models/."""

from streams.agents import ads, checkpoints, ingest, items, modelsync, profile  # noqa: F401
