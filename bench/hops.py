"""What each message an event causes costs a Faust worker, on the real local broker.

Variants of ``bench.skeleton_agent``, each one message per event more than ``forward``:

- ``forward``: one agent consumes the click and sends one output (the base);
- ``+output``: the same, two outputs per event (one send more);
- ``+table``: the same as ``forward`` plus a read and a write of the user's record in a
  changelog-backed table (one changelog send more);
- ``+re-key``: an ingest agent re-keys the click onto an internal topic and a second
  agent sends the output (one send and one consume more: persona's ingest -> events hop);
- ``skeleton``: ``+re-key`` and ``+table`` together (persona's message pattern).

All run at once, each on its own topics and app id. Per round, each variant in turn is
paused (SIGSTOP), gets a burst of clicks, is resumed, and its CPU from /proc over the
drain is divided by the outputs (``bench.e2e``'s burst); the order turns each round, and
each figure is the median over the rounds, so the load of a shared machine falls on all
of them alike. Each increment is the variant's CPU per event minus ``forward``'s; the
sum of ``+table`` and ``+re-key`` against ``skeleton`` checks that the costs add up, and
``forward`` minus one output send is what consuming an event costs. Loopback only;
every process started here is stopped by its PID; bounded in time (~2.5 min by default).

    .venv/bin/python -m bench.hops [--rounds 5] [--burst 4000] [--bootstrap 127.0.0.1:PORT]
    .venv/bin/python -m bench.hops --quick    # ~1 min, smoke-sized
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench.e2e import (
    AgentProcess,
    Bench,
    Reader,
    Target,
    _versions,
    agent_target,
    bench_broker,
    show,
    wait_answering,
)
from streams.local.chaos import machine

console = Console(stderr=True)

# name -> (skeleton environment, what it adds to ``forward``)
VARIANTS: dict[str, tuple[dict[str, str], str]] = {
    "forward": ({"BENCH_SKELETON_REKEY": "0", "BENCH_SKELETON_TABLE": "0"},
                "consume + 1 output send (the base)"),
    "+output": ({"BENCH_SKELETON_REKEY": "0", "BENCH_SKELETON_TABLE": "0",
                 "BENCH_SKELETON_OUTPUTS": "2"}, "an output send"),
    "+table": ({"BENCH_SKELETON_REKEY": "0", "BENCH_SKELETON_TABLE": "1"},
               "a table read + write (changelog send)"),
    "+re-key": ({"BENCH_SKELETON_REKEY": "1", "BENCH_SKELETON_TABLE": "0"},
                "a re-key hop (send + consume)"),
    "skeleton": ({"BENCH_SKELETON_REKEY": "1", "BENCH_SKELETON_TABLE": "1"},
                 "re-key hop + table write"),
}


def run(bootstrap: str, broker_pid: int | None, home: Path, args: argparse.Namespace,
        progress: Progress) -> dict[str, Any]:
    tag = os.urandom(4).hex()
    session_s = 20.0  # a burst pauses the variant for a second or two
    bench = Bench(bootstrap, broker_pid, progress, argparse.Namespace(py_spy=None))
    procs: dict[str, AgentProcess] = {}
    targets: dict[str, Target] = {}
    cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
    drain: dict[str, list[float]] = {name: [] for name in VARIANTS}
    busy: dict[str, list[float]] = {name: [] for name in VARIANTS}  # CPU% over the drain
    try:
        for name, (env, _) in VARIANTS.items():
            procs[name], targets[name] = agent_target(
                bench, home, args.partitions, session_s, tag, f"hops-{name.strip('+')}",
                "skeleton", env)
        for p in procs.values():
            p.start()
        for t in targets.values():
            wait_answering(bench, t, 120)
            _burst(bench, t, args.warm)  # first fetches, code paths warm: not counted
        order = list(VARIANTS)
        for r in range(args.rounds):
            for name in order[r % len(order):] + order[:r % len(order)]:
                phase = _burst(bench, targets[name], args.burst)
                if phase.answered != phase.sent or phase.cpu_ms_per_event is None:
                    raise RuntimeError(f"{name}: {phase.answered} of {phase.sent} answered")
                cpu[name].append(phase.cpu_ms_per_event)
                drain[name].append(phase.out_rate)
                busy[name].append(phase.cpu.get("target") or 0.0)
    except Exception:
        for name, p in procs.items():
            console.print(f"{name}:", p.log_path.read_text(errors="replace")[-2000:])
        raise
    finally:
        bench.close()
        for p in procs.values():
            p.stop()
    med = {name: statistics.median(v) for name, v in cpu.items()}
    base = med["forward"]
    return {
        "variants": {name: {"adds": VARIANTS[name][1], "cpu_ms_per_event": round(med[name], 4),
                            "rounds_ms": cpu[name],
                            "increment_ms": round(med[name] - base, 4),
                            "drain_per_s": round(statistics.median(drain[name])),
                            "cpu_percent": round(statistics.median(busy[name]))}
                     for name in VARIANTS},
        "consume_ms": round(base - (med["+output"] - base), 4),
        "sum_ms": round(med["+table"] + med["+re-key"] - base, 4),
    }


def _burst(bench: Bench, target: Target, n: int) -> Any:
    reader = Reader(bench.bootstrap, target)
    try:
        return bench.burst(target, reader, n)
    finally:
        reader.close()


def report(result: dict[str, Any], out: Console) -> None:
    out.print(f"machine: {result['machine']}")
    out.print(f"versions: {result['versions']}")
    out.print(f"method: {result['method']}")
    table = Table(title="worker CPU per event (ms, median over rounds) of skeleton variants, "
                  "and what each message adds to forward")
    for col in ("variant", "adds", "cpu ms/ev", "rounds", "increment ms", "drain/s",
                "cpu %"):
        table.add_column(col, justify="left" if col in ("variant", "adds") else "right")
    for name, v in result["variants"].items():
        table.add_row(name, v["adds"], f"{v['cpu_ms_per_event']:.3f}",
                      " ".join(f"{x:.3f}" for x in v["rounds_ms"]),
                      "-" if name == "forward" else f"{v['increment_ms']:+.3f}",
                      f"{v['drain_per_s']:,}", str(v["cpu_percent"]))
    out.print(table)
    out.print("cpu % is the variant's CPU over the drain (100 = one core); far below 100 "
              "with a core free, its drain waits (fetches, produce round trips) more than "
              "it computes")
    v = result["variants"]
    out.print(f"consuming an event (forward - one output send): {result['consume_ms']:.3f} ms; "
              f"forward + (+table - forward) + (+re-key - forward) = {result['sum_ms']:.3f} ms "
              f"against skeleton {v['skeleton']['cpu_ms_per_event']:.3f} ms")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="bursts per variant")
    ap.add_argument("--burst", type=int, default=4000, help="events per burst")
    ap.add_argument("--warm", type=int, default=500, help="uncounted first burst")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--bootstrap", default="",
                    help="use this loopback broker (127.0.0.1:PORT) instead of starting one")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--quick", action="store_true",
                    help="smoke-sized: 1 round of 600 events, warm-up 200")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.burst, args.warm = 1, 600, 200
    if not 1 <= args.rounds <= 10 or not 100 <= args.burst <= 50_000:
        ap.error("--rounds in [1, 10], --burst in [100, 50000]")
    if not 1 <= args.warm <= 10_000 or not 1 <= args.partitions <= 64:
        ap.error("--warm in [1, 10000], --partitions in [1, 64]")
    if args.bootstrap and not args.bootstrap.startswith("127.0.0.1:"):
        ap.error("--bootstrap must be 127.0.0.1:PORT (loopback only)")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    started = time.monotonic()
    with bench_broker(args.bootstrap, "persona-bench-hops-") as (home, bootstrap, broker_pid):
        with Progress(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
                      TimeElapsedColumn(), console=console, transient=True) as progress:
            result = run(bootstrap, broker_pid, home, args, progress)
        result.update(
            machine=machine(), versions=_versions(),
            method=(f"{args.rounds} round(s) of a {args.burst:,}-event burst per variant "
                    f"(paused, published, resumed; CPU over the drain / outputs), order "
                    f"turned each round; {args.partitions} partitions; all variants "
                    "running at once"),
            elapsed_s=round(time.monotonic() - started, 1))
        show(result, report, 150, args.json)
        return result


if __name__ == "__main__":
    main()
