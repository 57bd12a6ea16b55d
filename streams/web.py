"""HTTP views on Faust's web server (bound to 127.0.0.1): metrics, health, recommendations.

User ids in URLs are the application's own (raw) ids: they are pseudonymized here
with the same keyed hash as at ingest, and never logged. Every ``/users/...`` view needs
``Authorization: Bearer <PERSONA_API_TOKEN>`` (403 while no token is set); ``/metrics``,
``/health``, ``/ready`` and ``/segments`` hold no user data and stay open.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from models.engine import reasons
from models.marketing.experiments import NO_EXPERIMENT
from models.users.privacy import pseudonymize
from streams import tables
from streams.app import app
from streams.gauges import refresh_gauges
from streams.profile_view import profile_summary
from streams.records import ValidationError, normalize_id
from streams.runtime import current
from streams.topics import SOURCE_TOPICS


def readiness() -> dict[str, Any]:
    """Recovered, assigned and consuming: the worker serves what its tables say."""
    recovery = app.tables.recovery
    recovered = recovery.completed.is_set() and not recovery.in_recovery
    try:
        assignment = app.consumer.assignment()
    except Exception:  # consumer not started yet
        assignment = set()
    # Every source topic must have partitions here: a topic created while the group
    # joined can be missing from the assignment until the next metadata refresh.
    missing = sorted(set(SOURCE_TOPICS) - {tp.topic for tp in assignment})
    rebalancing = bool(app.rebalancing)
    return {
        "ready": recovered and not missing and not rebalancing,
        "recovered": recovered,
        "assigned_partitions": len(assignment),
        "unassigned_topics": missing,
        "rebalancing": rebalancing,
    }


@app.page("/metrics")
class MetricsView(View):
    async def get(self, request: Request) -> Response:
        rt = current()
        refresh_gauges(rt, len(tables.profiles))
        # aiohttp refuses a charset in content_type=, so the full header goes in headers.
        return self.bytes(
            generate_latest(rt.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


@app.page("/health")
class HealthView(View):
    async def get(self, request: Request) -> Response:
        return self.json({"status": "ok"})


@app.page("/ready")
class ReadyView(View):
    async def get(self, request: Request) -> Response:
        state = readiness()
        return self.json(state, status=200 if state["ready"] else 503)


def check_bearer(header: str | None, token: str) -> tuple[int, dict[str, str], str] | None:
    """None if ``header`` (an Authorization value) carries ``token``; else (status,
    headers, error detail) to refuse with: 403 when no token is configured, 401 otherwise.

    >>> check_bearer("Bearer s3cret-token-0123456", "s3cret-token-0123456") is None
    True
    >>> check_bearer(None, "s3cret-token-0123456")[0], check_bearer("Bearer x", "")[0]
    (401, 403)
    """
    if not token:
        return 403, {}, ("/users/... is disabled until the worker has an API token: set "
                         "PERSONA_API_TOKEN (>= 16 characters) and send it as "
                         "'Authorization: Bearer <token>'")
    scheme, _, presented = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return 401, {"WWW-Authenticate": 'Bearer realm="persona"'}, (
            "send 'Authorization: Bearer <PERSONA_API_TOKEN>'")
    # Constant time: the comparison must not tell how much of a guess was right.
    if not hmac.compare_digest(presented.strip().encode(), token.encode()):
        return 401, {"WWW-Authenticate": 'Bearer realm="persona", error="invalid_token"'}, (
            "the bearer token is not the worker's PERSONA_API_TOKEN")
    return None


class UserView(View):
    """Base of every ``/users/...`` view: refuses a request without the API token before
    the handler runs (the token and the path, which holds a user id, are never logged)."""

    async def dispatch(self, request: Any) -> Any:
        refused = check_bearer(request.headers.get("Authorization"),
                               current().settings.api_token)
        if refused is not None:
            status, headers, detail = refused
            error = "forbidden" if status == 403 else "unauthorized"
            return self.json({"error": error, "detail": detail}, status=status,
                             headers=headers)
        return await super().dispatch(request)


def _user_key(raw_user_id: str) -> str:
    # Not through the runtime's Pseudonymizer: its cache would keep the raw id in memory,
    # even right after an erase emptied it. A read computes the pseudonym afresh.
    rt = current()
    return pseudonymize(normalize_id(raw_user_id, "user_id"), rt.settings.require_secret_key())


def _k(request: Request) -> int:
    raw = request.query.get("k", str(current().settings.top_k))
    try:
        k = int(raw)
    except ValueError:
        raise ValidationError("bad_value", "query parameter 'k' must be an integer") from None
    if not 1 <= k <= 100:
        raise ValidationError("out_of_range", "query parameter 'k' must be in [1, 100]")
    return k


@app.page("/users/{user_id}/recommendations")
class UserRecommendationsView(UserView):
    async def get(self, request: Request, user_id: str) -> Response:
        rt = current()
        try:
            user = _user_key(user_id)
            k = _k(request)
        except ValidationError as exc:
            return self.json({"error": exc.code, "detail": exc.detail}, status=400)
        profile = tables.stored_profile(tables.profiles.get(user))
        categories = [c for c in request.query.getall("category", []) if c]
        # A read, not a showing: nothing is stored, and read_only leaves every model as it
        # was (no new-item budget spent or synced, no list kept for the blend to learn
        # from). An opted-out user is in no experiment (the agent does the same): their
        # list is the non-personal one, under the default variant.
        arm = (NO_EXPERIMENT if (profile or {}).get("oo")
               else rt.running.assign(user, (profile or {}).get("ex")))
        served = rt.engine.recommend(profile, k, key=f"web:{user}:{time.time_ns()}", user=user,
                                  categories=categories or None, strategy=arm.strategy,
                                  overrides=arm.overrides, read_only=True)
        return self.json(
            {
                "user_id": user,
                "known_user": profile is not None,
                "strategy": served.strategy,
                "propensity": round(served.propensity, 6),
                "variant": arm.variant,
                "model_version": rt.model_version,
                "items": reasons(served.items),
            }
        )


@app.page("/segments")
class SegmentsView(View):
    """The segments with their sizes and plain-words descriptions (no user data)."""

    async def get(self, request: Request) -> Response:
        segmenter = current().segments.model
        if segmenter is None:
            return self.json({"segments": [], "enabled": False})
        return self.json({"segments": segmenter.summary(), "enabled": True})


@app.page("/users/{user_id}/profile")
class UserProfileView(UserView):
    """One user's stored profile (subject access); loopback only, like every view."""

    async def get(self, request: Request, user_id: str) -> Response:
        try:
            user = _user_key(user_id)
        except ValidationError as exc:
            return self.json({"error": exc.code, "detail": exc.detail}, status=400)
        profile = tables.stored_profile(tables.profiles.get(user))
        if profile is None:
            return self.json({"error": "not_found", "user_id": user}, status=404)
        return self.json({"user_id": user, "profile": profile_summary(profile)})
