"""What one worker learned, as one aggregated delta every other worker can apply
(docs/scaling.md).

Each worker learns from the events of its own partitions. Between two flushes the
:class:`Outbox` sums what its item-level learning changed: co-occurrence pair and item
increments, popularity and trending count increments (per segment too), content
interaction counts, the bandit's reward statistics, the blend's gradient steps, new
items' exploration showings and what the segmenter learned (per segment: profiles,
summed features and category shares); the engine adds the matrix-factorization models' summed
item factor and bias deltas at the flush. The service publishes the encoded delta on a
broadcast topic and every other worker applies it (``Engine.learn_shared``) in time
proportional to the distinct entries it touches, not to the events behind it.

Decayed counts (every model here counts time in events) are sent as of the end of the
batch: an increment learned k events before its end is sent multiplied by the model's
per-event decay to the power k, and the receiver first ages its own counts by the batch's
event count, then adds. Applied at once, that is exactly what learning the events would
have done; the float32 co-occurrence counts agree to rounding.

No user id, raw or pseudonymous, no user vector, no user's item sequence and no one
user's profile numbers are in a delta: ids are sent sorted (never in the order a user met
them), pairs unordered, a delta is held back until it sums the events of at least
``min_users`` distinct users, and so is each segment group.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from models.checks import is_id, is_in_range
from models.marketing.segments import BASE_FEATURES, SPEND_BINS, GroupSum, SegmentSums
from models.users.profile import UserProfile

# Version of the delta layout; a batch of another version is refused, not guessed at
# (1: the per-event learn steps of earlier releases, which carried per-user data; 2: the
# segmenter's inputs went per user, not summed).
FORMAT = 3
# Bounds on what a batch may hold (a malformed or hostile batch is refused whole).
MAX_ID_CHARS = 256
MAX_ITEMS = 200_000
MAX_PAIRS = 2_000_000
MAX_SEGMENTS = 256
MAX_BLEND = 64
MAX_FACTORS = 1_024
MAX_EVENTS = 10**9
MAX_INTERESTS = 256  # categories of one segment group
# Array layouts on the wire (little-endian): item indices, summed counts, factor deltas.
INDEX, COUNT, FACTOR = "<i4", "<f8", "<f4"
# Distinct users a delta must sum before it leaves (a delta of one user's events says
# about that user what their learn steps said).
MIN_USERS = 5


class FormatError(ValueError):
    """A batch of another layout version (a worker of another release)."""


class Decayed:
    """Increments to counts that decay by ``1 / growth`` per event, summed as of the last
    event: each is stored multiplied by ``growth ** steps`` and divided at ``as_of_end``.

    >>> d = Decayed(2.0)
    >>> d.step(); d.add("a", 1.0); d.step(); d.add("a", 1.0)
    >>> d.as_of_end(), d.steps
    ({'a': 1.5}, 2)
    """

    __slots__ = ("growth", "steps", "scale", "counts")

    def __init__(self, growth: float = 1.0) -> None:
        self.growth = growth
        self.steps = 0
        self.scale = 1.0
        self.counts: dict[str, float] = {}

    def step(self) -> None:
        self.steps += 1
        self.scale *= self.growth
        if self.scale > 1e100:  # long stall: fold the scale into the counts
            s = self.scale
            self.counts = {k: v / s for k, v in self.counts.items()}
            self.scale = 1.0

    def add(self, key: str, w: float) -> None:
        counts = self.counts
        counts[key] = counts.get(key, 0.0) + w * self.scale

    def as_of_end(self) -> dict[str, float]:
        s = self.scale
        return {k: v / s for k, v in self.counts.items()}


def growth_of(half_life: float | None) -> float:
    """Per-event growth of a model's count unit (1.0: no decay)."""
    return 1.0 if half_life is None else 2.0 ** (1.0 / half_life)


@dataclass(frozen=True, slots=True)
class Growths:
    """The per-event growths of the decayed models an outbox sums for."""

    cooccurrence: float = 1.0
    popularity: float = 1.0
    trending: float = 1.0
    bandit: float = 1.0


@dataclass(slots=True)
class Outbox:
    """What this worker's item-level learning changed since the last drain, summed.

    Holds at most ``limit`` distinct co-occurrence pairs: if nobody drains it (publishing
    stalled), everything summed is dropped and its events counted in ``dropped``.

    >>> box = Outbox(min_users=1)
    >>> box.record("b", ["a"], 1.0, None, user="u1")
    >>> d = decode_batch(box.drain("w1", 1))
    >>> d.events, d.items, d.pairs[2].tolist(), box.events
    (1, ['a', 'b'], [1.0], 0)
    """

    limit: int = 2_000_000
    min_users: int = MIN_USERS
    growths: Growths = field(default_factory=Growths)
    events: int = 0
    dropped: int = 0
    _users: set[int] = field(default_factory=set)
    _ids: dict[str, int] = field(default_factory=dict)  # item id -> code, this batch
    _pairs: dict[int, float] = field(default_factory=dict)  # (low code << 32) | high code
    _cooc: Decayed = field(default_factory=Decayed)
    _popularity: Decayed = field(default_factory=Decayed)
    _trending: Decayed = field(default_factory=Decayed)
    _segments: dict[str, Decayed] = field(default_factory=dict)
    _content: dict[str, int] = field(default_factory=dict)
    _bandit_n: Decayed = field(default_factory=Decayed)
    _bandit_r: Decayed = field(default_factory=Decayed)
    _blend: dict[int, tuple[int, np.ndarray]] = field(default_factory=dict)
    _explored: dict[str, int] = field(default_factory=dict)
    # What the segmenter learned, summed per segment: see note_segment. Kept across
    # drains until a group sums enough users.
    _segment_sums: SegmentSums = field(default_factory=SegmentSums)

    def __post_init__(self) -> None:
        self._reset()

    def configure(self, growths: Growths) -> None:
        """Sum for models decaying at ``growths`` (drops what was summed so far)."""
        self.growths = growths
        self._reset()

    def _reset(self) -> None:
        g = self.growths
        self.events = 0
        self._users = set()
        self._ids = {}
        self._pairs = {}
        self._cooc = Decayed(g.cooccurrence)
        self._popularity = Decayed(g.popularity)
        self._trending = Decayed(g.trending)
        self._segments = {}
        self._content = {}
        self._bandit_n, self._bandit_r = Decayed(g.bandit), Decayed(g.bandit)
        self._blend = {}
        self._explored = {}

    def record(
        self, item_id: str, recent: Sequence[str], weight: float, segment: str | None,
        *, arm: str = "", hit: bool | None = None,
        blend: tuple[int, Sequence[float]] | None = None, user: str = "",
    ) -> None:
        """Sum one learn step: ``recent`` are the co-occurrence model's known recent
        items (distinct, not ``item_id``); ``user`` is only counted (hashed, in memory)."""
        self.events += 1
        self._users.add(hash(user))
        cooc = self._cooc
        cooc.step()
        cooc.add(item_id, weight)
        w = weight * cooc.scale
        if recent:
            ids, pairs = self._ids, self._pairs
            i = ids.setdefault(item_id, len(ids))
            for h in recent:
                j = ids.setdefault(h, len(ids))
                key = (i << 32) | j if i < j else (j << 32) | i
                pairs[key] = pairs.get(key, 0.0) + w
        self._popularity.step()
        self._popularity.add(item_id, weight)
        self._trending.step()
        self._trending.add(item_id, weight)
        if segment:
            seg = self._segments.get(segment)
            if seg is None:
                seg = self._segments[segment] = Decayed(self.growths.popularity)
            seg.step()
            seg.add(item_id, weight)
        self._content[item_id] = self._content.get(item_id, 0) + 1
        if hit is not None and arm:
            self._bandit_n.step()
            self._bandit_r.step()
            self._bandit_n.add(arm, 1.0)
            self._bandit_r.add(arm, float(hit))
        if blend is not None:
            c, step = blend
            n, total = self._blend.get(c, (0, np.zeros(len(step))))
            if total.size == len(step):
                self._blend[c] = (n + 1, total + np.asarray(step, dtype=np.float64))
        if len(self._pairs) > self.limit:
            self.dropped += self.events
            self._reset()

    def note_segment(self, profile: UserProfile, now_ms: int, segment: str,
                     user: str) -> None:
        """Sum what the segmenter learned from ``profile`` as of ``now_ms`` into the group
        of ``segment``, the one ``user`` was assigned (``SegmentSums``: the group leaves
        with a drain once it sums ``min_users`` distinct users; ``user`` is never sent)."""
        self._segment_sums.add(segment, profile, now_ms, user)

    def add_explored(self, item_id: str) -> None:
        """Record one exploration showing of a new item."""
        self._explored[item_id] = self._explored.get(item_id, 0) + 1

    def __len__(self) -> int:
        return self.events + len(self._explored) + len(self._segment_sums)

    def ready(self) -> bool:
        """Whether a drain would send: something summed, over enough distinct users
        (exploration showings alone go at once: they name no user's events)."""
        if self.events:
            return len(self._users) >= self.min_users
        return bool(self._explored)

    def drain(self, origin: str, seq: int,
              blend: Sequence[Sequence[float]] | None = None,
              factors: Mapping[str, tuple[list[str], np.ndarray]] | None = None,
              ) -> bytes | None:
        """Everything summed so far as one encoded delta (emptying the outbox), with the
        sender's ``blend`` weights and matrix-factorization ``factors`` deltas (per
        model: item ids and their summed row deltas); None if not ``ready``."""
        if not self.ready():
            return None
        raw = self._encode(origin, seq, blend, factors or {})
        self._reset()
        return raw

    def _encode(self, origin: str, seq: int, blend: Sequence[Sequence[float]] | None,
                factors: Mapping[str, tuple[list[str], np.ndarray]]) -> bytes:
        segments = {s: (d.steps, d.as_of_end()) for s, d in self._segments.items()}
        counted: list[Mapping[str, Any]] = [
            self._cooc.counts, self._popularity.counts, self._trending.counts,
            self._content, self._explored, *(c for _, c in segments.values())]
        names: set[str] = set(self._ids)
        for m in counted:
            names.update(m)
        for ids, _ in factors.values():
            names.update(ids)
        items = sorted(names)  # sorted: never the order one user met them
        at = {item: n for n, item in enumerate(items)}
        # Pairs: codes to positions in ``items``, in sorted order (not the order learned).
        position = np.array([at[i] for i in self._ids], dtype=np.int64)
        keys = np.fromiter(self._pairs, dtype=np.int64, count=len(self._pairs))
        weights = np.fromiter(self._pairs.values(), dtype=np.float64, count=keys.size)
        pa, pb = position[keys >> 32], position[keys & 0xFFFFFFFF]
        pa, pb = np.minimum(pa, pb), np.maximum(pa, pb)
        order = np.lexsort((pb, pa))

        def table(m: Mapping[str, float]) -> list[list[Any]]:
            keys = sorted(m, key=at.__getitem__)
            return [[at[k] for k in keys], [m[k] for k in keys]]

        s = self._cooc.scale

        def learned_arrays() -> list[str]:
            learned = sorted(self._content, key=at.__getitem__)
            cooc, pop, trend = (d.counts for d in (self._cooc, self._popularity,
                                                   self._trending))
            return [_b64([at[i] for i in learned], INDEX),
                    _b64(np.array([cooc[i] for i in learned]) / s, COUNT),
                    _b64(np.array([pop[i] for i in learned]) / self._popularity.scale,
                         COUNT),
                    _b64(np.array([trend[i] for i in learned]) / self._trending.scale,
                         COUNT),
                    _b64([self._content[i] for i in learned], INDEX)]
        d: dict[str, Any] = {
            "v": FORMAT, "o": origin, "q": seq, "n": self.events,
            "i": items,
            # Every learned item is counted by each of these: one key array for all.
            "l": learned_arrays(),
            "p": [_b64(pa[order], INDEX), _b64(pb[order], INDEX),
                  _b64(weights[order] / s, COUNT)],
            "sp": {seg: [steps, *table(incs)] for seg, (steps, incs) in segments.items()},
            "x": table(self._explored),
            "b": [self._bandit_n.steps, {arm: [v, self._bandit_r.as_of_end().get(arm, 0.0)]
                                         for arm, v in self._bandit_n.as_of_end().items()}],
            "bs": [[c, n, total.tolist()] for c, (n, total) in sorted(self._blend.items())],
            "f": {key: [_b64([at[i] for i in ids], INDEX), _b64(rows, FACTOR),
                        int(rows.shape[1]) if rows.ndim == 2 else 0]
                  for key, (ids, rows) in factors.items()},
        }
        if blend is not None:
            d["w"] = [list(row) for row in blend]
        groups = self._segment_sums.take(self.min_users)
        if groups:
            d["g"] = {seg: [g.n, g.base, _top_shares(g.shares), sorted(g.spend.items())]
                      for seg, g in sorted(groups.items())}
        return orjson.dumps(d)


def _top_shares(shares: dict[str, float]) -> dict[str, float]:
    """A group's category shares, the largest ``MAX_INTERESTS`` of them (what a receiver
    accepts; a segmenter's vocabulary holds far fewer).

    >>> len(_top_shares({f"c{n}": float(n) for n in range(300)})), MAX_INTERESTS
    (256, 256)
    """
    if len(shares) <= MAX_INTERESTS:
        return shares
    return dict(sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_INTERESTS])


def _b64(values: Any, dtype: str) -> str:
    """A numeric array as base64 of its little-endian bytes: decoding it is one
    conversion, not a JSON number per element."""
    return base64.b64encode(np.ascontiguousarray(values, dtype=dtype).tobytes()).decode()


def _array(value: object, dtype: str, limit: int) -> np.ndarray:
    size = np.dtype(dtype).itemsize
    if type(value) is not str or len(value) > 4 * (limit * size // 3 + 1):
        raise ValueError("bad array in a sync batch")
    # strict_mode: refuses what is not base64, in C (b64decode's validate runs a regex).
    raw = binascii.a2b_base64(value, strict_mode=True)  # binascii.Error is a ValueError
    if len(raw) % size:
        raise ValueError("bad array in a sync batch")
    return np.frombuffer(raw, dtype=dtype)


def _index_array(value: object, n_items: int, limit: int) -> np.ndarray:
    out = _array(value, INDEX, limit).astype(np.intp)
    if out.size and (out.min() < 0 or out.max() >= n_items):
        raise ValueError("item index out of range in a sync batch")
    return out


@dataclass(frozen=True, slots=True)
class Batch:
    """A decoded delta: who sent it, its sequence number, the events it sums and the
    summed changes, by model (item ids as given in ``items``; pairs as index arrays)."""

    origin: str
    seq: int
    events: int
    items: list[str]
    cooccurrence: dict[str, float]
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray]
    popularity: dict[str, float]
    trending: dict[str, float]
    segments: dict[str, tuple[int, dict[str, float]]]
    content: dict[str, int]
    explored: dict[str, int]
    bandit_steps: int
    bandit: dict[str, tuple[float, float]]
    blend_steps: list[tuple[int, int, list[float]]]
    factors: dict[str, tuple[list[str], np.ndarray]]
    blend: list[list[float]] | None = None
    # What the sender's segmenter learned, summed per segment (SegmentSums).
    segment_sums: dict[str, GroupSum] = field(default_factory=dict)

    @property
    def entries(self) -> int:
        """Distinct entries the delta touches (what applying it costs in proportion to)."""
        return (len(self.cooccurrence) + self.pairs[2].size + len(self.popularity)
                + len(self.trending) + sum(len(m) for _, m in self.segments.values())
                + len(self.content) + len(self.explored)
                + sum(len(ids) for ids, _ in self.factors.values()))


def _id(value: object) -> str:
    if not is_id(value, MAX_ID_CHARS):
        raise ValueError("bad id in a sync batch")
    return value


def _list(value: object, limit: int) -> list[Any]:
    if type(value) is not list or len(value) > limit:
        raise ValueError("bad list in a sync batch")
    return value


def _number(value: object) -> float:
    if not is_in_range(value, plain=True):
        raise ValueError("bad number in a sync batch")
    return float(value)


def _count(value: object, limit: int = MAX_EVENTS) -> int:
    if type(value) is not int or not 0 <= value <= limit:
        raise ValueError("bad count in a sync batch")
    return value


def _indices(value: object, n_items: int, limit: int) -> np.ndarray:
    # One numpy conversion, not a check per element: anything but whole numbers makes
    # the array of another kind (a float, a string, a nested list) or fails to build.
    out = np.array(_list(value, limit))
    if out.size and (out.dtype.kind != "i" or out.min() < 0 or out.max() >= n_items):
        raise ValueError("bad item index in a sync batch")
    return out.astype(np.int64, copy=False)


def _values(value: object, size: int, limit: int, *, positive: bool = False) -> np.ndarray:
    values = _list(value, limit)
    if len(values) != size:
        raise ValueError("bad values in a sync batch")
    out = np.array(values)
    if out.size and out.dtype.kind not in "if":
        raise ValueError("bad values in a sync batch")
    out = out.astype(np.float64, copy=False)
    if not np.isfinite(out).all() or (out < 0).any() or (positive and (out <= 0).any()) \
            or (out.size and np.abs(out).max() > 1e300):
        raise ValueError("bad values in a sync batch")
    return out


def _table(value: object, items: list[str], *, counts: bool = False) -> dict[str, Any]:
    idx, vals = _list(value, 2) if value is not None else ([], [])
    rows = _indices(idx, len(items), MAX_ITEMS)
    v = _values(vals, rows.size, MAX_ITEMS, positive=True)
    if counts:
        if v.size and np.array(vals).dtype.kind != "i":
            raise ValueError("bad count in a sync batch")
        return {items[r]: int(x) for r, x in zip(rows.tolist(), vals, strict=True)}
    return dict(zip([items[r] for r in rows.tolist()], v.tolist(), strict=True))


def _group(row: object) -> GroupSum:
    """One segment group of a batch, checked: features in [0, 1] summed over n profiles
    can be at most n, and so can a category's summed share."""
    n, base, shares, spend = _list(row, 4)
    n = _count(n)
    if n < 1 or len(_list(base, len(BASE_FEATURES))) != len(BASE_FEATURES) \
            or type(shares) is not dict or len(shares) > MAX_INTERESTS:
        raise ValueError("bad segment group in a sync batch")
    limit = n * (1.0 + 1e-9)
    base_sums = [_number(v) for v in base]
    share_sums = {_id(c): _number(v) for c, v in shares.items()}
    if any(not 0.0 <= v <= limit for v in (*base_sums, *share_sums.values())):
        raise ValueError("bad segment group in a sync batch")
    bins: dict[int, int] = {}
    for pair in _list(spend, SPEND_BINS):
        b, hits = _list(pair, 2)
        if type(b) is not int or not 0 <= b < SPEND_BINS or b in bins:
            raise ValueError("bad spend bins in a sync batch")
        bins[b] = _count(hits, n)
    return GroupSum(n, base_sums, share_sums, bins)


def _groups(value: object) -> dict[str, GroupSum]:
    if type(value) is not dict or len(value) > MAX_SEGMENTS:
        raise ValueError("bad segment groups in a sync batch")
    return {_id(seg): _group(row) for seg, row in value.items()}


def _blend(value: object) -> list[list[float]] | None:
    if value is None:
        return None
    return [[_number(w) for w in _list(row, MAX_BLEND)] for row in _list(value, MAX_BLEND)]


def decode_batch(raw: bytes) -> Batch:
    """A delta from ``Outbox.drain`` bytes; ValueError (and nothing of it used) if any
    part is malformed: another format, wrong types, non-finite or negative counts,
    indices out of range, over-long ids or lists."""
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError("a sync batch must be JSON") from None
    if type(d) is not dict:
        raise ValueError("a sync batch must be a JSON object")
    if d.get("v") != FORMAT:
        raise FormatError(f"a sync batch of format {str(d.get('v'))[:16]!r}, not {FORMAT}")
    seq = d.get("q")
    if type(seq) is not int:
        raise ValueError("bad sequence number in a sync batch")
    try:
        items = _list(d.get("i", []), MAX_ITEMS)
        for i in items:  # the common case (a short ASCII string) without is_id's calls
            if type(i) is not str or not 0 < len(i) <= MAX_ID_CHARS or not i.isascii():
                _id(i)
        if len(set(items)) != len(items):
            raise ValueError("repeated item in a sync batch")
        a, b, w = _list(d.get("p", ["", "", ""]), 3)
        pa = _index_array(a, len(items), MAX_PAIRS)
        pb = _index_array(b, len(items), MAX_PAIRS)
        pw = _array(w, COUNT, MAX_PAIRS).astype(np.float64)
        if pb.size != pa.size or pw.size != pa.size or (pa == pb).any() \
                or not np.isfinite(pw).all() or (pw <= 0).any() \
                or (pw.size and pw.max() > 1e300):
            raise ValueError("bad pairs in a sync batch")
        idx, *columns = _list(d.get("l", ["", "", "", "", ""]), 5)
        at = _index_array(idx, len(items), MAX_ITEMS)
        learned = [items[r] for r in at.tolist()]
        cooc, pop, trend = (_array(c, COUNT, MAX_ITEMS) for c in columns[:3])
        content = _array(columns[3], INDEX, MAX_ITEMS)
        for column in (cooc, pop, trend, content):
            if column.size != len(learned) or not np.isfinite(column).all() \
                    or (column <= 0).any() or (column.size and column.max() > 1e300):
                raise ValueError("bad counts in a sync batch")
        segments: dict[str, tuple[int, dict[str, float]]] = {}
        sp = d.get("sp", {})
        if type(sp) is not dict or len(sp) > MAX_SEGMENTS:
            raise ValueError("bad segments in a sync batch")
        for seg, row in sp.items():
            steps, idx, vals = _list(row, 3)
            segments[_id(seg)] = (_count(steps), _table([idx, vals], items))
        bandit_steps, arms = _list(d.get("b", [0, {}]), 2)
        if type(arms) is not dict or len(arms) > MAX_BLEND:
            raise ValueError("bad bandit statistics in a sync batch")
        bandit = {_id(arm): (_number(nr[0]), _number(nr[1]))
                  for arm, nr in arms.items() if len(_list(nr, 2)) == 2}
        blend_steps = []
        for row in _list(d.get("bs", []), MAX_BLEND):
            c, n, step = _list(row, 3)
            blend_steps.append((_count(c, MAX_BLEND), _count(n),
                                [_number(g) for g in _list(step, MAX_BLEND)]))
        factors: dict[str, tuple[list[str], np.ndarray]] = {}
        f = d.get("f", {})
        if type(f) is not dict or len(f) > 8:
            raise ValueError("bad factors in a sync batch")
        for key, row in f.items():
            idx, rows, width = _list(row, 3)
            ids = [items[r] for r in _index_array(idx, len(items), MAX_ITEMS).tolist()]
            flat = _array(rows, FACTOR, MAX_ITEMS * MAX_FACTORS)
            if type(width) is not int or not 0 < width <= MAX_FACTORS \
                    or flat.size != len(ids) * width or not np.isfinite(flat).all():
                raise ValueError("bad factor deltas in a sync batch")
            factors[_id(key)] = (ids, flat.reshape(len(ids), width).astype(np.float64))
        return Batch(
            origin=_id(d.get("o")), seq=seq, events=_count(d.get("n")), items=items,
            cooccurrence=dict(zip(learned, cooc.tolist(), strict=True)), pairs=(pa, pb, pw),
            popularity=dict(zip(learned, pop.tolist(), strict=True)),
            trending=dict(zip(learned, trend.tolist(), strict=True)),
            segment_sums=_groups(d.get("g", {})),
            segments=segments, content=dict(zip(learned, content.tolist(), strict=True)),
            explored=_table(d.get("x"), items, counts=True),
            bandit_steps=_count(bandit_steps), bandit=bandit, blend_steps=blend_steps,
            factors=factors, blend=_blend(d.get("w")),
        )
    except (TypeError, OverflowError, IndexError, KeyError) as exc:  # e.g. a short row
        raise ValueError(f"malformed sync batch: {type(exc).__name__}") from None
