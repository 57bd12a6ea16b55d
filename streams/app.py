"""The one Faust app, built from settings (start it with ``persona worker``).

Importing this module declares the app and nothing else; ``streams/worker.py`` imports it
with every topic, table, agent, timer and view registered on it. The models, metrics and
key live in the runtime (``streams/runtime.py``), built when the worker starts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import faust
from faust import Worker

from streams import faust_fixes
from streams.settings import Settings

settings = Settings.from_env()
log = logging.getLogger(__name__)

# A clean stop takes 1-3 s (docs/reliability.md); one still going after this long says,
# in the log, what it waits for.
STOP_REPORT_AFTER_S = 8.0


class _App(faust.App):
    async def on_first_start(self) -> None:
        # No event lost when a restart's recovery seeks back (docs/reliability.md):
        # installed here, before the consumer starts, not when the module is imported.
        faust_fixes.apply()
        # Faust creates datadir itself but not its parent.
        Path(self.conf.datadir).parent.mkdir(parents=True, exist_ok=True)
        await super().on_first_start()


class _WorkerApp(_App):
    """persona's own app: its runtime is there before any agent, timer or view runs."""

    async def on_first_start(self) -> None:
        from streams.runtime import current

        # Built (models restored from the newest checkpoint, metrics, key) unless the
        # command installed one already; a bad setting stops the worker here.
        current()
        await super().on_first_start()


async def _tune_producer_buffer(faust_app: faust.App) -> None:
    """Let changelog writes queue up to 2,000 before the stream waits for them.

    Faust's default of 100 made the profile agent stall (and log "producer buffer full")
    every few hundred events under load; set once the app runs, because reading
    ``app.producer`` at import would create it before the event loop runs.
    """
    faust_app.producer.buffer.max_messages = 2000


def build_app(s: Settings, cls: type[_App] = _App) -> faust.App:
    """A Faust app with the settings that were measured to matter (docs/architecture.md,
    What the code relies on), and its producer's buffer tuned once it runs."""
    built = cls(
        s.app_id,
        broker=s.broker_url,
        # PERSONA_KAFKA_* security (SASL and/or TLS); None for PLAINTEXT.
        broker_credentials=s.faust_credentials(),
        # PERSONA_TABLE_STORE: memory:// (tables in RAM, rebuilt from their changelog
        # topics on start) or rocksdb:// (on disk under datadir, bounded memory).
        store=s.table_store,
        datadir=str(s.data_dir / "worker" / s.app_id),
        autodiscover=False,
        # Loopback only, and none of Faust's pages that list tables or cluster topology.
        web_bind=s.web_host,
        web_host=s.web_host,
        web_port=s.web_port,
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        topic_replication_factor=1,
        topic_partitions=s.partitions,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=s.session_timeout_s,
        broker_heartbeat_interval=max(1.0, s.session_timeout_s / 5),
        broker_rebalance_timeout=max(20.0, s.session_timeout_s * 2),
        # Commit often so a crash replays little (dedupe makes replays harmless).
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        table_cleanup_interval=30.0,
        key_serializer="raw",
        value_serializer="raw",
        producer_acks=-1,
        # Batch produce requests (one socket write per message costs), but briefly: an
        # event crosses two producers on its way to its recommendation (settings.py).
        producer_linger=s.producer_linger_ms / 1000.0,
        stream_wait_empty=False,
        logging_config=None,
    )
    built.task(_tune_producer_buffer)
    return built


app = build_app(settings, _WorkerApp)


def _await_chain(coro: Any) -> list[str]:
    """Where a suspended coroutine waits: file:line and function of each coroutine it
    awaits, outermost first (code locations only, never values)."""
    out: list[str] = []
    while coro is not None and len(out) < 16:
        frame = (getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
                 or getattr(coro, "ag_frame", None))
        if frame is None:
            break
        out.append(f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} "
                   f"{frame.f_code.co_name}")
        coro = (getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
                or getattr(coro, "ag_await", None))
    return out


def describe_tasks(loop: asyncio.AbstractEventLoop) -> str:
    """One line per unfinished task of ``loop``: its await chain. Safe to call from
    another thread (it only reads; a set that changed meanwhile is read again)."""
    for _ in range(5):
        try:
            tasks = list(asyncio.all_tasks(loop))
            break
        except RuntimeError:  # the task set changed while it was copied
            continue
    else:
        return "(the task set kept changing)"
    lines = [" <- ".join(reversed(_await_chain(t.get_coro()))) or repr(t) for t in tasks
             if not t.done()]
    return "\n".join(sorted(lines))


def _watch_stop(loop: asyncio.AbstractEventLoop, after_s: float) -> None:
    def report() -> None:
        log.warning("still stopping after %.0f s; unfinished tasks:\n%s", after_s,
                    describe_tasks(loop))

    timer = threading.Timer(after_s, report)
    timer.daemon = True  # never keeps the process up
    timer.start()


class _Worker(Worker):
    """Faust's worker, which logs what a stop still waits for after
    ``STOP_REPORT_AFTER_S``."""

    def _on_sigterm(self) -> None:
        _watch_stop(self.loop, STOP_REPORT_AFTER_S)
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        _watch_stop(self.loop, STOP_REPORT_AFTER_S)
        super()._on_sigint()


def run_worker(faust_app: faust.App, loglevel: str) -> None:
    """Run ``faust_app`` as a worker in this process, until it is told to stop."""
    w = _Worker(faust_app, loglevel=loglevel, quiet=True)
    # At level warning or above Faust's terminal spinner sets the root logger to DEBUG,
    # so every debug call of Faust and aiokafka (three per message) built a LogRecord.
    w.spinner = None
    w.execute_from_commandline()
