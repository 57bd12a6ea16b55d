"""The ads settings, campaigns file loading, and checkpoints that carry the ad models."""

from __future__ import annotations

import pickle
from pathlib import Path

import orjson
import pytest

from models.ads.bidding import Bidder
from models.ads.pctr import PctrModel, hash_feature
from models.engine import Engine
from models.users.profile import UserProfile
from streams.checkpoint import AdModels, Checkpointer, seal
from streams.settings import Settings, SettingsError


def test_ad_settings_defaults_and_parsing() -> None:
    s = Settings.from_env({})
    assert (s.ad_window_s, s.ad_impression_window_s, s.ad_pacing, s.ads_kill_switch) == (
        1800.0, 60.0, True, False)
    assert s.topics.control == "control" and s.ads_topic == "persona-ads"
    s = Settings.from_env({"PERSONA_ADS_KILL_SWITCH": "yes", "PERSONA_AD_PACING": "off",
                           "PERSONA_AD_WINDOW_S": "120", "PERSONA_APP_ID": "shop"})
    assert (s.ads_kill_switch, s.ad_pacing, s.ad_window_s, s.ads_topic) == (
        True, False, 120.0, "shop-ads")
    with pytest.raises(SettingsError, match="PERSONA_ADS_KILL_SWITCH"):
        Settings.from_env({"PERSONA_ADS_KILL_SWITCH": "maybe"})
    with pytest.raises(SettingsError, match="PERSONA_AD_RETENTION_S"):
        Settings.from_env({"PERSONA_AD_RETENTION_S": "1e9"})


def test_the_ads_topic_is_created_with_one_partition() -> None:
    s = Settings.from_env({"PERSONA_PARTITIONS": "8"})
    counts = s.topic_partitions()
    assert counts["persona-ads"] == 1
    assert counts["persona-events"] == counts["ad-requests"] == counts["control"] == 8
    assert set(counts) == set(s.created_topics())


def test_campaigns_file_errors_name_the_file_and_the_problem(tmp_path: Path) -> None:
    assert Settings.from_env({}).read_campaigns() == {}
    good = tmp_path / "c.json"
    good.write_bytes(orjson.dumps({"campaigns": [{"campaign_id": "a", "max_bid": 1.0}]}))
    assert list(Settings.from_env({"PERSONA_CAMPAIGNS_FILE": str(good)}).read_campaigns()) == [
        "a"]
    for content, needle in ((None, "No such file"), (b"{nope", "not JSON"),
                            (b'{"campaigns": [{"campaign_id": "a"}]}', "max_bid")):
        path = tmp_path / "bad.json"
        path.unlink(missing_ok=True)
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(SettingsError, match=needle) as exc:
            Settings.from_env({"PERSONA_CAMPAIGNS_FILE": str(path)}).read_campaigns()
        assert "PERSONA_CAMPAIGNS_FILE" in str(exc.value)


def test_checkpoint_carries_the_ad_models_and_reads_older_files(tmp_path: Path) -> None:
    bidder = Bidder({}, pctr=PctrModel(), pcvr=PctrModel(prior_ctr=0.05))
    x = [0, hash_feature("a=ad1")]
    for _ in range(30):
        bidder.pctr.learn_one(x, 1)
    learned = bidder.pctr.predict_one(x)
    secret = b"ads-wiring-test-secret-0123456789"
    cp = Checkpointer(tmp_path, secret=secret)
    cp.save(Engine(), {"ads": AdModels(bidder)})
    fresh = Bidder({}, pctr=PctrModel(), pcvr=PctrModel(prior_ctr=0.05))
    assert fresh.pctr.predict_one(x) != learned
    assert cp.restore_latest(Engine(), {"ads": AdModels(fresh)}) == 1
    assert fresh.pctr.predict_one(x) == learned
    # a (signed) bare engine snapshot (the layout before the ad models) still restores the
    # engine and leaves the ad models as they are
    (tmp_path / "models-00000002.ckpt").write_bytes(seal(Engine().snapshot(), secret))
    other = Bidder({}, pctr=PctrModel(), pcvr=PctrModel())
    assert cp.restore_latest(Engine(), {"ads": AdModels(other)}) == 2
    assert other.pctr.predict_one(x) == pytest.approx(0.005)
    # an ads entry of the wrong type is refused, and the older good file is used
    bad = {"format": "persona-checkpoint-1", "engine": Engine().snapshot(),
           "extra": {"ads": pickle.dumps({"pctr": "no", "pcvr": None})}}
    (tmp_path / "models-00000003.ckpt").write_bytes(seal(pickle.dumps(bad), secret))
    assert cp.restore_latest(Engine(), {"ads": AdModels(other)}) == 2


def test_opt_out_survives_the_stored_form() -> None:
    p = UserProfile(opted_out=True)
    assert p.to_dict()["oo"] is True
    assert UserProfile.from_dict(p.to_dict()).opted_out is True
    assert "oo" not in UserProfile().to_dict()
    assert UserProfile.from_dict({"v": 1}).opted_out is False
