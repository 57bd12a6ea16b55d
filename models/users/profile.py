"""A user's profile as kept in the profiles table, and the pure functions that update it.

``apply_click`` and ``apply_purchase`` never modify their argument: they return a new
profile, so ``table[k] = apply_click(table[k], ...)`` is safe and replays are deterministic.
(``in_place=True`` is for a caller that owns the profile it passes: no copy is made.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.checks import check_int, check_number, check_positive, check_ts, is_number
from models.recommenders.base import check_item_id
from models.recommenders.catalogue import check_categories

# Interest added per category of the item: a purchase says more about taste than a click.
CLICK_INTEREST = 1.0
PURCHASE_INTEREST = 3.0
# At most this many categories are kept; the weakest go first.
MAX_INTERESTS = 64
# Scores decayed below this are forgotten: they can no longer change any ranking.
NEGLIGIBLE_INTEREST = 1e-9
# Version of the stored form written by ``to_dict``.
FORMAT_VERSION = 1
# Largest amount one purchase may carry: far above any real one (ingest caps price x
# quantity at 1e11), far below where a sum of them could overflow a float (spend then
# turns inf, which the table's JSON writes as null and no later read accepts).
MAX_AMOUNT = 1e12


@dataclass(slots=True)
class UserProfile:
    """What we know about one (pseudonymous) user.

    ``interests`` maps a category to a recency-weighted score valid at ``interest_ts_ms``
    (see ``interests_at``). ``recent_items`` (most recent last), ``seen`` and ``purchased``
    hold no duplicates; when full the oldest entry goes, and an item seen again moves to
    the end. ``last_recommended`` is the latest list served to the user and
    ``last_strategy`` the strategy that produced it (to credit a later hit to it).
    ``model_state`` is the user's own state of the online models (matrix-factorization
    factors: user-keyed state lives here, in the table, and goes with the profile when
    it is erased); ``served_counts`` counts how often each recently served item was
    recommended (for the re-recommendation cap; bounded, oldest dropped first).
    ``served_recs`` remembers the latest served recommendations for attribution
    (``models.marketing.attribution``: id, strategy, variant, ts, items, clicked).
    ``experiments`` maps an experiment to ``[variant, attributed revenue]``: the variant
    the user was first assigned (kept, so bandit-mode allocation never moves a user) and
    the revenue credited to the user in it (for the per-user revenue statistics).
    ``segment`` is the user's segment (``models.marketing.segments``; "" until assigned) and
    ``audiences`` the configured audiences they are in (``models.marketing.audiences``).
    ``opted_out`` is set by a ``privacy`` opt_out (cleared by opt_in). An opted-out
    user's stored profile is ``opted_out_profile()``: the flag and nothing else (data
    minimization); they get non-personal recommendations and no personalized ad bid,
    and their events update nothing but the dedupe window (``models.engine``).

    >>> p = apply_click(UserProfile(), "i1", 1_000, ["Comedy"], half_life_ms=3_600_000)
    >>> p.clicks, p.recent_items, p.interests
    (1, ['i1'], {'Comedy': 1.0})
    >>> UserProfile.from_dict(p.to_dict()) == p
    True
    """

    clicks: int = 0
    purchases: int = 0
    interests: dict[str, float] = field(default_factory=dict)
    interest_ts_ms: int = 0
    recent_items: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    purchased: list[str] = field(default_factory=list)
    spend: float = 0.0
    first_seen_ms: int | None = None
    last_seen_ms: int | None = None
    last_recommended: list[str] = field(default_factory=list)
    last_strategy: str = ""
    model_state: dict[str, Any] = field(default_factory=dict)
    served_counts: dict[str, int] = field(default_factory=dict)
    opted_out: bool = False
    served_recs: list[list[Any]] = field(default_factory=list)
    experiments: dict[str, list[Any]] = field(default_factory=dict)
    segment: str = ""
    audiences: list[str] = field(default_factory=list)

    def copy(self) -> UserProfile:
        """A copy sharing no mutable containers with this profile."""
        # Every field, by name (dataclasses.replace would do the same, several times slower).
        return UserProfile(
            clicks=self.clicks,
            purchases=self.purchases,
            interests=dict(self.interests),
            interest_ts_ms=self.interest_ts_ms,
            recent_items=list(self.recent_items),
            seen=list(self.seen),
            purchased=list(self.purchased),
            spend=self.spend,
            first_seen_ms=self.first_seen_ms,
            last_seen_ms=self.last_seen_ms,
            last_recommended=list(self.last_recommended),
            last_strategy=self.last_strategy,
            model_state=dict(self.model_state),
            served_counts=dict(self.served_counts),
            opted_out=self.opted_out,
            served_recs=[[*e[:4], list(e[4]), e[5]] for e in self.served_recs],
            experiments={k: list(v) for k, v in self.experiments.items()},
            segment=self.segment,
            audiences=list(self.audiences),
        )

    def to_dict(self) -> dict[str, Any]:
        """A compact JSON-able dict (short keys, defaults left out); ``from_dict`` inverts it."""
        d: dict[str, Any] = {"v": FORMAT_VERSION}
        if self.clicks:
            d["c"] = self.clicks
        if self.purchases:
            d["p"] = self.purchases
        if self.interests:
            d["i"] = dict(self.interests)
        if self.interest_ts_ms:
            d["it"] = self.interest_ts_ms
        if self.recent_items:
            d["r"] = list(self.recent_items)
        if self.seen:
            d["s"] = list(self.seen)
        if self.purchased:
            d["b"] = list(self.purchased)
        if self.spend:
            d["m"] = self.spend
        if self.first_seen_ms is not None:
            d["f"] = self.first_seen_ms
        if self.last_seen_ms is not None:
            d["l"] = self.last_seen_ms
        if self.last_recommended:
            d["lr"] = list(self.last_recommended)
        if self.last_strategy:
            d["ls"] = self.last_strategy
        if self.model_state:
            d["ms"] = dict(self.model_state)
        if self.served_counts:
            d["sc"] = dict(self.served_counts)
        if self.opted_out:
            d["oo"] = True
        if self.served_recs:
            d["rr"] = [[*e[:4], list(e[4]), e[5]] for e in self.served_recs]
        if self.experiments:
            d["ex"] = {k: list(v) for k, v in self.experiments.items()}
        if self.segment:
            d["sg"] = self.segment
        if self.audiences:
            d["au"] = list(self.audiences)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UserProfile:
        """Rebuild a profile from ``to_dict`` output; missing keys take their defaults and
        unknown keys are ignored, so older and newer stored forms both load."""
        if not isinstance(d, Mapping):
            raise ValueError(f"a stored profile must be a mapping, got {type(d).__name__}")
        first, last = d.get("f"), d.get("l")
        return cls(
            clicks=int(d.get("c", 0)),
            purchases=int(d.get("p", 0)),
            interests=_interests(d.get("i", {})),
            interest_ts_ms=int(d.get("it", 0)),
            recent_items=_strings(d.get("r", ())),
            seen=_strings(d.get("s", ())),
            purchased=_strings(d.get("b", ())),
            spend=float(d.get("m", 0.0)),
            first_seen_ms=None if first is None else int(first),
            last_seen_ms=None if last is None else int(last),
            last_recommended=_strings(d.get("lr", ())),
            last_strategy=str(d.get("ls", "")),
            model_state=dict(d.get("ms", {})),
            served_counts=dict(d.get("sc", {})),
            opted_out=bool(d.get("oo", False)),
            served_recs=[[str(e[0]), str(e[1]), str(e[2]), int(e[3]), [str(i) for i in e[4]],
                          bool(e[5])] for e in d.get("rr", ())],
            experiments={str(k): [str(v[0]), float(v[1])] for k, v in d.get("ex", {}).items()},
            segment=str(d.get("sg", "")),
            audiences=[str(a) for a in d.get("au", ())],
        )


_STR = frozenset({str})
_FLOAT = frozenset({float})


def _strings(values: Any) -> list[str]:
    """``[str(x) for x in values]``: a list of the stored strings (a new list)."""
    out = list(values)
    # Stored lists are strings already: one C-level type scan instead of str() each.
    if set(map(type, out)) <= _STR:
        return out
    return [str(x) for x in out]


def _interests(values: Any) -> dict[str, float]:
    """``{str(c): float(s) ...}`` of the stored interests (a new dict)."""
    if type(values) is dict and set(map(type, values)) <= _STR \
            and set(map(type, values.values())) <= _FLOAT:
        return dict(values)
    return {str(c): float(s) for c, s in values.items()}


def opted_out_profile() -> UserProfile:
    """The whole stored profile of an opted-out user: the flag, nothing learned.

    >>> opted_out_profile().to_dict()
    {'v': 1, 'oo': True}
    """
    return UserProfile(opted_out=True)


def apply_counted(
    p: UserProfile, kind: str, ts_ms: int, amount: float = 0.0
) -> UserProfile:
    """A new profile counting one click or purchase without learning from it: the counts,
    spend, first and last seen change; items, interests and model state do not.

    For rate-limited events (a bot burst): counted exactly, but a flood of one user's
    events must not shape their history or taste. ``p`` is not modified.

    >>> p = apply_counted(UserProfile(), "purchase", 5_000, 2.5)
    >>> p.purchases, p.spend, p.last_seen_ms, p.recent_items
    (1, 2.5, 5000, [])
    """
    if kind not in ("click", "purchase"):
        raise ValueError(f"kind must be click or purchase, got {kind!r}")
    check_number("amount", amount, 0.0, MAX_AMOUNT)
    ts = check_ts("ts_ms", ts_ms)
    q = p.copy()
    q.first_seen_ms = ts if q.first_seen_ms is None else min(q.first_seen_ms, ts)
    q.last_seen_ms = ts if q.last_seen_ms is None else max(q.last_seen_ms, ts)
    if kind == "purchase":
        q.purchases += 1
        q.spend += float(amount)
    else:
        q.clicks += 1
    return q


def is_expired(profile: Mapping[str, Any] | None, touched_ms: int | None,
               cutoff_ms: int) -> bool:
    """Whether a stored profile is due for deletion under a retention limit: its last
    activity (``touched_ms``, the wall-clock time of the last write; else the profile's
    own ``last_seen``, event time) is before ``cutoff_ms``.

    An opted-out profile never expires: the opt-out is a standing instruction that must
    outlive any retention period (it holds nothing else). A profile with no known
    activity time does not expire either.

    >>> is_expired({"v": 1, "l": 10}, None, 11), is_expired({"v": 1, "l": 10}, 20, 11)
    (True, False)
    >>> is_expired({"v": 1, "oo": True}, 0, 11), is_expired(None, 0, 11)
    (False, False)
    """
    if profile is None or profile.get("oo"):
        return False
    last = touched_ms if touched_ms is not None else profile.get("l")
    if not is_number(last):
        return False
    return last < cutoff_ms


def apply_click(
    p: UserProfile,
    item_id: str,
    ts_ms: int,
    categories: Sequence[str] = (),
    *,
    half_life_ms: float,
    recent_max: int = 50,
    seen_max: int = 500,
    in_place: bool = False,
) -> UserProfile:
    """A new profile with one click on ``item_id`` at ``ts_ms`` (``p`` is not modified).

    Each distinct category of the item gains ``CLICK_INTEREST``. ``in_place=True``
    updates and returns ``p`` itself instead (for a caller that owns ``p``: no copy);
    ``p.interests`` may then be replaced by a new dict.
    """
    q = _interacted(p, item_id, ts_ms, categories, CLICK_INTEREST, half_life_ms,
                    recent_max, seen_max, in_place)
    q.clicks += 1
    return q


def apply_purchase(
    p: UserProfile,
    item_id: str,
    ts_ms: int,
    amount: float,
    categories: Sequence[str] = (),
    *,
    half_life_ms: float,
    recent_max: int = 50,
    seen_max: int = 500,
    in_place: bool = False,
) -> UserProfile:
    """A new profile with one purchase of ``item_id`` worth ``amount`` (``p`` is not modified).

    The item also counts as seen and recent; each distinct category gains
    ``PURCHASE_INTEREST``. ``amount`` must be in [0, ``MAX_AMOUNT``]. ``in_place``: as
    for ``apply_click``.
    """
    check_number("amount", amount, 0.0, MAX_AMOUNT)
    q = _interacted(p, item_id, ts_ms, categories, PURCHASE_INTEREST, half_life_ms,
                    recent_max, seen_max, in_place)
    q.purchases += 1
    q.spend += float(amount)
    _push(q.purchased, item_id, seen_max)
    return q


def note_served(p: UserProfile, items: Sequence[str], strategy: str, keep: int = 100) -> None:
    """Record in ``p`` (in place) that ``items`` were just recommended by ``strategy``.

    ``served_counts`` keeps the ``keep`` most recently served items: an item served
    again moves to the end. ``keep=0`` keeps none (no repeat cap is set, so counting
    would only grow every profile).
    """
    p.last_recommended = list(items)
    p.last_strategy = strategy
    counts = p.served_counts
    if keep <= 0:
        counts.clear()
        return
    for item_id in items:
        counts[item_id] = counts.pop(item_id, 0) + 1
    if len(counts) > keep:
        for item_id in list(counts)[: len(counts) - keep]:
            del counts[item_id]


def interests_at(p: UserProfile, now_ms: int, half_life_ms: float) -> dict[str, float]:
    """The interest scores decayed to ``now_ms`` (a time before ``interest_ts_ms`` counts
    as ``interest_ts_ms``: scores are never inflated)."""
    hl = check_positive("half_life_ms", half_life_ms)
    factor = 2.0 ** (-max(0, check_ts("now_ms", now_ms) - p.interest_ts_ms) / hl)
    return {c: s * factor for c, s in p.interests.items()}


def top_interests(
    p: UserProfile, now_ms: int, half_life_ms: float, n: int = 3
) -> list[tuple[str, float]]:
    """The ``n`` strongest categories as of ``now_ms``, best first (ties by name)."""
    check_int("n", n, low=0)
    scores = interests_at(p, now_ms, half_life_ms)
    return sorted(scores.items(), key=lambda cs: (-cs[1], cs[0]))[:n]


def _interacted(
    p: UserProfile,
    item_id: str,
    ts_ms: int,
    categories: Sequence[str],
    weight: float,
    half_life_ms: float,
    recent_max: int,
    seen_max: int,
    in_place: bool = False,
) -> UserProfile:
    check_item_id(item_id)  # a profile stores it: a non-empty string of valid Unicode
    ts = check_ts("ts_ms", ts_ms)
    hl = check_positive("half_life_ms", half_life_ms)
    check_int("recent_max", recent_max, low=1)
    check_int("seen_max", seen_max, low=1)
    cats = check_categories(categories)
    q = p if in_place else p.copy()
    _push(q.recent_items, item_id, recent_max)
    _push(q.seen, item_id, seen_max)
    q.first_seen_ms = ts if q.first_seen_ms is None else min(q.first_seen_ms, ts)
    q.last_seen_ms = ts if q.last_seen_ms is None else max(q.last_seen_ms, ts)
    if cats:
        _add_interest(q, cats, ts, weight, hl)
    return q


def _add_interest(
    q: UserProfile, categories: Sequence[str], ts: int, weight: float, hl: float
) -> None:
    if ts >= q.interest_ts_ms:
        factor = 2.0 ** (-(ts - q.interest_ts_ms) / hl)
        if factor != 1.0:
            q.interests = {
                c: s * factor for c, s in q.interests.items() if s * factor >= NEGLIGIBLE_INTEREST
            }
        q.interest_ts_ms = ts
    else:
        # A late event counts with the weight it has at interest_ts: time never runs back.
        weight *= 2.0 ** (-(q.interest_ts_ms - ts) / hl)
        if weight < NEGLIGIBLE_INTEREST:
            return
    interests = q.interests
    for cat in categories:
        interests[cat] = interests.get(cat, 0.0) + weight
    if len(interests) > MAX_INTERESTS:
        weakest = sorted(interests.items(), key=lambda cs: (cs[1], cs[0]))
        for cat, _ in weakest[: len(interests) - MAX_INTERESTS]:
            del interests[cat]


def _push(items: list[str], item_id: str, cap: int) -> None:
    """Append ``item_id`` (moving it if present), then drop the oldest beyond ``cap``."""
    try:  # one scan of the list, found or not
        items.remove(item_id)
    except ValueError:
        pass
    items.append(item_id)
    if len(items) > cap:
        del items[: len(items) - cap]
