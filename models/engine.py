"""The per-event learning and serving step, as pure code the profile agent calls.

One ``Engine.process`` call takes a validated, pseudonymized event and the user's stored
state (profile dict and dedupe list, as kept in Faust tables) and returns the new state,
what to emit, and what to count. No I/O: agents do the reading, writing and sending.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from models.catalogue import Catalogue
from models.dedupe import check_and_add
from models.profile import UserProfile, apply_click, apply_purchase
from models.recommenders.base import ScoredItem
from models.recommenders.cooccurrence import ItemCooccurrence
from models.recommenders.popularity import Popularity

EventKind = Literal["click", "purchase"]

# A purchase says more about taste than a click: it teaches the item models more.
PURCHASE_WEIGHT = 3.0

# Version of the snapshot layout; a snapshot of another version is refused, not guessed at.
SNAPSHOT_FORMAT = 1


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Hyperparameters of the serving step (from settings in the service)."""

    top_k: int = 10
    half_life_ms: float = 168 * 3_600_000.0
    recent_max: int = 50
    seen_max: int = 500
    dedup_window: int = 256
    cooccurrence_window: int = 20
    max_items: int = 100_000


@dataclass(slots=True)
class Result:
    """What one event did: outcome, new state, and the recommendation to emit (if any)."""

    outcome: Literal["accepted", "duplicate", "conflict"]
    profile: dict | None = None
    dedupe: list[list[str]] | None = None
    items: list[ScoredItem] = field(default_factory=list)
    strategy: str = ""
    hit: bool | None = None  # None: the user had no previous recommendation
    hit_strategy: str = ""  # the strategy of the previous recommendation, credited with a hit


class Engine:
    """Dedupe, update the profile, learn, then rank for the user, in that order.

    >>> e = Engine(EngineConfig(top_k=2))
    >>> for i, (u, item) in enumerate([("a", "x"), ("a", "y"), ("b", "x")]):
    ...     r = e.process("click", u, item, 1_000 * i, event_id=f"e{i}", fingerprint="f",
    ...                   profile=None if i != 1 else prof, dedupe=None)
    ...     prof = r.profile
    >>> [s.item_id for s in r.items], r.strategy
    (['y'], 'cooccurrence')
    """

    def __init__(self, config: EngineConfig | None = None, catalogue: Catalogue | None = None):
        self.config = config or EngineConfig()
        self.catalogue = catalogue if catalogue is not None else Catalogue(
            max_items=self.config.max_items
        )
        self.popularity = Popularity()
        self.recommender = ItemCooccurrence(
            window=self.config.cooccurrence_window,
            max_items=self.config.max_items,
            fallback=self.popularity,
            catalogue=self.catalogue,
        )
        self.updates = 0  # learn steps so far (snapshots carry it)

    def process(
        self,
        kind: EventKind,
        user: str,
        item_id: str,
        ts_ms: int,
        *,
        event_id: str,
        fingerprint: str,
        profile: dict | None,
        dedupe: list[list[str]] | None,
        amount: float = 0.0,
    ) -> Result:
        cfg = self.config
        dedupe_new, seen = check_and_add(dedupe, event_id, fingerprint, cfg.dedup_window)
        if seen != "new":
            return Result(outcome=seen)
        prof = UserProfile.from_dict(profile) if profile else UserProfile()
        # apply_* return a new profile, so these keep the state from before this event.
        previous = prof.last_recommended
        previous_strategy = prof.last_strategy
        history = prof.recent_items
        categories = self.catalogue.categories(item_id)
        if kind == "purchase":
            prof = apply_purchase(
                prof, item_id, ts_ms, amount, categories,
                half_life_ms=cfg.half_life_ms, recent_max=cfg.recent_max, seen_max=cfg.seen_max,
            )
            weight = PURCHASE_WEIGHT
        else:
            prof = apply_click(
                prof, item_id, ts_ms, categories,
                half_life_ms=cfg.half_life_ms, recent_max=cfg.recent_max, seen_max=cfg.seen_max,
            )
            weight = 1.0
        self.recommender.learn_one(item_id, history, weight)
        self.updates += 1
        items = self.rank_for(prof, cfg.top_k)
        strategy = items[0].strategy if items else "popularity"
        prof.last_recommended = [s.item_id for s in items]
        prof.last_strategy = strategy
        return Result(
            outcome="accepted",
            profile=prof.to_dict(),
            dedupe=dedupe_new,
            items=items,
            strategy=strategy,
            hit=(item_id in previous) if previous else None,
            hit_strategy=previous_strategy or strategy,
        )

    def rank_for(self, prof: UserProfile, k: int) -> list[ScoredItem]:
        """Top-k for a profile, excluding what the user already bought or interacted with
        (the bounded seen set); the recommender itself skips unavailable items."""
        exclude = set(prof.seen)
        exclude.update(prof.purchased)
        return self.recommender.rank(prof.recent_items, exclude, k)

    def recommend(self, profile: dict | None, k: int) -> list[ScoredItem]:
        """Top-k for a stored profile (None: a user we have not seen: popularity)."""
        prof = UserProfile.from_dict(profile) if profile else UserProfile()
        return self.rank_for(prof, k)

    def snapshot(self) -> bytes:
        """The item-level models (co-occurrence, popularity, catalogue) as one pickle.

        One pickle, so the references between them (the recommender's fallback and
        catalogue) survive a round trip. Holds item ids and counts, never a user id.
        For local checkpoint files only: never load a snapshot from an untrusted source.
        """
        state = {"format": SNAPSHOT_FORMAT, "recommender": self.recommender,
                 "popularity": self.popularity, "catalogue": self.catalogue,
                 "updates": self.updates}
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, blob: bytes) -> None:
        """Replace the item-level models with a ``snapshot``; ValueError if it is not one.

        >>> e = Engine(EngineConfig(top_k=1))
        >>> _ = e.process("click", "u", "a", 1, event_id="1", fingerprint="", profile=None,
        ...               dedupe=None)
        >>> fresh = Engine(EngineConfig(top_k=1)); fresh.restore(e.snapshot())
        >>> [s.item_id for s in fresh.recommend(None, 1)], fresh.updates
        (['a'], 1)
        """
        try:
            state = pickle.loads(blob)  # our own local checkpoint files only
        except Exception as exc:  # any unpickling failure means "not ours"
            raise ValueError(f"not a model snapshot: {type(exc).__name__}") from None
        if not isinstance(state, dict) or state.get("format") != SNAPSHOT_FORMAT:
            raise ValueError("not a model snapshot of this format")
        rec, pop, cat = state["recommender"], state["popularity"], state["catalogue"]
        if not (isinstance(rec, ItemCooccurrence) and isinstance(pop, Popularity)
                and isinstance(cat, Catalogue)):
            raise ValueError("model snapshot holds unexpected types")
        self.recommender, self.popularity, self.catalogue = rec, pop, cat
        self.updates = int(state.get("updates", 0))

    @property
    def model_sizes(self) -> dict[str, int]:
        return {"cooccurrence": len(self.recommender), "popularity": len(self.popularity)}


def reasons(items: Sequence[ScoredItem]) -> list[dict]:
    """Items in the wire shape of the ``recommendations`` topic."""
    return [
        {"item_id": s.item_id, "score": round(float(s.score), 6), "reason": s.reason}
        for s in items
    ]
