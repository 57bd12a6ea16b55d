"""A real Prometheus scraping a real worker: CTR by variant through its HTTP API.

A worker on the real local Apache Kafka runs an A/B experiment (A: popularity, B:
cooccurrence); Debian's ``prometheus`` scrapes it every second with the repository's
rule files loaded. 40 users click once, then some click the recommendation they were
served (some twice, some too late, some with another user's id). The CTR Prometheus
answers, raw and through the recording rule, must equal the share of recommendations the
test itself credits from what it sent and read back from the recommendations topic.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from models.users.privacy import pseudonymize
from streams.local.broker import ensure_topics, free_port
from streams.local.promserver import PrometheusServer, Sample
from streams.local.worker_proc import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
RULES = sorted((REPO / "ops" / "prometheus" / "rules").glob("*.yml"))
SECRET = "integration-test-secret-key-prometheus-0123"
N_USERS = 40
BASE_TS = 1_760_000_000_000  # 2025-10-09T08:53:20Z
HOUR_MS = 3_600_000
EXPERIMENTS = {"experiments": [{"name": "exp-it", "control": "A", "variants": [
    {"name": "A", "strategy": "popularity"}, {"name": "B", "strategy": "cooccurrence"}]}]}
# What each user does after their first recommendation, cycling within their variant, so
# the two variants end with different CTRs. "click": clicks it once (credited); "twice":
# clicks it twice (credited once); "late": clicks it 25 h later (outside the 24 h window);
# "foreign": a click carrying another user's recommendation_id; "plain": a click without
# one; "none": nothing.
PLANS = {"A": ["click", "plain", "late", "none", "twice", "foreign"],
         "B": ["click", "twice", "none", "click", "foreign"]}
CTR_BY_VARIANT = ("sum by (variant) (persona_recommendation_clicks_total{job='persona'})"
                  " / (sum by (variant) (persona_recommendations_total{job='persona'}) > 0)")
CTR_RULE = "strategy_variant:persona_recommendation_clicks_per_recommendations:ratio_rate5m"


def raw_user(i: int) -> str:
    return f"promuser-{i:03d}-px"


def click(event_id: str, user: str, item: str, ts: int, rec_id: str | None = None) -> dict:
    ev = {"event_id": event_id, "user_id": user, "item_id": item, "ts": ts}
    if rec_id is not None:
        ev["recommendation_id"] = rec_id
    return ev


class Recommendations:
    """Reads the recommendations topic from the start, keyed by the triggering event id."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                               enable_auto_commit=False, auto_offset_reset="earliest")
        parts = self.c.partitions_for_topic(topic) or set()
        assert parts, topic
        self.c.assign([TopicPartition(topic, p) for p in parts])
        self.c.seek_to_beginning()
        self.by_trigger: dict[str, dict] = {}

    def until(self, n: int, timeout: float = 30.0) -> dict[str, dict]:
        deadline = time.monotonic() + timeout
        while len(self.by_trigger) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.by_trigger)} of {n} recommendations "
                                     f"after {timeout}s")
            for records in self.c.poll(timeout_ms=200).values():
                for r in records:
                    rec = orjson.loads(r.value)
                    self.by_trigger[rec["trigger_event_id"]] = rec
        return self.by_trigger

    def close(self) -> None:
        self.c.close()


def expected_counts(sent: list[dict], by_trigger: dict[str, dict]
                    ) -> tuple[Counter, Counter]:
    """(recommendations, credited clicks) per (strategy, variant), from the test's own
    messages: a click is credited to the recommendation whose id it carries if that
    recommendation was served to the same user at most 24 h (event time) before it, and
    only the first click on a recommendation counts. (No user here has more than 3 events,
    so the worker's memory of the last 5 recommendations never matters.)"""
    ts_of = {ev["event_id"]: ev["ts"] for ev in sent}
    served = {rec["recommendation_id"]: rec for rec in by_trigger.values()}
    recs = Counter((rec["strategy"], rec["variant"]) for rec in by_trigger.values())
    clicks: Counter = Counter()
    clicked: set[str] = set()
    for ev in sent:
        rec = served.get(ev.get("recommendation_id", ""))
        if rec is None or rec["recommendation_id"] in clicked:
            continue
        if rec["user_id"] != pseudonymize(ev["user_id"], SECRET.encode()):
            continue
        if not 0 <= ev["ts"] - ts_of[rec["trigger_event_id"]] <= 24 * HOUR_MS:
            continue
        clicked.add(rec["recommendation_id"])
        clicks[(rec["strategy"], rec["variant"])] += 1
    return recs, clicks


def by_variant(counts: Counter) -> Counter:
    out: Counter = Counter()
    for (_strategy, variant), n in counts.items():
        out[variant] += n
    return out


def vector(samples: list[Sample], *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels.get(k, "") for k in labels): s.value for s in samples
            if s.value == s.value}  # drop NaN (0/0 for label sets that served nothing)


def wait_for(what: str, probe, timeout: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.2)


def test_prometheus_answers_ctr_by_variant(kafka_broker, tmp_path):
    started = time.monotonic()
    assert RULES, "no rule files under ops/prometheus/rules"
    sfx = uuid.uuid4().hex[:8]
    names = {k: f"{k.replace('_', '-')}-{sfx}" for k in
             ("clicks", "purchases", "items", "ad_requests", "ad_events", "privacy", "control",
              "recommendations", "ad_bids", "segments", "dead_letters")}
    app_id = f"persona-prom-{sfx}"
    experiments = tmp_path / "experiments.json"
    experiments.write_bytes(orjson.dumps(EXPERIMENTS))
    env = {f"PERSONA_TOPIC_{k.upper()}": v for k, v in names.items()}
    env.update({
        "PERSONA_BOOTSTRAP": kafka_broker.bootstrap,
        "PERSONA_APP_ID": app_id,
        "PERSONA_SECRET_KEY": SECRET,
        "PERSONA_DATA_DIR": str(tmp_path / "worker"),
        "PERSONA_SESSION_TIMEOUT_S": "6",
        "PERSONA_LOG_LEVEL": "info",
        "PERSONA_EXPERIMENTS_FILE": str(experiments),
        # the attribution rules expected_counts() applies, spelled out
        "PERSONA_ATTRIBUTION_WINDOW_HOURS": "24",
        "PERSONA_ATTRIBUTE_BY_ITEM": "false",
        # The events carry fixed 2025 timestamps: no age limit.
        "PERSONA_MAX_EVENT_AGE_S": "0",
    })
    counts = {n: 4 for n in [*names.values(), f"{app_id}-events"]}
    counts[f"{app_id}-ads"] = 1
    ensure_topics(kafka_broker.bootstrap, list(counts), counts)

    worker = WorkerProcess(env=env, web_port=free_port(), log_path=tmp_path / "worker.log")
    prom = PrometheusServer(home=tmp_path / "prometheus", port=free_port(),
                            targets=[f"127.0.0.1:{worker.web_port}"], rule_files=RULES)
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all", linger_ms=1)
    tail = None
    try:
        worker.start()
        prom.start(timeout=30)
        worker.wait_ready(timeout=120)
        # Scraped before any event, so every counter's first sample is its pre-initialized
        # 0 and rate() over the run covers all of it (the recording rule's ratio is exact).
        wait_for("first scrape of the worker",
                 lambda: prom.query("persona_recommendations_total{variant='B'}"), 20)
        tail = Recommendations(kafka_broker.bootstrap, names["recommendations"])
        sent: list[dict] = []

        def send(ev: dict) -> None:
            producer.send(names["clicks"], key=ev["user_id"].encode(), value=orjson.dumps(ev))
            sent.append(ev)

        # 1. one click per user: each is served one recommendation, in its variant
        for i in range(N_USERS):
            send(click(f"c1-{i}", raw_user(i), f"item-{i % 7}", BASE_TS + i * 1000))
        producer.flush()
        first = tail.until(N_USERS)
        rec_of = {i: first[f"c1-{i}"] for i in range(N_USERS)}
        users = {v: [i for i in range(N_USERS) if rec_of[i]["variant"] == v] for v in "AB"}
        assert all(len(users[v]) >= 6 for v in "AB"), {v: len(u) for v, u in users.items()}

        # 2. per variant, users follow that variant's plan: clicks on what they were served
        other = {"A": users["B"][0], "B": users["A"][0]}
        for variant, members in users.items():
            for n, i in enumerate(members):
                plan = PLANS[variant][n % len(PLANS[variant])]
                rec = rec_of[i]
                item = rec["items"][0]["item_id"] if rec["items"] else "item-0"
                ts = BASE_TS + HOUR_MS + i * 1000
                if plan in ("click", "twice"):
                    send(click(f"c2-{i}", raw_user(i), item, ts, rec["recommendation_id"]))
                if plan == "twice":
                    send(click(f"c3-{i}", raw_user(i), item, ts + 2000,
                               rec["recommendation_id"]))
                if plan == "late":
                    send(click(f"c2-{i}", raw_user(i), item, BASE_TS + 25 * HOUR_MS + i,
                               rec["recommendation_id"]))
                if plan == "foreign":
                    send(click(f"c2-{i}", raw_user(i), item, ts,
                               rec_of[other[variant]]["recommendation_id"]))
                if plan == "plain":
                    send(click(f"c2-{i}", raw_user(i), item, ts))
        producer.flush()
        every = tail.until(len(sent))  # one recommendation per accepted click
        assert len(every) == len(sent)
        recs, clicks = expected_counts(sent, every)
        want_recs, want_clicks = by_variant(recs), by_variant(clicks)
        want_ctr = {v: want_clicks[v] / want_recs[v] for v in "AB"}
        assert all(0 < want_ctr[v] < 1 for v in "AB") and want_ctr["A"] != want_ctr["B"]

        # The worker counted them all (clicks are counted before the recommendation they
        # trigger is sent, so these are final) ...
        wait_for("worker counted every recommendation", lambda: sum(
            v for k, v in worker.metrics().items()
            if k.startswith("persona_recommendations_total{")) == len(sent), 15)
        m = worker.metrics()
        for (strategy, variant), n in recs.items():
            key = f'{{strategy="{strategy}",variant="{variant}"}}'
            assert m["persona_recommendations_total" + key] == n, key
            assert m["persona_recommendation_clicks_total" + key] == clicks[(strategy, variant)]
        # ... and Prometheus scraped it after that.
        prom.wait_scrape_after(time.time(), timeout=15)
        scraped = time.time()

        up = vector(prom.query("up{job='persona'}"), "instance")
        assert up == {(f"127.0.0.1:{worker.web_port}",): 1.0}

        ctr = vector(prom.query(CTR_BY_VARIANT), "variant")
        print("Prometheus CTR by variant:", ctr, "expected:", want_ctr)
        assert set(ctr) == {("A",), ("B",)}
        for v in "AB":
            assert ctr[(v,)] == pytest.approx(want_ctr[v], rel=1e-9), v

        got_recs = vector(prom.query(
            "sum by (strategy, variant) (persona_recommendations_total{job='persona'}) > 0"),
            "strategy", "variant")
        assert got_recs == {k: float(n) for k, n in recs.items()}
        got_users = vector(prom.query(
            "sum by (variant) (persona_experiment_users_total{experiment='exp-it'})"), "variant")
        assert got_users == {(v,): float(len(users[v])) for v in "AB"}

        # The recording rule (rate ratio over 5 m): wait for an evaluation after the scrape.
        wait_for("recording rule evaluated after the last scrape", lambda: (
            s := prom.query(f"min(timestamp({CTR_RULE}))")) and s[0].value > scraped, 15)
        rule = vector(prom.query(CTR_RULE), "strategy", "variant")
        want_rule = {k: clicks[k] / n for k, n in recs.items()}
        print("recording rule CTR:", rule, "expected:", want_rule)
        assert set(rule) == set(want_rule)
        for k, want in want_rule.items():
            assert rule[k] == pytest.approx(want, rel=1e-6), k
        print(f"test took {time.monotonic() - started:.1f}s")
    finally:
        if tail is not None:
            tail.close()
        producer.close()
        prom.stop()
        worker.stop()
