"""MovieLens 100K from the recbole wheel: located without importing recbole, read in order."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

from streams.offline import datasets
from streams.offline.datasets import (
    DatasetMissing,
    load_movielens_100k,
    load_movielens_items,
    movielens_100k_path,
)


def test_path_found_without_importing_recbole() -> None:
    # A fresh interpreter: this test process may have imported anything already.
    code = (
        "import sys; from streams.offline.datasets import movielens_100k_path as p; "
        "print(p().name, 'recbole' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["ml-100k.inter", "False"]


def test_ratings_sorted_and_well_formed() -> None:
    rows = load_movielens_100k()
    assert len(rows) == 100_000
    ts = [r[3] for r in rows]
    assert ts == sorted(ts)
    assert all(isinstance(u, str) and isinstance(i, str) for u, i, _, _ in rows[:1000])
    assert {r[2] for r in rows} == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert len({r[0] for r in rows}) == 943 and len({r[1] for r in rows}) == 1682


def test_sort_is_stable() -> None:
    # Ratings sharing a timestamp keep their file order.
    with movielens_100k_path().open(encoding="utf-8") as fh:
        fh.readline()
        in_file = [tuple(line.rstrip("\n").split("\t")[:2]) for line in fh]
    position = {pair: n for n, pair in enumerate(in_file)}
    rows = load_movielens_100k()
    for a, b in pairwise(rows):
        if a[3] == b[3]:
            assert position[(a[0], a[1])] < position[(b[0], b[1])]


def test_items_have_titles_and_genres() -> None:
    items = load_movielens_items()
    assert len(items) == 1682
    assert items["1"] == ("Toy Story", ["Animation", "Children's", "Comedy"])
    assert all("unknown" not in genres for _, genres in items.values())


def test_missing_wheel_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatasetMissing, match=r"pip install --no-deps recbole==1\.2\.1"):
        datasets._recbole_file("recbole/dataset_example/ml-100k/not-there.inter")
    assert isinstance(DatasetMissing("x"), FileNotFoundError)


def test_uninstalled_wheel_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    def not_installed(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(DatasetMissing, match=r"pip install --no-deps recbole==1\.2\.1"):
        movielens_100k_path()
    assert load_movielens_items() == {}
