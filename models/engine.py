"""The per-event learning and serving step, as pure code the profile agent calls.

One ``Engine.process`` call takes a validated, pseudonymized event and the user's stored
state (profile dict and dedupe list, as kept in Faust tables) and returns the new state,
what to emit, and what to count. No I/O: agents do the reading, writing and sending.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Literal

from models import pickles
from models.checks import is_number
from models.marketing.attribution import Attribution, attribute, remember
from models.recommenders.bandit import EpsilonGreedy, uniform_from_key
from models.recommenders.base import Context, Recommender, ScoredItem, check_k
from models.recommenders.catalogue import Catalogue
from models.recommenders.content import ContentTfidf
from models.recommenders.cooccurrence import ItemCooccurrence
from models.recommenders.hybrid import Hybrid
from models.recommenders.mf import ImplicitMF
from models.recommenders.popularity import Popularity, SegmentPopularity
from models.recommenders.rules import Rules, apply_rules
from models.sync import Batch, Growths, Outbox
from models.users.dedupe import check_and_add
from models.users.profile import (
    UserProfile,
    apply_click,
    apply_counted,
    apply_purchase,
    note_served,
    opted_out_profile,
)

EventKind = Literal["click", "purchase"]

# A purchase says more about taste than a click: it teaches the item models more.
PURCHASE_WEIGHT = 3.0

# Version of the snapshot layout; a snapshot of another version is refused, not guessed at.
SNAPSHOT_FORMAT = 2

# Recently served items whose showings a profile counts, when a repeat cap is set.
SERVED_COUNTS_KEPT = 100

# Serving settings an experiment variant may change, and their ranges.
OVERRIDABLE: dict[str, tuple[float, float]] = {"max_per_category": (0, 100),
                                               "new_item_rate": (0.0, 1.0)}


def check_overrides(overrides: Mapping[str, object]) -> None:
    """ValueError unless every key is in ``OVERRIDABLE`` with a value in its range.

    >>> check_overrides({"max_per_category": 2})
    >>> check_overrides({"top_k": 3})
    Traceback (most recent call last):
    ...
    ValueError: a variant may set max_per_category, new_item_rate; not 'top_k'
    """
    for name, value in overrides.items():
        if name not in OVERRIDABLE:
            raise ValueError(f"a variant may set {', '.join(OVERRIDABLE)}; not {name!r}")
        lo, hi = OVERRIDABLE[name]
        if not is_number(value) or not lo <= value <= hi:
            raise ValueError(f"{name} must be a number in [{lo}, {hi}], got {value!r}")
        if name == "max_per_category" and not float(value).is_integer():
            raise ValueError(f"max_per_category must be an integer, got {value!r}")


# Every strategy that can serve a request: the hybrid and each of its components.
STRATEGIES = ("hybrid", "cooccurrence", "mf", "content", "popularity", "trending")
# Models whose learn steps are counted (metrics label values).
MODELS = ("cooccurrence", "mf", "content", "popularity", "trending", "hybrid")
# What serves users we may not personalize for (opted out): the same list for everyone.
NON_PERSONAL_STRATEGY = "popularity"


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Hyperparameters of the serving step (from settings in the service).

    ``strategy`` serves by default; with ``exploration`` > 0 a bandit serves another
    strategy with that probability (split evenly) and moves to whichever strategy
    earns more hits; 0 always serves ``strategy``. ``new_item_rate`` is the share of
    lists whose last slot goes to a new item matching the user's interests (at most
    ``new_item_budget`` such showings per item: after that it must earn its place).
    """

    top_k: int = 10
    half_life_ms: float = 168 * 3_600_000.0
    recent_max: int = 50
    seen_max: int = 500
    dedup_window: int = 256
    cooccurrence_window: int = 20
    max_items: int = 100_000
    strategy: str = "hybrid"
    exploration: float = 0.05
    similarity: str = "cosine"
    decay_half_life: float = 20_000.0  # events; item models forget at this pace
    trending_half_life: float = 2_000.0  # events
    max_repeats: int = 0
    max_per_category: int = 0
    new_item_rate: float = 0.05
    new_item_budget: int = 100
    candidates: int = 30  # per component, for the hybrid to blend
    # The hybrid serves its leading component's order while that one's recent hits beat
    # the blend's by more than this share (None: off; models/recommenders/hybrid.py).
    hybrid_fallback_margin: float | None = None
    seed: int = 0
    attribution_window_ms: float = 86_400_000.0  # credit events this long after a list
    attribute_by_item: bool = False  # also credit events without a recommendation_id
    attribution_keep: int = 5  # served recommendations a profile remembers for it

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        for name in ("exploration", "new_item_rate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        check_k(self.top_k)
        Rules(self.max_repeats, self.max_per_category)  # validates both


@dataclass(frozen=True, slots=True)
class Served:
    """A list to serve: the items, the strategy that produced them and the probability
    with which the policy chose that strategy (for off-policy evaluation)."""

    items: list[ScoredItem]
    strategy: str
    propensity: float = 1.0

    @property
    def item_ids(self) -> list[str]:
        return [s.item_id for s in self.items]


@dataclass(slots=True)
class Result:
    """What one event did: outcome, new state, and the recommendation to emit (if any).

    ``suppressed``: the user has opted out; nothing of the event was kept or learned
    (only its id, in the dedupe window) and what is served is not personal.
    """

    outcome: Literal["accepted", "duplicate", "conflict", "suppressed"]
    profile: dict | None = None
    dedupe: list[str] | None = None  # models.users.dedupe state
    items: list[ScoredItem] = field(default_factory=list)
    strategy: str = ""
    propensity: float = 1.0
    hit: bool | None = None  # None: the user had no previous recommendation
    hit_strategy: str = ""  # the strategy of the previous recommendation, credited with a hit
    attributed: Attribution | None = None  # the recommendation this event is credited to
    # ``profile`` as a UserProfile (accepted events that learned): what a caller would
    # get from UserProfile.from_dict(profile), without parsing it again. It shares no
    # container with ``profile``; change it only together with ``profile``.
    user_profile: UserProfile | None = None


class Engine:
    """Dedupe, update the profile, learn, then serve the user, in that order.

    The evaluator (``persona evaluate``) and the agents both run exactly this code:
    ``recommend`` to serve, ``process`` to learn (and, in the service, serve again).

    >>> e = Engine(EngineConfig(top_k=2, strategy="cooccurrence", exploration=0.0))
    >>> for i, (u, item) in enumerate([("a", "x"), ("a", "y"), ("b", "x")]):
    ...     r = e.process("click", u, item, 1_000 * i, event_id=f"e{i}", fingerprint="f",
    ...                   profile=None if i != 1 else prof, dedupe=None)
    ...     prof = r.profile
    >>> [s.item_id for s in r.items], r.strategy
    (['y'], 'cooccurrence')
    """

    def __init__(self, config: EngineConfig | None = None, catalogue: Catalogue | None = None):
        self.config = cfg = config or EngineConfig()
        self.catalogue = catalogue if catalogue is not None else Catalogue(
            max_items=cfg.max_items
        )
        self.rules = Rules(cfg.max_repeats, cfg.max_per_category)
        # Items whose showings a profile counts: only needed for a repeat cap.
        self._served_kept = SERVED_COUNTS_KEPT if cfg.max_repeats else 0
        cat = self.catalogue
        self.popularity = SegmentPopularity(
            half_life=cfg.decay_half_life, max_items=cfg.max_items, catalogue=cat
        )
        components: dict[str, Recommender] = {
            "cooccurrence": ItemCooccurrence(
                window=cfg.cooccurrence_window, max_items=cfg.max_items, catalogue=cat,
                half_life=cfg.decay_half_life, similarity=cfg.similarity,
            ),
            "mf": ImplicitMF(max_items=cfg.max_items, catalogue=cat, seed=cfg.seed),
            "content": ContentTfidf(max_items=cfg.max_items, catalogue=cat),
            "popularity": self.popularity,
            "trending": Popularity(
                half_life=cfg.trending_half_life, max_items=cfg.max_items, catalogue=cat
            ),
        }
        # Content, popularity and trending serve new and sparse users (cold start). For
        # users with 5+ items collaborative signals say more: on ML-100K the blend gave
        # content about a quarter of the weight for them and fell below co-occurrence
        # alone, and the learned weights of popularity and trending fell below 0.02, so
        # asking them cost time for nothing.
        cold = ("new", "sparse")
        self.hybrid = Hybrid(components, candidates=cfg.candidates,
                             contexts={"content": cold, "popularity": cold, "trending": cold},
                             fallback_margin=cfg.hybrid_fallback_margin)
        self.bandit = EpsilonGreedy(
            [cfg.strategy] + [s for s in STRATEGIES if s != cfg.strategy],
            epsilon=cfg.exploration, salt="strategy",
        )
        self._explored: dict[str, int] = {}  # new item -> exploration showings
        self.updates = 0  # learn steps so far (snapshots carry it)
        # Entries the per-user bounds dropped (seen_max, dedup_window): the worker exports
        # them with the hybrid's (eviction_counts), so dropped state is visible.
        self._evictions = {"seen_items": 0, "dedupe_window": 0}
        # With several workers: where learn steps are recorded for the others
        # (models/sync.py); None (one worker, or sharing off) records nothing.
        self.sync: Outbox | None = None
        self._recording: tuple[Outbox, Hybrid] | None = None  # what _start_recording set up

    @property
    def content(self) -> ContentTfidf:
        content = self.hybrid.components["content"]
        assert isinstance(content, ContentTfidf)
        return content

    def strategy(self, name: str) -> Recommender:
        """The model behind a strategy name (one of ``STRATEGIES``)."""
        return self.hybrid if name == "hybrid" else self.hybrid.components[name]

    # -- catalogue ----------------------------------------------------------------------------

    def upsert_item(
        self, item_id: str, title: str, categories: Sequence[str] = (), description: str = "",
        available: bool = True,
    ) -> None:
        """Add or replace a catalogue item (titles, categories and text for content)."""
        self.catalogue.upsert(item_id, title, categories, available=available)
        self.content.upsert(item_id, title, categories, description, available=available)

    def delete_item(self, item_id: str) -> None:
        """Remove a catalogue item: it is never recommended again."""
        self.catalogue.delete(item_id)
        self.content.delete(item_id)

    # -- events -------------------------------------------------------------------------------

    def process(
        self, kind: EventKind, user: str, item_id: str, ts_ms: int, *, event_id: str,
        fingerprint: str, profile: dict | None, dedupe: list | None, amount: float = 0.0,
        learn: bool = True, serve: bool = True, served_before: Served | None = None,
        recommendation_id: str | None = None, serve_id: str = "", variant: str = "default",
        strategy: str | None = None, overrides: Mapping[str, float] | None = None,
    ) -> Result:
        """Apply one event; with ``serve``, also pick the user's next list (keyed by the
        event id, so a redelivered event is served the same way). ``served_before``: the
        list served to the user just before this event, if not yet recorded in
        ``profile`` (what ``note_served`` does, without a second profile round trip).

        Attribution: the event (with its ``recommendation_id``, if any) is credited to a
        recommendation the profile remembers (``Result.attributed``); the list served now
        is remembered under ``serve_id`` and ``variant`` (none when ``serve_id`` is "").
        ``strategy`` serves with that strategy instead of the policy's choice, and
        ``overrides`` (``OVERRIDABLE``) change the rules: an experiment variant's.

        ``learn=False`` (a rate-limited event) only counts the event in the profile
        (``apply_counted``: counts, spend, last seen): no item, interest, attribution or
        model changes. An opted-out profile (``UserProfile.opted_out``) changes nothing
        but the dedupe window and teaches no model; with ``serve`` the user gets the
        non-personal list (``non_personal``); the outcome is "suppressed"."""
        dedupe_new, seen = check_and_add(dedupe, event_id, fingerprint, self.config.dedup_window)
        if seen != "new":
            return Result(outcome=seen)
        if dedupe and len(dedupe) >= len(dedupe_new):
            self._evictions["dedupe_window"] += len(dedupe) + 1 - len(dedupe_new)
        prof = UserProfile.from_dict(profile) if profile else UserProfile()
        if prof.opted_out:
            return self._suppressed(dedupe_new, serve)
        if not learn:
            counted = apply_counted(prof, kind, ts_ms, amount if kind == "purchase" else 0.0)
            return Result(outcome="accepted", profile=counted.to_dict(), dedupe=dedupe_new)
        if served_before is not None:
            note_served(prof, served_before.item_ids, served_before.strategy, self._served_kept)
        # Before _apply_event: the clicked mark attribution sets must reach the profile.
        attributed = self._attribute(prof, kind, recommendation_id, item_id, ts_ms)
        # prof is ours (from_dict built every container afresh): _apply_event updates it
        # in place, so these keep the state from before this event (last_recommended is
        # replaced, never changed, by note_served; interests may be changed in place).
        previous, previous_strategy = prof.last_recommended, prof.last_strategy
        history, interests = list(prof.recent_items), dict(prof.interests)
        prof, weight = self._apply_event(prof, kind, item_id, ts_ms, amount)
        # model_state is a copy of the stored one (from_dict): user-level models update it.
        context = Context(user_state=prof.model_state, interests=interests,
                          segment=prof.segment or None, user=user)
        hit = (item_id in previous) if previous else None
        self._learn(item_id, history, weight, context, previous_strategy, hit)
        result = Result(outcome="accepted", dedupe=dedupe_new, hit=hit,
                        hit_strategy=previous_strategy, attributed=attributed)
        if serve:
            self._serve_next(result, prof, ts_ms, key=event_id, user=user, strategy=strategy,
                             overrides=overrides, serve_id=serve_id, variant=variant)
        result.profile = prof.to_dict()
        result.user_profile = prof
        return result

    def _suppressed(self, dedupe: list[str], serve: bool) -> Result:
        """An opted-out user's event: only the dedupe window changes; with ``serve`` the
        user gets the non-personal list."""
        # Data minimization: the stored profile stays the flag alone.
        result = Result(outcome="suppressed", profile=opted_out_profile().to_dict(),
                        dedupe=dedupe)
        if serve:
            served = self.non_personal(self.config.top_k)
            result.items, result.strategy = served.items, served.strategy
        return result

    def _attribute(
        self, prof: UserProfile, kind: EventKind, recommendation_id: str | None, item_id: str,
        ts_ms: int,
    ) -> Attribution | None:
        """The recommendation ``prof`` remembers that the event is credited to, if any
        (marked clicked, in ``prof``, on its first credited click)."""
        if not prof.served_recs:
            return None
        cfg = self.config
        return attribute(prof.served_recs, kind, recommendation_id, item_id, ts_ms,
                         window_ms=cfg.attribution_window_ms, by_item=cfg.attribute_by_item)

    def _apply_event(
        self, prof: UserProfile, kind: EventKind, item_id: str, ts_ms: int, amount: float,
    ) -> tuple[UserProfile, float]:
        """``prof`` updated in place with a click or purchase, and the weight the item
        models learn the event with."""
        cfg = self.config
        categories = self.catalogue.categories(item_id)
        if len(prof.seen) >= cfg.seen_max and item_id not in prof.seen:
            self._evictions["seen_items"] += 1
        if kind == "purchase":
            return apply_purchase(
                prof, item_id, ts_ms, amount, categories,
                half_life_ms=cfg.half_life_ms, recent_max=cfg.recent_max, seen_max=cfg.seen_max,
                in_place=True,
            ), PURCHASE_WEIGHT
        return apply_click(
            prof, item_id, ts_ms, categories,
            half_life_ms=cfg.half_life_ms, recent_max=cfg.recent_max, seen_max=cfg.seen_max,
            in_place=True,
        ), 1.0

    def _serve_next(
        self, result: Result, prof: UserProfile, ts_ms: int, *, key: str, user: str,
        strategy: str | None, overrides: Mapping[str, float] | None, serve_id: str,
        variant: str,
    ) -> None:
        """Serve the user's next list into ``result``, recorded in ``prof`` for hits and
        repeats, and under ``serve_id`` (if any) for attribution."""
        cfg = self.config
        served = self._serve(prof, cfg.top_k, key=key, user=user, strategy=strategy,
                             overrides=overrides)
        note_served(prof, served.item_ids, served.strategy, self._served_kept)
        if serve_id:
            remember(prof.served_recs, serve_id, served.strategy, variant, ts_ms,
                     served.item_ids, cfg.attribution_keep)
        result.items, result.strategy = served.items, served.strategy
        result.propensity = served.propensity

    # -- serving ------------------------------------------------------------------------------

    def recommend(
        self, profile: dict | None, k: int, *, key: str = "", user: str = "",
        categories: Sequence[str] | None = None, strategy: str | None = None,
        overrides: Mapping[str, float] | None = None, read_only: bool = False,
    ) -> Served:
        """The list to serve a stored profile (None: a user we have not seen), chosen by
        the policy for request ``key`` (or by ``strategy``, with rule ``overrides``);
        ``categories`` restricts it to those categories. An opted-out profile gets the
        non-personal list.

        ``read_only``: a look at the list, not a showing (an HTTP read): the same ranking,
        but no new-item slot (exploration spends a budget and is synced to the other
        workers) and no list kept for the blend to learn from, so any number of such
        calls leave every model as it was."""
        prof = UserProfile.from_dict(profile) if profile else UserProfile()
        if prof.opted_out:
            return self.non_personal(k, categories=categories)
        return self._serve(prof, k, key=key, user=user, categories=categories,
                           strategy=strategy, overrides=overrides, read_only=read_only)

    def non_personal(self, k: int, categories: Sequence[str] | None = None) -> Served:
        """A list that uses nothing of the user (for opted-out users): overall popularity,
        the same for everyone (no history, exclusions, segment, interests or new-item
        exploration; nothing remembered), within the rules and ``categories``.

        >>> e = Engine(EngineConfig(top_k=2, exploration=0.0))
        >>> for i, item in enumerate("aab"):
        ...     _ = e.process("click", "u", item, i, event_id=str(i), fingerprint="",
        ...                   profile=None, dedupe=None)
        >>> s = e.non_personal(2); s.strategy, s.item_ids, s.items[0].reason
        ('popularity', ['a', 'b'], 'popular right now')
        """
        check_k(k)
        rules = self.rules
        wide = 2 * k + 10 if (categories or rules.max_per_category) else k
        ranked = self.popularity.rank((), (), wide, None)
        items = apply_rules(ranked, k, rules, catalogue=self.catalogue, served_counts={},
                            categories=categories)
        return Served(items, NON_PERSONAL_STRATEGY, 1.0)

    def note_served(self, profile: dict | None, served: Served) -> dict:
        """The stored profile updated with what was just served (for hits and repeats);
        an opted-out profile is left as it is (nothing about them is kept)."""
        prof = UserProfile.from_dict(profile) if profile else UserProfile()
        if prof.opted_out:
            return prof.to_dict()
        note_served(prof, served.item_ids, served.strategy, self._served_kept)
        return prof.to_dict()

    def _serve(
        self, prof: UserProfile, k: int, *, key: str, user: str,
        categories: Sequence[str] | None = None, strategy: str | None = None,
        overrides: Mapping[str, float] | None = None, read_only: bool = False,
    ) -> Served:
        check_k(k)
        cfg = self.config
        rules, new_item_rate = self.rules, cfg.new_item_rate
        if overrides:
            rules, new_item_rate = self._overridden(overrides)
        if strategy is not None:  # an experiment variant's strategy: no exploration
            if strategy not in STRATEGIES:
                raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
            propensity = 1.0
        elif cfg.exploration > 0:
            strategy, propensity = self.bandit.choose(key)
        else:
            strategy, propensity = cfg.strategy, 1.0
        exclude = set(prof.seen)
        exclude.update(prof.purchased)
        history = prof.recent_items
        # No user for a read: the hybrid keeps the list it serves a named user, to learn
        # from that user's next event.
        context = Context(user_state=prof.model_state, interests=prof.interests,
                          segment=prof.segment or None, user="" if read_only else user)
        # Room for what the rules will drop; then popularity tops up a short list.
        wide = 2 * k + 10 if (categories or rules.max_per_category
                              or rules.max_repeats) else k
        ranked = self.strategy(strategy).rank(history, exclude, wide, context)
        catalogue, counts = self.catalogue, prof.served_counts
        items = apply_rules(ranked, k, rules, catalogue=catalogue, served_counts=counts,
                            categories=categories)
        if len(items) < k:
            fill = self.popularity.rank(history, exclude, 4 * k, context)
            items = apply_rules(chain(ranked, fill), k, rules, catalogue=catalogue,
                                served_counts=counts, categories=categories)
        if (new_item_rate and k and not read_only
                and uniform_from_key(key, "new-item") < new_item_rate):
            self._explore_new_item(items, k, history, exclude, context, categories,
                                   prof.served_counts)
        return Served(items, strategy, propensity)

    def _overridden(self, overrides: Mapping[str, float]) -> tuple[Rules, float]:
        """The rules and new-item rate with an experiment variant's ``overrides``
        (``max_per_category``, ``new_item_rate``; checked by ``check_overrides``)."""
        check_overrides(overrides)
        per_category = int(overrides.get("max_per_category", self.rules.max_per_category))
        rate = float(overrides.get("new_item_rate", self.config.new_item_rate))
        return Rules(self.rules.max_repeats, per_category), rate

    def _explore_new_item(
        self, items: list[ScoredItem], k: int, history: Sequence[str], exclude: set[str],
        context: Context, categories: Sequence[str] | None, prof_counts: dict[str, int],
    ) -> None:
        """Give the last slot to a new item matching the user, within its budget."""
        taken = exclude.union(s.item_id for s in items)
        budget = self.config.new_item_budget
        candidates = [s for s in self.content.rank_new(history, taken, 5, context)
                      if self._explored.get(s.item_id, 0) < budget]
        if not candidates:
            return
        kept = items[: k - 1] if len(items) >= k else list(items)
        # Through the same rules as the list it joins (repeats, diversity, filter).
        chosen = apply_rules(chain(kept, candidates), len(kept) + 1, self.rules,
                             catalogue=self.catalogue, served_counts=prof_counts,
                             categories=categories)
        if len(chosen) <= len(kept):
            return
        new = chosen[-1]
        items[:] = [*kept, new]
        self._count_explored(new.item_id)
        if self.sync is not None:
            self.sync.add_explored(new.item_id)

    def _count_explored(self, item_id: str, n: int = 1) -> None:
        """``n`` more exploration showings of a new item (bounded like every item map)."""
        self._explored[item_id] = self._explored.pop(item_id, 0) + n
        if len(self._explored) > self.config.max_items:
            del self._explored[next(iter(self._explored))]

    # -- learning, and learning what other workers learned -----------------------------------

    def _learn(
        self, item_id: str, history: Sequence[str], weight: float, context: Context,
        arm: str, hit: bool | None, *, record: bool = True,
    ) -> None:
        """The item-level learn step of one event: every model, the blend, the bandit.

        ``arm``/``hit``: the strategy of the list served before and whether the item was
        in it (None: no list). With ``sync`` set and ``record``, what the step changed is
        also summed there for the other workers (``learn_shared`` applies the sums).
        """
        box = self.sync if record else None
        if box is not None:
            if self._recording != (box, self.hybrid):  # first step, or models restored
                self._start_recording(box)
            cooc = self._cooc
            cooc.last_pairs = []  # so a step that skips the model sends no stale pairs
        self.hybrid.learn_one(item_id, history, weight, context)
        self.updates += 1
        if hit is not None and arm in self.bandit.arms:
            self.bandit.update(arm, float(hit))
        if box is not None:
            # What the co-occurrence step paired the item with (known items only).
            box.record(item_id, cooc.last_pairs or [], float(weight), context.segment,
                       arm=arm if arm in self.bandit.arms else "", hit=hit,
                       blend=self.hybrid.last_blend_step, user=context.user or "")

    @property
    def _cooc(self) -> ItemCooccurrence:
        cooc = self.hybrid.components["cooccurrence"]
        assert isinstance(cooc, ItemCooccurrence)
        return cooc

    def _start_recording(self, box: Outbox) -> None:
        """Make ``box`` sum for these models' decay rates, the factor model keep what it
        changes and the co-occurrence model the pairs it learns (after a restore too: the
        restored models are new objects)."""
        trending = self.hybrid.components["trending"]
        assert isinstance(trending, Popularity)
        box.configure(Growths(cooccurrence=self._cooc._growth,
                              popularity=self.popularity.overall._growth,
                              trending=trending._growth,
                              bandit=1.0 / self.bandit._keep))
        mf = self.hybrid.components["mf"]
        assert isinstance(mf, ImplicitMF)
        mf.record_changes()
        self._cooc.record_pairs()
        self._recording = (box, self.hybrid)

    def learn_shared(self, batch: Batch) -> int:
        """Apply what another worker learned (a decoded ``models.sync`` delta): the summed
        changes of its item-level learn steps, in time proportional to the entries
        touched. Nothing about any user is in it or kept. Returns the events the delta
        sums (counted once applied).

        >>> from models.sync import Outbox, decode_batch
        >>> a, b = Engine(EngineConfig(exploration=0.0)), Engine(EngineConfig(exploration=0.0))
        >>> a.sync = Outbox(min_users=1)
        >>> _ = a.process("click", "u", "x", 1, event_id="1", fingerprint="", profile=None,
        ...               dedupe=None)
        >>> b.learn_shared(decode_batch(a.drain_sync("w1", 1))), b.recommend(None, 1).item_ids
        (1, ['x'])
        """
        n = batch.events
        pa, pb, pw = batch.pairs
        items = batch.items
        self._cooc.apply_delta(n, batch.cooccurrence, items, pa, pb, pw)
        self.popularity.apply_delta(n, batch.popularity, batch.segments)
        trending = self.hybrid.components["trending"]
        assert isinstance(trending, Popularity)
        trending.apply_delta(n, batch.trending)
        self.content.count_interactions(batch.content)
        mf = self.hybrid.components["mf"]
        assert isinstance(mf, ImplicitMF)
        ids, deltas = batch.factors.get(mf.state_key, ([], None))
        if deltas is not None:
            mf.apply_changes(ids, deltas)
        self.bandit.apply_delta(batch.bandit_steps, batch.bandit)
        for c, steps, total in batch.blend_steps:
            if steps:
                self.hybrid.apply_blend_step(c, total)
        for item_id, count in batch.explored.items():
            self._count_explored(item_id, count)
        if batch.blend is not None:
            # Halfway to the sender's blend: the copies stay together (Hybrid.mix_blend).
            self.hybrid.mix_blend(batch.blend, 0.5)
        self.updates += n
        return n

    def drain_sync(self, origin: str, seq: int) -> bytes | None:
        """What was learned since the last call, with this engine's blend weights and its
        factor model's summed item deltas, as one ``models.sync`` delta (None if nothing
        was learned, too few users' events are summed yet, or ``sync`` is off)."""
        box = self.sync
        if box is None or not box.ready():
            return None
        mf = self.hybrid.components["mf"]
        assert isinstance(mf, ImplicitMF)
        factors = {mf.state_key: mf.take_changes()} if box.events else {}
        return box.drain(origin, seq, self.hybrid.blend_matrix(), factors)

    @property
    def _mf_key(self) -> str:
        mf = self.hybrid.components["mf"]
        assert isinstance(mf, ImplicitMF)
        return mf.state_key

    # -- state --------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The item-level models (all strategies, bandit, catalogue) as one pickle.

        One pickle, so the references between them (components sharing the catalogue)
        survive a round trip. Holds item ids, counts and weights, and nothing keyed by
        user: user factors live in the profiles, and the hybrid's per-user last served
        lists are left out (``Hybrid.__getstate__``), so an erased user is in no
        checkpoint (tests/unit/test_erase.py scans one). For local checkpoint files
        only: never load a snapshot from an untrusted source.
        """
        state = {"format": SNAPSHOT_FORMAT, "hybrid": self.hybrid, "catalogue": self.catalogue,
                 "bandit": self.bandit, "explored": self._explored, "updates": self.updates}
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, blob: bytes, *, keep_catalogue: bool = False) -> None:
        """Replace the item-level models with a ``snapshot``; ValueError if it is not one.

        ``keep_catalogue`` (a rollback in a running worker): the catalogue and the content
        model, its text index, stay as they are, and every restored model filters and
        explains with this catalogue: they hold what the items topic says now, and an item
        deleted, withdrawn or retitled since the snapshot must not come back with it (the
        content model's count of interactions per new item stays too). Without it (a
        start, before any item was read) the snapshot's catalogue loads.

        >>> e = Engine(EngineConfig(top_k=1, exploration=0.0))
        >>> _ = e.process("click", "u", "a", 1, event_id="1", fingerprint="", profile=None,
        ...               dedupe=None)
        >>> fresh = Engine(EngineConfig(top_k=1, exploration=0.0)); fresh.restore(e.snapshot())
        >>> fresh.recommend(None, 1).item_ids, fresh.updates
        (['a'], 1)
        """
        try:
            state = pickles.loads(blob)  # our own local checkpoint files only
        except Exception as exc:  # any unpickling failure means "not ours"
            raise ValueError(f"not a model snapshot: {type(exc).__name__}") from None
        if not isinstance(state, dict) or state.get("format") != SNAPSHOT_FORMAT:
            raise ValueError("not a model snapshot of this format")
        hybrid, cat, bandit = state["hybrid"], state["catalogue"], state["bandit"]
        if not (isinstance(hybrid, Hybrid) and isinstance(cat, Catalogue)
                and isinstance(bandit, EpsilonGreedy)
                and set(hybrid.components) == set(self.hybrid.components)):
            raise ValueError("model snapshot holds unexpected types")
        if keep_catalogue:
            hybrid = _with_catalogue(hybrid, cat, self.catalogue)
            hybrid.components["content"] = self.content
            cat = self.catalogue
        hybrid.evictions = self.hybrid.evictions  # a process count: it goes on
        # A setting, not learned state: the configured one, whatever the snapshot had.
        hybrid.fallback_margin = self.hybrid.fallback_margin
        self.hybrid, self.catalogue, self.bandit = hybrid, cat, bandit
        popularity = hybrid.components["popularity"]
        assert isinstance(popularity, SegmentPopularity)
        self.popularity = popularity
        self._explored = dict(state.get("explored", {}))
        self.updates = int(state.get("updates", 0))

    def eviction_counts(self) -> dict[str, int]:
        """Entries dropped so far by each bounded per-user structure of the engine (the
        metric ``persona_state_evictions_total``)."""
        return {"hybrid_pending": self.hybrid.evictions, **self._evictions}

    @property
    def model_sizes(self) -> dict[str, int]:
        """Items each model knows (the metric ``persona_model_items``)."""
        return {name: len(m) for name, m in self.hybrid.components.items()}  # type: ignore[arg-type]


def _with_catalogue(hybrid: Hybrid, theirs: Catalogue, ours: Catalogue) -> Hybrid:
    """``hybrid`` with every reference to catalogue ``theirs`` (in any component, however
    deep) made one to ``ours``: one pickle round trip, so no model's inside is assumed."""
    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.persistent_id = lambda obj: "catalogue" if obj is theirs else None  # type: ignore[method-assign]
    pickler.dump(hybrid)
    out.seek(0)
    unpickler = pickle.Unpickler(out)
    unpickler.persistent_load = lambda pid: ours  # type: ignore[method-assign]
    copy = unpickler.load()
    assert isinstance(copy, Hybrid)
    return copy


def reasons(items: Sequence[ScoredItem]) -> list[dict]:
    """Items in the wire shape of the ``recommendations`` topic."""
    return [
        {"item_id": s.item_id, "score": round(float(s.score), 6), "reason": s.reason}
        for s in items
    ]
