"""Audiences for campaigns: named rules over a user's profile and segment, loaded from a
small JSON rule language (parsed and checked here, never ``eval``-ed).

A config is ``{"audiences": [{"name": ..., <one condition>}, ...]}``. A condition is an
object with exactly one kind key, plus that kind's parameters:

- ``{"segment": "s1"}`` / ``{"segment": ["s1", "s3"]}``: the user is in (one of) them;
- ``{"not_segment": "s2"}`` (or a list): the user is in none of them (a user with no
  segment yet is in none);
- ``{"purchased_category": "Action"}``, optionally ``"within_days": 30``: see below;
- ``{"interest_at_least": "Action", "share": 0.3}``: at least that share of the user's
  recency-weighted interest is in the category;
- ``{"spend_at_least": 100}``: total spend;
- ``{"active_within_days": 7}``: last seen at most that many days before now;
- ``{"all": [...]}``, ``{"any": [...]}`` (non-empty lists) and ``{"not": {...}}``.

``purchased_category`` looks at the categories (``categories_of``) of the items in
``UserProfile.purchased``, which holds the last ``seen_max`` distinct items bought and no
times. So ``within_days`` cannot be exact: it additionally requires what a purchase in
the category within the window implies, namely that the user was last seen within the
window and that their decayed interest in the category is at least what one purchase
``within_days`` ago would still leave (``PURCHASE_INTEREST`` halved every
``half_life_ms``). Nobody who bought in the category within the window is missed; a
user who bought in it earlier and has since shown enough interest in it (about three
clicks' worth per purchase) is let in too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from models.checks import check_int, check_positive, describe_range, is_in_range
from models.users.profile import PURCHASE_INTEREST, UserProfile

DAY_MS = 86_400_000
MAX_AUDIENCES = 100
# Bounds on one audience's rule, so evaluating every audience on every event stays cheap.
MAX_CONDITIONS = 64
MAX_DEPTH = 8
MAX_DAYS = 36_500.0
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class AudienceError(ValueError):
    """A config that is not a valid set of audiences; ``path`` names the field at fault.

    >>> try:
    ...     load_audiences({"audiences": [{"name": "x", "spend_at_least": -1}]})
    ... except AudienceError as e:
    ...     print(e.path, "|", e)
    audiences[0].spend_at_least | audiences[0].spend_at_least: must be a finite number >= 0, got -1
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass(slots=True)
class _Facts:
    """What one evaluation looks at; derived values are computed once, when first needed."""

    profile: UserProfile
    segment: str | None
    now_ms: int
    categories_of: Callable[[str], Sequence[str]]
    half_life_ms: float
    _interests: dict[str, float] | None = None
    _bought: dict[str, bool] = field(default_factory=dict)

    def interests(self) -> dict[str, float]:
        """Finite, positive interest scores as stored (at ``interest_ts_ms``)."""
        if self._interests is None:
            raw = self.profile.interests if isinstance(self.profile.interests, dict) else {}
            self._interests = {
                c: float(s) for c, s in raw.items()
                if isinstance(s, (int, float)) and math.isfinite(s) and s > 0
            }
        return self._interests

    def bought_in(self, category: str) -> bool:
        if category not in self._bought:
            found = False
            for item_id in self.profile.purchased:
                cats = self.categories_of(item_id)
                if category == cats if isinstance(cats, str) else category in cats:
                    found = True
                    break
            self._bought[category] = found
        return self._bought[category]

    def days_since_seen(self) -> float | None:
        last = self.profile.last_seen_ms
        if last is None:
            return None
        return max(0, self.now_ms - last) / DAY_MS


@dataclass(frozen=True, slots=True)
class InSegment:
    """The user's segment is one of ``segments`` (``negated``: none of them)."""

    segments: frozenset[str]
    negated: bool = False

    def holds(self, f: _Facts) -> bool:
        return (f.segment in self.segments) != self.negated


@dataclass(frozen=True, slots=True)
class PurchasedCategory:
    """Bought an item of ``category`` (within ``within_days``, approximately: see the
    module docstring)."""

    category: str
    within_days: float | None = None

    def holds(self, f: _Facts) -> bool:
        if not f.bought_in(self.category):
            return False
        if self.within_days is None:
            return True
        days = f.days_since_seen()
        if days is None or days > self.within_days:
            return False
        elapsed = max(0, f.now_ms - f.profile.interest_ts_ms)
        score = f.interests().get(self.category, 0.0) * 2.0 ** (-elapsed / f.half_life_ms)
        floor = PURCHASE_INTEREST * 2.0 ** (-self.within_days * DAY_MS / f.half_life_ms)
        return score >= floor * (1.0 - 1e-9)


@dataclass(frozen=True, slots=True)
class InterestAtLeast:
    """At least ``share`` of the user's interest is in ``category`` (decay scales every
    category alike, so the share does not change with time alone)."""

    category: str
    share: float

    def holds(self, f: _Facts) -> bool:
        scores = f.interests()
        total = sum(scores.values())
        return total > 0.0 and scores.get(self.category, 0.0) / total >= self.share


@dataclass(frozen=True, slots=True)
class SpendAtLeast:
    """Total spend is at least ``amount``."""

    amount: float

    def holds(self, f: _Facts) -> bool:
        spend = f.profile.spend
        return isinstance(spend, (int, float)) and math.isfinite(spend) and spend >= self.amount


@dataclass(frozen=True, slots=True)
class ActiveWithinDays:
    """Last seen at most ``days`` days before now."""

    days: float

    def holds(self, f: _Facts) -> bool:
        days = f.days_since_seen()
        return days is not None and days <= self.days


@dataclass(frozen=True, slots=True)
class AllOf:
    """Every condition holds."""

    conditions: tuple[Condition, ...]

    def holds(self, f: _Facts) -> bool:
        return all(c.holds(f) for c in self.conditions)


@dataclass(frozen=True, slots=True)
class AnyOf:
    """At least one condition holds."""

    conditions: tuple[Condition, ...]

    def holds(self, f: _Facts) -> bool:
        return any(c.holds(f) for c in self.conditions)


@dataclass(frozen=True, slots=True)
class Not:
    """The condition does not hold."""

    condition: Condition

    def holds(self, f: _Facts) -> bool:
        return not self.condition.holds(f)


Condition = (
    InSegment | PurchasedCategory | InterestAtLeast | SpendAtLeast | ActiveWithinDays
    | AllOf | AnyOf | Not
)


@dataclass(frozen=True, slots=True)
class Audience:
    """A named rule; build them with ``load_audiences``.

    >>> a = load_audiences({"audiences": [{"name": "big", "spend_at_least": 100}]})[0]
    >>> a.name, evaluate(a, UserProfile(spend=150.0), None, 0, lambda i: (), half_life_ms=1.0)
    ('big', True)
    """

    name: str
    condition: Condition


class Changes(NamedTuple):
    """Audiences a user joined and left, each sorted by name."""

    joined: list[str]
    left: list[str]


def load_audiences(obj: object) -> list[Audience]:
    """Parse and check a config (already decoded from JSON); AudienceError names the
    field at fault.

    >>> cfg = {"audiences": [{"name": "action-buyers", "all": [
    ...     {"purchased_category": "Action", "within_days": 30}, {"not_segment": "s2"}]}]}
    >>> load_audiences(cfg)[0].condition.conditions[1]
    InSegment(segments=frozenset({'s2'}), negated=True)
    """
    if not isinstance(obj, Mapping):
        raise AudienceError("config", f"must be an object, got {type(obj).__name__}")
    extra = sorted(str(k) for k in obj if k != "audiences")
    if extra:
        raise AudienceError("config", f"unknown key(s) {', '.join(extra)}; expected 'audiences'")
    items = obj.get("audiences")
    if not isinstance(items, list):
        raise AudienceError("audiences", "must be a list of audiences")
    if len(items) > MAX_AUDIENCES:
        raise AudienceError("audiences", f"at most {MAX_AUDIENCES} audiences, got {len(items)}")
    out: list[Audience] = []
    names: set[str] = set()
    for n, item in enumerate(items):
        path = f"audiences[{n}]"
        if not isinstance(item, Mapping):
            raise AudienceError(path, f"must be an object, got {type(item).__name__}")
        name = item.get("name")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise AudienceError(
                f"{path}.name",
                f"must be 1-64 letters, digits, '.', '_' or '-' (not first), got {name!r}",
            )
        if name in names:
            raise AudienceError(f"{path}.name", f"duplicate audience name {name!r}")
        names.add(name)
        rule = {k: v for k, v in item.items() if k != "name"}
        budget = [MAX_CONDITIONS]
        out.append(Audience(name, _parse(rule, path, 1, budget)))
    return out


def evaluate(
    audience: Audience,
    profile: UserProfile,
    segment: str | None,
    now_ms: int,
    categories_of: Callable[[str], Sequence[str]],
    *,
    half_life_ms: float,
) -> bool:
    """Whether the user is in ``audience`` at ``now_ms``. ``half_life_ms`` is the profiles'
    interest half-life (used by ``purchased_category`` with ``within_days``).

    >>> from models.users.profile import apply_purchase
    >>> p = apply_purchase(UserProfile(), "i1", 0, 20.0, ["Action"], half_life_ms=7 * DAY_MS)
    >>> cfg = {"audiences": [{"name": "a", "purchased_category": "Action", "within_days": 30}]}
    >>> a = load_audiences(cfg)[0]
    >>> cats = {"i1": ("Action",)}.get
    >>> [evaluate(a, p, None, d * DAY_MS, lambda i: cats(i, ()), half_life_ms=7 * DAY_MS)
    ...  for d in (1, 29, 31)]
    [True, True, False]
    """
    return audience.condition.holds(_facts(profile, segment, now_ms, categories_of, half_life_ms))


def memberships(
    audiences: Sequence[Audience],
    profile: UserProfile,
    segment: str | None,
    now_ms: int,
    categories_of: Callable[[str], Sequence[str]],
    *,
    half_life_ms: float,
) -> set[str]:
    """Names of the audiences the user is in (derived values computed once for all).

    >>> auds = load_audiences({"audiences": [{"name": "big", "spend_at_least": 100},
    ...                                      {"name": "s1", "segment": "s1"}]})
    >>> sorted(memberships(auds, UserProfile(spend=500.0), "s1", 0, lambda i: (),
    ...                    half_life_ms=1.0))
    ['big', 's1']
    """
    f = _facts(profile, segment, now_ms, categories_of, half_life_ms)
    return {a.name for a in audiences if a.condition.holds(f)}


def changes(before: set[str], after: set[str]) -> Changes:
    """What to publish when a user's audiences go from ``before`` to ``after``.

    >>> changes({"a", "b"}, {"b", "c"})
    Changes(joined=['c'], left=['a'])
    """
    return Changes(sorted(after - before), sorted(before - after))


def _facts(
    profile: UserProfile,
    segment: str | None,
    now_ms: int,
    categories_of: Callable[[str], Sequence[str]],
    half_life_ms: float,
) -> _Facts:
    check_int("now_ms", now_ms, low=0)
    hl = check_positive("half_life_ms", half_life_ms, plain=True)
    if not callable(categories_of):
        raise ValueError("categories_of must be callable (item id -> categories)")
    return _Facts(profile, segment, now_ms, categories_of, hl)


# Each kind's optional and required parameters besides the kind key itself.
_PARAMS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "segment": (frozenset(), frozenset()),
    "not_segment": (frozenset(), frozenset()),
    "purchased_category": (frozenset({"within_days"}), frozenset()),
    "interest_at_least": (frozenset(), frozenset({"share"})),
    "spend_at_least": (frozenset(), frozenset()),
    "active_within_days": (frozenset(), frozenset()),
    "all": (frozenset(), frozenset()),
    "any": (frozenset(), frozenset()),
    "not": (frozenset(), frozenset()),
}


def _parse(obj: object, path: str, depth: int, budget: list[int]) -> Condition:
    if not isinstance(obj, Mapping):
        raise AudienceError(path, f"a condition must be an object, got {type(obj).__name__}")
    if depth > MAX_DEPTH:
        raise AudienceError(path, f"conditions nest at most {MAX_DEPTH} deep")
    budget[0] -= 1
    if budget[0] < 0:
        raise AudienceError(path, f"an audience has at most {MAX_CONDITIONS} conditions")
    kinds = [k for k in obj if k in _PARAMS]
    if len(kinds) != 1:
        found = f"got {', '.join(map(str, kinds))}" if kinds else "got none"
        raise AudienceError(
            path, f"needs exactly one condition kind of {', '.join(_PARAMS)}; {found}"
        )
    kind = kinds[0]
    optional, required = _PARAMS[kind]
    for key in obj:
        if key != kind and key not in optional | required:
            raise AudienceError(f"{path}.{key}", f"unknown parameter for {kind!r}")
    for key in sorted(required):
        if key not in obj:
            raise AudienceError(f"{path}.{key}", f"required by {kind!r}")
    value = obj[kind]
    here = f"{path}.{kind}"
    if kind in ("segment", "not_segment"):
        return InSegment(_names(value, here), negated=kind == "not_segment")
    if kind == "purchased_category":
        within = obj.get("within_days")
        days = None if within is None else _number(within, f"{path}.within_days", 0.0, MAX_DAYS,
                                                   low_open=True)
        return PurchasedCategory(_category(value, here), days)
    if kind == "interest_at_least":
        share = _number(obj["share"], f"{path}.share", 0.0, 1.0, low_open=True)
        return InterestAtLeast(_category(value, here), share)
    if kind == "spend_at_least":
        return SpendAtLeast(_number(value, here, 0.0, math.inf))
    if kind == "active_within_days":
        return ActiveWithinDays(_number(value, here, 0.0, MAX_DAYS, low_open=True))
    if kind == "not":
        return Not(_parse(value, here, depth + 1, budget))
    if not isinstance(value, list) or not value:
        raise AudienceError(here, "must be a non-empty list of conditions")
    parts = tuple(_parse(v, f"{here}[{n}]", depth + 1, budget) for n, v in enumerate(value))
    return AllOf(parts) if kind == "all" else AnyOf(parts)


def _names(value: object, path: str) -> frozenset[str]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) and v for v in values):
        raise AudienceError(path, f"must be a segment name or a non-empty list of them, "
                                  f"got {value!r}")
    return frozenset(values)


def _category(value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise AudienceError(path, f"must be a non-empty category name, got {value!r}")
    return value


def _number(
    value: object, path: str, low: float, high: float, *, low_open: bool = False
) -> float:
    if not is_in_range(value, low, high, low_open=low_open, plain=True):
        what = describe_range(low, high, low_open=low_open)
        raise AudienceError(path, f"must be {what}, got {value!r}")
    return float(value)
