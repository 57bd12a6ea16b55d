"""``persona evaluate`` as a user runs it, and the figures docs/quality.md promises.

Run as a script with ``--update-docs`` to re-measure the documented figures and rewrite
the ``json quality-20k`` block of docs/quality.md (after a deliberate model change).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "quality.md"
BLOCK = re.compile(r"```json quality-20k\n(.*?)```", re.S)
# Absolute tolerances: the replay is deterministic, these only absorb float noise across
# platforms and library versions.
TOLERANCE = {"recall": 0.005, "ndcg": 0.005, "mrr": 0.005, "coverage": 0.01,
             "popularity_percentile": 0.01}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def persona(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    # The service's defaults, whatever the caller's PERSONA_* variables say.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONA_")}
    env["COLUMNS"] = "120"
    return subprocess.run([sys.executable, "-m", "streams.cli.main", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _stream_csv(path: Path, n: int = 600, rating: bool = True,
                bad_line: int | None = None) -> Path:
    """A small stream with structure to learn: each user walks through the same items."""
    lines = ["user,item,ts" + (",rating" if rating else "")]
    for i in range(n):
        user, item = f"u{i % 23}", f"i{(i // 23 + 3 * (i % 5)) % 40}"
        ts: object = 1_700_000_000 + i
        if bad_line is not None and len(lines) + 1 == bad_line:
            ts = "later"
        lines.append(f"{user},{item},{ts}" + (f",{1 + (i * 7) % 5}" if rating else ""))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _documented() -> dict[str, Any]:
    match = BLOCK.search(DOC.read_text(encoding="utf-8"))
    assert match, f"{DOC} has no ```json quality-20k block"
    return json.loads(match.group(1))


def _measure(args: list[str], out: Path) -> dict[str, dict[str, float]]:
    res = persona("evaluate", *args, "--json", str(out))
    assert res.returncode == 0, res.stderr
    results = json.loads(out.read_text())["results"]
    return {s: {k: r[k] for k in TOLERANCE} for s, r in results.items()}


def test_help() -> None:
    res = persona("--help")
    assert res.returncode == 0 and "evaluate" in res.stdout
    res = persona("evaluate", "--help")
    assert res.returncode == 0
    for option in ("--dataset", "--input", "--limit", "--k", "--strategy", "--jobs",
                   "--exploration", "--window", "--rating", "--skip-bad", "--json", "--plot"):
        assert option in res.stdout


def test_csv_run_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "figures" / "q.json"
    res = persona("evaluate", "--input", str(_stream_csv(tmp_path / "s.csv")), "--k", "5",
                  "--window", "250", "--strategy", "popularity,cooccurrence", "--json", str(out))
    assert res.returncode == 0, res.stderr
    for text in ("popularity", "cooccurrence", "recall@5", "NDCG@5", "coverage"):
        assert text in res.stdout
    doc = json.loads(out.read_text())
    params = doc["params"]
    assert params["mode"] == "ranking" and params["dataset"] is None
    assert params["input"].endswith("s.csv")
    assert (params["events"], params["users"], params["items"]) == (600, 23, 39)
    assert (params["k"], params["window"], params["jobs"], params["skipped"]) == (5, 250, 2, 0)
    assert params["strategies"] == ["popularity", "cooccurrence"]
    assert 0.0 <= params["exploration"] <= 1.0 and "decay_half_life" in params["engine"]
    assert list(doc["results"]) == ["popularity", "cooccurrence"]
    for figures in doc["results"].values():
        for key in ("recall", "ndcg", "mrr", "coverage", "popularity_percentile"):
            assert 0.0 <= figures[key] <= 1.0
        assert figures["events"] == 600 and figures["events_per_s"] > 0
        assert figures["ndcg"] <= figures["recall"] and figures["mrr"] <= figures["ndcg"]
        windows = figures["windows"]
        assert [(w["start"], w["events"]) for w in windows] == [(0, 250), (250, 250),
                                                                 (500, 100)]
    # the stream repeats itself: co-occurrence must learn something
    assert doc["results"]["cooccurrence"]["recall"] > 0.2


def test_bad_input_is_exit_2_with_the_line(tmp_path: Path) -> None:
    path = _stream_csv(tmp_path / "bad.csv", n=50, bad_line=7)
    res = persona("evaluate", "--input", str(path), "--strategy", "popularity")
    assert res.returncode == 2
    err = " ".join(res.stderr.split())  # rich wraps long lines
    assert "bad.csv:7: ts 'later'" in err and "--skip-bad" in err

    out = tmp_path / "q.json"
    res = persona("evaluate", "--input", str(path), "--strategy", "popularity", "--skip-bad",
                  "--json", str(out))
    assert res.returncode == 0, res.stderr
    assert "skipped 1 bad row" in res.stderr
    params = json.loads(out.read_text())["params"]
    assert (params["skipped"], params["events"]) == (1, 49)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "popularity,psychic"], "unknown strategy psychic"),
        (["--dataset", "ml-20m"], "unknown --dataset"),
        (["--dataset", "ml-100k", "--input", "x.csv"], "not both"),
        (["--rating", "--strategy", "hybrid"], "--strategy does not apply"),
        (["--plot", "curves.jpg"], "PNG"),
        (["--input", "no/such/file.csv"], "no such file"),
        (["--k", "0"], "--k"),
    ],
)
def test_usage_errors_are_exit_2(args: list[str], message: str) -> None:
    res = persona("evaluate", *args)
    assert res.returncode == 2
    assert message in " ".join(res.stderr.split())


def test_rating_mode(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    res = persona("evaluate", "--rating", "--input", str(_stream_csv(tmp_path / "s.csv")),
                  "--window", "200", "--json", str(out))
    assert res.returncode == 0, res.stderr
    assert "MAE" in res.stdout and "RMSE" in res.stdout
    doc = json.loads(out.read_text())
    assert doc["params"]["mode"] == "rating" and doc["params"]["strategies"] == ["biased-mf"]
    figures = doc["results"]["biased-mf"]
    assert 0 < figures["mae"] <= figures["rmse"] < 4
    assert [w["events"] for w in figures["windows"]] == [200, 200, 200]

    res = persona("evaluate", "--rating", "--input",
                  str(_stream_csv(tmp_path / "n.csv", rating=False)))
    assert res.returncode == 2
    assert "needs a rating" in " ".join(res.stderr.split())


def test_plot_is_a_png(tmp_path: Path) -> None:
    png = tmp_path / "curves.png"
    res = persona("evaluate", "--dataset", "synthetic-drift", "--limit", "3000", "--window",
                  "1000", "--strategy", "popularity", "--jobs", "1",
                  "--plot", str(png))
    assert res.returncode == 0, res.stderr
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert png.stat().st_size > 10_000  # six subplots, not an empty canvas


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    """The documented run, replayed once for the figures and the claims."""
    return _measure(_documented()["args"], tmp_path_factory.mktemp("quality") / "q.json")


def test_documented_quality_figures_are_current(
        measured: dict[str, dict[str, float]]) -> None:
    doc, got = _documented(), measured
    assert list(got) == list(doc["results"])
    stale = [
        f"{strategy} {key}: documented {want}, measured {got[strategy][key]:.4f}"
        for strategy, figures in doc["results"].items()
        for key, want in figures.items()
        if abs(got[strategy][key] - want) > TOLERANCE[key]
    ]
    assert not stale, ("docs/quality.md is stale (refresh it with "
                       "`python tests/e2e/test_evaluate_cli.py --update-docs`): "
                       + "; ".join(stale))


def test_headline_claims_hold(measured: dict[str, dict[str, float]]) -> None:
    """The claims docs/quality.md makes under its results, on the documented run."""
    hybrid, cooc, pop = (measured[s] for s in ("hybrid", "cooccurrence", "popularity"))
    assert hybrid["recall"] > cooc["recall"], "the hybrid's recall is above co-occurrence's"
    assert min(hybrid["recall"], cooc["recall"]) > 2 * pop["recall"], \
        "both collaborative strategies' recall is more than twice popularity's"
    assert hybrid["coverage"] >= 5 * pop["coverage"], \
        "the hybrid's coverage is at least 5 times popularity's"


def _update_docs() -> None:
    import tempfile

    doc = _documented()
    with tempfile.TemporaryDirectory() as tmp:
        got = _measure(doc["args"], Path(tmp) / "q20k.json")
    lines = ["{", f'  "args": {json.dumps(doc["args"])},', '  "results": {']
    rows = [f"    {json.dumps(s)}: {json.dumps({k: round(v, 4) for k, v in f.items()})}"
            for s, f in got.items()]
    lines += [",\n".join(rows), "  }", "}", ""]
    text = DOC.read_text(encoding="utf-8")
    DOC.write_text(BLOCK.sub(lambda _: "```json quality-20k\n" + "\n".join(lines) + "```", text,
                             count=1), encoding="utf-8")
    print(f"updated {DOC}:\n" + "\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1:] != ["--update-docs"]:
        sys.exit(f"usage: {sys.argv[0]} --update-docs")
    _update_docs()
