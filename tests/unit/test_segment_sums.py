"""Model sync of the segmenter as sums per segment: a group learned at once moves the
k-means as its points would, and two workers exchanging only sums segment as well as
one segmenter that saw every user."""

from __future__ import annotations

import math
import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.marketing.segments import OnlineKMeans, Segmenter, SegmentSums
from models.users.profile import UserProfile

DAY_MS = 86_400_000
NOW = 400 * DAY_MS


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 30), st.integers(1, 25),
       st.lists(st.floats(-5, 5), min_size=3, max_size=3))
def test_a_weighted_point_is_n_equal_points(n: int, before: int, memory: int,
                                            x: list[float]) -> None:
    rng = random.Random(n * 1000 + before)
    one = OnlineKMeans(k=2, warmup=2, memory=memory)
    many = OnlineKMeans(k=2, warmup=2, memory=memory)
    for _ in range(before + 2):
        p = [rng.uniform(-1, 1) for _ in range(3)]
        one.learn_one(p)
        many.learn_one(p)
    for _ in range(n):
        one.learn_one(x)
    many.learn_weighted(x, n)
    assert many.counts().tolist() == one.counts().tolist()
    np.testing.assert_allclose(many.centroids(), one.centroids(), rtol=1e-9, atol=1e-9)


def _profiles(n: int, seed: int) -> list[tuple[int, UserProfile]]:
    """(kind, profile): 0 heavy Action buyers, 1 casual Comedy clickers, 2 dormant Drama
    fans, in a shuffled order."""
    rng = random.Random(seed)
    out = []
    for u in range(n):
        kind = u % 3
        last = NOW - DAY_MS * (rng.uniform(0, 3) if kind < 2 else rng.uniform(60, 300))
        cat = ("Action", "Comedy", "Drama")[kind]
        out.append((kind, UserProfile(
            clicks=int(rng.uniform(5, 50) if kind != 1 else rng.uniform(1, 5)),
            purchases=int(rng.uniform(3, 10)) if kind == 0 else 0,
            spend=rng.uniform(200, 2000) if kind == 0 else 0.0,
            interests={cat: rng.uniform(1, 5), "Other": rng.uniform(0, 0.5)},
            interest_ts_ms=int(last), first_seen_ms=int(last - 30 * DAY_MS),
            last_seen_ms=int(last))))
    rng.shuffle(out)
    return out


def _inertia(seg: Segmenter, profiles: list[UserProfile]) -> float:
    """Mean squared distance of each profile to its nearest centroid of ``seg``."""
    c = seg.centroids()
    assert c is not None
    rows = c.tolist()
    return sum(min(math.dist(row, seg.features(p, NOW).tolist()) for row in rows) ** 2
               for p in profiles) / len(profiles)


def _run(share: bool) -> tuple[list[Segmenter], list[tuple[int, UserProfile]]]:
    """Users split between two workers as partitions split them (alternately); worker
    b's users also like Horror, which none of a's do. With ``share`` each worker learns
    the other's sums every 40 of its own profiles."""
    people = _profiles(1_500, seed=3)
    a, b = Segmenter(k=3, warmup=30), Segmenter(k=3, warmup=30)
    mine: dict[int, list[UserProfile]] = {id(a): [], id(b): []}
    for n, (_, p) in enumerate(people):
        if n % 2:
            p.interests["Horror"] = 2.0
        mine[id(b) if n % 2 else id(a)].append(p)
    boxes = {id(a): SegmentSums(), id(b): SegmentSums()}
    for start in range(0, 750, 40):
        for seg in (a, b):
            for n, p in enumerate(mine[id(seg)][start:start + 40]):
                name = seg.learn_assign(None, p, NOW)
                boxes[id(seg)].add(name, p, NOW, f"u{start + n}")
        for seg, other in ((a, b), (b, a)):
            sums = boxes[id(other)].take(5)
            assert all(g.n >= 5 for g in sums.values())  # no group of fewer users
            if share:
                seg.learn_sums(sums)
    return [a, b], people


def test_two_workers_sharing_sums_segment_as_one_that_saw_every_user() -> None:
    workers, people = _run(share=True)
    single = Segmenter(k=3, warmup=30)
    for _, p in people:
        single.learn_one(p, NOW)
    everyone = [p for _, p in people]
    for seg in workers:
        assert seg.n_learned > 1_400  # its own 750 and the other's, but a last few
        # Each kind of user is its own segment on both workers.
        by_kind = [{seg.predict_one(p, NOW) for k, p in people if k == kind}
                   for kind in range(3)]
        assert all(len(names) == 1 for names in by_kind), by_kind
        assert len(set().union(*by_kind)) == 3
        # The clusters are as tight as one segmenter's that saw every user.
        assert _inertia(seg, everyone) <= 1.25 * _inertia(single, everyone)
        # A category only the other worker's users have is in both vocabularies.
        assert "Horror" in seg.vocabulary()


def test_without_the_sums_a_worker_misses_what_only_the_other_sees() -> None:
    (a, b), _ = _run(share=False)
    assert a.n_learned == 750 and "Horror" not in a.vocabulary()
    assert "Horror" in b.vocabulary()


def test_a_group_of_many_categories_still_decodes_on_the_other_side() -> None:
    from models.sync import MAX_INTERESTS, Outbox, decode_batch

    box = Outbox(min_users=5)
    for u in range(5):
        interests = {f"cat-{u}-{n}": 1.0 + n for n in range(80)}  # 400 in the group
        box.note_segment(UserProfile(clicks=1, interests=interests), NOW, "s0", f"u{u}")
        box.record("item", [], 1.0, None, user=f"u{u}")
    raw = box.drain("w", 1)
    assert raw is not None
    group = decode_batch(raw).segment_sums["s0"]
    assert group.n == 5 and len(group.shares) == MAX_INTERESTS
    # the largest shares are the ones kept: each user's strongest categories
    assert all(int(c.rsplit("-", 1)[1]) >= 28 for c in group.shares)
