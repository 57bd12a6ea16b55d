"""Drift monitors on the online models' quality, wired to Prometheus.

The agents call ``drift.observe(model, value)`` (``Runtime.drift``, streams/runtime.py)
once per quality value: the profile agent with each prequential hit of the recommender,
the ads agent with each resolved pCTR (and pCVR) label's log loss. A detected change counts in
``persona_model_drift_total{model,direction}`` and is logged (model and means only); the
window means are read at scrape time.
"""

from __future__ import annotations

import logging

from models.drift import STREAMS, DriftMonitor, monitor_for
from streams.metrics import Metrics

log = logging.getLogger(__name__)


class Drift:
    """One ``DriftMonitor`` per model of ``models.drift.STREAMS``, and their metrics.

    ``persona_model_quality{model,metric}`` and ``persona_model_quality_window{model}``
    are gauges read from the monitors when Prometheus scrapes, so ``observe`` costs the
    monitor's update alone (about half a microsecond).
    """

    def __init__(self, metrics: Metrics, delta: float = 0.002) -> None:
        self.monitors: dict[str, DriftMonitor] = {
            name: monitor_for(name, delta) for name in STREAMS}
        self._metrics = metrics
        for name, monitor in self.monitors.items():
            metric = STREAMS[name].metric
            metrics.model_quality.labels(model=name, metric=metric).set_function(
                lambda m=monitor: m.mean)
            metrics.model_quality_window.labels(model=name).set_function(
                lambda m=monitor: m.width)

    def observe(self, model: str, value: object) -> bool:
        """Feed one quality value of ``model`` (a key of ``STREAMS``; others raise
        KeyError); True if it completed a detected change."""
        monitor = self.monitors[model]
        ignored = monitor.n_ignored
        if monitor.observe(value):
            change = monitor.last
            assert change is not None
            self._metrics.model_drift.labels(model=model, direction=change.direction).inc()
            log.warning("model %s: %s changed (%s): window mean %.4g, recent mean %.4g",
                        model, STREAMS[model].metric, change.direction, change.before,
                        change.after)
            return True
        if monitor.n_ignored != ignored:
            self._metrics.model_quality_ignored.labels(model=model).inc()
        return False
