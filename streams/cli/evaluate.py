"""``persona evaluate`` and ``persona evaluate-ads``: options, progress bars and printing
around the offline replays of ``streams/offline/`` (no Kafka)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from streams.cli.common import console, fail, load_settings, wide
from streams.offline.datasets import INSTALLED
from streams.offline.evaluate_run import DEFAULT_DATASET, DEFAULT_STRATEGIES

if TYPE_CHECKING:
    from streams.offline.evaluate import Stream
    from streams.offline.evaluate_run import EvaluateOptions


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` and ``evaluate-ads`` to the root command."""
    app.command("evaluate")(evaluate)
    app.command("evaluate-ads", help=_EVALUATE_ADS_HELP)(evaluate_ads)


@contextmanager
def _bars(totals: dict[str, int]) -> Iterator[Callable[[str, int], None]]:
    """One progress bar per named task; yields ``advance(name, done)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description:>14}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        tasks = {name: progress.add_task(name, total=total) for name, total in totals.items()}

        def advance(name: str, done: int) -> None:
            progress.advance(tasks[name], done)

        yield advance


# ---------------------------------------------------------------- evaluate
def _dataset_help() -> str:
    """``--dataset``'s help: every installed stream, from the registry."""
    named = []
    for d in INSTALLED.values():
        notes = [d.title] + (["default"] if d.name == DEFAULT_DATASET else []) + (
            [f"first {d.default_limit:,} events unless --limit"] if d.default_limit else [])
        named.append(f"{d.name} ({', '.join(notes)})")
    return "; ".join(named) + "; or synthetic-drift (seeded, drifting)."


def evaluate(
    dataset: str | None = typer.Option(
        None, help=_dataset_help()),
    input_path: Path | None = typer.Option(
        None, "--input", help="Replay this CSV (header user,item,ts[,rating]) or JSONL file "
        "instead; ts in epoch s, epoch ms or ISO-8601 with a zone."),
    limit: int | None = typer.Option(None, min=1, help="Replay only the first N events."),
    k: int = typer.Option(10, "--k", min=1, max=100, help="Length of each recommended list."),
    strategy: str | None = typer.Option(
        None, help=f"Comma-separated strategies to compare (default {DEFAULT_STRATEGIES})."),
    jobs: int | None = typer.Option(
        None, min=1, help="Worker processes, one strategy each (default: min(2, strategies))."),
    exploration: float = typer.Option(
        0.0, min=0.0, max=1.0, help="Share of requests the strategy bandit serves with "
        "another strategy. Default 0: each row measures its strategy alone (with the "
        "service's PERSONA_EXPLORATION every row would drift toward the same bandit)."),
    window: int = typer.Option(10_000, min=1, help="Events per window of the per-window "
                                                   "figures."),
    rating: bool = typer.Option(False, "--rating", help="Rating prediction instead: BiasedMF "
                                "predicts each rating, then learns it; reports MAE and RMSE."),
    seed: int = typer.Option(0, help="Seed of the synthetic-drift stream."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Count and skip bad input rows "
                                  "instead of stopping at the first."),
    json_path: Path | None = typer.Option(None, "--json", help="Write every figure (overall "
                                          "and per window) and the run's parameters here."),
    plot: Path | None = typer.Option(None, help="Write a PNG of the per-window curves here."),
) -> None:
    """Replay a stream test-then-train through the service's models and report quality."""
    from streams.offline import evaluate_run as run
    from streams.offline.evaluate import InputError, results_table, write_json, write_plot

    opts = run.EvaluateOptions(dataset=dataset, input_path=input_path, limit=limit, k=k,
                               window=window, exploration=exploration, rating=rating,
                               seed=seed, skip_bad=skip_bad, jobs=jobs)
    try:
        models = run.plan_models(opts, strategy)
    except InputError as exc:
        raise fail(str(exc), 2) from None
    if plot is not None and plot.suffix.lower() != ".png":
        raise fail(f"--plot writes a PNG: give a path ending in .png, not {plot}", 2)
    cfg = run.replay_config(opts, load_settings().engine_config())
    stream = _stream(opts)
    n, jobs = len(stream.rows), run.job_count(opts, models)
    started = time.monotonic()
    with _bars(dict.fromkeys(models, n)) as advance:
        results = run.run_models(opts, models, stream, cfg, jobs, advance)
    took = time.monotonic() - started
    title = run.run_title(opts, n)
    wide(120).print(results_table(results, k, title))
    console.print(f"replayed {n:,} events x {len(models)} in {took:.1f}s "
                  f"({jobs} process{'es' if jobs > 1 else ''})")
    if json_path is not None:
        write_json(json_path, run.run_params(opts, stream, cfg, models, jobs, took), results)
        console.print(f"figures written to {json_path}")
    if plot is not None:
        write_plot(plot, results, k, title)
        console.print(f"per-window curves drawn in {plot}")


def _stream(opts: EvaluateOptions) -> Stream:
    """The run's stream, after saying which bad rows were skipped; exits on a bad input."""
    from streams.offline.datasets import DatasetMissing
    from streams.offline.evaluate import InputError
    from streams.offline.evaluate_run import load_stream, ready_stream

    try:
        stream = load_stream(opts)
    except InputError as exc:
        raise fail(str(exc), 2) from None
    except DatasetMissing as exc:
        raise fail(str(exc)) from None
    if stream.skipped:
        console.print(f"[yellow]skipped {stream.skipped} bad row(s)[/yellow], e.g.:")
        for err in stream.errors:
            console.print(f"  {err}", markup=False, highlight=False)
    try:
        return ready_stream(stream, opts)
    except InputError as exc:
        raise fail(str(exc), 2) from None


# ---------------------------------------------------------------- evaluate-ads
# One string, not the docstring: typer keeps a docstring's single line breaks after its
# first paragraph, which then wrap badly.
_EVALUATE_ADS_HELP = (
    "Replay the Open Bandit Dataset through the bidder and score its click predictions."
    "\n\nEach logged impression is an ad request with one candidate (the item shown): the "
    "bidder predicts its pCTR, then is told the impression and the click, if any, and "
    "closes attribution windows as event time passes, as the ads agent does. Reports "
    "prequential log loss, AUC and calibration (sum of pCTR / clicks) against a running "
    "mean click rate with the same prior, overall and per campaign, events/s, and whether "
    "the targets are met (log loss <= the baseline's, calibration in [0.8, 1.25])."
    "\n\nThe data comes from the obp wheel: pip install --no-deps obp==0.4.1. Exit codes: "
    "0 done (targets met or not), 1 data not installed, 2 bad usage. See docs/ads.md."
)


def evaluate_ads(
    policy: str = typer.Option(
        "random", help="Logging policy of the Open Bandit Dataset sample: random (uniform, "
        "the unbiased log) or bts (Bernoulli Thompson sampling)."),
    campaign: str = typer.Option(
        "pooled", help="OBD campaign: all, men, women, or pooled (the three merged by "
        "timestamp, one model learning them all)."),
    limit: int | None = typer.Option(None, min=1, help="Replay only the first N impressions "
                                     "(default: all, 30,000 pooled)."),
    window_minutes: float = typer.Option(
        30.0, min=0.001, help="Attribution window in event-time minutes (PERSONA_AD_WINDOW_S's "
        "default): a row's negative label is learned when it closes."),
    as_json: bool = typer.Option(False, "--json", help="Print every figure, the targets and "
                                 "the run's parameters as JSON on stdout, instead of the table."),
) -> None:
    """Score pCTR on the Open Bandit Dataset (help: _EVALUATE_ADS_HELP)."""
    import json

    from streams.offline.evaluate_ads import AdsReplayConfig, replay_ads, results_table, targets
    from streams.offline.obd import CAMPAIGNS, POLICIES, POOLED, ObdMissing, load_obd

    if policy not in POLICIES:
        raise fail(f"unknown --policy {policy!r}: choose from {', '.join(POLICIES)}", 2)
    if campaign not in (POOLED, *CAMPAIGNS):
        raise fail(f"unknown --campaign {campaign!r}: choose from {POOLED}, "
                   f"{', '.join(CAMPAIGNS)}", 2)
    try:
        sample = load_obd(policy, campaign)
    except ObdMissing as exc:
        raise fail(str(exc)) from None
    if limit is not None:
        sample.impressions = sample.impressions[:limit]
    cfg = AdsReplayConfig(window_ms=max(1, round(window_minutes * 60_000)))
    n = len(sample.impressions)
    name = f"{policy}/{campaign}"
    started = time.monotonic()
    with _bars({name: n}) as advance:
        result = replay_ads(sample, cfg, lambda done: advance(name, done))
    took = time.monotonic() - started
    met = targets(result["overall"])
    if as_json:
        params = {"policy": policy, "campaign": campaign, "limit": limit,
                  "window_minutes": window_minutes, "seconds": took}
        sys.stdout.write(json.dumps({"params": params, "results": result, "targets": met},
                                    indent=2) + "\n")
    else:
        wide(120).print(results_table(result, f"pCTR on OBD {name}: {n:,} requests, "
                                      f"prequential, {window_minutes:g} min window"))
    _print_targets(met, result, n, took)


def _print_targets(met: dict[str, dict[str, Any]], result: dict[str, Any], n: int,
                   took: float) -> None:
    """Whether each target is met, and how long the replay took."""
    for name, t in met.items():
        mark = "[green]met[/green]" if t["met"] else "[red]NOT met[/red]"
        console.print(f"target {name}: {t['value']:.5g} {t['target']}: {mark}")
    console.print(f"replayed {n:,} requests ({result['events']:,} events) in {took:.1f}s, "
                  f"{result['events_per_s']:,.0f} events/s")
