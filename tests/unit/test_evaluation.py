"""Prequential metrics on hand-made sequences, input parsing, and the replay driver."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from models.engine import EngineConfig
from models.evaluation import (
    CountRanks,
    PrequentialMetrics,
    RatingMetrics,
    ndcg_gain,
    rank_of,
    reciprocal_rank,
)
from streams.offline.evaluate import (
    InputError,
    ReplayConfig,
    Stream,
    _catalogue_schedule,
    parse_ts,
    read_events,
    replay_ranking,
    run_strategies,
)


def _clock(step: float = 1.0):  # type: ignore[no-untyped-def]
    """A fake clock that advances ``step`` seconds per reading."""
    t = [0.0]

    def now() -> float:
        t[0] += step
        return t[0]

    return now


# ---------------------------------------------------------------- metrics
def test_gains_of_ranks() -> None:
    assert ndcg_gain(0) == 1.0
    assert ndcg_gain(1) == pytest.approx(1 / math.log2(3))
    assert ndcg_gain(6) == pytest.approx(1 / 3)  # log2(8)
    assert reciprocal_rank(4) == pytest.approx(0.2)
    assert ndcg_gain(None) == reciprocal_rank(None) == 0.0
    assert rank_of("c", ["a", "b", "c"]) == 2


def test_hand_made_sequence() -> None:
    m = PrequentialMetrics(k=3, window=100, clock=lambda: 0.0)
    m.know("z")  # a catalogue item nobody chooses
    # (rank of the event's item or None, recommended, event's item)
    events = [
        (None, [], "a"),
        (0, ["a"], "a"),  # counts now a=1, z=0: a beats z
        (1, ["a", "b"], "b"),  # b unknown: percentile 0
        (None, ["a", "b", "z"], "c"),
        (2, ["b", "z", "c"], "c"),
    ]
    for rank, recs, item in events:
        m.add(rank, recs)
        m.learn(item)
    s = m.summary()
    assert s["events"] == 5
    assert s["recall"] == pytest.approx(3 / 5)
    assert s["ndcg"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(4)) / 5)
    assert s["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 5)
    # recommended {a, b, z, c} of known {z, a, b, c}
    assert s["coverage"] == 1.0
    assert s["items_known"] == 4
    # percentiles at each ask, by counts then (known items in brackets):
    # e2 a: {z:0, a:1} -> 1/2; e3 a: {z:0, a:2} -> 1/2, b: 0;
    # e4 {z:0, a:2, b:1}: a 2/3, b 1/3, z 0; e5 {z:0, a:2, b:1, c:1}: b 1/4, z 0, c 1/4
    pops = [1 / 2, 1 / 2, 0, 2 / 3, 1 / 3, 0, 1 / 4, 0, 1 / 4]
    assert s["popularity_percentile"] == pytest.approx(sum(pops) / len(pops))


def test_popularity_percentile_extremes() -> None:
    m = PrequentialMetrics(k=1, window=10, clock=lambda: 0.0)
    for item in ["hot", "hot", "hot", "warm", "warm", "cold"]:
        m.learn(item)
    m.add(None, ["hot"])
    assert m.summary()["popularity_percentile"] == pytest.approx(2 / 3)
    m2 = PrequentialMetrics(k=1, window=10, clock=lambda: 0.0)
    for item in ["hot", "hot", "cold"]:
        m2.learn(item)
    m2.add(None, ["cold"])
    assert m2.summary()["popularity_percentile"] == 0.0


def test_windows_split_the_stream() -> None:
    m = PrequentialMetrics(k=2, window=3, clock=_clock())
    items = ["a", "b", "a", "c", "d", "a", "e"]
    for i, item in enumerate(items):
        m.add(0 if i % 2 == 0 else None, ["a", "x"] if i < 3 else ["d"])
        m.learn(item)
    windows = m.summary()["windows"]
    assert [(w["start"], w["events"]) for w in windows] == [(0, 3), (3, 3), (6, 1)]
    assert [w["recall"] for w in windows] == pytest.approx([2 / 3, 1 / 3, 1.0])
    # coverage per window: recommended in it / items known at its end
    assert windows[0]["coverage"] == pytest.approx(2 / 2)  # {a, x} / {a, b}
    assert windows[1]["coverage"] == pytest.approx(1 / 4)  # {d} / {a, b, c, d}
    assert windows[2]["coverage"] == pytest.approx(1 / 5)
    assert all(w["events_per_s"] > 0 for w in windows)
    # the overall figures are the event-weighted mean of the windows'
    overall = m.summary()["recall"]
    assert overall == pytest.approx(sum(w["recall"] * w["events"] for w in windows) / 7)


def test_events_per_second_from_the_clock() -> None:
    ticks = iter([0.0, 2.0, 2.0])
    m = PrequentialMetrics(k=1, window=10, clock=lambda: next(ticks))
    for _ in range(4):
        m.add(None, [])
    s = m.summary()
    assert s["events_per_s"] == pytest.approx(2.0)
    assert s["windows"][0]["events_per_s"] == pytest.approx(2.0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="rank"):
        PrequentialMetrics(k=2).add(2, ["a", "b", "c"])
    with pytest.raises(ValueError, match="window"):
        PrequentialMetrics(window=0)
    with pytest.raises(ValueError, match="finite"):
        RatingMetrics().add(float("nan"), 3.0)


def test_count_ranks_match_brute_force() -> None:
    rng = random.Random(7)
    ranks = CountRanks()
    counts: dict[str, int] = {}
    items = [f"i{n}" for n in range(40)]
    for step in range(3000):
        item = rng.choice(items[: 5 + step // 100])  # new items keep arriving
        if rng.random() < 0.1:
            ranks.know(item)
            counts.setdefault(item, 0)
        else:
            ranks.add(item)
            counts[item] = counts.get(item, 0) + 1
        probe = rng.choice(items)
        c = counts.get(probe, 0)
        expected = sum(1 for v in counts.values() if v < c) if probe in counts else 0
        assert ranks.lower(probe) == expected, (step, probe)
        assert len(ranks) == len(counts)


def test_rating_metrics_per_window() -> None:
    m = RatingMetrics(window=2, clock=lambda: 0.0)
    for predicted, actual in [(3.5, 4), (4.0, 3), (2.0, 2), (5.0, 1), (3.0, 3)]:
        m.add(predicted, actual)
    s = m.summary()
    assert s["events"] == 5
    assert s["mae"] == pytest.approx((0.5 + 1 + 0 + 4 + 0) / 5)
    assert s["rmse"] == pytest.approx(math.sqrt((0.25 + 1 + 16) / 5))
    assert [w["mae"] for w in s["windows"]] == pytest.approx([0.75, 2.0, 0.0])


# ---------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (874724710, 874724710000),
        (874724710.5, 874724710500),
        ("874724710", 874724710000),
        (874724710123, 874724710123),
        ("874724710123", 874724710123),
        ("1998-03-20T03:05:10Z", 890363110000),
        ("1998-03-20T05:05:10+02:00", 890363110000),
        ("1998-03-20 03:05:10.250+00:00", 890363110250),
    ],
)
def test_timestamp_formats(value: object, ms: int) -> None:
    assert parse_ts(value) == ms


@pytest.mark.parametrize("value", ["1998-03-20T03:05:10", "yesterday", "", True, None, -5,
                                   "nan", float("inf")])
def test_bad_timestamps(value: object) -> None:
    with pytest.raises(ValueError, match="ts"):
        parse_ts(value)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_and_without_rating(tmp_path: Path) -> None:
    path = _write(tmp_path, "e.csv", "ts,user,item,rating,extra\n"
                  "1000,u1,i1,4,x\n"
                  "900,u2,i2,,y\n"
                  "1000,u2,i3,3.5,z\n")
    s = read_events(path)
    # stable by ts: the two events at 1000 keep their file order
    assert s.rows == [("u2", "i2", None, 900_000), ("u1", "i1", 4.0, 1_000_000),
                      ("u2", "i3", 3.5, 1_000_000)]
    assert not s.has_rating
    plain = read_events(_write(tmp_path, "p.csv", "user,item,ts\n1,2,2024-01-01T00:00:00Z\n"))
    assert plain.rows == [("1", "2", None, 1_704_067_200_000)]


def test_jsonl(tmp_path: Path) -> None:
    path = _write(tmp_path, "e.jsonl",
                  '{"user": 7, "item": "a", "ts": 1700000000000, "rating": 5}\n\n'
                  '{"user": "u", "item": 3, "ts": "2023-11-14T22:13:19Z", "more": 1}\n')
    s = read_events(path)
    assert s.rows == [("u", "3", None, 1_699_999_999_000), ("7", "a", 5.0, 1_700_000_000_000)]


def test_format_sniffed_without_suffix(tmp_path: Path) -> None:
    j = read_events(_write(tmp_path, "events", '{"user": "u", "item": "i", "ts": 1}\n'))
    c = read_events(_write(tmp_path, "events2", "user,item,ts\nu,i,1\n"))
    assert j.rows == c.rows == [("u", "i", None, 1000)]


@pytest.mark.parametrize(
    ("name", "text", "where", "what"),
    [
        ("a.csv", "user,item,ts\nu,i,1\nu,i,soon\n", ":3:", "ts 'soon'"),
        ("b.csv", "user,item,ts\nu,i,1\nu,i\n", ":3:", "expected 3 fields"),
        ("c.csv", "user,item,ts\nu,,1\n", ":2:", "item is empty"),
        ("d.csv", "user,item,ts,rating\nu,i,1,good\n", ":2:", "rating must be a number"),
        ("e.jsonl", '{"user": "u", "item": "i", "ts": 1}\n{"user": "u"\n', ":2:", "not JSON"),
        ("f.jsonl", '\n\n["u", "i", 1]\n', ":3:", "expected a JSON object"),
        ("g.jsonl", '{"user": "u", "ts": 1}\n', ":1:", "missing key(s) item"),
        ("h.jsonl", '{"user": true, "item": "i", "ts": 1}\n', ":1:", "user must be"),
    ],
)
def test_bad_rows_name_their_line(tmp_path: Path, name: str, text: str, where: str,
                                  what: str) -> None:
    path = _write(tmp_path, name, text)
    with pytest.raises(InputError) as err:
        read_events(path)
    msg = str(err.value)
    assert f"{path}{where}" in msg and what in msg and "--skip-bad" in msg


def test_skip_bad_counts_and_keeps_the_rest(tmp_path: Path) -> None:
    lines = ["user,item,ts"] + [f"u{i},i{i},{i}" if i % 3 else f"u{i},i{i},bad"
                                for i in range(1, 31)]
    s = read_events(_write(tmp_path, "s.csv", "\n".join(lines) + "\n"), skip_bad=True)
    assert s.skipped == 10
    assert len(s.rows) == 20
    assert len(s.errors) == 5 and s.errors[0].endswith("s.csv:4: ts 'bad' is neither epoch "
                                                       "seconds, epoch milliseconds nor ISO-8601")


def test_unusable_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="missing ts"):
        read_events(_write(tmp_path, "h.csv", "user,item,time\nu,i,1\n"))
    with pytest.raises(InputError, match="no events"):
        read_events(_write(tmp_path, "empty.csv", "user,item,ts\n"))
    with pytest.raises(InputError, match="no such file"):
        read_events(tmp_path / "absent.csv")
    with pytest.raises(InputError, match="line|:2:"):
        read_events(_write(tmp_path, "r.csv", "user,item,ts,rating\nu,i,1,\n"),
                    require_rating=True)
    with pytest.raises(InputError, match="no events .*1 bad rows skipped"):
        read_events(_write(tmp_path, "allbad.csv", "user,item,ts\nu,i,x\n"), skip_bad=True)


# ---------------------------------------------------------------- replay
def _quiet_engine() -> EngineConfig:
    # no exploration and no new-item slot: the served list is the strategy's own
    return EngineConfig(exploration=0.0, new_item_rate=0.0)


def test_replay_asks_before_it_learns() -> None:
    rows = [("u1", "a", None, 1), ("u2", "a", None, 2), ("u2", "b", None, 3),
            ("u3", "a", None, 4), ("u1", "a", None, 5)]
    cfg = ReplayConfig(k=1, window=2, engine=_quiet_engine())
    s = replay_ranking("popularity", Stream("t", rows), cfg)
    # u1's first click: nothing known yet; u2 is then shown a (hit); u2 cannot be shown a
    # again (their history), and b is new (miss); u3 is shown a (hit); u1's repeat of a is
    # never recommended back to them (miss)
    assert s["events"] == 5
    assert s["recall"] == pytest.approx(2 / 5)
    assert [w["events"] for w in s["windows"]] == [2, 2, 1]
    assert s["items_known"] == 2


def test_strategies_in_worker_processes_match_in_process() -> None:
    rows = [(f"u{n % 7}", f"i{(n * 5) % 11}", None, n) for n in range(200)]
    stream = Stream("t", rows, items={f"i{n}": (f"item {n}", ["x"]) for n in range(12)})
    cfg = ReplayConfig(k=5, window=50, engine=_quiet_engine())
    seen: dict[str, int] = {}

    def progress(name: str, n: int) -> None:
        seen[name] = seen.get(name, 0) + n

    parallel = run_strategies(["popularity", "cooccurrence"], stream, cfg, jobs=2,
                              on_progress=progress)
    serial = run_strategies(["popularity", "cooccurrence"], stream, cfg, jobs=1)
    assert list(parallel) == ["popularity", "cooccurrence"]
    assert seen == {"popularity": 200, "cooccurrence": 200}
    for name in parallel:
        for key in ("recall", "ndcg", "mrr", "coverage", "popularity_percentile"):
            assert parallel[name][key] == serial[name][key]
    assert parallel["popularity"]["items_known"] == 12


def test_items_released_later_enter_the_catalogue_on_time() -> None:
    stream = Stream("t", [("u", "a", None, 100), ("u", "b", None, 200)],
                    items={"a": ("A", []), "b": ("B", []), "c": ("C", [])},
                    released={"a": 0, "b": 150, "c": 100})
    now, later = _catalogue_schedule(stream)
    assert now == ["a", "c"]
    assert later == [(150, "b")]


def test_streams_doctests() -> None:
    # streams/ modules are outside pytest's doctest paths: run this one's examples here
    import doctest

    import streams.offline.evaluate

    assert doctest.testmod(streams.offline.evaluate).failed == 0
