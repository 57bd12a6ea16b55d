"""The running recommendation experiment: which variant (and strategy) serves a user.

The first active experiment of ``PERSONA_EXPERIMENTS_FILE`` decides; without one every
user is in variant ``default``. The assignment logic is ``models.experiments``; this
module keeps the bandit-mode allocator and its weights, refreshed at most every few
seconds (Thompson draws are too slow for every event).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from models.engine import check_overrides
from models.experiments import BanditAllocator, Experiment, assign, assign_with_weights

DEFAULT_VARIANT = "default"
WEIGHTS_REFRESH_S = 5.0


@dataclass(frozen=True, slots=True)
class Assignment:
    experiment: str | None
    variant: str
    strategy: str | None
    new: bool  # first assignment of this user to this experiment
    overrides: Mapping[str, float] | None = None  # the variant's serving settings


class Running:
    """The experiment that assigns variants, or none."""

    def __init__(self, experiments: Mapping[str, Experiment]) -> None:
        """ValueError when a variant sets something serving cannot vary."""
        self.experiment = next((e for e in experiments.values() if e.active), None)
        for exp in experiments.values():
            for v in exp.variants:
                try:
                    check_overrides(v.settings)
                except ValueError as exc:
                    raise ValueError(f"experiment {exp.name!r} variant {v.name!r}: {exc}") \
                        from None
        self.allocator = (BanditAllocator.for_experiment(self.experiment)
                          if self.experiment is not None and self.experiment.mode == "bandit"
                          else None)
        self._weights: dict[str, float] | None = None
        self._weights_at = 0.0

    def weights(self) -> dict[str, float] | None:
        """The bandit allocator's current weights (None in fixed mode)."""
        if self.allocator is None:
            return None
        now = time.monotonic()
        if self._weights is None or now - self._weights_at > WEIGHTS_REFRESH_S:
            self._weights = dict(self.allocator.weights())
            self._weights_at = now
        return self._weights

    def assign(self, user: str, stored: Mapping[str, list] | None) -> Assignment:
        """The user's variant: the stored one if still valid, else a new assignment."""
        exp = self.experiment
        if exp is None:
            return Assignment(None, DEFAULT_VARIANT, None, False)
        entry = (stored or {}).get(exp.name)
        if entry and entry[0] in exp.variant_names:
            variant, new = entry[0], False
        else:
            weights = self.weights()
            variant = (assign(exp, user) if weights is None
                       else assign_with_weights(exp, user, weights))
            new = True
        chosen = exp.variant(variant)
        return Assignment(exp.name, variant, chosen.strategy, new,
                          dict(chosen.settings) or None)  # type: ignore[arg-type]

    def observe(self, variant: str, successes: int, trials: int) -> None:
        """Feed the bandit allocator (clicks on, and recommendations of, a variant)."""
        if self.allocator is not None and self.experiment is not None \
                and variant in self.experiment.variant_names:
            self.allocator.observe(variant, successes, trials)
