"""A/B/n experiments: their configuration, deterministic user assignment, and the
Thompson-sampling allocator behind the optional bandit mode."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from models.checks import check_int, check_non_negative, check_positive, is_in_range
from models.engine import check_overrides
from models.recommenders.bandit import uniform_from_key

MAX_VARIANTS = 20
# Experiment, variant and strategy names end up as Prometheus label values and in report
# tables: short, printable, no spaces.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}")
_MODES = ("fixed", "bandit")

SettingValue = str | int | float | bool
Mode = Literal["fixed", "bandit"]


class ExperimentError(ValueError):
    """A bad experiment definition; ``field`` names where (``experiments[0].control``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def _check_id(what: str, value: object) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ExperimentError(
            what, f"must be 1-32 characters of letters, digits, '_', '-' or '.' (starting "
                  f"with a letter or digit), got {value!r}")
    return value


class Settings(Mapping[str, SettingValue]):
    """A read-only, hashable and picklable mapping of a variant's settings.

    >>> s = Settings({"top_k": 5}); s["top_k"], dict(s) == {"top_k": 5}, hash(s) == hash(s)
    (5, True, True)
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, SettingValue] | None = None) -> None:
        self._data: dict[str, SettingValue] = dict(data or {})

    def __getitem__(self, key: str) -> SettingValue:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return f"Settings({self._data!r})"

    def __getstate__(self) -> dict[str, SettingValue]:
        return self._data

    def __setstate__(self, state: dict[str, SettingValue]) -> None:
        self._data = dict(state)


def _check_settings(value: object) -> Settings:
    if not isinstance(value, Mapping):
        raise ExperimentError("settings", f"must be a mapping, got {value!r}")
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise ExperimentError("settings", f"keys must be non-empty strings, got {key!r}")
        if not isinstance(item, (str, int, float, bool)):
            raise ExperimentError(f"settings.{key}",
                                  f"must be a string, number or boolean, got {item!r}")
        if isinstance(item, float) and not math.isfinite(item):
            raise ExperimentError(f"settings.{key}", f"must be finite, got {item!r}")
    return value if isinstance(value, Settings) else Settings(value)


@dataclass(frozen=True, slots=True)
class Variant:
    """One arm of an experiment: its share of traffic (``weight``, relative to the other
    variants) and what it serves: a ``strategy`` name and ``settings`` overrides, both
    interpreted by the caller (None / empty: the service's defaults).

    >>> v = Variant("B", 1, strategy="cooccurrence", settings={"top_k": 5})
    >>> v.weight, v.settings["top_k"]
    (1.0, 5)
    >>> Variant("B", 0)
    Traceback (most recent call last):
    ...
    models.marketing.experiments.ExperimentError: weight: must be a finite number > 0, got 0
    """

    name: str
    weight: float = 1.0
    strategy: str | None = None
    settings: Mapping[str, SettingValue] = field(default_factory=Settings)

    def __post_init__(self) -> None:
        _check_id("name", self.name)
        w = self.weight
        if not is_in_range(w, 0.0, low_open=True):
            raise ExperimentError("weight", f"must be a finite number > 0, got {w!r}")
        object.__setattr__(self, "weight", float(w))
        if self.strategy is not None:
            _check_id("strategy", self.strategy)
        object.__setattr__(self, "settings", _check_settings(self.settings))


@dataclass(frozen=True, slots=True)
class Experiment:
    """An A/B/n test: 1 to 20 variants with distinct names, one of them the ``control``
    that lifts are measured against.

    ``mode="fixed"`` splits users by the variants' weights for the whole experiment
    (``assign``); ``mode="bandit"`` places each new user by the current weights of a
    ``BanditAllocator`` (even at first, then moving toward the variant that converts
    best) through ``assign_with_weights``, and the configured weights are not used.
    ``salt`` reshuffles
    the assignment without renaming the experiment (change it to restart on fresh groups).
    An inactive experiment serves its control to everyone.

    >>> e = Experiment("recs-2024", [Variant("A", 1), Variant("B", 1)], control="A")
    >>> e.variant_names, e.weights
    (('A', 'B'), (0.5, 0.5))
    >>> Experiment("x", [Variant("A")], control="C")
    Traceback (most recent call last):
    ...
    models.marketing.experiments.ExperimentError: control: must be one of the variants ('A',), got 'C'
    """  # noqa: E501 (the doctest prints the qualified exception name)

    name: str
    variants: Sequence[Variant]
    control: str
    salt: str = ""
    mode: Mode = "fixed"
    active: bool = True

    def __post_init__(self) -> None:
        _check_id("name", self.name)
        variants = self.variants
        if isinstance(variants, (str, bytes)) or not isinstance(variants, Sequence):
            raise ExperimentError("variants", f"must be a list of variants, got {variants!r}")
        variants = tuple(variants)
        if not 1 <= len(variants) <= MAX_VARIANTS:
            raise ExperimentError(
                "variants", f"must hold 1 to {MAX_VARIANTS} variants, got {len(variants)}")
        for i, v in enumerate(variants):
            if not isinstance(v, Variant):
                raise ExperimentError(f"variants[{i}]", f"must be a Variant, got {v!r}")
        names = tuple(v.name for v in variants)
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ExperimentError("variants", f"variant names must be distinct, {dup!r} repeats")
        object.__setattr__(self, "variants", variants)
        if self.control not in names:
            raise ExperimentError(
                "control", f"must be one of the variants {names!r}, got {self.control!r}")
        if not isinstance(self.salt, str) or "\x00" in self.salt:
            raise ExperimentError("salt", f"must be a string without NUL, got {self.salt!r}")
        if self.mode not in _MODES:
            raise ExperimentError("mode", f"must be one of {_MODES}, got {self.mode!r}")
        if not isinstance(self.active, bool):
            raise ExperimentError("active", f"must be true or false, got {self.active!r}")

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variants)

    @property
    def weights(self) -> tuple[float, ...]:
        """The configured weights, normalized to sum to 1."""
        total = math.fsum(v.weight for v in self.variants)
        return tuple(v.weight / total for v in self.variants)

    def variant(self, name: str) -> Variant:
        """The variant called ``name`` (KeyError if there is none)."""
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)


_EXPERIMENT_FIELDS = frozenset({"name", "variants", "control", "salt", "mode", "active"})
_VARIANT_FIELDS = frozenset({"name", "weight", "strategy", "settings"})


def _fields(where: str, obj: object, allowed: frozenset[str],
            required: tuple[str, ...]) -> Mapping[str, object]:
    if not isinstance(obj, Mapping):
        raise ExperimentError(where, f"must be an object, got {obj!r}")
    unknown = sorted(str(k) for k in obj if k not in allowed)
    if unknown:
        raise ExperimentError(f"{where}.{unknown[0]}",
                              f"unknown field (allowed: {', '.join(sorted(allowed))})")
    for name in required:
        if name not in obj:
            raise ExperimentError(f"{where}.{name}", "is required")
    return obj


def _load_variant(where: str, obj: object) -> Variant:
    fields = _fields(where, obj, _VARIANT_FIELDS, ("name",))
    try:
        return Variant(**fields)  # type: ignore[arg-type]  # each field is checked inside
    except ExperimentError as err:
        raise ExperimentError(f"{where}.{err.field}", err.problem) from None


def load_experiments(obj: object) -> dict[str, Experiment]:
    """Experiments by name from a parsed config ``{"experiments": [{...}, ...]}``.

    Each experiment has ``name``, ``variants`` (each ``name``, optional ``weight``
    (default 1), ``strategy``, ``settings``), ``control``, and optional ``salt``, ``mode``
    and ``active``. Unknown fields are refused, so a typo cannot silently do nothing.

    >>> cfg = {"experiments": [{"name": "recs", "control": "A",
    ...        "variants": [{"name": "A"}, {"name": "B", "strategy": "cooccurrence"}]}]}
    >>> load_experiments(cfg)["recs"].variant("B").strategy
    'cooccurrence'
    >>> cfg["experiments"][0]["variants"][1]["wieght"] = 2
    >>> load_experiments(cfg)
    Traceback (most recent call last):
    ...
    models.marketing.experiments.ExperimentError: experiments[0].variants[1].wieght: unknown field \
(allowed: name, settings, strategy, weight)
    """
    top = _fields("config", obj, frozenset({"experiments"}), ("experiments",))
    items = top["experiments"]
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise ExperimentError("experiments", f"must be a list, got {items!r}")
    out: dict[str, Experiment] = {}
    for i, item in enumerate(items):
        where = f"experiments[{i}]"
        fields = dict(_fields(where, item, _EXPERIMENT_FIELDS, ("name", "variants", "control")))
        raw_variants = fields["variants"]
        if isinstance(raw_variants, (str, bytes)) or not isinstance(raw_variants, Sequence):
            raise ExperimentError(f"{where}.variants", f"must be a list, got {raw_variants!r}")
        fields["variants"] = [_load_variant(f"{where}.variants[{j}]", v)
                              for j, v in enumerate(raw_variants)]
        try:
            exp = Experiment(**fields)  # type: ignore[arg-type]  # each field is checked inside
        except ExperimentError as err:
            raise ExperimentError(f"{where}.{err.field}", err.problem) from None
        if exp.name in out:
            raise ExperimentError(f"{where}.name", f"experiment {exp.name!r} is defined twice")
        out[exp.name] = exp
    return out


def assignment_draw(experiment: Experiment, user_id: str) -> float:
    """The user's fixed uniform number in [0, 1) for this experiment.

    A BLAKE2b hash of ``"experiment", name, salt, user_id`` (NUL-separated; see
    ``models.recommenders.bandit.uniform_from_key``): the same in every process, worker and restart
    (no ``hash()``, no random state), and unrelated across experiment names and salts.
    """
    if not isinstance(user_id, str) or not user_id:
        raise ValueError(f"user_id must be a non-empty string, got {user_id!r}")
    return uniform_from_key(user_id, f"experiment\x00{experiment.name}\x00{experiment.salt}")


def _pick(names: Sequence[str], weights: Sequence[float], u: float) -> str:
    target = u * math.fsum(weights)
    cumulative = 0.0
    for name, w in zip(names, weights, strict=True):
        cumulative += w
        if target < cumulative:
            return name
    # Rounding can leave target a hair above the last partial sum: the last arm with
    # weight gets it (never a zero-weight arm).
    return next(n for n, w in zip(reversed(names), reversed(weights), strict=True) if w > 0)


def assign(experiment: Experiment, user_id: str) -> str:
    """The variant of ``user_id`` (the pseudonymous id) by the configured weights.

    Users are placed by where their ``assignment_draw`` falls among the cumulative
    weights, in the order the variants are listed. The control for an inactive experiment.

    >>> e = Experiment("demo", [Variant("A", 9), Variant("B", 1)], control="A")
    >>> assign(e, "u1") == assign(e, "u1")
    True
    >>> sorted({assign(e, f"u{n}") for n in range(100)})
    ['A', 'B']
    """
    if not experiment.active:
        return experiment.control
    return _pick(experiment.variant_names, [v.weight for v in experiment.variants],
                 assignment_draw(experiment, user_id))


def assign_with_weights(experiment: Experiment, user_id: str,
                        weights: Mapping[str, float]) -> str:
    """The variant for a user's *first* assignment under the current bandit ``weights``
    (one finite weight >= 0 per variant, not all zero; ``BanditAllocator.weights``).

    Contract: the caller stores the result in the user's profile and uses the stored
    variant from then on, calling this only for users with no stored variant. The draw
    is fixed per user but the weights move, so calling it again later may answer
    differently; re-assigning returning users would mix their exposures and bias every
    comparison. The control for an inactive experiment.

    >>> e = Experiment("demo", [Variant("A"), Variant("B")], control="A", mode="bandit")
    >>> assign_with_weights(e, "u1", {"A": 0.0, "B": 1.0})
    'B'
    """
    names = experiment.variant_names
    if set(weights) != set(names):
        raise ValueError(f"weights must have exactly the variants {names!r}, "
                         f"got {sorted(weights)!r}")
    ws: list[float] = []
    for name in names:
        ws.append(check_non_negative(f"weight of {name!r}", weights[name]))
    if not math.fsum(ws) > 0:
        raise ValueError("at least one weight must be > 0")
    if not experiment.active:
        return experiment.control
    return _pick(names, ws, assignment_draw(experiment, user_id))


class BanditAllocator:
    """Traffic weights for a bandit-mode experiment by Thompson sampling (probability
    matching): each variant gets the posterior probability that its conversion rate is
    the best, under independent Beta(prior_successes + successes, prior_failures +
    failures) posteriors, mixed with a ``floor`` so no variant starves:
    ``weight = floor + (1 - n * floor) * P(best)``.

    Thompson rather than epsilon-greedy: its exploration shrinks as the evidence grows
    and stays where the posteriors still overlap, with no epsilon to tune; it does not
    flip all traffic on a noisy lead; and P(best) is itself a weight vector. P(best) is
    estimated from ``draws`` posterior samples with a generator seeded by ``seed``, so
    equal counts give equal weights in every worker (counts are additive: workers can
    exchange deltas and all compute the same weights). No data gives equal weights.

    Comparisons between variants of a bandit experiment are biased when conversion
    rates drift over time, because the variants saw different mixes of periods; read
    its reports with that in mind, or use fixed mode for the decision.

    >>> b = BanditAllocator(["A", "B"], floor=0.05)
    >>> b.weights()
    {'A': 0.5, 'B': 0.5}
    >>> b.observe("A", 20, 1000); b.observe("B", 60, 1000)
    >>> w = b.weights(); w["A"], round(w["B"], 3)
    (0.05, 0.95)
    """

    def __init__(
        self,
        variants: Sequence[str],
        floor: float = 0.05,
        prior_successes: float = 1.0,
        prior_failures: float = 1.0,
        draws: int = 20_000,
        seed: int = 0,
    ) -> None:
        names = list(variants)
        if not 1 <= len(names) <= MAX_VARIANTS or len(set(names)) != len(names):
            raise ValueError(f"variants must be 1 to {MAX_VARIANTS} distinct names, "
                             f"got {names!r}")
        for name in names:
            _check_id("variant", name)
        k = len(names)
        if not is_in_range(floor, 0.0, 1.0 / k):
            raise ValueError(f"floor must be in [0, 1/{k}] for {k} variants, got {floor!r}")
        self.variants: tuple[str, ...] = tuple(names)
        self.floor: float = float(floor)
        self.prior_successes: float = check_positive("prior_successes", prior_successes)
        self.prior_failures: float = check_positive("prior_failures", prior_failures)
        self.draws: int = check_int("draws", draws, low=100)
        self.seed: int = check_int("seed", seed, low=0)
        self._successes: dict[str, float] = dict.fromkeys(names, 0.0)
        self._trials: dict[str, float] = dict.fromkeys(names, 0.0)

    @classmethod
    def for_experiment(cls, experiment: Experiment, **kwargs: Any) -> BanditAllocator:
        """An allocator over ``experiment``'s variants (keyword arguments as ``__init__``)."""
        return cls(experiment.variant_names, **kwargs)

    def observe(self, variant: str, successes: float, trials: float) -> None:
        """Add ``successes`` out of ``trials`` (a delta, e.g. since the last update)."""
        if variant not in self._trials:
            raise ValueError(f"unknown variant {variant!r}")
        check_non_negative("successes", successes)
        check_non_negative("trials", trials)
        if successes > trials:
            raise ValueError(f"successes ({successes}) cannot exceed trials ({trials})")
        self._successes[variant] += float(successes)
        self._trials[variant] += float(trials)

    def counts(self) -> dict[str, tuple[float, float]]:
        """Per variant: (successes, trials) observed so far."""
        return {v: (self._successes[v], self._trials[v]) for v in self.variants}

    def probability_best(self) -> dict[str, float]:
        """Per variant: the posterior probability that its rate is the highest."""
        alpha = [self.prior_successes + self._successes[v] for v in self.variants]
        beta = [self.prior_failures + self._trials[v] - self._successes[v]
                for v in self.variants]
        k = len(self.variants)
        if len(set(zip(alpha, beta, strict=True))) == 1:
            # identical posteriors: exactly even, not even up to sampling noise
            return dict.fromkeys(self.variants, 1.0 / k)
        rng = np.random.default_rng(self.seed)
        samples = rng.beta(np.array(alpha), np.array(beta), size=(self.draws, k))
        wins = np.bincount(np.argmax(samples, axis=1), minlength=k)
        return {v: float(wins[i]) / self.draws for i, v in enumerate(self.variants)}

    def weights(self) -> dict[str, float]:
        """Traffic weights per variant: each >= ``floor``, summing to 1."""
        k = len(self.variants)
        share = 1.0 - k * self.floor
        return {v: self.floor + share * p for v, p in self.probability_best().items()}


# -- the running experiment -----------------------------------------------------------

DEFAULT_VARIANT = "default"
WEIGHTS_REFRESH_S = 5.0


@dataclass(frozen=True, slots=True)
class Assignment:
    experiment: str | None
    variant: str
    strategy: str | None
    new: bool  # first assignment of this user to this experiment
    overrides: Mapping[str, float] | None = None  # the variant's serving settings


# Users we may not personalize for (opted out) take part in no experiment.
NO_EXPERIMENT = Assignment(None, DEFAULT_VARIANT, None, False)


class Running:
    """The experiment that assigns variants (the first active one), or none.

    A user keeps a stored assignment while its variant exists; otherwise they are
    assigned by hash, or in bandit mode by the allocator's weights, refreshed at most
    every ``WEIGHTS_REFRESH_S`` (Thompson draws are too slow for every event).

    >>> r = Running(load_experiments({"experiments": [{"name": "e", "control": "A",
    ...     "variants": [{"name": "A", "strategy": "popularity"}]}]}))
    >>> a = r.assign("u1", None); (a.variant, a.strategy, a.new)
    ('A', 'popularity', True)
    >>> r.assign("u1", {"e": ["A", 0.0]}).new
    False
    """

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
                          {k: float(v) for k, v in chosen.settings.items()} or None)

    def observe(self, variant: str, successes: int, trials: int) -> None:
        """Feed the bandit allocator (clicks on, and recommendations of, a variant)."""
        if self.allocator is not None and self.experiment is not None \
                and variant in self.experiment.variant_names:
            self.allocator.observe(variant, successes, trials)
