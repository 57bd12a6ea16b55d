"""Click prediction for ads: hashed binary features and an FTRL-Proximal logistic model.

``user_view`` summarizes a profile for the wire, ``ad_features`` turns one (request, ad)
pair into hashed indices, ``PctrModel`` predicts and learns, ``PctrQuality`` scores it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import deque
from collections.abc import Container, Mapping, Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final, TypeGuard

import numpy as np

from models.checks import (
    check_int,
    check_number,
    check_positive,
    check_probability,
    is_integral,
    is_real,
)
from models.users.profile import UserProfile, top_interests

HASH_BITS: Final = 20
_DIM: Final = 1 << HASH_BITS
_DIM1: Final = _DIM - 1
# Predictions stay in [P_MIN, 1 - P_MIN]: a log loss is then at most -log(P_MIN) ~ 13.8.
P_MIN: Final = 1e-6
_MAX_LOGIT: Final = math.log((1.0 - P_MIN) / P_MIN)
# Largest example weight learn_one takes: bigger ones would overflow the squared gradients.
MAX_WEIGHT: Final = 1e6

# user_view: how many interests travel, and the caps of the log2 buckets.
VIEW_INTERESTS: Final = 5
RECENCY_CAP: Final = 12  # log2 of hours: 2**12 h is about half a year
FREQUENCY_CAP: Final = 12
_VIEW_BYTES: Final = 240  # budget for the interests, so the JSON stays under 300 bytes
_MAX_NAME: Final = 64  # longer category / segment names are dropped, never truncated

# ad_features: bounds on untrusted request content.
_MAX_CATEGORIES: Final = 16
_MAX_CONTEXT: Final = 16
_MAX_VALUE_LEN: Final = 128
_MAX_ABS_NUMBER: Final = 1e9


@lru_cache(maxsize=1 << 15)
def hash_feature(name: str) -> int:
    """The index of feature ``name`` in [1, 2**HASH_BITS); 0 is the bias.

    blake2b, not ``hash()``: every process and every restart maps a name to the same index.

    >>> hash_feature("c=spring-sale") == hash_feature("c=spring-sale")
    True
    >>> 1 <= hash_feature("anything") < 2**HASH_BITS
    True
    """
    digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % (_DIM - 1) + 1


def user_view(
    profile: UserProfile | None, now_ms: int, half_life_ms: float, opted_out: bool = False
) -> dict[str, Any]:
    """A compact JSON-able summary of ``profile`` for ad features (it travels on a topic).

    ``{"i": [[category, share], ...], "r": recency, "f": frequency, "s": segment}``: the
    top interests by decayed score with shares summing to 1 (3 decimals), the log2 bucket
    of hours since last seen (-1 unknown) and of clicks + purchases, and the segment (""
    for none). An opted-out user (``opted_out`` or the profile's flag) gives
    ``{"np": True}``, no profile ``{}``: no user features at all, a contextual bid.

    >>> from models.users.profile import apply_click
    >>> p = apply_click(UserProfile(), "i1", 0, ["Comedy"], half_life_ms=3_600_000)
    >>> p = apply_click(p, "i2", 0, ["Comedy", "Drama"], half_life_ms=3_600_000)
    >>> user_view(p, now_ms=3 * 3_600_000, half_life_ms=3_600_000)
    {'i': [['Comedy', 0.667], ['Drama', 0.333]], 'r': 2, 'f': 1, 's': ''}
    >>> user_view(p, 0, 3_600_000, opted_out=True), user_view(None, 0, 3_600_000)
    ({'np': True}, {})
    """
    if opted_out or (profile is not None and profile.opted_out):
        return {"np": True}
    if profile is None:
        return {}
    top = [
        (c, s)
        for c, s in top_interests(profile, now_ms, half_life_ms, VIEW_INTERESTS)
        if s > 0.0 and math.isfinite(s) and len(c) <= _MAX_NAME
    ]
    budget = _VIEW_BYTES
    kept: list[tuple[str, float]] = []
    for c, s in top:
        # the entry ["<cat>", 0.123] and its separator; json's \u escapes are never
        # shorter than UTF-8, so this bounds orjson's output too
        cost = _json_len(c) + 11
        if cost > budget:
            break
        budget -= cost
        kept.append((c, s))
    total = sum(s for _, s in kept)
    # A share never rounds to 0: ad_features would drop that interest.
    interests = [[c, max(0.001, round(s / total, 3))] for c, s in kept] if total > 0 else []
    last = profile.last_seen_ms
    if last is None:
        recency = -1
    else:
        hours = max(0, now_ms - last) / 3_600_000
        recency = min(RECENCY_CAP, int(math.log2(1.0 + hours)))
    frequency = min(FREQUENCY_CAP, int(math.log2(1 + max(0, profile.clicks + profile.purchases))))
    segment = profile.segment if len(profile.segment) <= _MAX_NAME else ""
    return {"i": interests, "r": recency, "f": frequency, "s": segment}


@lru_cache(maxsize=1 << 12)
def _json_len(name: str) -> int:
    """The length of ``name`` as a JSON string (a view's few categories come back often)."""
    return len(json.dumps(name))


def _valid_name(v: object) -> TypeGuard[str]:
    return isinstance(v, str) and 0 < len(v) <= _MAX_NAME


def _feature_number(v: object) -> float | None:
    """``v`` as a finite float, None if it is not a number. Values that compare equal
    (1, 1.0, True, Decimal(1)) give the same float, so they give the same features: here,
    unlike ``models.checks``, a bool is a number (a context flag reads as 1 or 0)."""
    if type(v) is float:  # the common cases first: the ABC checks below are slow
        return v if math.isfinite(v) and abs(v) <= _MAX_ABS_NUMBER else None
    if type(v) is int:
        return float(v) if abs(v) <= _MAX_ABS_NUMBER else None
    if isinstance(v, str):
        return None
    if isinstance(v, (bool, np.bool_)):
        return 1.0 if v else 0.0
    if is_integral(v):
        i = int(v)
        return float(i) if abs(i) <= _MAX_ABS_NUMBER else None
    if is_real(v) or isinstance(v, Decimal):
        try:
            f = float(v)
        except (ValueError, OverflowError):  # Decimal("sNaN"), Fraction(10**400)
            return None
        return f if math.isfinite(f) and abs(f) <= _MAX_ABS_NUMBER else None
    return None


def _small_int(v: object, lo: int, hi: int) -> int | None:
    """``v`` as an int in [lo, hi] if it is a whole number there (2.0 counts), else None."""
    f = _feature_number(v)
    if f is None or not f.is_integer() or not lo <= f <= hi:
        return None
    return int(f)


def _context_value(v: object) -> str | None:
    """The categorical form of a context value, None if it must not reach the model.
    Whole numbers (bools too) read as ints; other numbers keep 3 significant digits: a
    number is a category here, and their count must stay small."""
    if isinstance(v, str):
        return v if len(v) <= _MAX_VALUE_LEN else None
    f = _feature_number(v)
    if f is None:
        return None
    return str(int(f)) if f.is_integer() else f"{f:.3g}"


_M64: Final = (1 << 64) - 1
_GOLDEN: Final = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, odd: multiplicative hashing


def cross_feature(a: int, b: int) -> int:
    """The index of the conjunction of features ``a`` and ``b`` (order matters), in
    [1, 2**HASH_BITS): arithmetic on the two indices, so a cross costs no string work.

    >>> a, b = hash_feature("s=top"), hash_feature("c=camp1")
    >>> key = a * 2**HASH_BITS + b
    >>> cross_feature(a, b) == (key * 0x9E3779B97F4A7C15 % 2**64) % (2**HASH_BITS - 1) + 1
    True
    >>> cross_feature(a, b) != cross_feature(b, a)
    True
    """
    # RequestFeatures inlines this expression on its hot path: keep the two in step.
    return ((a << HASH_BITS | b) * _GOLDEN & _M64) % _DIM1 + 1


class _Bounded(dict[Any, Any]):
    """A memo that empties itself when full: bounded memory, nearly free when it fits."""

    __slots__ = ("cap",)

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap

    def put(self, key: Any, value: Any) -> None:
        if len(self) >= self.cap:
            self.clear()
        self[key] = value


# The features of a slot, hour and context, by their values: requests mostly share them.
_contexts: _Bounded = _Bounded(1 << 10)
_CAMPAIGNS_PER_CONTEXT: Final = 1 << 7
# Each ad's own features, (ad id, categories) -> (the ad and category indices, the valid
# categories with their crosses tables).
_ad_parts: _Bounded = _Bounded(1 << 14)


class _Crosses(dict[int, int]):
    """The crosses of one ad category with users' interests: shifted "i=" index (see
    _interest_left) -> cross_feature index, computed on first use. The same interests
    and categories come back request after request, and a lookup costs a fraction of
    the arithmetic; ``map(table.__getitem__, lefts)`` then runs without Python frames."""

    __slots__ = ("k",)

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def __missing__(self, left: int) -> int:
        if len(self) >= _CROSSES_PER_CATEGORY:
            self.clear()
        x = self[left] = ((left | self.k) * _GOLDEN & _M64) % _DIM1 + 1  # cross_feature
        return x


_CROSSES_PER_CATEGORY: Final = 1 << 8
_cross_tables: _Bounded = _Bounded(1 << 10)


def _crosses_of(k: int) -> _Crosses:
    table = _cross_tables.get(k)
    if table is None:
        table = _Crosses(k)
        _cross_tables.put(k, table)
    return table


@lru_cache(maxsize=1 << 12)
def _interest_left(category: str) -> int:
    """The index of ``i=category`` shifted as a left operand of crosses."""
    return hash_feature("i=" + category) << HASH_BITS


class _ContextPart:
    """The features of a request's slot, hour and context: everything that depends on
    neither the user nor the ad."""

    __slots__ = ("base", "slot", "context", "campaigns")

    def __init__(self, slot: object, hour: object, context: object) -> None:
        base = [0]
        slot_index = 0
        if _valid_name(slot):
            slot_index = hash_feature("s=" + slot)
            base.append(slot_index)
        h = _small_int(hour, 0, 23)
        if h is not None:
            base.append(hash_feature(f"h={h}"))
        ctx: list[int] = []
        if isinstance(context, Mapping):
            # Sorted, so equal contexts keep the same keys whatever their order.
            for k, v in sorted((k, v) for k, v in context.items() if _valid_name(k))[
                :_MAX_CONTEXT
            ]:
                sv = _context_value(v)
                if sv is not None:
                    ctx.append(hash_feature(f"x={k}={sv}"))
        base.extend(ctx)
        self.base = base
        # Left operands of crosses, shifted once here (see cross_feature).
        self.slot = slot_index << HASH_BITS
        self.context = tuple(x << HASH_BITS for x in ctx)
        self.campaigns = _Bounded(_CAMPAIGNS_PER_CONTEXT)

    def campaign(self, campaign_id: object) -> list[int]:
        """The campaign's features here: its index and its crosses with the slot and the
        context (never to be mutated)."""
        try:
            feats: list[int] | None = self.campaigns.get(campaign_id)
        except TypeError:  # an unhashable id: no features, never a cache key
            return []
        if feats is None:
            feats = []
            if _valid_name(campaign_id):
                c = hash_feature("c=" + campaign_id)
                feats.append(c)
                if self.slot:
                    feats.append(cross_feature(self.slot >> HASH_BITS, c))
                feats.extend(((x | c) * _GOLDEN & _M64) % _DIM1 + 1 for x in self.context)
            self.campaigns.put(campaign_id, feats)
        return feats


def _ad_part(ad_id: object, categories: Any) -> tuple[list[int], tuple[tuple[str, _Crosses], ...]]:
    """The ad's own features (its index, its categories' indices: never to be mutated)
    and its valid categories with their crosses tables."""
    cats = categories if type(categories) is tuple else (
        () if isinstance(categories, (str, bytes)) else tuple(categories)
    )
    try:
        key = (ad_id, cats)
        hit = _ad_parts.get(key)
    except TypeError:  # an unhashable id or category: never a cache key
        key, hit = None, None
    if hit is None:
        feats = [hash_feature("a=" + ad_id)] if _valid_name(ad_id) else []
        names = tuple(dict.fromkeys(c for c in cats if _valid_name(c)))[:_MAX_CATEGORIES]
        indexed = tuple((c, _crosses_of(hash_feature("k=" + c))) for c in names)
        feats.extend(t.k for _, t in indexed)
        hit = (feats, indexed)
        if key is not None:
            _ad_parts.put(key, hit)
    return hit


def _context_part(slot: object, hour: object, context: object) -> _ContextPart:
    # A hit needs equal values only: equal values always give equal features (see
    # _feature_number), and the key holds no mutable object (a tuple of the items).
    try:
        items = (
            tuple(context.items())
            if type(context) is dict or isinstance(context, Mapping)
            else None
        )
        key = (slot, hour, items)
        part: _ContextPart | None = _contexts.get(key)
    except TypeError:  # an unhashable value: computed, never cached
        return _ContextPart(slot, hour, context)
    if part is None:
        part = _ContextPart(slot, hour, context)
        _contexts.put(key, part)
    return part


_MATCH = tuple(hash_feature(f"m={b}") for b in range(4))
_RECENCY = {v: hash_feature(f"r={v}") for v in range(-1, RECENCY_CAP + 1)}
_FREQUENCY = {v: hash_feature(f"f={v}") for v in range(FREQUENCY_CAP + 1)}


class RequestFeatures:
    """The hashed features of the candidate ads of one request: what does not depend on
    the ad (``shared``) is computed once, then each ad's own ones (``nonzero``). Across
    requests, the slot, hour and context part and its campaign features are cached by
    value, an ad's features by ad id and categories, and interest x category crosses by
    category.

    >>> view = {"i": [["Comedy", 0.7]], "r": 2, "f": 1, "s": ""}
    >>> rf = RequestFeatures(view, "top", 14, {"device": "mobile"})
    >>> rf.features("ad1", "camp1", ("Comedy",)) == ad_features(
    ...     view, "ad1", "camp1", ("Comedy",), "top", 14, {"device": "mobile"})
    True
    """

    __slots__ = ("shared", "_part", "_lefts", "_shares")

    def __init__(
        self,
        view: Mapping[str, Any],
        slot: str,
        hour: int,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        part = _context_part(slot, hour, context)
        shared = part.base.copy()
        interests: dict[str, float] = {}
        # (type checks first: an ABC isinstance is slow)
        if (type(view) is dict or isinstance(view, Mapping)) and not view.get("np"):
            raw = view.get("i")
            if isinstance(raw, (list, tuple)):
                for pair in raw[:VIEW_INTERESTS]:
                    if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                        continue
                    cat, share = pair
                    # A float share (user_view's) skips _feature_number: in (0, 1] it is
                    # finite and small.
                    f = share if type(share) is float else _feature_number(share)
                    if (
                        isinstance(cat, str) and 0 < len(cat) <= _MAX_NAME  # _valid_name
                        and cat not in interests and f is not None and 0.0 < f <= 1.0
                    ):
                        interests[cat] = f
            for key, names in (("r", _RECENCY), ("f", _FREQUENCY)):
                v = view.get(key)
                x = names.get(v) if type(v) is int else None  # user_view's ints
                if x is None:
                    v = _small_int(v, min(names), max(names))
                    if v is not None:
                        x = names[v]
                if x is not None:
                    shared.append(x)
            seg = view.get("s")
            if _valid_name(seg):
                shared.append(hash_feature(f"g={seg}"))
        self.shared = shared
        self._part = part
        self._shares = interests
        # The user's "i=category" indices: left operands of crosses, shifted once here.
        self._lefts = tuple(map(_interest_left, interests))

    def features(self, ad_id: str, campaign_id: str, categories: Sequence[str]) -> list[int]:
        """The sorted unique feature indices of showing this ad (``ad_features``)."""
        return sorted(set(self.shared).union(self.nonzero(ad_id, campaign_id, categories)))

    def nonzero(
        self,
        ad_id: str,
        campaign_id: str,
        categories: Sequence[str],
        weights: Container[int] | None = None,
    ) -> list[int]:
        """This ad's features beyond ``shared`` that are in ``weights`` (None: all of
        them), some maybe repeated or in ``shared`` too: all that a sparse linear model
        reads of them."""
        part = self._part
        camp = None
        hit = None
        # AdCandidate's ids and categories: looked up here, without a call
        if type(campaign_id) is str:
            camp = part.campaigns.get(campaign_id)
        if type(categories) is tuple:
            try:
                hit = _ad_parts.get((ad_id, categories))
            except TypeError:  # unhashable: _ad_part says so
                pass
        if camp is None:
            camp = part.campaign(campaign_id)
        feats, cats = _ad_part(ad_id, categories) if hit is None else hit
        # The container's own C method: filter then makes no Python call per feature.
        keep = None if weights is None else weights.__contains__
        if keep is None:
            out = camp + feats
        else:
            out = list(filter(keep, camp))
            out.extend(filter(keep, feats))
        lefts = self._lefts
        if lefts:
            shares = self._shares
            match = 0.0
            for c, table in cats:
                crosses = map(table.__getitem__, lefts)
                out.extend(crosses if keep is None else filter(keep, crosses))
                match += shares.get(c, 0.0)
            # The interest-match bucket: 0 no interest in the ad's categories, 1 a minor
            # one, 2 a real one, 3 a main one.
            m = _MATCH[0 if match <= 0.0 else 1 if match < 0.2 else 2 if match < 0.5 else 3]
            if keep is None or keep(m):
                out.append(m)
        return out


def ad_features(
    view: Mapping[str, Any],
    ad_id: str,
    campaign_id: str,
    categories: Sequence[str],
    slot: str,
    hour: int,
    context: Mapping[str, str | int | float | bool] | None = None,
) -> list[int]:
    """The sorted unique hashed feature indices of showing ad ``ad_id`` for one request.

    Binary features, by name (``hash_feature``) or cross (``cross_feature``): bias (0),
    campaign ``c=``, ad ``a=``, slot ``s=``, hour ``h=``, ad categories ``k=``, recency
    ``r=``, frequency ``f=``, segment ``g=``, context ``x=key=value``, the interest-match
    bucket ``m=0..3``, and the crosses slot x campaign, context x campaign and each user
    interest ``i=`` x each ad category.
    Anything invalid (non-finite or absurd numbers, wrong types, oversized strings, hour
    outside 0-23) is dropped, never passed on. Numbers that compare equal give the same
    features (``True``, ``1`` and ``1.0`` all read as 1). For many candidates of one
    request, ``RequestFeatures`` computes the ad-independent part once.

    >>> view = {"i": [["Comedy", 0.7], ["Drama", float("nan")]], "r": 2, "f": 1, "s": ""}
    >>> x = ad_features(view, "ad1", "camp1", ["Comedy"], "top", 14, {"device": "mobile"})
    >>> x[0], x == sorted(set(x)), hash_feature("a=ad1") in x
    (0, True, True)
    >>> cross_feature(hash_feature("i=Comedy"), hash_feature("k=Comedy")) in x
    True
    >>> cross_feature(hash_feature("i=Drama"), hash_feature("k=Comedy")) in x  # NaN share
    False
    """
    return RequestFeatures(view, slot, hour, context).features(ad_id, campaign_id, categories)


class PctrModel:
    """Click probability by FTRL-Proximal logistic regression over hashed binary features.

    McMahan et al. (2013), "Ad click prediction: a view from the trenches": per-coordinate
    learning rates ``alpha / (beta + sqrt(n_i))``, L1 (sparse weights) and L2. The logit
    starts at ``logit(prior_ctr)``, which the bias (index 0, never L1-penalized) then
    corrects, so a fresh model predicts the prior, not 0.5. State is sparse (only touched
    indices are stored). The model has no randomness: ``seed`` is accepted for a uniform
    model API and kept.

    The defaults are strongly regularized: with click rates near 0.5% a feature needs a
    net excess of about ``l1`` clicks over its predicted count before it gets a weight,
    so a handful of lucky clicks cannot move a bid (tuned prequentially on the Open
    Bandit Dataset sample and on a synthetic stream with real signal, labels delayed by
    a 30-minute attribution window).

    >>> m = PctrModel(prior_ctr=0.01)
    >>> x = [0, hash_feature("a=ad1")]
    >>> round(m.predict_one(x), 4)
    0.01
    >>> for _ in range(20):
    ...     m.learn_one(x, 1)
    >>> m.predict_one(x) > 0.01, m.n_updates
    (True, 20)
    >>> m.learn_one([2**HASH_BITS], 1)
    Traceback (most recent call last):
    ...
    ValueError: feature indices must be ints in [0, 1048576), got 1048576
    """

    def __init__(
        self,
        alpha: float = 0.1,
        beta: float = 1.0,
        l1: float = 3.0,
        l2: float = 10.0,
        prior_ctr: float = 0.005,
        seed: int = 0,
    ) -> None:
        # Upper bounds far beyond any useful value keep every step's arithmetic finite.
        self.alpha = check_number("alpha", alpha, 0.0, 1e3, low_open=True)
        self.beta = check_number("beta", beta, 0.0, 1e6, low_open=True)
        self.l1 = check_number("l1", l1, 0.0, 1e6)
        self.l2 = check_number("l2", l2, 0.0, 1e6)
        self.prior_ctr = check_number("prior_ctr", prior_ctr, P_MIN, 1.0 - P_MIN)
        self.seed = check_int("seed", seed)
        self._offset = math.log(self.prior_ctr / (1.0 - self.prior_ctr))
        self._z: dict[int, float] = {}
        self._n: dict[int, float] = {}
        # The non-zero weights, derived from _z and _n: predictions only read this.
        self._w: dict[int, float] = {}
        self._updates = 0

    @property
    def n_updates(self) -> int:
        """How many examples were learned."""
        return self._updates

    @property
    def n_weights(self) -> int:
        """How many weights are non-zero (L1 keeps most at exactly zero)."""
        return len(self._w)

    def _logit(self, x: Sequence[int]) -> float:
        w = self._w
        s = self._offset
        for i in x:
            v = w.get(i)
            if v is not None:
                s += v
        if -_MAX_LOGIT <= s <= _MAX_LOGIT:
            return s
        return self._clamp(s)

    def _clamp(self, s: float) -> float:
        if s > _MAX_LOGIT:
            return _MAX_LOGIT
        if s < -_MAX_LOGIT:
            return -_MAX_LOGIT
        return self._offset  # NaN: cannot come from validated learning, never served

    def predict_one(self, x: Sequence[int]) -> float:
        """The click probability for feature indices ``x`` (unknown indices count 0)."""
        return 1.0 / (1.0 + math.exp(-self._logit(x)))

    def predict_many(self, xs: Sequence[Sequence[int]]) -> list[float]:
        """``predict_one`` for each of ``xs`` (the candidates of one request)."""
        logit = self._logit
        exp = math.exp
        return [1.0 / (1.0 + exp(-logit(x))) for x in xs]

    def predict_ads(
        self, rf: RequestFeatures, ads: Sequence[tuple[str, str, Sequence[str]]]
    ) -> list[float]:
        """``predict_one(rf.features(*ad))`` for each of ``ads`` (ad id, campaign id,
        categories: the candidates of one request), to the last bit: the same weights
        added in the same order, but only the features that have one are looked up and
        sorted, and the request's shared ones once.

        >>> m = PctrModel()
        >>> for _ in range(3):
        ...     m.learn_one(ad_features({}, "a1", "c1", ("k",), "top", 3), 1, weight=50.0)
        >>> rf = RequestFeatures({}, "top", 3)
        >>> ads = [("a1", "c1", ("k",)), ("a2", "c1", ())]
        >>> m.predict_ads(rf, ads) == m.predict_many([rf.features(*ad) for ad in ads])
        True
        """
        w = self._w
        base = list(filter(w.__contains__, rf.shared))
        nonzero = rf.nonzero
        offset = self._offset
        exp = math.exp
        out = []
        for ad_id, campaign_id, categories in ads:
            nz = nonzero(ad_id, campaign_id, categories, w)
            nz += base
            s = offset
            for i in sorted(set(nz)):  # in index order, as _logit adds them
                s += w[i]
            if not -_MAX_LOGIT <= s <= _MAX_LOGIT:
                s = self._clamp(s)
            out.append(1.0 / (1.0 + exp(-s)))
        return out

    def learn_one(self, x: Sequence[int], y: bool | int, weight: float = 1.0) -> None:
        """One FTRL-Proximal step on example ``x`` with label ``y`` (1 click, 0 none).

        Raises ValueError, before any state changes, if an index is not an int in
        [0, 2**HASH_BITS) or repeats, ``y`` is not 0/1/bool, or ``weight`` is not a
        number in (0, MAX_WEIGHT].
        """
        label = float(_check_label(y))
        weight_f = check_number("weight", weight, 0.0, MAX_WEIGHT, low_open=True)
        idx = _check_indices(x)
        g = (1.0 / (1.0 + math.exp(-self._logit(idx))) - label) * weight_f
        g2 = g * g
        alpha, beta, l1, l2 = self.alpha, self.beta, self.l1, self.l2
        z, n, w = self._z, self._n, self._w
        sqrt = math.sqrt
        for i in idx:
            ni = n.get(i, 0.0)
            nn = ni + g2
            zi = z.get(i, 0.0) + g - (sqrt(nn) - sqrt(ni)) / alpha * w.get(i, 0.0)
            z[i] = zi
            n[i] = nn
            # _weight inlined (this loop is the learning hot path): keep the two in step.
            if i == 0:
                w[0] = -zi * alpha / (beta + sqrt(nn))
            elif zi > l1:
                w[i] = (l1 - zi) / ((beta + sqrt(nn)) / alpha + l2)
            elif zi < -l1:
                w[i] = (-l1 - zi) / ((beta + sqrt(nn)) / alpha + l2)
            elif i in w:
                del w[i]
        self._updates += 1

    def _weight(self, i: int, zi: float, ni: float) -> float:
        """The FTRL-Proximal closed form; the bias is never sparsified nor shrunk."""
        if i == 0:
            return -zi * self.alpha / (self.beta + math.sqrt(ni))
        if abs(zi) <= self.l1:
            return 0.0
        return -(zi - math.copysign(self.l1, zi)) / (
            (self.beta + math.sqrt(ni)) / self.alpha + self.l2
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        # Checkpoints hold z and n as arrays (20 bytes a coordinate, a third less than
        # the dicts); the weights are derived, rebuilt on load.
        del state["_w"], state["_z"], state["_n"]
        keys = list(self._z)
        state["_keys"] = np.array(keys, dtype=np.uint32)
        state["_zs"] = np.array([self._z[i] for i in keys], dtype=np.float64)
        state["_ns"] = np.array([self._n[i] for i in keys], dtype=np.float64)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        keys = state.pop("_keys").tolist()
        zs = state.pop("_zs").tolist()
        ns = state.pop("_ns").tolist()
        self.__dict__.update(state)
        self._z = dict(zip(keys, zs, strict=True))
        self._n = dict(zip(keys, ns, strict=True))
        self._w = {}
        for i, zi, ni in zip(keys, zs, ns, strict=True):
            wi = self._weight(i, zi, ni)
            if wi != 0.0:
                self._w[i] = wi


def _check_indices(x: Sequence[int]) -> list[int]:
    if isinstance(x, (str, bytes)):
        raise ValueError("x must be a sequence of feature indices, not a string")
    out = list(x)
    # The common case (plain ints in range) is checked in bulk; the slow path says why.
    if not (all(type(i) is int for i in out) and out and 0 <= min(out) and max(out) < _DIM):
        for k, i in enumerate(out):
            if not is_integral(i) or not 0 <= int(i) < _DIM:
                raise ValueError(f"feature indices must be ints in [0, {_DIM}), got {i!r}")
            out[k] = int(i)
    if len(set(out)) != len(out):
        raise ValueError("feature indices must not repeat")
    return out


def _check_label(y: object) -> int:
    if isinstance(y, bool):
        return int(y)
    if is_integral(y) and int(y) in (0, 1):
        return int(y)
    raise ValueError(f"y must be 0, 1 or a bool, got {y!r}")


class PctrQuality:
    """Prequential quality of click predictions: log loss, calibration, AUC.

    Log loss and calibration (sum of predictions / number of clicks; 1 is calibrated) are
    over every update; AUC is over the last ``max_samples`` pairs (bounded memory).
    Predictions are clipped to [P_MIN, 1 - P_MIN] for the log loss.

    >>> q = PctrQuality()
    >>> for p, y in [(0.1, 0), (0.4, 1), (0.2, 0), (0.3, 1)]:
    ...     q.update(p, y)
    >>> round(q.log_loss, 4), round(q.calibration, 3), q.auc(), q.n
    (0.6122, 0.5, 1.0, 4)
    """

    def __init__(self, max_samples: int = 200_000) -> None:
        self.max_samples = check_int("max_samples", max_samples, low=1)
        self._n = 0
        self._clicks = 0
        self._sum_p = 0.0
        self._sum_loss = 0.0
        self._recent: deque[tuple[float, int]] = deque(maxlen=max_samples)

    def update(self, p: float, y: int) -> None:
        """Account one prediction ``p`` made before its label ``y`` (0/1) was known."""
        pf = check_probability("p", p)
        label = _check_label(y)
        q = min(max(pf, P_MIN), 1.0 - P_MIN)
        self._sum_loss -= math.log(q) if label else math.log1p(-q)
        self._n += 1
        self._clicks += label
        self._sum_p += pf
        self._recent.append((pf, label))

    @property
    def n(self) -> int:
        return self._n

    @property
    def clicks(self) -> int:
        return self._clicks

    @property
    def log_loss(self) -> float:
        """Mean log loss (nats); NaN before any update."""
        return self._sum_loss / self._n if self._n else math.nan

    @property
    def ctr(self) -> float:
        """Observed click rate; NaN before any update."""
        return self._clicks / self._n if self._n else math.nan

    @property
    def predicted_ctr(self) -> float:
        """Mean prediction; NaN before any update."""
        return self._sum_p / self._n if self._n else math.nan

    @property
    def calibration(self) -> float:
        """Sum of predictions / number of clicks; NaN while there is no click."""
        return self._sum_p / self._clicks if self._clicks else math.nan

    def auc(self) -> float:
        """Area under the ROC curve (ties count half); NaN without both labels."""
        if not self._recent:
            return math.nan
        arr = np.asarray(self._recent, dtype=np.float64)
        p, y = arr[:, 0], arr[:, 1]
        n_pos = float(y.sum())
        n_neg = float(len(y)) - n_pos
        if n_pos == 0 or n_neg == 0:
            return math.nan
        order = np.argsort(p, kind="mergesort")
        ps = p[order]
        ranks = np.empty(len(ps), dtype=np.float64)
        # Average 1-based ranks over runs of equal scores.
        starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
        ends = np.r_[starts[1:], len(ps)]
        avg = (starts + ends + 1) / 2.0
        ranks[order] = np.repeat(avg, ends - starts)
        rank_sum = float(ranks[y == 1].sum())
        return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


class RunningMeanBaseline:
    """A constant click rate: ``(clicks + prior_ctr * prior_weight) / (n + prior_weight)``.

    The baseline a pCTR model must beat in log loss.

    >>> b = RunningMeanBaseline(prior_ctr=0.01, prior_weight=100)
    >>> b.predict_one()
    0.01
    >>> b.learn_one(1); round(b.predict_one(), 4)
    0.0198
    """

    def __init__(self, prior_ctr: float = 0.005, prior_weight: float = 100.0) -> None:
        self.prior_ctr = check_number("prior_ctr", prior_ctr, P_MIN, 1.0 - P_MIN)
        self.prior_weight = check_positive("prior_weight", prior_weight)
        self._n = 0.0
        self._clicks = 0.0

    def predict_one(self, x: Sequence[int] | None = None) -> float:
        """The current rate (``x`` is ignored: same call shape as ``PctrModel``)."""
        return (self._clicks + self.prior_ctr * self.prior_weight) / (self._n + self.prior_weight)

    def learn_one(self, y: bool | int, weight: float = 1.0) -> None:
        label = _check_label(y)
        weight_f = check_positive("weight", weight)
        self._n += weight_f
        self._clicks += label * weight_f
