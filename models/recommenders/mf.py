"""Online matrix factorization: implicit-feedback ranking (BPR) and explicit ratings (biased MF).

Item factors live in the model; each user's factors live in their profile and reach the
model as ``Context.user_state[state_key]``, so the model never holds a user id.
"""

from __future__ import annotations

import binascii
import zlib
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from models.checks import check_int, check_non_negative, check_number, is_real
from models.recommenders.base import (
    Context,
    Ranked,
    ScoredItem,
    check_item_id,
    check_k,
    check_weight,
    no_reasons,
)
from models.recommenders.catalogue import Catalogue
from models.recommenders.popularity import as_lookup
from models.recommenders.topk import cut_value

_INITIAL_CAPACITY = 1024
# No learned value (and no value read from a profile) may exceed this in magnitude, so no
# score or step comes near float32 overflow (|u . q| <= n_factors * _LIMIT ** 2). Learned
# values stay below about 3 on MovieLens; an update that would cross the limit is skipped
# like a non-finite one, and a profile value beyond it is read as a new user.
_LIMIT = 100.0
# Ratings beyond this are refused: they would overflow the running mean, and biases that
# large would be skipped anyway.
_MAX_RATING = 1e9
# One SGD step of ``weight * learning_rate`` stands for ``weight`` repeated events only while
# the step stays small; heavier weights count as this many events.
_MAX_WEIGHT = 10.0
_UNIFORM_BATCH = 4096


# -- shared parts ---------------------------------------------------------------------------


def _check_rate(name: str, value: object, *, zero_ok: bool) -> float:
    """A learning rate, L2 strength or init scale: a number in (0, 1], or [0, 1]."""
    # Bounded so that no step can overflow float32 (values are at most _LIMIT).
    return check_number(name, value, 0.0, 1.0, low_open=not zero_ok)


def check_rating(rating: object) -> float:
    """Return ``rating`` as a float if it is a finite number within +-1e9, else raise
    ValueError.

    >>> check_rating(4)
    4.0
    """
    if not is_real(rating):
        raise ValueError(f"a rating must be a number, got {rating!r}")
    r = float(rating)  # type: ignore[arg-type]
    if not abs(r) <= _MAX_RATING:  # also refuses NaN
        raise ValueError(f"a rating must be finite and within +-{_MAX_RATING:g}, got {rating!r}")
    return r


def _check_key(state_key: object) -> str:
    if not isinstance(state_key, str) or not state_key:
        raise ValueError(f"state_key must be a non-empty string, got {state_key!r}")
    return state_key


def _check_history(history: Sequence[str]) -> set[str]:
    """``history`` as a set, after checking it is a sequence of item ids."""
    if isinstance(history, str):
        raise ValueError("history must be a sequence of item ids, not one string")
    try:
        seen = set(history)
    except TypeError:
        raise ValueError(f"history must be a sequence of item ids, got {history!r}") from None
    if "" in seen or not set(map(type, seen)) <= {str}:
        for item_id in seen:
            check_item_id(item_id)
    return seen


def encode_vector(vector: np.ndarray) -> str:
    """A float vector as base64 of its little-endian float32 bytes (JSON-able, compact).

    >>> encode_vector(np.array([1.0, -2.0]))
    'AACAPwAAAMA='
    """
    return binascii.b2a_base64(np.asarray(vector, dtype="<f4").tobytes(), newline=False).decode()


def decode_vector(value: object, size: int) -> np.ndarray | None:
    """What ``encode_vector`` made of ``size`` values, followed by one spare 1.0 slot (a
    fresh float32 array of ``size + 1``); None unless ``value`` holds ``size`` values
    within +-``_LIMIT``, so a corrupt or foreign value, or NaN or inf inside, reads as a
    new user.

    >>> decode_vector("AACAPwAAAMA=", 2)
    array([ 1., -2.,  1.], dtype=float32)
    >>> decode_vector("AACAPwAAAMA=", 3) is None, decode_vector("not base64!", 2) is None
    (True, True)
    """
    if type(value) is not str or len(value) != 4 * ((4 * size + 2) // 3):
        return None
    try:
        raw = binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 4 * size:
        return None
    # One numpy call (this runs at every learn step): a bytearray makes it writable.
    out = np.frombuffer(bytearray(raw + _ONE), dtype="<f4")
    return out if _fits(out) else None


_ONE = np.array(1.0, dtype="<f4").tobytes()  # the spare slot of decode_vector
_max = np.maximum.reduce


def _fits(values: np.ndarray) -> bool:
    """Whether all values are finite and within +-``_LIMIT`` (NaN compares False)."""
    # The ufunc's reduce, not ndarray.max: its Python wrapper costs more than the work.
    return bool(_max(np.abs(values), axis=None) <= _LIMIT)


def _user_state(context: Context | None) -> dict[str, Any] | None:
    return None if context is None else context.user_state


class _Items:
    """Item ids -> rows of a float32 ``table`` (an item's factors, then its bias, then
    whatever else the model keeps per item).

    Arrays grow by doubling as items arrive. A new item beyond ``max_items`` first makes
    the least recently learned tenth forgotten: their rows are zeroed and reused.
    """

    def __init__(self, width: int, max_items: int) -> None:
        self.max_items = max_items
        self.index: dict[str, int] = {}
        self.ids: list[str] = []  # "" marks a forgotten row (never a valid id)
        self.free: list[int] = []  # forgotten rows, reused lowest first
        self.step = 0
        cap = min(_INITIAL_CAPACITY, max_items)
        self.table = np.zeros((cap, width), dtype=np.float32)
        self.last = np.zeros(cap, dtype=np.int64)  # step at which each row was last learned

    def add(self, item_id: str, row: np.ndarray) -> int:
        """The row index of a new item, whose row starts as ``row``."""
        if not self.free and len(self.ids) >= self.max_items:
            self._forget_least_recent()
        if self.free:
            i = self.free.pop()
            self.ids[i] = item_id
        else:
            i = len(self.ids)
            if i == self.last.size:
                self._grow(min(2 * i, self.max_items))
            self.ids.append(item_id)
        self.index[item_id] = i
        self.table[i] = row
        return i

    def touch(self, i: int) -> None:
        self.step += 1
        self.last[i] = self.step

    def _grow(self, cap: int) -> None:
        extra = cap - self.last.size
        self.table = np.concatenate(
            [self.table, np.zeros((extra, self.table.shape[1]), dtype=np.float32)]
        )
        self.last = np.concatenate([self.last, np.zeros(extra, dtype=np.int64)])

    def _forget_least_recent(self) -> None:
        size = len(self.ids)
        # Stable: among rows last learned at the same step, the lowest index goes first.
        victims = np.argsort(self.last[:size], kind="stable")[: max(1, self.max_items // 10)]
        self.table[victims] = 0.0
        self.last[victims] = 0
        for v in victims.tolist():
            del self.index[self.ids[v]]
            self.ids[v] = ""
        self.free.extend(sorted(victims.tolist(), reverse=True))

    @property
    def nbytes(self) -> int:
        return self.table.nbytes + self.last.nbytes


class _FactorModel:
    """What both models share: hyperparameter checks, the item table, item lookups."""

    def __init__(
        self, n_factors: int, learning_rate: float, l2: float, init_std: float,
        max_items: int, seed: int, state_key: str, extra_columns: int,
    ) -> None:
        self.n_factors = check_int("n_factors", n_factors, low=1)
        self.learning_rate = _check_rate("learning_rate", learning_rate, zero_ok=False)
        self.l2 = _check_rate("l2", l2, zero_ok=True)
        self.init_std = _check_rate("init_std", init_std, zero_ok=True)
        self.max_items = check_int("max_items", max_items, low=1)
        self.seed = check_int("seed", seed, low=0)
        self.state_key = _check_key(state_key)
        self._rng = np.random.default_rng(seed)
        # Item rows: factors, bias, then the subclass's ``extra_columns``.
        self._items = _Items(n_factors + 1 + extra_columns, max_items)

    def _row_of(self, item_id: str) -> int:
        """The item's row, added (factors from N(0, init_std), the rest 0) if it is new."""
        items = self._items
        i = items.index.get(item_id)
        if i is None:
            row = np.zeros(items.table.shape[1], dtype=np.float32)
            # Drawn from (seed, item id): every worker starts an item at the same factors,
            # so the summed deltas they exchange (models/sync.py) move the same vectors.
            rng = np.random.default_rng([self.seed, zlib.crc32(item_id.encode())])
            row[: self.n_factors] = rng.normal(0.0, self.init_std, self.n_factors)
            i = items.add(item_id, row)
        items.step += 1  # items.touch(i), inlined: once per learned item
        items.last[i] = items.step
        return i

    @property
    def nbytes(self) -> int:
        """Bytes held by the numpy state (the item-id index comes on top)."""
        return self._items.nbytes

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items.index

    def __len__(self) -> int:
        return len(self._items.index)


# -- implicit feedback ------------------------------------------------------------------------


class ImplicitMF(_FactorModel):
    """Online BPR matrix factorization with item biases, for "what will this user pick next".

    Each ``learn_one`` is one step of stochastic gradient ascent on BPR's pairwise
    log-likelihood (Rendle et al. 2009): the chosen item i should outscore each of
    ``n_negatives`` items j drawn uniformly from the known items (not i, not in
    ``history``), where ``score(u, i) = p_u . q_i + b_i``. All negatives are updated in one
    vectorized step. A user's vector ``p_u`` is read from and written back to
    ``context.user_state[state_key]`` (``n_factors`` float32 values, base64: 172 characters
    at 32 factors); a user without one starts at zero, so their first ranking is the item
    biases alone. Without a user state (no context, or ``user_state=None``) only the item
    biases learn and ``rank`` orders items by bias: a popularity-like anonymous ranking.
    A corrupt state value is read as a new user and overwritten by the next ``learn_one``.

    The defaults are the method's usual ones, not tuned to a data set: BPR's reference
    implementations (MyMediaLite, rrecsys) learn at 0.05 from factors drawn from
    N(0, 0.1); L2 0.01 is the top of their 0.0025-0.01 range (a stream never stops, so
    values must stay bounded); 4 negatives per positive is NCF's choice; 32 factors is a
    common middle size.

    Memory: ``4 * n_factors + 12`` bytes per known item plus the id index; at most
    ``max_items`` items (past that, the least recently learned tenth is forgotten). One
    event costs O(``n_negatives * n_factors``); ``rank`` one matrix-vector product over the
    known items. With a ``catalogue``, its unavailable items are never ranked. Learning is
    deterministic for a given ``seed``; the model pickles.

    >>> from models.recommenders.base import Context
    >>> m = ImplicitMF(n_factors=4, seed=1)
    >>> alice, bob = Context(user_state={}), Context(user_state={})
    >>> for _ in range(300):
    ...     m.learn_one("x", [], context=alice)
    ...     m.learn_one("y", [], context=bob)
    ...     m.learn_one("z", [])  # anonymous
    >>> [s.item_id for s in m.rank([], exclude=(), k=3, context=alice)][0]
    'x'
    >>> [s.item_id for s in m.rank([], exclude={"x"}, k=3, context=bob)]
    ['y', 'z']
    >>> sorted(alice.user_state), len(alice.user_state["mf"])
    (['mf'], 24)
    """

    strategy = "mf"

    def __init__(
        self,
        n_factors: int = 32,
        learning_rate: float = 0.05,
        l2: float = 0.01,
        n_negatives: int = 4,
        init_std: float = 0.1,
        max_items: int = 100_000,
        catalogue: Catalogue | None = None,
        seed: int = 0,
        state_key: str = "mf",
    ) -> None:
        super().__init__(
            n_factors, learning_rate, l2, init_std, max_items, seed, state_key, extra_columns=0
        )
        self.n_negatives = check_int("n_negatives", n_negatives, low=1)
        self.catalogue = catalogue
        self._uniform: list[float] = []  # pre-drawn uniforms in [0, 1), consumed from the end

    # -- learning ---------------------------------------------------------------------------

    def learn_one(
        self, item_id: str, history: Sequence[str], weight: float = 1.0,
        context: Context | None = None,
    ) -> None:
        """Learn that the user of ``context`` (recent items ``history``) chose ``item_id``.

        ``weight`` scales the step, as if the event happened that many times (up to 10).
        """
        check_item_id(item_id)
        w = check_weight(weight)
        self._learn_seen(item_id, _check_history(history), w, context)

    def _learn_checked(
        self, item_id: str, history: Sequence[str], w: float, context: Context | None = None
    ) -> None:
        """``learn_one`` once its arguments are checked (``w`` a float) by the caller."""
        self._learn_seen(item_id, set(history), w, context)

    def _learn_seen(
        self, item_id: str, seen: set[str], w: float, context: Context | None
    ) -> None:
        w = min(w, _MAX_WEIGHT)
        state = _user_state(context)
        rows = self._rows(self._row_of(item_id), seen)
        before = self.__dict__.get("_before")
        if before is not None:
            table, ids = self._items.table, self._items.ids
            for r in rows.tolist():
                if r not in before:
                    before[r] = (ids[r], table[r].copy())
        if state is None:
            self._learn_biases(rows, w)
            return
        user = decode_vector(state.get(self.state_key), self.n_factors)
        if user is None:
            user = self._new_user()
        if rows.size > 1:
            user = self._learn_pairs(user, rows, w)
        state[self.state_key] = encode_vector(user[:-1])

    # -- sharing what was learned (models/sync.py) --------------------------------------------

    def record_changes(self) -> None:
        """Start keeping each learned row as it was before this model first changed it,
        so ``take_changes`` can return the summed change (idempotent)."""
        if self.__dict__.get("_before") is None:
            self._before: dict[int, tuple[str, np.ndarray]] | None = {}

    def __getstate__(self) -> dict[str, Any]:
        # What is being recorded for the other workers stays out of checkpoints.
        state = self.__dict__.copy()
        state.pop("_before", None)
        return state

    def take_changes(self) -> tuple[list[str], np.ndarray]:
        """The items learned since the last call and the change of each one's row
        (factors then bias), summed over every step; starts over. A row forgotten and
        reused for another item in between is left out (its change is lost)."""
        before = self.__dict__.get("_before")
        if not before:
            return [], np.zeros((0, self.n_factors + 1))
        table, ids = self._items.table, self._items.ids
        rows = [r for r, (item_id, _) in before.items() if ids[r] == item_id]
        old = np.array([before[r][1] for r in rows], dtype=np.float32).reshape(
            len(rows), table.shape[1])
        delta = table[rows].astype(np.float64) - old
        self._before = {}
        changed = np.flatnonzero(np.abs(delta).max(axis=1) > 0)
        return [ids[rows[c]] for c in changed.tolist()], delta[changed]

    def apply_changes(self, item_ids: Sequence[str], deltas: np.ndarray) -> int:
        """Add another copy's ``take_changes`` to these rows (new items start at the
        same factors everywhere); the rows applied (none if they do not fit)."""
        if not len(item_ids) or deltas.shape != (len(item_ids), self.n_factors + 1):
            return 0
        items = self._items
        index = items.index
        found = [index.get(i) for i in item_ids]
        rows = np.array([self._row_of(i) if r is None else r
                         for i, r in zip(item_ids, found, strict=True)], dtype=np.intp)
        items.last[rows] = items.step + np.arange(1, rows.size + 1)  # learned: recent
        items.step += rows.size
        table = items.table
        new = table[rows] + deltas.astype(np.float32)
        if not _fits(new):
            return 0
        table[rows] = new
        before = self.__dict__.get("_before")
        if before:  # what others learned is not ours to send back
            for r, d in zip(rows.tolist(), deltas, strict=True):
                if r in before:
                    before[r] = (before[r][0], before[r][1] + d.astype(np.float32))
        return len(rows)

    def _new_user(self) -> np.ndarray:
        user = np.zeros(self.n_factors + 1, dtype=np.float32)
        user[-1] = 1.0
        return user

    def _rows(self, i: int, seen: set[str]) -> np.ndarray:
        """``i`` followed by its distinct negatives: known items other than i and ``seen``."""
        items = self._items
        ids = items.ids
        n, size, uniform = self.n_negatives, len(ids), self._uniform
        if len(uniform) < n:
            # Drawing in batches costs a fraction of one Generator call per event.
            uniform.extend(self._rng.random(max(n, _UNIFORM_BATCH)).tolist())
        pop = uniform.pop
        rows = [i]
        for _ in range(n):
            j = int(pop() * size)
            # Repeated draws would be updated once by fancy indexing: keep one of each.
            if j not in rows and ids[j] and ids[j] not in seen:
                rows.append(j)
        return np.array(rows, dtype=np.intp)

    def _gradient(self, scores: np.ndarray, w: float) -> np.ndarray:
        """Step-scaled gradient of sum_j log sigmoid(s_i - s_j) w.r.t. [s_i, s_j1, ...]."""
        g = np.tanh((scores[1:] - scores[0]) * 0.5)  # sigmoid(s_j - s_i) = (1 + g) / 2
        g += 1.0
        g *= 0.5 * self.learning_rate * w
        # Filled in place: np.concatenate and ndarray.sum's wrapper cost more than the
        # arithmetic at these sizes.
        c = np.empty(g.size + 1, dtype=g.dtype)
        c[0] = np.add.reduce(g)
        np.negative(g, out=c[1:])
        return c

    def _learn_biases(self, rows: np.ndarray, w: float) -> None:
        if rows.size < 2:
            return
        table = self._items.table
        biases = table.take(rows, axis=0)[:, -1]
        new = biases * (1.0 - self.learning_rate * w * self.l2) + self._gradient(biases, w)
        if _fits(new):
            table[rows, -1] = new

    def _learn_pairs(self, user: np.ndarray, rows: np.ndarray, w: float) -> np.ndarray:
        """One step for ``user`` (factors then a 1.0: the bias is a factor users hold at 1)
        and ``rows``; returns the user's new vector (the old one if the step was skipped)."""
        table = self._items.table
        m = rows.size
        # One block: the rows of i and each j (factors then bias), then the user's, so
        # each element-wise step is one numpy call for all of them (at these sizes a
        # call costs more than its arithmetic).
        block = np.empty((m + 1, table.shape[1]), dtype=np.float32)
        rows_now = block[:m]
        table.take(rows, axis=0, out=rows_now)
        block[m] = user
        change = np.empty_like(block)
        # float32 BLAS kernels on this hardware now and then raise a spurious "invalid"
        # flag on finite inputs (seen once in ~10 identical seeded runs); a real NaN or
        # overflow cannot slip through either way: _fits refuses the step below.
        with np.errstate(invalid="ignore", over="ignore"):
            c = self._gradient(rows_now @ user, w)
            np.multiply(c[:, None], user, out=change[:m])  # np.outer, without its wrapper
            np.matmul(c, rows_now, out=change[m])
            block *= 1.0 - self.learning_rate * w * self.l2
            block += change
        block[m, -1] = 1.0
        if not _fits(block):
            return user
        table[rows] = rows_now
        return block[m]

    # -- serving ----------------------------------------------------------------------------

    def rank(
        self, history: Sequence[str], exclude: Collection[str], k: int,
        context: Context | None = None,
    ) -> list[ScoredItem]:
        """The ``k`` best items for the user of ``context``, best first, never one of
        ``history``, ``exclude`` or the catalogue's unavailable items."""
        return self.ranked(history, exclude, k, context).items()

    def ranked(
        self, history: Sequence[str], exclude: Collection[str], k: int,
        context: Context | None = None,
    ) -> Ranked:
        """What ``rank`` returns, with reasons made on demand (``Ranked``)."""
        check_k(k)
        seen = _check_history(history)
        items = self._items
        size = len(items.ids)
        if k == 0 or not size:
            return Ranked([], [], no_reasons)
        state = _user_state(context)
        user = None if state is None else decode_vector(state.get(self.state_key), self.n_factors)
        if user is None or not user[:-1].any():
            scores = items.table[:size, -1]
            explained = [("popular", self.strategy)]
        else:
            # As in _learn_pairs: float32 BLAS kernels now and then raise a spurious
            # "invalid" flag on finite inputs; the table and the decoded user vector are
            # finite and bounded (_fits, decode_vector), so the scores are too.
            with np.errstate(invalid="ignore", over="ignore"):
                scores = items.table[:size] @ user
            explained = [("liked by people with similar taste", self.strategy)]
        picked = self._pick(scores, k, seen, as_lookup(exclude))
        ids = items.ids
        return Ranked([ids[c] for c in picked], scores[picked].astype(np.float64),
                      lambda positions: explained * len(positions))

    def _pick(
        self, scores: np.ndarray, k: int, seen: set[str], excluded: Collection[str]
    ) -> list[int]:
        """Up to ``k`` rankable rows, by score (best first) then row.

        Sorts the best ``2k + len(seen)`` scores, and twice as many each round while too
        many of them are excluded, so a call rarely sorts every score.
        """
        ids, catalogue = self._items.ids, self.catalogue
        unavailable = catalogue.unavailable() if catalogue is not None else ()
        n = scores.size
        want = min(n, 2 * k + len(seen))
        done = 0
        picked: list[int] = []
        while True:
            if want < n:
                # Keep every tie at the cut, so the result does not depend on ``want``.
                cut = cut_value(scores, want)
                candidates = np.nonzero(scores >= cut)[0]
            else:
                candidates = np.arange(n)
            order = candidates[np.lexsort((candidates, -scores[candidates]))]
            for c in order[done:].tolist():
                item_id = ids[c]
                if not item_id or item_id in seen or item_id in excluded:
                    continue  # "" is a forgotten row
                if item_id in unavailable:
                    continue
                picked.append(c)
                if len(picked) == k:
                    return picked
            if order.size == n:
                return picked
            done = order.size
            want = min(n, 2 * want)

    # -- inspection -------------------------------------------------------------------------

    def item_factors(self, item_id: str) -> tuple[np.ndarray, float] | None:
        """A copy of an item's factors and its bias, or None if the item is unknown."""
        i = self._items.index.get(item_id)
        if i is None:
            return None
        row = self._items.table[i]
        return row[:-1].copy(), float(row[-1])


# -- explicit ratings -------------------------------------------------------------------------


class BiasedMF(_FactorModel):
    """Online biased matrix factorization for explicit ratings (Funk / Koren, one SGD pass).

    ``predict = mean + b_u + b_i + p_u . q_i``, clipped to [``min_rating``, ``max_rating``]
    (each defaults to the lowest / highest rating learned so far). ``mean`` is the exact
    running mean of all ratings. Each ``learn_rating`` takes one SGD step on the squared
    error of the unclipped prediction: factors with ``learning_rate`` and ``l2``; each
    bias with its own step ``max(bias_learning_rate, 1 / (n + bias_prior))`` at its n-th
    rating. So a new bias is the mean of its residuals shrunk towards 0 by ``bias_prior``
    pseudo-ratings (Koren's shrunken baseline; exactly so for a bias learning alone), and
    once the step reaches its floor an exponential average over about
    ``1 / bias_learning_rate`` ratings, which follows drift.

    Why these defaults: the empirical-Bayes shrinkage is rating noise variance over bias
    variance, about 3 to 4 on 5-star data such as MovieLens (0.8 over 0.2 to 0.3), and
    ``bias_prior = 5`` leans towards more shrinkage, as Koren's 10 and 25 on Netflix do.
    The bias floor of 0.05 and the factor step of 0.1 are the steps of River's
    documented ``BiasedMF`` setup (SGD 0.025 and 0.05 on the squared loss, whose gradient
    is twice the error): one pass needs steps this large, not the 0.005 to 0.02 of
    multi-epoch training. 10 factors is River's default; ``l2 = 0.01`` keeps factors
    bounded over an endless stream. Users start at zero factors, items at
    N(0, ``init_std``).

    A user's ``[p_u, b_u, next bias step]`` is read from and written back to
    ``context.user_state[state_key]`` (``n_factors + 2`` float32 values, base64: 64
    characters at 10 factors). An unseen user predicts ``mean + b_i``, an unseen item
    ``mean + b_u`` (``predict_one`` inserts nothing); without a user state only the mean
    and item biases learn. A corrupt state value is read as a new user. At most
    ``max_items`` items are kept (the least recently learned tenth is forgotten past
    that); learning is deterministic for a given ``seed``; the model pickles.

    >>> from models.recommenders.base import Context
    >>> m = BiasedMF(seed=1)
    >>> ann, bob = Context(user_state={}), Context(user_state={})
    >>> for _ in range(200):
    ...     m.learn_rating("good", 5.0, ann); m.learn_rating("bad", 2.0, ann)
    ...     m.learn_rating("good", 4.0, bob); m.learn_rating("bad", 1.0, bob)
    >>> round(m.predict_one("good", ann), 1), round(m.predict_one("bad", bob), 1)
    (5.0, 1.0)
    >>> m.predict_one("good") == m.global_mean + m.item_bias("good")  # an unseen user
    True
    >>> round(m.global_mean, 6), len(ann.user_state["bmf"])
    (3.0, 64)
    """

    def __init__(
        self,
        n_factors: int = 10,
        learning_rate: float = 0.1,
        l2: float = 0.01,
        bias_learning_rate: float = 0.05,
        bias_prior: float = 5.0,
        init_std: float = 0.1,
        min_rating: float | None = None,
        max_rating: float | None = None,
        max_items: int = 100_000,
        seed: int = 0,
        state_key: str = "bmf",
    ) -> None:
        # One extra item column: the step the item's bias takes at its next rating.
        super().__init__(
            n_factors, learning_rate, l2, init_std, max_items, seed, state_key, extra_columns=1
        )
        self.bias_learning_rate = _check_rate(
            "bias_learning_rate", bias_learning_rate, zero_ok=False
        )
        self.bias_prior = check_non_negative("bias_prior", bias_prior)
        self.min_rating = None if min_rating is None else check_rating(min_rating)
        self.max_rating = None if max_rating is None else check_rating(max_rating)
        if (
            self.min_rating is not None and self.max_rating is not None
            and self.min_rating > self.max_rating
        ):
            raise ValueError(f"min_rating {min_rating!r} is above max_rating {max_rating!r}")
        self._first_step = max(self.bias_learning_rate, 1.0 / (1.0 + self.bias_prior))
        self._count = 0
        self._mean = 0.0
        self._low: float | None = None  # the lowest and highest ratings learned
        self._high: float | None = None

    def predict_one(self, item_id: str, context: Context | None = None) -> float:
        """The rating the user of ``context`` would give ``item_id``, learning nothing."""
        check_item_id(item_id)
        user, user_bias, _ = self._user(_user_state(context))
        i = self._items.index.get(item_id)
        return self._clip(self._raw(i, user, user_bias))

    def learn_rating(self, item_id: str, rating: float, context: Context | None = None) -> None:
        """Learn that the user of ``context`` rated ``item_id`` ``rating``."""
        check_item_id(item_id)
        r = check_rating(rating)
        self._count += 1
        self._mean += (r - self._mean) / self._count
        self._low = r if self._low is None else min(self._low, r)
        self._high = r if self._high is None else max(self._high, r)
        is_new = item_id not in self._items.index
        i = self._row_of(item_id)
        row = self._items.table[i]
        if is_new:
            row[-1] = self._first_step
        state = _user_state(context)
        user, user_bias, user_step = self._user(state)
        err = r - self._raw(i, user, user_bias)
        item_step = float(row[-1])
        new_item_bias = float(row[-2]) + item_step * err
        ok = abs(new_item_bias) <= _LIMIT  # False for NaN
        if state is not None:
            q, p = row[:-2], user[:-1]
            decay, step = 1.0 - self.learning_rate * self.l2, self.learning_rate * err
            new_q = q * decay + step * p
            new_user = np.empty(self.n_factors + 2, dtype=np.float32)
            new_user[:-2] = p * decay + step * q
            new_user[-2] = user_bias + user_step * err
            new_user[-1] = self._next_step(user_step)
            ok = ok and _fits(new_q) and _fits(new_user)
            if ok:
                row[:-2] = new_q
            else:  # skip the step; a corrupt state is still replaced by a new user's
                new_user[:-2], new_user[-2], new_user[-1] = p, user_bias, user_step
            state[self.state_key] = encode_vector(new_user)
        if ok:
            row[-2] = new_item_bias
            row[-1] = self._next_step(item_step)

    def _next_step(self, step: float) -> float:
        # 1 / (n + prior) -> 1 / (n + 1 + prior), never below the floor.
        return max(self.bias_learning_rate, step / (1.0 + step))

    def _user(self, state: dict[str, Any] | None) -> tuple[np.ndarray, float, float]:
        """The user's factors followed by a 1.0 (for the item bias), bias, next bias step."""
        f = self.n_factors
        stored = None if state is None else decode_vector(state.get(self.state_key), f + 2)
        if stored is not None and 0.0 < stored[f + 1] <= 1.0:
            bias, step = float(stored[f]), max(self.bias_learning_rate, float(stored[f + 1]))
        else:  # a new user, or a foreign or corrupt value
            stored = np.zeros(f + 1, dtype=np.float32)
            bias, step = 0.0, self._first_step
        user = stored[: f + 1]
        user[f] = 1.0
        return user, bias, step

    def _raw(self, i: int | None, user: np.ndarray, user_bias: float) -> float:
        known = self._mean + user_bias
        if i is None:
            return known
        return known + float(self._items.table[i, :-1] @ user)

    def _clip(self, prediction: float) -> float:
        low = self.min_rating if self.min_rating is not None else self._low
        high = self.max_rating if self.max_rating is not None else self._high
        if low is not None and prediction < low:
            return low
        if high is not None and prediction > high:
            return high
        return prediction

    def item_bias(self, item_id: str) -> float:
        """The item's learned bias (0.0 if unknown)."""
        i = self._items.index.get(item_id)
        return 0.0 if i is None else float(self._items.table[i, -2])

    @property
    def global_mean(self) -> float:
        """The mean of every rating learned so far (0.0 before the first)."""
        return self._mean
