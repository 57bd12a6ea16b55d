"""The baseline of ``bench.e2e``: a trivial Faust agent that forwards every message.

One agent consumes a bytes topic and produces each value, unchanged and under its key,
to an output topic. The app is built by ``streams.app.build_app`` from the same
PERSONA_* settings as the persona worker (loopback web server, web tables off,
replication 1, commit and producer settings, raw serializers, the producer buffer), so
the two differ only in what the agent does. Run as its own process:

    PERSONA_APP_ID=... PERSONA_BOOTSTRAP=127.0.0.1:PORT BENCH_TRIVIAL_IN=in \\
        BENCH_TRIVIAL_OUT=out .venv/bin/python -m bench.trivial_agent
"""

from __future__ import annotations

import os

# Importing streams.app also declares persona's own app (never started here); an app
# from build_app applies the same faust_fixes as the worker when it starts.
from streams.app import build_app, run_worker
from streams.settings import Settings

settings = Settings.from_env()
app = build_app(settings)
source = app.topic(os.environ.get("BENCH_TRIVIAL_IN", "bench-trivial-in"),
                   key_type=bytes, value_type=bytes, partitions=settings.partitions)
sink = app.topic(os.environ.get("BENCH_TRIVIAL_OUT", "bench-trivial-out"),
                 key_type=bytes, value_type=bytes, partitions=settings.partitions)


@app.agent(source, name="bench.trivial-forward", concurrency=1)
async def forward(stream):  # type: ignore[no-untyped-def]
    # stream.events(), as persona's agents read (streams.agents.deadletter.run_guarded).
    async for event in stream.events():
        msg = event.message
        await sink.send(key=msg.key, value=msg.value)


def main() -> None:
    # As ``persona worker`` runs the worker app (the producer buffer is build_app's).
    run_worker(app, settings.log_level)


if __name__ == "__main__":
    main()
