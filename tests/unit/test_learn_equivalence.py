"""The learn path learns what its straightforward form learns.

Each reference below is the learn step written plainly (numpy calls per event, no
shortcuts), kept here so that a faster learn path must land on the same state: matrix
factorization factors and biases, co-occurrence counts (exactly), segment centroids, sizes
and vocabulary, and the deltas a worker sends the others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from models.engine import Engine, EngineConfig
from models.marketing import segments as seg_mod
from models.marketing.segments import OnlineKMeans, Segmenter
from models.recommenders.base import Context
from models.recommenders.cooccurrence import ItemCooccurrence
from models.recommenders.mf import ImplicitMF, decode_vector, encode_vector
from models.recommenders.popularity import Popularity
from models.sync import Outbox, decode_batch
from models.users.profile import UserProfile, apply_click, apply_purchase

_LIMIT = 100.0
_MAX_WEIGHT = 10.0
_UNIFORM_BATCH = 4096
CATEGORIES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "War", "Crime"]


# -- the reference learn steps ----------------------------------------------------------------


def _fits(values: np.ndarray) -> bool:
    return bool(np.abs(values).max() <= _LIMIT)


class ReferenceMF(ImplicitMF):
    """BPR's learn step, one numpy call at a time."""

    def _row_of(self, item_id: str) -> int:
        items = self._items
        i = items.index.get(item_id)
        if i is None:
            import zlib

            row = np.zeros(items.table.shape[1], dtype=np.float32)
            rng = np.random.default_rng([self.seed, zlib.crc32(item_id.encode())])
            row[: self.n_factors] = rng.normal(0.0, self.init_std, self.n_factors)
            i = items.add(item_id, row)
        items.step += 1
        items.last[i] = items.step
        return i

    def _learn_seen(self, item_id: str, seen: set[str], w: float,
                    context: Context | None) -> None:
        w = min(w, _MAX_WEIGHT)
        state = None if context is None else context.user_state
        rows = self._ref_rows(self._row_of(item_id), seen)
        before = self.__dict__.get("_before")
        if before is not None:
            table, ids = self._items.table, self._items.ids
            for r in rows.tolist():
                if r not in before:
                    before[r] = (ids[r], table[r].copy())
        if state is None:
            if rows.size >= 2:
                table = self._items.table
                biases = table[rows, -1]
                new = biases * (1.0 - self.learning_rate * w * self.l2) \
                    + self._ref_gradient(biases, w)
                if _fits(new):
                    table[rows, -1] = new
            return
        user = decode_vector(state.get(self.state_key), self.n_factors)
        if user is None:
            user = np.zeros(self.n_factors + 1, dtype=np.float32)
            user[-1] = 1.0
        if rows.size > 1:
            user = self._ref_pairs(user, rows, w)
        state[self.state_key] = encode_vector(user[:-1])

    def _ref_rows(self, i: int, seen: set[str]) -> np.ndarray:
        ids = self._items.ids
        n, size, uniform = self.n_negatives, len(ids), self._uniform
        if len(uniform) < n:
            uniform.extend(self._rng.random(max(n, _UNIFORM_BATCH)).tolist())
        drawn = [int(uniform.pop() * size) for _ in range(n)]
        keep = [j for j in dict.fromkeys(drawn) if j != i and ids[j] and ids[j] not in seen]
        return np.array([i, *keep], dtype=np.intp)

    def _ref_gradient(self, scores: np.ndarray, w: float) -> np.ndarray:
        g = np.tanh((scores[1:] - scores[0]) * 0.5)
        g += 1.0
        g *= 0.5 * self.learning_rate * w
        return np.concatenate(([g.sum()], -g))

    def _ref_pairs(self, user: np.ndarray, rows: np.ndarray, w: float) -> np.ndarray:
        table = self._items.table
        rows_now = table[rows]
        with np.errstate(invalid="ignore", over="ignore"):
            c = self._ref_gradient(rows_now @ user, w)
            decay = 1.0 - self.learning_rate * w * self.l2
            new_user = user * decay + c @ rows_now
        new_user[-1] = 1.0
        new_rows = rows_now * decay + np.outer(c, user)
        if not (_fits(new_user) and _fits(new_rows)):
            return user
        table[rows] = new_rows
        return new_user


def _ref_add_to_row(nb: np.ndarray, co: np.ndarray, i: int, cols: np.ndarray, w: float
                    ) -> None:
    for c in cols.tolist():  # most recent first: each takes the first empty slot left
        hit = np.flatnonzero(nb == c)
        if hit.size:
            co[hit[0]] += np.float32(w)
    new = [c for c in cols.tolist() if not (nb == c).any()]
    empty = np.flatnonzero(nb == i)[: len(new)].tolist()
    rest = new[len(empty):]
    if rest:
        occupied = np.flatnonzero(nb != i)
        weakest = occupied[np.argsort(co[occupied], kind="stable")[: len(rest)]].tolist()
        weak_counts = [float(co[s]) for s in weakest]
        for s, c, count in zip(weakest, rest, weak_counts, strict=False):
            if count <= np.float32(w):
                nb[s] = c
                co[s] = w
    for s, c in zip(empty, new, strict=False):
        nb[s] = c
        co[s] = w


def _ref_add_to_rows(nb: np.ndarray, co: np.ndarray, rows: Sequence[int], j: int, w: float
                     ) -> None:
    for r in rows:
        hit = np.flatnonzero(nb[r] == j)
        if hit.size:
            co[r, hit[0]] += np.float32(w)
            continue
        empty = np.flatnonzero(nb[r] == r)
        slot = int(empty[0]) if empty.size else int(co[r].argmin())
        if empty.size or co[r, slot] <= np.float32(w):
            nb[r, slot] = j
            co[r, slot] = w


class ReferenceCooccurrence(ItemCooccurrence):
    """The co-occurrence learn step, pair by pair."""

    def _learn_checked(self, item_id: str, history: Sequence[str], raw_weight: float,
                       context: Context | None = None) -> None:
        recent = self._recent(history)
        self._step += 1
        self._unit *= self._growth
        if self._unit > 1e20:
            self._renormalize()
        w = raw_weight * self._unit
        self._total += w
        counts = self._counts
        i = counts.index.get(item_id)
        if i is None:
            i = counts.add(item_id)
        js = [counts.index[h] for h in recent if h in counts.index and counts.index[h] != i]
        n = float(counts.n[i]) + w
        counts.n[i] = n
        counts.inv_sqrt_n[i] = 1.0 / math.sqrt(n)
        counts.last[i] = self._step
        if js:
            _ref_add_to_row(counts.nb[i], counts.co[i], i, np.array(js), w)
            _ref_add_to_rows(counts.nb, counts.co, js, i, w)
        if self.fallback is not None:
            self.fallback._learn_checked(item_id, history, raw_weight)


class ReferenceKMeans(OnlineKMeans):
    def _learn(self, v: np.ndarray) -> None:
        if self._buffer is not None:
            super()._learn(v)  # warm-up: seeding, one batch step
            return
        c = self._centroids
        assert c is not None
        d2 = np.array([float(((c[j] - v) ** 2).sum()) for j in range(self.k)])
        j = int(d2.argmin())
        nearest = float(d2[j])
        if nearest > seg_mod.SPAWN_FACTOR * self._spread and not self._counts.all():
            j = int(np.argmin(self._counts))
            c[j] = v
            self._counts[j] = 1
            return
        self._counts[j] += 1
        c[j] += (v - c[j]) / min(int(self._counts[j]), self.memory)
        seen = min(int(self._counts.sum()), self.memory)
        self._spread += (nearest - self._spread) / seen


def _ref_features(p: UserProfile, now: int, cats: Sequence[str],
                  scales: seg_mod.FeatureScales) -> np.ndarray:
    base = len(seg_mod.BASE_FEATURES)
    x = np.zeros(base + len(cats) + 1)
    last = seg_mod._timestamp(p.last_seen_ms)
    first = seg_mod._timestamp(p.first_seen_ms)
    recency_norm = math.log1p(scales.recency_cap_days)
    clean = seg_mod._clean
    x[seg_mod.RECENCY] = 1.0 if last is None else \
        math.log1p(max(0, now - last) / seg_mod.DAY_MS) / recency_norm
    if first is not None:
        x[seg_mod.TENURE] = math.log1p(max(0, now - first) / seg_mod.DAY_MS) / recency_norm
    clicks = clean(p.clicks, seg_mod.MAX_SCORE)
    purchases = clean(p.purchases, seg_mod.MAX_SCORE)
    events = clicks + purchases
    x[seg_mod.FREQUENCY] = math.log1p(events) / math.log1p(scales.frequency_cap)
    x[seg_mod.MONETARY] = math.log1p(clean(p.spend, seg_mod.MAX_SCORE)) \
        / math.log1p(scales.spend_cap)
    if events > 0:
        x[seg_mod.PURCHASE_RATIO] = purchases / events
    scores = {c: clean(s, seg_mod.MAX_SCORE) for c, s in p.interests.items()}
    total = sum(scores.values())
    if total > 0.0:
        norm = max(total, seg_mod.INTEREST_FLOOR)
        for j, cat in enumerate(cats, base):
            if cat:
                x[j] = scores.get(cat, 0.0) / norm
        shown = sum([scores.get(cat, 0.0) for cat in set(cats) if cat])
        x[-1] = max(0.0, total - shown) / norm
    return np.clip(x, 0.0, 1.0)


class ReferenceSegmenter(Segmenter):
    """Learn and assign through plain steps: features as a numpy vector, every weight
    decayed on the spot."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        km = self._kmeans
        self._kmeans = ReferenceKMeans(k=km.k, seed=km.seed, memory=km.memory,
                                       warmup=km.warmup, n_iter=km.n_iter)

    def _ref_vocabulary(self, scores: dict[str, float]) -> None:
        self._scale /= self._keep
        weights = self._weights
        if self._scale > 1e100:
            for cat in weights:
                weights[cat] /= self._scale
            self._scale = 1.0
        scores = {c: v for c, v in scores.items() if v > 0.0 and c}
        total = sum(scores.values())
        if total <= 0.0:
            return
        for cat, s in scores.items():
            weights[cat] = weights.get(cat, 0.0) + self._scale * s / total
        slots = self._slots
        for cat in sorted((c for c in scores if c not in slots),
                          key=lambda c: (-weights[c], c)):
            if "" in slots:
                j = slots.index("")
            else:
                j = min([(weights.get(c, 0.0), c, i) for i, c in enumerate(slots)])[2]
                if not weights[cat] > seg_mod.VOCAB_MARGIN * weights.get(slots[j], 0.0):
                    break
                self._kmeans.reset_feature(len(seg_mod.BASE_FEATURES) + j)
            slots[j] = cat
        if len(weights) > 4 * self.max_categories:
            spare = sorted((c for c in weights if c not in slots),
                           key=lambda c: (weights[c], c))
            for cat in spare[: len(weights) - 3 * self.max_categories]:
                del weights[cat]

    def learn_assign(self, previous: str | None, profile: UserProfile, now_ms: int) -> str:
        self._ref_vocabulary({c: seg_mod._clean(s, seg_mod.MAX_SCORE)
                              for c, s in profile.interests.items()})
        x = _ref_features(profile, now_ms, self._slots, self.scales)
        self._spend_hist *= self._keep
        monetary = float(x[seg_mod.MONETARY])
        if monetary > 0.0:
            self._spend_hist[min(int(monetary * seg_mod.SPEND_BINS),
                                 seg_mod.SPEND_BINS - 1)] += 1.0
        self._kmeans.learn_one(x)
        centroids = self._kmeans.centroids()
        assert centroids is not None
        d = np.sqrt(((centroids - x) ** 2).sum(axis=1))
        prev = self._index.get(previous) if previous is not None else None
        best = int(d.argmin())
        if prev is not None and not d[best] < (1.0 - self.switch_margin) * d[prev]:
            best = prev
        if prev != best:
            if prev is not None:
                self._sizes[prev] = max(0, self._sizes[prev] - 1)
            self._sizes[best] += 1
        return self._names[best]


class ReferenceEngine(Engine):
    """The engine whose outbox learns the co-occurrence pairs by working them out again."""

    def _learn(self, item_id: str, history: Sequence[str], weight: float, context: Context,
               arm: str, hit: bool | None, *, record: bool = True) -> None:
        box = self.sync if record else None
        recent: list[str] = []
        if box is not None:
            cooc = self._cooc
            if self._recording != (box, self.hybrid):
                self._start_recording(box)
            recent = [h for h in cooc._recent(history) if h != item_id and h in cooc]
        self.hybrid.learn_one(item_id, history, weight, context)
        self.updates += 1
        if hit is not None and arm in self.bandit.arms:
            self.bandit.update(arm, float(hit))
        if box is not None:
            box.record(item_id, recent, float(weight), context.segment,
                       arm=arm if arm in self.bandit.arms else "", hit=hit,
                       blend=self.hybrid.last_blend_step, user=context.user or "")


# -- a seeded stream --------------------------------------------------------------------------


def stream(n: int, n_items: int, n_users: int, seed: int
           ) -> list[tuple[str, str, list[str], float]]:
    """(user, item, history before it, weight): zipf-ish items, a few long histories,
    repeats, heavy and light weights."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / (np.arange(n_items) + 3.0)
    pop /= pop.sum()
    histories: dict[str, list[str]] = {}
    out = []
    for _ in range(n):
        user = f"u{int(rng.integers(n_users))}"
        if rng.random() < 0.3:
            item = f"i{int(rng.integers(n_items))}"
        else:
            item = f"i{int(rng.choice(n_items, p=pop))}"
        h = histories.setdefault(user, [])
        weight = float(rng.choice([1.0, 1.0, 1.0, 3.0, 0.5, 25.0]))
        out.append((user, item, list(h), weight))
        h.append(item)
        del h[:-30]
    return out


EVENTS = stream(4000, 150, 60, seed=7)


# -- matrix factorization ---------------------------------------------------------------------


@pytest.mark.parametrize(("n_factors", "max_items"), [(32, 100_000), (8, 40)])
def test_mf_learns_what_the_reference_learns(n_factors: int, max_items: int) -> None:
    fast = ImplicitMF(n_factors=n_factors, max_items=max_items, seed=3)
    ref = ReferenceMF(n_factors=n_factors, max_items=max_items, seed=3)
    fast.record_changes()
    ref.record_changes()
    states: dict[str, dict[str, Any]] = {}
    ref_states: dict[str, dict[str, Any]] = {}
    for n, (user, item, history, weight) in enumerate(EVENTS):
        if n % 11 == 0:  # anonymous: biases only
            fast.learn_one(item, history, weight)
            ref.learn_one(item, history, weight)
            continue
        if n % 97 == 0:  # a corrupt stored vector reads as a new user
            states.setdefault(user, {})["mf"] = "junk"
            ref_states.setdefault(user, {})["mf"] = "junk"
        fast.learn_one(item, history, weight, Context(user_state=states.setdefault(user, {})))
        ref.learn_one(item, history, weight,
                      Context(user_state=ref_states.setdefault(user, {})))
        if n % 1000 == 999:
            ids, deltas = fast.take_changes()
            ref_ids, ref_deltas = ref.take_changes()
            assert ids == ref_ids
            np.testing.assert_allclose(deltas, ref_deltas, rtol=1e-9, atol=0)
    size = len(ref._items.ids)
    assert fast._items.ids == ref._items.ids
    assert fast._items.index == ref._items.index
    np.testing.assert_allclose(fast._items.table[:size], ref._items.table[:size],
                               rtol=1e-9, atol=0)
    assert fast._items.last.tolist() == ref._items.last.tolist()
    assert fast._uniform == ref._uniform
    assert states == ref_states


# -- co-occurrence ----------------------------------------------------------------------------


@pytest.mark.parametrize(("max_items", "max_neighbours", "half_life"),
                         [(100_000, 256, 20_000.0), (60, 6, None), (100_000, 3, 500.0)])
def test_cooccurrence_learns_what_the_reference_learns(
    max_items: int, max_neighbours: int, half_life: float | None
) -> None:
    def make(cls: type[ItemCooccurrence]) -> ItemCooccurrence:
        return cls(window=8, max_items=max_items, max_neighbours=max_neighbours,
                   half_life=half_life, fallback=Popularity(half_life=None))

    fast, ref = make(ItemCooccurrence), make(ReferenceCooccurrence)
    for _, item, history, weight in EVENTS:
        fast.learn_one(item, history, weight)
        ref.learn_one(item, history, weight)
    a, b = fast._counts, ref._counts
    assert a.ids == b.ids and a.index == b.index and a.free == b.free
    for name in ("n", "inv_sqrt_n", "last", "nb", "co", "column"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert (fast._step, fast._unit, fast._total) == (ref._step, ref._unit, ref._total)


# -- segments ---------------------------------------------------------------------------------


def profiles(n: int, seed: int) -> list[tuple[str, UserProfile, int]]:
    """(user, profile after the event, time) for a stream of clicks and purchases."""
    rng = np.random.default_rng(seed)
    day = seg_mod.DAY_MS
    users: dict[str, UserProfile] = {}
    out = []
    for k in range(n):
        user = f"u{int(rng.integers(300))}"
        ts = 1_000 * day + k * 600_000
        cats = [CATEGORIES[int(c)] for c in rng.choice(len(CATEGORIES), 2, replace=False)]
        p = users.get(user, UserProfile())
        if rng.random() < 0.1:
            p = apply_purchase(p, f"i{k}", ts, float(rng.uniform(1, 500)), cats,
                               half_life_ms=7 * day)
        else:
            p = apply_click(p, f"i{k}", ts, cats, half_life_ms=7 * day)
        users[user] = p
        out.append((user, p, ts))
    return out


@pytest.mark.parametrize("max_categories", [16, 3])
def test_segmenter_learns_what_the_reference_learns(max_categories: int) -> None:
    fast = Segmenter(k=4, warmup=40, memory=200, max_categories=max_categories)
    ref = ReferenceSegmenter(k=4, warmup=40, memory=200, max_categories=max_categories)
    held: dict[str, str | None] = {}
    for n, (user, p, ts) in enumerate(profiles(3000, seed=5)):
        now = ts + (n % 5) * 9 * seg_mod.DAY_MS  # learned later too: recency above 0
        got = fast.learn_assign(held.get(user), p, now)
        want = ref.learn_assign(held.get(user), p, now)
        assert got == want
        held[user] = got
    centroids, ref_centroids = fast.centroids(), ref.centroids()
    assert centroids is not None and ref_centroids is not None
    np.testing.assert_allclose(centroids, ref_centroids, rtol=1e-9, atol=1e-12)
    assert fast._kmeans.counts().tolist() == ref._kmeans.counts().tolist()
    assert math.isclose(fast._kmeans._spread, ref._kmeans._spread, rel_tol=1e-9)
    assert fast._sizes == ref._sizes and fast._slots == ref._slots
    assert fast._weights.keys() == ref._weights.keys()
    for cat, w in ref._weights.items():
        assert math.isclose(fast._weights[cat], w, rel_tol=1e-9)
    np.testing.assert_allclose(fast._spend_hist, ref._spend_hist, rtol=1e-9)


# -- the engine and what it sends the other workers ----------------------------------------


def test_engine_sends_and_learns_what_the_reference_does() -> None:
    config = EngineConfig(exploration=0.0, max_items=60, cooccurrence_window=6)
    fast, ref = Engine(config), ReferenceEngine(config)
    fast.sync, ref.sync = Outbox(min_users=1), Outbox(min_users=1)
    stored: dict[str, tuple[dict | None, dict | None]] = {}
    for n, (user, item, _, _) in enumerate(EVENTS[:2500]):
        outputs = []
        for engine in (fast, ref):
            profile = stored.get(user, (None, None))[engine is ref]
            kind = "purchase" if n % 9 == 0 else "click"
            r = engine.process(kind, user, item, 1_000 * n, event_id=f"e{n}",
                               fingerprint="", profile=profile, dedupe=None, amount=5.0,
                               serve=n % 5 == 0)
            outputs.append(r.profile)
        assert outputs[0] == outputs[1]
        stored[user] = (outputs[0], outputs[1])
        if n % 500 == 499:
            assert fast.drain_sync("w", n) == ref.drain_sync("w", n)
    sent = fast.drain_sync("w", 0)
    assert sent == ref.drain_sync("w", 0)
    assert sent is None or decode_batch(sent).events > 0
    assert fast.snapshot() == ref.snapshot()


def test_engine_works_out_the_cooccurrence_pairs_once() -> None:
    """With an outbox, an event's recent items are read once: by the model learning them,
    whose pairs the outbox then sums (not a second pass to find the same pairs)."""
    engine = Engine(EngineConfig(exploration=0.0))
    engine.sync = Outbox(min_users=1)
    cooc = engine._cooc
    calls = 0
    recent = cooc._recent

    def counted(history: Sequence[str]) -> list[str]:
        nonlocal calls
        calls += 1
        return recent(history)

    cooc._recent = counted  # type: ignore[method-assign]
    profile = None
    for n, item in enumerate(["a", "b", "c", "a"]):
        profile = engine.process("click", "u", item, n, event_id=f"e{n}", fingerprint="",
                                 profile=profile, dedupe=None, serve=False).profile
    assert calls == 4
    batch = decode_batch(engine.drain_sync("w", 1) or b"")
    pairs = {(batch.items[a], batch.items[b]): w for a, b, w in zip(*batch.pairs, strict=True)}
    assert sorted(pairs) == [("a", "b"), ("a", "c"), ("b", "c")]
