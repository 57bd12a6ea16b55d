"""The evaluator and the agents run the same model code: no second copy of the scoring.

``persona evaluate`` is only worth its figures if what it measures is what the worker
serves. These tests pin that: the evaluator reaches the models only through ``Engine``
(the same calls the profile agent makes), and what it is served is exactly what the
engine serves for the same state.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from models.engine import Engine, EngineConfig, Served
from streams.offline import evaluate
from streams.offline.evaluate import ReplayConfig, Stream

ROOT = Path(__file__).resolve().parents[2]
ROWS = [(f"u{n % 7}", f"i{(n * 5 + n // 7) % 23}", None, 1_000 * n) for n in range(300)]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("module", ["streams/offline/evaluate.py", "streams/agents/profile.py"])
def test_no_scoring_outside_the_engine(module: str) -> None:
    # Ranking models are reached through models.engine only; the evaluator's rating mode
    # uses BiasedMF, which is a model module, never a copy of its code.
    direct = {m for m in _imports(ROOT / module) if m.startswith("models.recommenders")}
    allowed = {"models.recommenders.mf", "models.recommenders.base"}
    assert direct <= allowed, f"{module} imports ranking code directly: {direct - allowed}"


def test_evaluator_serves_and_learns_through_the_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: dict[str, int] = {"recommend": 0, "process": 0}
    served_lists: list[list[str]] = []
    real_recommend, real_process = Engine.recommend, Engine.process

    def recommend(self: Engine, *args, **kwargs) -> Served:  # type: ignore[no-untyped-def]
        calls["recommend"] += 1
        served = real_recommend(self, *args, **kwargs)
        served_lists.append(served.item_ids)
        return served

    def process(self: Engine, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["process"] += 1
        return real_process(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "recommend", recommend)
    monkeypatch.setattr(Engine, "process", process)
    cfg = ReplayConfig(k=5, window=100, engine=EngineConfig(exploration=0.0))
    result = evaluate.replay_ranking("hybrid", Stream("t", list(ROWS)), cfg)
    assert calls == {"recommend": len(ROWS), "process": len(ROWS)}

    # The same stream driven by hand through the engine, as the worker would: the
    # evaluator's hits must be exactly the hits of the engine's own lists.
    engine = Engine(EngineConfig(exploration=0.0, top_k=5))
    profiles: dict[str, dict] = {}
    hits = 0
    for n, (user, item, _, ts) in enumerate(ROWS):
        served = real_recommend(engine, profiles.get(user), 5, key=str(n), user=user)
        assert served.item_ids == served_lists[n]
        hits += item in served.item_ids
        r = real_process(engine, "click", user, item, ts, event_id=str(n), fingerprint="",
                         profile=profiles.get(user), dedupe=None, serve=False,
                         served_before=served)
        profiles[user] = r.profile  # type: ignore[assignment]
    assert hits > 0
    assert result["recall"] == pytest.approx(hits / len(ROWS))
