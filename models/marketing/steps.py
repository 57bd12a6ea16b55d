"""The marketing bookkeeping of one profile event, as plain data: experiment entries,
segment and audience changes, attribution and hit counts, what erasure takes back."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

from models.engine import Result
from models.marketing.attribution import Attribution
from models.marketing.audiences import Audience, changes, memberships
from models.marketing.experiments import Assignment
from models.marketing.segments import Segmenter
from models.sync import Outbox
from models.users.profile import UserProfile

# -- experiments --------------------------------------------------------------------------


class ExperimentUpdate(NamedTuple):
    """The profile's new ``"ex"`` entries and what to add to the experiment counters
    (labelled with the assignment's experiment and variant).

    ``users_added`` is 1 when the user (re)enters the experiment; ``revenue`` the amount
    credited to the user's variant (0.0: none) and ``revenue_sumsq`` the change of the
    square of the user's revenue in it (the per-user variance needs sum of squares).
    """

    entries: dict[str, list[Any]]
    users_added: int
    revenue: float
    revenue_sumsq: float


def account_experiment(
    entries: dict[str, list[Any]] | None,
    arm: Assignment,
    credit: Attribution | None,
    amount: float,
) -> ExperimentUpdate:
    """Keep the user's variant in their ``"ex"`` entries (``{experiment: [variant,
    revenue]}``) so it never moves, and credit ``amount`` to it when the event is
    attributed to a recommendation served under that same variant.

    ``entries`` is never changed: a changed entry is a new dict holding a new list (the
    other entries shared), and when nothing changes ``entries`` itself is returned, so a
    returning user costs no copy. ``arm`` must be in an experiment.

    >>> from models.marketing.experiments import Assignment
    >>> arm = Assignment("recs", "B", None, new=True)
    >>> first = account_experiment(None, arm, None, 0.0)
    >>> first.entries, first.users_added, first.revenue
    ({'recs': ['B', 0.0]}, 1, 0.0)
    >>> credit = Attribution("r1", "hybrid", "B", "id", first_click=False)
    >>> back = Assignment("recs", "B", None, new=False)
    >>> paid = account_experiment({"recs": ["B", 3.0]}, back, credit, 2.0)
    >>> paid.entries, paid.users_added, paid.revenue, paid.revenue_sumsq
    ({'recs': ['B', 5.0]}, 0, 2.0, 16.0)
    """
    experiment = arm.experiment
    if experiment is None:
        raise ValueError("account_experiment needs an assignment in an experiment")
    out = entries if entries is not None else {}
    users_added = 0
    if arm.new or experiment not in out:
        out = dict(out)
        out[experiment] = [arm.variant, 0.0]
        users_added = 1
    if amount and credit is not None and credit.variant == arm.variant:
        entry = out[experiment]
        before = float(entry[1])
        after = before + amount
        if out is entries:  # not copied above: copy before changing
            out = dict(out)
        entry = list(entry)
        entry[1] = after
        out[experiment] = entry
        return ExperimentUpdate(out, users_added, amount, after * after - before * before)
    return ExperimentUpdate(out, users_added, 0.0, 0.0)


# -- segments and audiences ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SegmentChange:
    """The user moved to ``segment`` (one record on the segments topic)."""

    segment: str


@dataclass(frozen=True, slots=True)
class AudienceChange:
    """The user joined or left ``audience`` (one record on the audiences topic)."""

    audience: str
    action: Literal["join", "leave"]


GroupChange = SegmentChange | AudienceChange


@dataclass(frozen=True, slots=True)
class GroupUpdate:
    """What to store and publish after ``group_step``.

    ``segment``: the new segment, to store under the profile's ``"sg"`` (None: unchanged);
    ``audiences``: the new audience names, sorted, for ``"au"`` (None: unchanged);
    ``changes``: in publishing order, the segment change first, then audience joins, then
    leaves (each sorted by name).
    """

    segment: str | None = None
    audiences: list[str] | None = None
    changes: tuple[GroupChange, ...] = ()


# Most events move nobody: one shared answer for them.
NO_GROUP_CHANGE = GroupUpdate()


def group_step(
    profile: Mapping[str, Any],
    prof: UserProfile | None,
    ts_ms: int,
    *,
    segmenter: Segmenter | None,
    audiences: Mapping[str, Audience],
    categories_of: Callable[[str], Sequence[str]],
    half_life_ms: float,
    sync_outbox: Outbox | None = None,
    user: str = "",
) -> GroupUpdate:
    """Learn the segmenter from the user's new profile, (re)assign their segment and
    their audiences as of ``ts_ms``; what changed.

    ``prof`` is ``profile`` already parsed (``Result.user_profile``; None: parsed here,
    only if there is a segmenter or an audience). Neither is changed: the caller stores
    the update. The segmenter learns in place, and ``sync_outbox`` notes the profile it
    learned (for the other workers' segmenters, summed per segment over at least its
    ``min_users`` distinct ``user``s: the pseudonym stays in memory), before the segment
    is compared.

    >>> from models.marketing.audiences import load_audiences
    >>> auds = {a.name: a for a in load_audiences(
    ...     {"audiences": [{"name": "big", "spend_at_least": 100}]})}
    >>> profile = {"m": 150.0, "sg": "s0", "au": []}
    >>> up = group_step(profile, None, 0, segmenter=None, audiences=auds,
    ...                 categories_of=lambda i: (), half_life_ms=1.0)
    >>> up.segment, up.audiences, up.changes
    (None, ['big'], (AudienceChange(audience='big', action='join'),))
    >>> seg = Segmenter(k=2, warmup=2)
    >>> group_step({}, None, 0, segmenter=seg, audiences={}, categories_of=lambda i: (),
    ...            half_life_ms=1.0).changes
    (SegmentChange(segment='s0'),)
    """
    if segmenter is None and not audiences:
        return NO_GROUP_CHANGE
    if prof is None:
        prof = UserProfile.from_dict(profile)
    found: list[GroupChange] = []
    new_segment: str | None = None
    current = prof.segment or None
    if segmenter is not None:
        # Learn, then assign, computing the profile's features once.
        segment = segmenter.learn_assign(current, prof, ts_ms)
        if sync_outbox is not None:  # the other workers' segmenters learn it too
            sync_outbox.note_segment(prof, ts_ms, segment, user)
        if segment != prof.segment:
            new_segment = current = segment
            found.append(SegmentChange(segment))
    new_audiences: list[str] | None = None
    if audiences:
        # Audiences by segment see the segment just assigned.
        member = memberships(list(audiences.values()), prof, current, ts_ms, categories_of,
                             half_life_ms=half_life_ms)
        moved = changes(set(prof.audiences), member)
        if moved.joined or moved.left:
            found += [AudienceChange(name, "join") for name in moved.joined]
            found += [AudienceChange(name, "leave") for name in moved.left]
            new_audiences = sorted(member)
    if not found:
        return NO_GROUP_CHANGE
    return GroupUpdate(new_segment, new_audiences, tuple(found))


# -- attribution, hits, serving -----------------------------------------------------------


class Labels(NamedTuple):
    """The labels of the recommendation counters."""

    strategy: str
    variant: str


class CreditUpdate(NamedTuple):
    """What one accepted, learned event adds to the recommendation counters and the
    running experiment's allocator.

    - ``clicked``: the first click credited to a recommendation: clicks +1, and a
      success for ``clicked.variant`` in the allocator;
    - ``converted``: a purchase credited to a recommendation: conversions +1 and
      attributed revenue + ``revenue``;
    - ``checked``: the previous list was checked for a hit (hit checks +1, hits +1 when
      ``hit``; the drift detector observes ``hit``);
    - ``served``: the recommendation served now: recommendations +1, recommended items +
      ``items``, and a trial for ``served.variant`` in the allocator.

    A named tuple, as ``ExperimentUpdate``: built once per event, and a frozen dataclass
    costs several times more to build.
    """

    clicked: Labels | None
    converted: Labels | None
    revenue: float
    checked: Labels | None
    hit: bool
    served: Labels
    items: int


def credit_step(res: Result, arm: Assignment, kind: str, amount: float) -> CreditUpdate:
    """The counts of an accepted, learned event (``res``) served under ``arm``.

    Clicks and conversions go to the credited recommendation's own strategy and
    variant, a hit to the strategy of the list that earned it under the user's variant
    now, and the new recommendation to the strategy that served it.

    >>> from models.engine import Result
    >>> from models.marketing.experiments import Assignment
    >>> res = Result("accepted", strategy="cooccurrence", hit=True, hit_strategy="mf",
    ...              attributed=Attribution("r1", "mf", "A", "id", first_click=False))
    >>> c = credit_step(res, Assignment("recs", "B", None, False), "purchase", 9.5)
    >>> c.clicked, c.converted, c.revenue
    (None, Labels(strategy='mf', variant='A'), 9.5)
    >>> c.checked, c.hit, c.served, c.items
    (Labels(strategy='mf', variant='B'), True, Labels(strategy='cooccurrence', variant='B'), 0)
    """
    credit = res.attributed
    clicked = converted = None
    if credit is not None:
        labels = Labels(credit.strategy, credit.variant)
        if credit.first_click:
            clicked = labels
        if kind == "purchase":
            converted = labels
    checked = None
    if res.hit is not None:
        checked = Labels(res.hit_strategy or res.strategy, arm.variant)
    return CreditUpdate(
        clicked=clicked,
        converted=converted,
        revenue=amount if converted is not None else 0.0,
        checked=checked,
        hit=bool(res.hit),
        served=Labels(res.strategy, arm.variant),
        items=len(res.items),
    )


# -- forgetting a user --------------------------------------------------------------------


class ForgetsUsers(Protocol):
    """A model holding per-user state outside the profile (the hybrid's last lists)."""

    def forget_user(self, user: str) -> None: ...


def forget_user_step(
    user: str,
    stored_profile: Mapping[str, Any] | None,
    *,
    hybrid: ForgetsUsers,
    segmenter: Segmenter | None,
    audiences: Mapping[str, Audience],
) -> list[str]:
    """Take ``user`` out of what the models keep about them beyond their record (the
    hybrid's last list; with a stored profile, their place in their segment's size), and
    return the configured audiences the record had them in: each gets a "leave" event.

    ``stored_profile`` is not changed; audiences no longer configured are left out.

    >>> class Hybrid:
    ...     def forget_user(self, user): print("forget", user)
    >>> forget_user_step("u1", {"au": ["big", "gone"]}, hybrid=Hybrid(), segmenter=None,
    ...                  audiences={"big": None})
    forget u1
    ['big']
    """
    hybrid.forget_user(user)
    if stored_profile is None:
        return []
    if segmenter is not None:
        segmenter.forget(stored_profile.get("sg"))
    return [name for name in stored_profile.get("au") or () if name in audiences]
