"""What one worker learned, as compact records every other worker can apply
(docs/scaling.md).

Each worker learns from the events of its own partitions. The item-level part of each
learn step (an ``Engine`` learn, the segmenter's learn, a new item's exploration showing)
is recorded as a :class:`LearnStep` (or a segment input, or an explored item id) in an
:class:`Outbox`; the service publishes the drained batches on a broadcast topic and every
other worker applies them (``Engine.learn_shared``), so all workers' item models learn
from every event. The codec is here, pure: the service only moves the bytes.

No user id, raw or pseudonymous, is in a batch: a step carries the item, the user's
recent items, the event's weight, the user's matrix-factorization vector *before* the
step (so every worker makes the same item-factor update), the segment name, the bandit
reward and the blend's gradient step; a segment input carries the few profile numbers
the segmenter reads (counts, spend, first/last seen, category interests).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from models.checks import is_id, is_in_range
from models.recommenders.base import MAX_WEIGHT
from models.users.profile import UserProfile

# Version of the batch layout; a batch of another version is refused, not guessed at.
FORMAT = 1
# Bounds on what a batch may hold (a malformed or hostile batch is refused whole).
MAX_ID_CHARS = 256
MAX_HISTORY = 1_000
MAX_STEPS = 10_000
MAX_BLEND = 64
MAX_INTERESTS = 256
MAX_VECTOR_CHARS = 4_096


@dataclass(frozen=True, slots=True)
class LearnStep:
    """The item-level learning of one accepted event, replayable on another worker.

    ``user_vector``: the user's matrix-factorization state before the step (an
    ``encode_vector`` string; None for a user without one, who starts at zero there too).
    ``arm``/``hit``: the strategy of the list served before the event and whether the
    event's item was in it (the bandit's reward; ``hit`` None: no list, no reward).
    ``blend``: (context index, gradient step) the hybrid's blend took, or None.

    >>> LearnStep("i1", ("i0",), 1.0).hit is None
    True
    """

    item_id: str
    history: tuple[str, ...]
    weight: float
    user_vector: str | None = None
    segment: str | None = None
    arm: str = ""
    hit: bool | None = None
    blend: tuple[int, tuple[float, ...]] | None = None


def segment_input(profile: UserProfile) -> dict[str, Any]:
    """The profile fields the segmenter learns from, in ``UserProfile.to_dict`` keys (no
    id, no items, no model state).

    >>> segment_input(UserProfile(clicks=2, spend=5.0, interests={"Drama": 1.5}))
    {'c': 2, 'i': {'Drama': 1.5}, 'm': 5.0}
    """
    d = profile.to_dict()
    return {k: d[k] for k in ("c", "p", "i", "m", "f", "l") if k in d}


@dataclass(slots=True)
class Outbox:
    """Learn records waiting to be published, in the order they were learned.

    Holds at most ``limit`` records of each kind: if nobody drains it (publishing
    stalled), the oldest go and are counted in ``dropped``.

    >>> box = Outbox(limit=2)
    >>> for item in "abc":
    ...     box.add_step(LearnStep(item, (), 1.0))
    >>> [s.item_id for s in box.steps], box.dropped
    (['b', 'c'], 1)
    """

    limit: int = 100_000
    steps: list[LearnStep] = field(default_factory=list)
    explored: list[str] = field(default_factory=list)
    segments: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    dropped: int = 0

    def _bound(self, records: list[Any]) -> None:
        if len(records) > self.limit:
            extra = len(records) - self.limit
            del records[:extra]
            self.dropped += extra

    def add_step(self, step: LearnStep) -> None:
        """Record one learn step of ``Engine.process``."""
        self.steps.append(step)
        self._bound(self.steps)

    def add_explored(self, item_id: str) -> None:
        """Record one exploration showing of a new item."""
        self.explored.append(item_id)
        self._bound(self.explored)

    def note_segment(self, profile: UserProfile, now_ms: int) -> None:
        """Record that the segmenter learned from ``profile`` as of ``now_ms``."""
        self.segments.append((int(now_ms), segment_input(profile)))
        self._bound(self.segments)

    def __len__(self) -> int:
        return len(self.steps) + len(self.explored) + len(self.segments)

    def drain(self, origin: str, seq: int,
              blend: Sequence[Sequence[float]] | None = None) -> bytes | None:
        """Everything recorded so far as one encoded batch (emptying the outbox), with
        the sender's ``blend`` weights if given; None if nothing was recorded."""
        if not len(self):
            return None
        raw = encode_batch(origin, seq, self.steps, self.explored, self.segments, blend)
        self.steps, self.explored, self.segments = [], [], []
        return raw


@dataclass(frozen=True, slots=True)
class Batch:
    """A decoded batch: who sent it, its sequence number and what it holds."""

    origin: str
    seq: int
    steps: list[LearnStep]
    explored: list[str]
    segments: list[tuple[int, UserProfile]]
    blend: list[list[float]] | None = None


def _step_row(s: LearnStep) -> list[Any]:
    blend = None if s.blend is None else [s.blend[0], list(s.blend[1])]
    return [s.item_id, list(s.history), s.weight, s.user_vector, s.segment, s.arm,
            s.hit, blend]


def encode_batch(
    origin: str, seq: int, steps: Sequence[LearnStep], explored: Sequence[str] = (),
    segments: Sequence[tuple[int, Mapping[str, Any]]] = (),
    blend: Sequence[Sequence[float]] | None = None,
) -> bytes:
    """One batch as UTF-8 JSON (``decode_batch`` inverts it).

    >>> b = decode_batch(encode_batch("w1", 7, [LearnStep("i1", ("i0",), 3.0, hit=True,
    ...                                                   arm="hybrid")], ["i9"]))
    >>> b.origin, b.seq, b.steps[0].item_id, b.steps[0].hit, b.explored
    ('w1', 7, 'i1', True, ['i9'])
    """
    d: dict[str, Any] = {"v": FORMAT, "o": origin, "q": seq,
                         "l": [_step_row(s) for s in steps], "x": list(explored),
                         "s": [[ts, dict(p)] for ts, p in segments]}
    if blend is not None:
        d["w"] = [list(row) for row in blend]
    return orjson.dumps(d)


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


def _step(row: object) -> LearnStep:
    item, history, weight, vector, segment, arm, hit, blend = _list(row, 8)
    w = _number(weight)
    if not 0.0 < w <= MAX_WEIGHT:
        raise ValueError("bad weight in a sync batch")
    if vector is not None and (type(vector) is not str or len(vector) > MAX_VECTOR_CHARS):
        raise ValueError("bad user vector in a sync batch")
    if hit is not None and type(hit) is not bool:
        raise ValueError("bad hit in a sync batch")
    if type(arm) is not str or len(arm) > MAX_ID_CHARS:
        raise ValueError("bad arm in a sync batch")
    step_blend = None
    if blend is not None:
        c, grad = _list(blend, 2)
        if type(c) is not int or c < 0:
            raise ValueError("bad blend context in a sync batch")
        step_blend = (c, tuple(_number(g) for g in _list(grad, MAX_BLEND)))
    return LearnStep(
        _id(item), tuple(_id(h) for h in _list(history, MAX_HISTORY)), w, vector,
        None if segment is None else _id(segment), arm, hit, step_blend,
    )


def _segment_input(row: object) -> tuple[int, UserProfile]:
    ts, fields = _list(row, 2)
    if type(ts) is not int or type(fields) is not dict or not set(fields) <= set("cpimfl"):
        raise ValueError("bad segment input in a sync batch")
    interests = fields.get("i", {})
    if type(interests) is not dict or len(interests) > MAX_INTERESTS:
        raise ValueError("bad interests in a sync batch")
    for cat, score in interests.items():
        _id(cat)
        _number(score)
    for key in "cpmfl":
        if key in fields:
            _number(fields[key])
    return ts, UserProfile.from_dict(fields)


def _blend(value: object) -> list[list[float]] | None:
    if value is None:
        return None
    return [[_number(w) for w in _list(row, MAX_BLEND)] for row in _list(value, MAX_BLEND)]


def decode_batch(raw: bytes) -> Batch:
    """A batch from ``encode_batch`` bytes; ValueError (and nothing of it used) if any
    part is malformed: wrong types, non-finite numbers, over-long ids or lists."""
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError("a sync batch must be JSON") from None
    if type(d) is not dict or d.get("v") != FORMAT:
        raise ValueError("not a sync batch of this format")
    seq = d.get("q")
    if type(seq) is not int:
        raise ValueError("bad sequence number in a sync batch")
    try:
        return Batch(
            origin=_id(d.get("o")), seq=seq,
            steps=[_step(r) for r in _list(d.get("l", []), MAX_STEPS)],
            explored=[_id(x) for x in _list(d.get("x", []), MAX_STEPS)],
            segments=[_segment_input(r) for r in _list(d.get("s", []), MAX_STEPS)],
            blend=_blend(d.get("w")),
        )
    except (TypeError, OverflowError) as exc:  # e.g. a row of the wrong length
        raise ValueError(f"malformed sync batch: {type(exc).__name__}") from None
