"""PERSONA_ERASE_GRACE_S: how long an erase marker outlives the erase."""

from __future__ import annotations

import pytest

from streams.metrics import OUTCOMES
from streams.settings import PROJECT_ROOT, Settings, SettingsError


def test_the_grace_period_is_at_least_the_max_event_age() -> None:
    assert Settings.from_env({}).erase_grace_s == 86_400.0
    # raising the age limit raises the default with it: ingest would accept older events
    week = Settings.from_env({"PERSONA_MAX_EVENT_AGE_S": "604800"})
    assert week.erase_grace_s == 604_800.0 and week.erase_grace_ms == 604_800_000
    replay = Settings.from_env({"PERSONA_MAX_EVENT_AGE_S": "0"})
    assert replay.erase_grace_s == 86_400.0
    assert Settings.from_env({"PERSONA_ERASE_GRACE_S": "172800"}).erase_grace_s == 172_800.0
    with pytest.raises(SettingsError, match="PERSONA_ERASE_GRACE_S=3600 is below"):
        Settings.from_env({"PERSONA_ERASE_GRACE_S": "3600"})
    for bad in ("0", "-5", "later"):
        with pytest.raises(SettingsError, match="PERSONA_ERASE_GRACE_S"):
            Settings.from_env({"PERSONA_ERASE_GRACE_S": bad})


def test_the_setting_and_the_outcome_are_documented() -> None:
    assert "erased" in OUTCOMES
    docs = PROJECT_ROOT / "docs"
    assert "| `PERSONA_ERASE_GRACE_S` |" in (docs / "settings.md").read_text()
    assert "`erased`" in (docs / "metrics.md").read_text()
    assert "PERSONA_ERASE_GRACE_S" in (docs / "contract.md").read_text()
