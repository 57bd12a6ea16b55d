"""Choosing which strategy serves a request: an epsilon-greedy bandit with exact propensities.

Every choice is recorded with the probability it had, so later off-policy evaluation
(inverse propensity scoring) can estimate what another policy would have earned.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

from models.checks import check_number
from models.recommenders.base import check_half_life, check_item_id


def uniform_from_key(key: str, salt: str = "") -> float:
    """A number in [0, 1) fixed by ``key``: the same request always draws the same value,
    so a redelivered event gets the same choice (at-least-once stays deterministic).

    >>> uniform_from_key("e1") == uniform_from_key("e1") != uniform_from_key("e2")
    True
    """
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class EpsilonGreedy:
    """Serve the arm with the best estimated reward, and explore the others.

    With ``n`` arms, the greedy arm is chosen with probability ``1 - epsilon + epsilon/n``
    and each other arm with ``epsilon/n``: ``choose`` returns that exact propensity.
    Estimates are decayed means (``half_life`` in updates, None for plain means), each
    starting from ``prior`` pseudo-observations of ``prior_mean`` so that one lucky early
    reward cannot take over; ties go to the earliest arm in ``arms``, so the first arm is
    the default until the data says otherwise.

    >>> b = EpsilonGreedy(["hybrid", "popularity"], epsilon=0.1)
    >>> arm, p = b.choose("r1"); arm, round(p, 6)
    ('hybrid', 0.95)
    >>> for _ in range(50):
    ...     b.update("hybrid", 0.0); b.update("popularity", 1.0)
    >>> b.greedy(), round(b.propensity("hybrid"), 6)
    ('popularity', 0.05)
    """

    def __init__(
        self,
        arms: Sequence[str],
        epsilon: float = 0.05,
        half_life: float | None = 10_000.0,
        prior: float = 10.0,
        prior_mean: float = 0.0,
        salt: str = "",
    ) -> None:
        arms = list(arms)
        if not arms or len(set(arms)) != len(arms):
            raise ValueError(f"arms must be distinct and non-empty, got {arms!r}")
        for arm in arms:
            check_item_id(arm)
        self.arms = tuple(arms)
        self.epsilon = check_number("epsilon", epsilon, 0.0, 1.0, plain=True)
        check_half_life(half_life)
        self.half_life = half_life
        self.prior = check_number("prior", prior, 0.0, plain=True)
        self.prior_mean = check_number("prior_mean", prior_mean, plain=True)
        self.salt = salt
        self._keep = 1.0 if half_life is None else 0.5 ** (1.0 / half_life)
        self._sum = {arm: 0.0 for arm in arms}
        self._count = {arm: 0.0 for arm in arms}

    def estimate(self, arm: str) -> float:
        """The arm's decayed mean reward, shrunk toward the prior."""
        prior = self.prior
        return (self._sum[arm] + prior * self.prior_mean) / (self._count[arm] + prior or 1.0)

    def greedy(self) -> str:
        """The arm with the best estimate (ties: the earliest in ``arms``)."""
        return max(self.arms, key=self.estimate)  # max keeps the first of equal keys

    def propensity(self, arm: str) -> float:
        """Probability that ``choose`` picks ``arm`` in the current state."""
        if arm not in self._sum:
            raise ValueError(f"unknown arm {arm!r}")
        share = self.epsilon / len(self.arms)
        return 1.0 - self.epsilon + share if arm == self.greedy() else share

    def choose(self, key: str) -> tuple[str, float]:
        """The arm for the request ``key`` and the probability it had of being chosen."""
        greedy = self.greedy()
        u = uniform_from_key(key, self.salt)
        if u >= self.epsilon:
            arm = greedy
        else:  # u is uniform on [0, epsilon): split it evenly over all arms
            arm = self.arms[min(int(u / self.epsilon * len(self.arms)), len(self.arms) - 1)]
        return arm, self.propensity(arm)

    def update(self, arm: str, reward: float) -> None:
        """Record ``reward`` (finite, typically 1 for a hit and 0 for a miss) for ``arm``."""
        if arm not in self._sum:
            raise ValueError(f"unknown arm {arm!r}")
        # A bool reward is a hit or a miss: 1.0 or 0.0.
        r = float(reward) if isinstance(reward, bool) else check_number("reward", reward,
                                                                         plain=True)
        keep = self._keep
        if keep != 1.0:
            for a in self.arms:  # a handful of arms: decaying all of them is cheap
                self._sum[a] *= keep
                self._count[a] *= keep
        self._sum[arm] += r
        self._count[arm] += 1.0

    def apply_delta(self, steps: int, arms: Mapping[str, tuple[float, float]]) -> None:
        """Age every arm by ``steps`` updates, then add each arm's (observations, reward)
        sums as of the last of them (another copy's, models/sync.py); unknown arms and
        non-finite sums are skipped."""
        keep = self._keep ** steps
        if keep != 1.0:
            for a in self.arms:
                self._sum[a] *= keep
                self._count[a] *= keep
        for arm, (n, r) in arms.items():
            if arm in self._sum and math.isfinite(n) and math.isfinite(r) and n >= 0:
                self._count[arm] += n
                self._sum[arm] += r

    def stats(self) -> dict[str, dict[str, float]]:
        """Per arm: decayed observations, estimate and current propensity."""
        return {
            arm: {"observations": self._count[arm], "estimate": self.estimate(arm),
                  "propensity": self.propensity(arm)}
            for arm in self.arms
        }
