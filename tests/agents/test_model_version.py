"""``model_version`` names the model state that served: the checkpoint the models were
loaded from or saved as last, so a save and a rollback show in every recommendation."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import orjson

from models.users.privacy import pseudonymize
from streams import __version__
from streams.agents.checkpoints import rollback_if_requested, save_if_changed
from streams.agents.profile import profile as profile_agent
from streams.app import app, settings
from streams.runtime import Runtime, current, install
from streams.web import UserRecommendationsView
from tests.agents.http import FakeRequest, click_wire

T = settings.topics




def test_model_version_names_the_checkpoint_and_shows_a_rollback(loop, sent):
    shared = current()
    # a runtime of its own (own checkpoint directory): a rollback here must not roll back
    # the models the other agent tests share
    data_dir = Path(tempfile.mkdtemp(prefix="persona-model-version-"))
    rt = install(Runtime(dataclasses.replace(shared.settings, data_dir=data_dir)))
    key = rt.settings.require_secret_key()
    view = app.web.views["/users/{user_id}/recommendations"]
    assert isinstance(view, UserRecommendationsView)
    n = 0

    async def serve(count: int) -> list[str]:
        """The model_version of the records ``count`` new events emit, then of a read.
        A new user each time: each test_context numbers its offsets from 0 again, and the
        agent skips what a user's record says it applied already."""
        nonlocal n
        raw = f"version-reader-{n}"
        user = pseudonymize(raw, key)
        start = len(sent)
        async with profile_agent.test_context() as agent:
            for _ in range(count):
                n += 1
                await agent.put(click_wire(f"v{n}", user, f"mv-{n % 7}", 1000 * n),
                                key=user.encode())
            response = await view.get(FakeRequest(k="3"), user_id=raw)
        versions = [orjson.loads(v)["model_version"] for t, _, v in sent[start:]
                    if t == T.recommendations]
        assert len(versions) == count
        return [*versions, orjson.loads(response.body)["model_version"]]

    try:
        assert rt.restore() is None  # nothing to load: cold
        cold = loop.run_until_complete(serve(3))
        assert set(cold) == {f"persona-{__version__}/{settings.strategy}/ckpt-0"}
        save_if_changed()
        first = rt.checkpointer.versions()[-1][0]
        after_first = loop.run_until_complete(serve(3))
        assert set(after_first) == {f"persona-{__version__}/{settings.strategy}/ckpt-{first}"}
        save_if_changed()
        second = rt.checkpointer.versions()[-1][0]
        assert second > first
        assert set(loop.run_until_complete(serve(1))) == {
            f"persona-{__version__}/{settings.strategy}/ckpt-{second}"}
        rt.checkpointer.rollback(to=first)
        assert rollback_if_requested() == first
        # what serves now is checkpoint `first` again, and the output says so
        assert set(loop.run_until_complete(serve(2))) == set(after_first)
        # a restarted worker names the checkpoint it loaded
        again = Runtime(dataclasses.replace(shared.settings, data_dir=data_dir))
        assert again.model_version.endswith("/ckpt-0") and again.restore() == first
        assert again.model_version == after_first[0]
    finally:
        install(shared)
