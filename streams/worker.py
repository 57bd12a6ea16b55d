"""The worker: the Faust app with every topic, table, agent, timer and web view registered
on it. ``persona worker`` runs it (or ``faust -A streams.worker worker``).

Registration is this module's import of the agents and views, not the app module's: so
any worker module can be imported first, on its own, without an import circle.
"""

from __future__ import annotations

from streams import agents, web
from streams.app import app

__all__ = ["agents", "app", "web"]
