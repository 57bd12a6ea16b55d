"""Drift detection on model quality (models/drift.py) and its metrics (streams/drift.py).

The streams are synthetic and seeded, so every figure below is reproducible: detection
delays after a known shift, false alarms on stationary streams, bad values refused.
"""

from __future__ import annotations

import math
import pickle
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from models.drift import MAX_LOG_LOSS, STREAMS, DriftMonitor, monitor_for
from streams.drift import Drift
from streams.metrics import build_metrics
from streams.settings import Settings, SettingsError

SEEDS = range(20)


def bernoulli(seed: int, p: float, n: int) -> list[float]:
    return (np.random.default_rng(seed).random(n) < p).astype(float).tolist()


def log_losses(seed: int, ctr: float, predicted: float, n: int) -> list[float]:
    """Log loss of a constant prediction ``predicted`` on labels clicked at rate ``ctr``."""
    clicked = np.random.default_rng(seed).random(n) < ctr
    return np.where(clicked, -math.log(predicted), -math.log1p(-predicted)).tolist()


def detections(monitor: DriftMonitor, values: list[float]) -> list[int]:
    return [i for i, v in enumerate(values) if monitor.observe(v)]


def first_after(monitor: DriftMonitor, before: list[float], after: list[float]) -> int | None:
    """Detections on ``before`` must be none; the index in ``after`` of the first one."""
    assert detections(monitor, before) == []
    return next((i for i, v in enumerate(after) if monitor.observe(v)), None)


# --- detection delay ------------------------------------------------------------------------


@pytest.mark.parametrize(("p0", "p1", "bound", "direction"), [
    (0.15, 0.075, 4_000, "worse"),   # hit rate halves: median 1,759, max 2,079 (measured)
    (0.15, 0.12, 30_000, "worse"),   # a fifth lower: median 8,319, max 14,559
    (0.05, 0.15, 4_000, "better"),   # triples: median 1,119, max 1,759
])
def test_a_shift_in_hit_rate_is_detected_within_a_bounded_delay(
    p0: float, p1: float, bound: int, direction: str
) -> None:
    delays = []
    for seed in SEEDS:
        m = monitor_for("recommender")
        delay = first_after(m, bernoulli(seed, p0, 20_000), bernoulli(seed + 1000, p1, bound))
        assert delay is not None, f"seed {seed}: no detection within {bound} events"
        assert m.last is not None and m.last.direction == direction
        delays.append(delay)
    print(f"hit rate {p0} -> {p1}: detection delay median {int(np.median(delays))}, "
          f"max {max(delays)} events over {len(delays)} seeds")


def test_a_shift_in_pctr_log_loss_is_detected_within_a_bounded_delay() -> None:
    delays = []
    for seed in SEEDS:
        m = monitor_for("pctr")
        # the click rate triples while the model keeps predicting 1%: log loss rises
        delay = first_after(m, log_losses(seed, 0.01, 0.01, 20_000),
                            log_losses(seed + 1000, 0.03, 0.01, 8_000))
        assert delay is not None, f"seed {seed}: no detection within 8,000 labels"
        assert m.last is not None and m.last.direction == "worse"
        assert m.last.after > m.last.before
        delays.append(delay)
    print(f"pCTR log loss, CTR 1% -> 3%: detection delay median {int(np.median(delays))}, "
          f"max {max(delays)} labels over {len(delays)} seeds")


# --- false alarms ---------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.05, 0.15, 0.5])
def test_no_false_alarm_on_stationary_hits(p: float) -> None:
    alarms = []
    for seed in SEEDS:
        m = monitor_for("recommender")
        alarms.append(len(detections(m, bernoulli(seed, p, 100_000))))
        assert m.width == 100_000 and abs(m.mean - p) < 0.01
    print(f"stationary hit rate {p}: {sum(alarms)} false alarms in "
          f"{len(alarms)} x 100,000 events")
    assert sum(alarms) == 0, alarms


def test_hits_are_batched_because_real_hit_streams_come_in_bursts() -> None:
    """On real data a user's events come in sessions, so hits are not independent: over
    the MovieLens 100K replay (popularity's prequential hits, docs/quality.md, Protocol),
    ADWIN fed one hit at a time cuts its window 9 times; fed means of 10, it never does."""
    from models.recommenders.base import prequential
    from models.recommenders.popularity import Popularity
    from streams.offline.datasets import load_movielens_100k

    events = [(user, item) for user, item, _, _ in load_movielens_100k()]
    hits = [float(hit) for hit in prequential(Popularity(), events, k=10)]
    single = DriftMonitor(low=0.0, high=1.0)
    one_by_one = len(detections(single, hits))
    batched = len(detections(monitor_for("recommender"), hits))
    print(f"MovieLens 100K popularity hits ({len(hits):,}, recall@10 "
          f"{sum(hits) / len(hits):.4f}): {one_by_one} detections one by one, "
          f"{batched} in batches of 10")
    assert one_by_one >= 3
    assert batched == 0


def test_log_loss_is_batched_because_single_labels_false_alarm() -> None:
    """Log loss per label is heavy-tailed (a click costs ~460x a non-click at 1%): fed one
    by one, ADWIN raises false alarms on a stationary stream; ten at a time, none."""
    one_by_one, batched = [], []
    for seed in SEEDS:
        values = log_losses(seed, 0.01, 0.01, 100_000)
        single = DriftMonitor(low=0.0, high=MAX_LOG_LOSS, higher_is_better=False)
        one_by_one.append(len(detections(single, values)))
        batched.append(len(detections(monitor_for("pctr"), values)))
    print(f"stationary pCTR log loss, {len(batched)} x 100,000 labels: "
          f"{sum(one_by_one)} false alarms one by one, {sum(batched)} in batches of 10")
    assert sum(batched) == 0, batched
    assert sum(one_by_one) > 0  # the reason for STREAMS["pctr"].batch


# --- bad values, memory, cost ---------------------------------------------------------------


def test_bad_values_are_counted_and_never_reach_the_detector() -> None:
    m = DriftMonitor(low=0.0, high=1.0)  # batch 1: each value is an ADWIN input
    good = [1.0, 0.0, True, 0, -0.0]
    bad = [math.nan, math.inf, -math.inf, 1.5, -0.5, 1e300, 10**400, None, "1", b"1", [1.0]]
    for v in bad + good + bad:
        m.observe(v)
    assert m.n_ignored == 2 * len(bad)
    assert m.n_observed == m.width == len(good)
    assert m.mean == pytest.approx(0.4) and math.isfinite(m.recent_mean)
    # the ADWIN inside never saw a bad value: its own window mean is finite and equal
    assert m._adwin.estimation == pytest.approx(0.4)


def test_memory_stays_bounded_over_a_long_stationary_stream() -> None:
    m = monitor_for("recommender")
    values = bernoulli(7, 0.1, 1_000_000)
    detections(m, values[:10_000])
    small = len(pickle.dumps(m))
    detections(m, values[10_000:])
    large = len(pickle.dumps(m))
    print(f"monitor pickled: {small} bytes after 10,000 values, {large} after 1,000,000")
    assert m.width == 1_000_000
    assert large < 2 * small < 20_000  # ADWIN's buckets grow with log(width)


def test_observe_costs_microseconds() -> None:
    m = monitor_for("recommender")
    values = bernoulli(3, 0.1, 200_000)
    started = time.perf_counter()
    for v in values:
        m.observe(v)
    per_call = (time.perf_counter() - started) / len(values)
    print(f"DriftMonitor.observe: {per_call * 1e6:.2f} us per value")
    assert per_call < 25e-6  # about 0.5 us on an idle core: a bound only a regression hits


def test_parameters_are_checked() -> None:
    for kwargs in ({"delta": 0.0}, {"delta": 1.0}, {"delta": math.nan}, {"clock": 0},
                   {"batch": 0}, {"batch": True}, {"low": 1.0, "high": 0.0},
                   {"low": math.nan}, {"recent": 0}):
        with pytest.raises(ValueError):
            DriftMonitor(**kwargs)  # type: ignore[arg-type]


def test_streams_name_bounded_metric_labels() -> None:
    assert set(STREAMS) == {"recommender", "pctr", "pcvr"}
    assert {s.metric for s in STREAMS.values()} == {"hit_rate", "log_loss"}


# --- wiring: metrics and settings -----------------------------------------------------------


def test_drift_counts_detections_and_exposes_the_window_mean() -> None:
    metrics = build_metrics(CollectorRegistry())
    drift = Drift(metrics)
    reg = metrics.registry

    def value(name: str, **labels: str) -> float | None:
        return reg.get_sample_value(name, labels)

    assert value("persona_model_drift_total", model="recommender", direction="worse") == 0
    assert math.isnan(value("persona_model_quality", model="recommender", metric="hit_rate"))
    detected = [i for i, v in enumerate(bernoulli(1, 0.2, 10_000) + bernoulli(2, 0.02, 5_000))
                if drift.observe("recommender", v)]
    assert detected and 10_000 <= detected[0] < 12_000
    assert value("persona_model_drift_total", model="recommender",
                 direction="worse") == len(detected)
    assert value("persona_model_drift_total", model="recommender", direction="better") == 0
    monitor = drift.monitors["recommender"]
    assert value("persona_model_quality", model="recommender",
                 metric="hit_rate") == pytest.approx(monitor.mean) == pytest.approx(0.02, abs=0.01)
    assert value("persona_model_quality_window", model="recommender") == monitor.width > 0
    for loss in (0.01, math.nan, -1.0, 0.02):
        drift.observe("pctr", loss)
    assert value("persona_model_quality_ignored_total", model="pctr") == 2
    assert value("persona_model_quality", model="pctr",
                 metric="log_loss") == pytest.approx(0.015)
    with pytest.raises(KeyError):
        drift.observe("no such model", 1.0)


def test_drift_and_table_store_settings() -> None:
    s = Settings.from_env({})
    assert s.drift_delta == 0.002 and s.table_store == "memory://"
    assert s.table_store_options() == {}  # memory://: nothing for a store to tune
    s = Settings.from_env({"PERSONA_DRIFT_DELTA": "1e-5", "PERSONA_TABLE_STORE": "RocksDB://",
                           "PERSONA_TABLE_CACHE_MB": "32"})
    assert s.drift_delta == 1e-5 and s.table_store == "rocksdb://"
    assert s.table_store_options() == {"block_cache_size": 32 * 2**20,
                                       "write_buffer_size": 16 * 2**20,
                                       "max_write_buffer_number": 2}
    for env, message in (({"PERSONA_DRIFT_DELTA": "0"}, "outside"),
                         ({"PERSONA_DRIFT_DELTA": "nan"}, "outside"),
                         ({"PERSONA_TABLE_STORE": "redis://"}, "memory://, rocksdb://"),
                         ({"PERSONA_TABLE_CACHE_MB": "0"}, "outside")):
        with pytest.raises(SettingsError, match=message):
            Settings.from_env(env)
