"""The synthetic-drift stream: deterministic per seed, well-formed, and actually drifting."""

from __future__ import annotations

from collections import Counter

import pytest

from streams.offline.synthetic import CLUSTERS, START_S, TIMELINE_S, generate

N = 30_000


def _cluster_shares(stream, rows) -> list[float]:  # type: ignore[no-untyped-def]
    counts = Counter(stream.cluster[item] for _, item, _, _ in rows)
    return [counts[c] / len(rows) for c in range(len(stream.clusters))]


def _drift(stream) -> float:  # type: ignore[no-untyped-def]
    """Total variation distance between the clusters chosen in the first and last tenth."""
    tenth = len(stream.rows) // 10
    first = _cluster_shares(stream, stream.rows[:tenth])
    last = _cluster_shares(stream, stream.rows[-tenth:])
    return 0.5 * sum(abs(a - b) for a, b in zip(first, last, strict=True))


@pytest.fixture(scope="module")
def drifting():  # type: ignore[no-untyped-def]
    return generate(n_events=N, seed=3)


def test_deterministic_per_seed(drifting) -> None:  # type: ignore[no-untyped-def]
    again = generate(n_events=N, seed=3)
    assert again.rows == drifting.rows
    assert again.items == drifting.items and again.released == drifting.released
    assert generate(n_events=N, seed=4).rows != drifting.rows


def test_rows_are_well_formed(drifting) -> None:  # type: ignore[no-untyped-def]
    rows = drifting.rows
    assert len(rows) == N
    assert [r[3] for r in rows] == sorted(r[3] for r in rows)
    assert START_S <= rows[0][3] and rows[-1][3] <= START_S + TIMELINE_S + 86_400
    assert {r[2] for r in rows} <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert len({r[2] for r in rows}) == 5
    for user, item, _, ts in rows[:: N // 100]:
        assert user.startswith("u") and item in drifting.items
        title, categories = drifting.items[item]
        assert categories == [CLUSTERS[drifting.cluster[item]]]
        assert title.startswith(categories[0])
        assert drifting.released[item] <= ts  # nobody chooses an unreleased item


def test_sessions_stay_in_a_cluster(drifting) -> None:  # type: ignore[no-untyped-def]
    last: dict[str, int] = {}
    same = total = 0
    for user, item, _, _ in drifting.rows:
        c = drifting.cluster[item]
        if user in last:
            total += 1
            same += last[user] == c
        last[user] = c
    # 20 clusters: independent choices would agree far less often
    assert same / total > 0.5


def test_popularity_is_skewed_and_new_items_arrive(drifting) -> None:  # type: ignore[no-untyped-def]
    counts = Counter(item for _, item, _, _ in drifting.rows)
    top = sum(n for _, n in counts.most_common(len(drifting.items) // 10))
    assert top / N > 0.3  # the top tenth of items draws far more than a tenth of events
    late = [i for i, ts in drifting.released.items() if ts > START_S + TIMELINE_S // 2]
    assert len(late) > len(drifting.items) // 5
    assert any(counts[i] for i in late)


def test_preferred_clusters_drift() -> None:
    drifting, stationary = generate(n_events=N, seed=0), generate(n_events=N, seed=0, drift=0.0)
    assert _drift(drifting) > 0.3
    assert _drift(stationary) < 0.2
    assert all(ts == START_S for ts in stationary.released.values())


@pytest.mark.parametrize("kwargs", [{"n_events": -1}, {"n_clusters": 21}, {"drift": 1.5},
                                    {"n_users": 0}])
def test_bad_parameters(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        generate(**kwargs)


def test_doctests() -> None:
    # streams/ modules are outside pytest's doctest paths: run this one's examples here
    import doctest

    import streams.offline.synthetic

    result = doctest.testmod(streams.offline.synthetic)
    assert result.attempted > 0 and result.failed == 0
