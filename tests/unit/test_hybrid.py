"""The hybrid blend on stub components: hand-computed scores, explanations, learned weights."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import pytest

from models.recommenders.base import Context, Recommender, ScoredItem
from models.recommenders.hybrid import CONTEXTS, Hybrid


class Stub:
    """A component that always lists the same items (best first by score), minus the
    user's history and exclusions, and records what it was taught."""

    def __init__(self, scores: dict[str, float], strategy: str, reason: str) -> None:
        self.scores = scores
        self.strategy = strategy
        self.reason = reason
        self.learned: list[tuple[str, list[str], float, Context | None]] = []
        self.asked: list[int] = []

    def learn_one(
        self, item_id: str, history: Sequence[str], weight: float = 1.0,
        context: Context | None = None,
    ) -> None:
        self.learned.append((item_id, list(history), weight, context))

    def rank(
        self, history: Sequence[str], exclude: Collection[str], k: int,
        context: Context | None = None,
    ) -> list[ScoredItem]:
        self.asked.append(k)
        order = sorted(self.scores, key=lambda i: -self.scores[i])  # stable: ties keep order
        kept = [i for i in order if i not in history and i not in exclude][:k]
        return [ScoredItem(i, self.scores[i], self.reason, self.strategy) for i in kept]


def two(a: dict[str, float], b: dict[str, float], **kw: object) -> tuple[Hybrid, Stub, Stub]:
    sa, sb = Stub(a, "alpha", "because A"), Stub(b, "beta", "because B")
    return Hybrid({"a": sa, "b": sb}, **kw), sa, sb  # type: ignore[arg-type]


def by_id(items: list[ScoredItem]) -> dict[str, ScoredItem]:
    return {s.item_id: s for s in items}


def test_stub_is_a_recommender() -> None:
    assert isinstance(Stub({}, "s", "r"), Recommender)


def test_hand_computed_blend() -> None:
    h, _, _ = two({"x": 10.0, "y": 5.0, "z": 0.0}, {"y": 3.0, "w": 1.0})
    out = h.rank([], (), 10)
    # A rescaled to [0.1, 1]: x 1, y 0.55, z 0.1; B: y 1, w 0.1; absent counts 0
    # blend 0.5 A + 0.5 B: y 0.775, x 0.5, z 0.05, w 0.05 (tie: first listed first)
    assert [s.item_id for s in out] == ["y", "x", "z", "w"]
    assert [s.score for s in out] == pytest.approx([0.775, 0.5, 0.05, 0.05])
    got = by_id(out)
    # explanation: the component with the largest weighted term
    assert (got["y"].strategy, got["y"].reason) == ("beta", "because B")
    assert (got["x"].strategy, got["x"].reason) == ("alpha", "because A")
    assert got["z"].strategy == "alpha" and got["w"].strategy == "beta"


def test_rescale_bounds_and_flat_lists() -> None:
    h, _, _ = two({"x": -7.0, "y": 3.0}, {"q": 42.0})
    got = by_id(h.rank([], (), 10))
    # one item, or all equal: every item gets the top value 1
    assert got["q"].score == pytest.approx(0.5)
    assert got["y"].score == pytest.approx(0.5)   # max of A -> 1
    assert got["x"].score == pytest.approx(0.05)  # min of A -> 0.1
    h2, _, _ = two({"x": 2.0, "y": 2.0}, {})
    assert [s.score for s in h2.rank([], (), 10)] == pytest.approx([0.5, 0.5])


def test_non_finite_component_scores_do_not_poison_the_blend() -> None:
    h, _, _ = two({"x": math.nan, "y": math.inf, "z": 1.0}, {"x": 1.0})
    out = h.rank([], (), 10)
    assert all(math.isfinite(s.score) for s in out)
    assert {s.item_id for s in out} == {"x", "y", "z"}


def test_k_candidates_and_exclusions() -> None:
    h, sa, sb = two({"x": 3.0, "y": 2.0, "z": 1.0}, {"z": 2.0, "w": 1.0}, candidates=2)
    assert [s.item_id for s in h.rank(["x"], {"w"}, 1)] == ["z"]
    assert sa.asked == [2] and sb.asked == [2]  # max(k, candidates)
    h.rank([], (), 5)
    assert sa.asked[-1] == 5
    assert h.rank([], (), 0) == []
    with pytest.raises(ValueError):
        h.rank([], (), -1)
    empty, _, _ = two({}, {})
    assert empty.rank([], (), 3) == []


def serve_and_choose(h: Hybrid, user: str, history: list[str], chosen: str) -> list[str]:
    listed = [s.item_id for s in h.rank(history, (), 10, Context(user=user))]
    h.learn_one(chosen, history, context=Context(user=user))
    return listed


def test_one_update_hand_computed() -> None:
    h, _, _ = two({"p": 2.0, "q": 1.0}, {"q": 2.0, "p": 1.0})
    # features p = (1, 0.1), q = (0.1, 1): both score 0.55; p is listed first
    assert serve_and_choose(h, "u", ["h1"], "q") == ["p", "q"]
    # one pairwise mistake (p above q): diff (-0.9, 0.9), margin 0, gradient diff / 2
    assert h.weights()["sparse"] == pytest.approx({"a": 0.5 - 0.05 * 0.45,
                                                   "b": 0.5 + 0.05 * 0.45})
    assert h.updates == 1
    # now q is ranked first for sparse users
    assert [s.item_id for s in h.rank(["h2"], (), 2)] == ["q", "p"]


@pytest.mark.parametrize(("length", "context"),
                         [(0, "new"), (1, "sparse"), (4, "sparse"), (5, "regular"),
                          (30, "regular")])
def test_context_bucket_by_history_length(length: int, context: str) -> None:
    h, _, _ = two({"p": 2.0, "q": 1.0}, {"q": 2.0, "p": 1.0})
    serve_and_choose(h, "u", [f"h{i}" for i in range(length)], "q")
    weights = h.weights()
    assert weights[context]["b"] > 0.5
    for other in CONTEXTS:
        if other != context:
            assert weights[other] == {"a": 0.5, "b": 0.5}


def test_weight_grows_for_the_component_users_agree_with() -> None:
    # A ranks p first and r, s, t a little lower; B ranks p last. p wins once w_A > 10 w_B.
    a = {"p": 1.0, "r": 0.9, "s": 0.9, "t": 0.9, "z": 0.0}
    b = {"r": 1.0, "s": 1.0, "t": 1.0, "p": 0.0}
    h, _, _ = two(a, b)
    history = ["h1", "h2", "h3", "h4", "h5", "h6"]
    seen_a = [0.5]
    for n in range(100):
        serve_and_choose(h, f"user{n}", history, "p")
        w = h.weights()["regular"]
        assert min(w.values()) >= 0.0
        assert sum(w.values()) == pytest.approx(1.0)
        seen_a.append(w["a"])
    assert all(later >= earlier for earlier, later in zip(seen_a, seen_a[1:], strict=False))
    assert seen_a[-1] > 10 / 11 and h.updates > 5
    assert h.rank(history, (), 1)[0].item_id == "p"
    assert h.weights()["new"] == h.weights()["sparse"] == {"a": 0.5, "b": 0.5}
    # once p is first there is no mistake left to learn from
    before = h.updates
    serve_and_choose(h, "late", history, "p")
    assert h.updates == before


def test_no_update_when_the_chosen_item_was_not_a_candidate() -> None:
    h, _, _ = two({"p": 2.0, "q": 1.0}, {"q": 2.0, "p": 1.0})
    serve_and_choose(h, "u", [], "elsewhere")
    assert h.updates == 0 and h.weights()["new"] == {"a": 0.5, "b": 0.5}
    # what was served was consumed: a later pick of a candidate is not joined to it
    h.learn_one("q", [], context=Context(user="u"))
    assert h.updates == 0


def test_no_update_without_a_served_list_or_a_user() -> None:
    h, _, _ = two({"p": 2.0, "q": 1.0}, {"q": 2.0, "p": 1.0})
    h.learn_one("q", [], context=Context(user="never-served"))
    h.rank([], (), 10)  # anonymous: nothing remembered
    h.learn_one("q", [])
    h.rank([], (), 10, Context(user="u1"))
    h.learn_one("q", [], context=Context(user="u2"))  # another user
    assert h.updates == 0
    h.learn_one("q", [], context=Context(user="u1"))
    assert h.updates == 1


def test_zero_learning_rate_keeps_equal_weights() -> None:
    h, _, _ = two({"p": 2.0, "q": 1.0}, {"q": 2.0, "p": 1.0}, learning_rate=0.0)
    serve_and_choose(h, "u", [], "q")
    assert h.updates == 0 and h.weights()["new"] == {"a": 0.5, "b": 0.5}


def test_pending_lists_are_bounded_by_max_pending() -> None:
    h, _, _ = two({"p": 2.0, "q": 1.0}, {"q": 2.0, "p": 1.0}, max_pending=2)
    for user in ("u1", "u2", "u3"):
        h.rank([], (), 10, Context(user=user))
    assert len(h._pending) == 2
    h.learn_one("q", [], context=Context(user="u1"))  # the oldest was dropped
    assert h.updates == 0
    h.learn_one("q", [], context=Context(user="u3"))
    assert h.updates == 1


def test_serving_again_refreshes_a_user_in_the_bounded_memory() -> None:
    h, _, _ = two({"p": 2.0, "q": 1.0}, {"q": 2.0, "p": 1.0}, max_pending=2)
    for user in ("u1", "u2", "u1", "u3"):
        h.rank([], (), 10, Context(user=user))
    h.learn_one("q", [], context=Context(user="u1"))
    assert h.updates == 1


def test_forget_user_drops_the_served_list() -> None:
    h, _, _ = two({"p": 2.0, "q": 1.0}, {"q": 2.0, "p": 1.0})
    h.rank([], (), 10, Context(user="u"))
    h.forget_user("u")
    h.forget_user("unknown")  # a no-op
    h.learn_one("q", [], context=Context(user="u"))
    assert h.updates == 0 and "u" not in h._pending


def test_learn_one_teaches_every_component() -> None:
    h, sa, sb = two({"p": 1.0}, {"q": 1.0})
    ctx = Context(user="u", segment="s")
    h.learn_one("p", ["h1", "h2"], 3.0, ctx)
    assert sa.learned == sb.learned == [("p", ["h1", "h2"], 3.0, ctx)]


@pytest.mark.parametrize(("item", "weight"), [("", 1.0), (3, 1.0), ("p", 0.0), ("p", math.nan),
                                              ("p", True), ("p", 1e7)])
def test_bad_events_teach_nothing(item: object, weight: object) -> None:
    h, sa, sb = two({"p": 1.0}, {"q": 1.0})
    with pytest.raises(ValueError):
        h.learn_one(item, [], weight)  # type: ignore[arg-type]
    assert sa.learned == sb.learned == []


@pytest.mark.parametrize("kwargs", [
    {"components": {}}, {"components": {"": Stub({}, "s", "r")}},
    {"candidates": 0}, {"candidates": True}, {"max_pending": 0}, {"max_pending": 1.5},
    {"learning_rate": -0.1}, {"learning_rate": math.inf}, {"learning_rate": math.nan},
])
def test_bad_hyperparameters_rejected(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"components": {"a": Stub({}, "s", "r")}, **kwargs}
    with pytest.raises(ValueError):
        Hybrid(**args)  # type: ignore[arg-type]


def test_len_is_the_largest_component() -> None:
    from models.recommenders.popularity import Popularity

    pop, small = Popularity(), Popularity()
    for item in "abc":
        pop.learn_one(item)
    small.learn_one("a")
    assert len(Hybrid({"big": pop, "small": small})) == 3
    assert len(Hybrid({"stub": Stub({}, "s", "r")})) == 0
