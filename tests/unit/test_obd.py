"""The Open Bandit Dataset sample from the obp wheel: found without importing obp, read in order."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import subprocess
import sys
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest

from models.ads.pctr import PctrModel, RunningMeanBaseline, ad_features
from streams.offline import obd
from streams.offline.evaluate_ads import AdsReplayConfig, replay_ads, request_for, targets
from streams.offline.obd import (
    CAMPAIGNS,
    POLICIES,
    Impression,
    Item,
    ObdMissing,
    ObdSample,
    load_campaign,
    load_items,
    load_obd,
    obd_dir,
)

ROOT = Path(__file__).resolve().parents[2]
# Clicks per file of the shipped sample (policy, campaign): counted once by hand with csv.
CLICKS = {("random", "all"): 38, ("random", "men"): 46, ("random", "women"): 46,
          ("bts", "all"): 42, ("bts", "men"): 69, ("bts", "women"): 46}
ITEMS = {"all": 80, "men": 34, "women": 46}


def test_found_without_importing_obp() -> None:
    # A fresh interpreter: this test process may have imported anything already.
    code = ("import sys; from streams.offline.obd import load_obd; s = load_obd(); "
            "print(len(s.impressions), 'obp' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.split() == ["30000", "False", "False"]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("campaign", CAMPAIGNS)
def test_each_file_parses(policy: str, campaign: str) -> None:
    rows = load_campaign(policy, campaign)
    assert len(rows) == 10_000
    assert [r.index for r in rows] == list(range(10_000))
    assert sum(r.click for r in rows) == CLICKS[(policy, campaign)]
    assert {r.position for r in rows} == {1, 2, 3}
    assert all(r.campaign == campaign and len(r.user_features) == 4 for r in rows)
    assert all(0.0 < r.propensity <= 1.0 for r in rows)
    items = load_items(policy, campaign)
    assert len(items) == ITEMS[campaign]
    assert {r.item_id for r in rows} <= set(items)
    assert all(len(i.categories) == 3 and all(i.categories) for i in items.values())


def test_first_row_is_typed_as_logged() -> None:
    first = load_campaign("random", "all")[0]
    # 0,2019-11-24 00:00:34.762830+00:00,14,3,0,0.0125,81ce123c...,03a5648a...,...
    assert first == Impression(
        campaign="all", index=0, ts_us=1_574_553_634_762_830, item_id="14", position=3,
        click=False, propensity=0.0125,
        user_features=("81ce123cbb5bd8ce818f60fb3586bba5", "03a5648a76832f83c859d46bc06cb64a",
                       "c2e4f76cdbabecd33b8c762aeef386b3", "f97571b9c14a786aab269f0b427d2a85"))
    assert datetime.fromtimestamp(first.ts_us / 1e6, UTC).isoformat(sep=" ") == \
        "2019-11-24 00:00:34.762830+00:00"
    assert first.ts_ms == 1_574_553_634_762
    item = load_items("random", "all")["0"]
    assert item.feature_0 == pytest.approx(-0.49917162609493676)
    assert item.categories == ("aed790911d0344f149be2fb9470d6f0a",
                               "67503f4af781d4037a8bac5e22549edd",
                               "5c1e29f902c3ad66e0ff9f6020b1aa0b")


def test_pooled_is_the_three_campaigns_sorted_stably() -> None:
    sample = load_obd("random")
    rows = sample.impressions
    assert (sample.policy, sample.campaign) == ("random", "pooled")
    assert len(rows) == 30_000 and sum(r.click for r in rows) == 130
    assert all(a.ts_us <= b.ts_us for a, b in pairwise(rows))
    rank = {c: n for n, c in enumerate(CAMPAIGNS)}
    for a, b in pairwise(rows):
        if a.ts_us == b.ts_us:  # ties keep campaign order, then file order
            assert (rank[a.campaign], a.index) < (rank[b.campaign], b.index)
    for campaign in CAMPAIGNS:
        own = [r for r in rows if r.campaign == campaign]
        assert own == load_campaign("random", campaign)
    assert {c: len(i) for c, i in sample.items.items()} == ITEMS


def test_one_campaign() -> None:
    sample = load_obd("bts", "men")
    assert len(sample.impressions) == 10_000 and list(sample.items) == ["men"]


def test_bad_names_are_value_errors() -> None:
    with pytest.raises(ValueError, match="unknown campaign 'kids'"):
        load_obd("random", "kids")
    with pytest.raises(ValueError, match="unknown policy 'greedy'"):
        load_campaign("greedy", "all")


def test_missing_wheel_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(ObdMissing, match=r"pip install --no-deps obp==0\.4\.1"):
        load_obd()
    assert isinstance(ObdMissing("x"), FileNotFoundError)


def test_missing_files_say_how_to_install(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.setattr(obd, "obd_dir", lambda: tmp_path)
    with pytest.raises(ObdMissing, match=r"random/all/all\.csv is missing; install it with: "
                       r"pip install --no-deps obp==0\.4\.1"):
        load_obd()


def test_missing_folder_says_how_to_install(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    class Spec:
        submodule_search_locations = [str(tmp_path / "obp")]

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: Spec())
    with pytest.raises(ObdMissing, match=r"obp/dataset/obd is missing; install it with"):
        obd_dir()


def test_bad_row_names_file_and_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    src = obd_dir() / "random" / "men"
    dst = tmp_path / "random" / "men"
    dst.mkdir(parents=True)
    lines = (src / "men.csv").read_text(encoding="utf-8").splitlines()
    head, sep, tail = lines[3].partition(",0,0.0294")  # row 2's click, 0 -> 2
    assert sep
    lines[3] = head + ",2,0.0294" + tail
    (dst / "men.csv").write_text("\n".join(lines[:10]) + "\n", encoding="utf-8")
    (dst / "item_context.csv").write_text((src / "item_context.csv").read_text())
    monkeypatch.setattr(obd, "obd_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match=r"men\.csv:4: click must be 0 or 1, got 2"):
        load_campaign("random", "men")


# ------------------------------------------------ the replay (streams.offline.evaluate_ads)
MINUTE_US = 60_000_000
T0_US = 1_574_553_600_000_000  # 2019-11-24 00:00 UTC


def _small_sample(n_rows: int = 400) -> ObdSample:
    """Impressions 10 minutes apart over two campaigns: item 1 of "men" is always clicked,
    two others once each (both in "all"), so a model has something to learn."""
    items = {c: {i: Item(i, 0.0, (f"{c}-k{i}", "shared", f"k{int(i) % 2}")) for i in "0123"}
             for c in ("all", "men")}
    rows = []
    for n in range(n_rows):
        campaign = "men" if n % 3 else "all"
        item, position = str(n % 4), 1 + n % 3
        click = (campaign == "men" and item == "1") or n in (6, 33)
        rows.append(Impression(campaign, n, T0_US + n * 10 * MINUTE_US, item, position, click,
                               0.25, (f"u{n % 2}", "x", "y", "z")))
    return ObdSample("random", "pooled", rows, items)


def _oracle(sample: ObdSample, window_ms: int) -> tuple[list[float], list[float]]:
    """pCTR and baseline predictions computed without the Bidder: predict each row, learn
    its click at once, and each no-click when its window has closed (the schedule the
    bidder follows), with the documented feature mapping spelled out."""
    model = PctrModel()
    base = RunningMeanBaseline(prior_ctr=model.prior_ctr)
    pending: list[tuple[int, list[int]]] = []  # (window end, features) of no-clicks
    ps, bs = [], []
    for r in sample.impressions:
        hour = (r.ts_ms // 3_600_000) % 24
        x = ad_features({}, f"{r.campaign}:{r.item_id}", r.campaign,
                        sample.items[r.campaign][r.item_id].categories, f"pos{r.position}",
                        hour, {f"uf{i}": v for i, v in enumerate(r.user_features)})
        ps.append(model.predict_one(x))
        bs.append(base.predict_one())
        if r.click:
            model.learn_one(x, 1)
            base.learn_one(1)
        else:
            pending.append((r.ts_ms + window_ms, x))
        while pending and pending[0][0] <= r.ts_ms // 1000 * 1000:
            model.learn_one(pending.pop(0)[1], 0)
            base.learn_one(0)
    return ps, bs


def _log_loss(ps: list[float], ys: list[bool]) -> float:
    return -sum(math.log(p if y else 1 - p) for p, y in zip(ps, ys, strict=True)) / len(ps)


def _auc(ps: list[float], ys: list[bool]) -> float:
    pos = [p for p, y in zip(ps, ys, strict=True) if y]
    neg = [p for p, y in zip(ps, ys, strict=True) if not y]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def test_replay_scores_the_prediction_made_before_learning() -> None:
    sample = _small_sample()
    window_ms = 30 * 60_000
    got = replay_ads(sample, AdsReplayConfig(window_ms=window_ms))
    ps, bs = _oracle(sample, window_ms)
    ys = [r.click for r in sample.impressions]
    assert ps[0] == pytest.approx(0.005)  # the prior: nothing learned yet
    assert len(set(ps)) > 10 and max(ps) > 0.01  # it learned from the clicks
    overall = got["overall"]
    assert (overall["impressions"], overall["clicks"]) == (400, sum(ys))
    assert overall["log_loss"] == pytest.approx(_log_loss(ps, ys), rel=1e-9)
    assert overall["baseline_log_loss"] == pytest.approx(_log_loss(bs, ys), rel=1e-9)
    assert overall["auc"] == pytest.approx(_auc(ps, ys), rel=1e-9)
    assert overall["baseline_auc"] == pytest.approx(_auc(bs, ys), rel=1e-9)
    assert overall["calibration"] == pytest.approx(sum(ps) / sum(ys), rel=1e-9)
    assert overall["predicted_ctr"] == pytest.approx(sum(ps) / 400, rel=1e-9)
    assert overall["log_loss_gain"] == pytest.approx(
        1 - _log_loss(ps, ys) / _log_loss(bs, ys), rel=1e-9)
    # the features carry signal here: pCTR beats the constant clearly
    assert overall["log_loss"] < 0.9 * overall["baseline_log_loss"]
    assert overall["auc"] > 0.7 > 0.5 > overall["baseline_auc"]
    for campaign in ("all", "men"):
        idx = [n for n, r in enumerate(sample.impressions) if r.campaign == campaign]
        f = got["campaigns"][campaign]
        assert f["impressions"] == len(idx)
        assert f["log_loss"] == pytest.approx(
            _log_loss([ps[n] for n in idx], [ys[n] for n in idx]), rel=1e-9)
        assert f["calibration"] == pytest.approx(
            sum(ps[n] for n in idx) / sum(ys[n] for n in idx), rel=1e-9)
    assert got["requests"] == 400 and got["no_bids"] == got["refused_events"] == {}
    assert got["events"] == 400 + 400 + sum(ys)  # requests, impressions, clicks
    assert got["labels_learned"] == 400
    assert got["events_per_s"] > 0 and got["seconds"] > 0


def test_window_changes_when_negatives_are_learned() -> None:
    sample = _small_sample()
    short = replay_ads(sample, AdsReplayConfig(window_ms=60_000))["overall"]
    ps, _ = _oracle(sample, 60_000)
    ys = [r.click for r in sample.impressions]
    assert short["log_loss"] == pytest.approx(_log_loss(ps, ys), rel=1e-9)
    long = replay_ads(sample, AdsReplayConfig(window_ms=3 * 3_600_000))["overall"]
    assert long["log_loss"] != pytest.approx(short["log_loss"], rel=1e-6)


def test_request_mapping() -> None:
    row = _small_sample().impressions[4]
    item = Item("0", 1.5, ("a", "b", "c"))
    req = request_for(row, item)
    assert req.request_id == "men-4" and req.ts_ms == row.ts_ms and req.slot == "pos2"
    assert req.floor_price == 0.0 and req.view == {}
    (cand,) = req.candidates
    assert (cand.ad_id, cand.campaign_id, cand.value_per_click, cand.categories) == \
        ("men:0", "men", 1.0, ("a", "b", "c"))
    assert req.context == {"uf0": "u0", "uf1": "x", "uf2": "y", "uf3": "z"}


def test_targets() -> None:
    met = targets({"log_loss": 0.028, "baseline_log_loss": 0.028, "calibration": 0.8})
    assert met["log_loss"]["met"] and met["calibration"]["met"]
    met = targets({"log_loss": 0.0281, "baseline_log_loss": 0.028, "calibration": 1.26})
    assert not met["log_loss"]["met"] and not met["calibration"]["met"]
    assert not targets({"log_loss": math.nan, "baseline_log_loss": 0.028,
                        "calibration": math.nan})["calibration"]["met"]


def test_module_doctests() -> None:
    import doctest

    from streams.offline import evaluate_ads

    assert doctest.testmod(evaluate_ads).failed == 0
