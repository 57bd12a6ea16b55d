"""ops/ as an operator meets it: Prometheus config and rules (promtool), the Grafana dashboard,
and the docker-compose services that run them (no Docker engine, no Prometheus server).

promtool comes from Debian's ``prometheus`` package, which ``./run test`` installs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from prometheus_client import CollectorRegistry

from streams.metrics import build_metrics

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "ops" / "prometheus"
RECORDING = PROM / "rules" / "recording.yml"
ALERTS = PROM / "rules" / "alerts.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "dashboards" / "persona.json"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"

# The attribution metrics (docs/metrics.md) the rules and dashboard are written against.
ATTRIBUTION_METRICS = frozenset({
    "persona_recommendation_clicks_total",
    "persona_conversions_total",
    "persona_revenue_total",
    "persona_experiment_users_total",
})
ROWS = ("Operations", "Marketing effect")
SEVERITIES = ("critical", "warning")

# PromQL words that look like metric names but are operators or modifiers.
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on",
                       "ignoring", "group_left", "group_right", "inf", "nan", "atan2"})
# Grafana's built-in range variables, replaced by a duration before promtool parses a query.
_GRAFANA_RANGES = re.compile(r"\$__(?:rate_interval|interval|range)\b")


def promtool(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("promtool")
    assert exe, "promtool is missing: ./run test installs Debian's prometheus package"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def metric_names(expr: str) -> set[str]:
    """Metric names (and recording-rule names) a PromQL expression selects.

    Strips strings, label matchers, ranges and grouping clauses; what is left that looks like
    a name, is not a function call, a keyword, a Grafana variable or part of a number, is one.
    """
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        if m.group().lower() in _KEYWORDS or re.match(r"\s*\(", expr[m.end():]):
            continue
        names.add(m.group())
    return names


def exposed_metric_names() -> set[str]:
    """Every series name streams.metrics.build_metrics() can expose (labelled or not yet)."""
    metrics = build_metrics(CollectorRegistry(), campaigns=("c1",))
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",),
                "histogram": ("_bucket", "_count", "_sum", "_created"),
                "summary": ("", "_count", "_sum", "_created")}
    names = set()
    for family in metrics.registry.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(s.name for s in family.samples)
    return names


def recording_rule_names() -> list[str]:
    return re.findall(r"^\s*- record:\s*(\S+)\s*$", RECORDING.read_text(), re.M)


def alert_names() -> list[str]:
    return re.findall(r"^\s*- alert:\s*(\S+)\s*$", ALERTS.read_text(), re.M)


def rule_exprs(path: Path) -> list[str]:
    """The ``expr:`` of every rule in a rules file: inline, or a ``|`` block below it."""
    lines = path.read_text().splitlines()
    exprs = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)expr:\s*(.*)$", line)
        if not m:
            continue
        if m.group(2).strip() not in ("|", ">", "|-", ">-"):
            exprs.append(m.group(2))
            continue
        indent, block = len(m.group(1)), []
        for nxt in lines[i + 1:]:
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                break
            block.append(nxt)
        exprs.append("\n".join(block))
    return exprs


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_targets() -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every query of every panel, rows included."""
    out = []
    for panel in dashboard()["panels"]:
        for p in [panel, *panel.get("panels", [])]:
            for t in p.get("targets", []):
                out.append((p["title"], t.get("refId", "?"), t.get("expr", "")))
    return out


def known_names() -> set[str]:
    return exposed_metric_names() | ATTRIBUTION_METRICS | set(recording_rule_names()) | {"up"}


# --- promtool -------------------------------------------------------------------------------


def test_promtool_check_config_loads_both_rule_files() -> None:
    res = promtool("check", "config", "ops/prometheus/prometheus.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 rule files found" in res.stdout, res.stdout
    assert "recording.yml" in res.stdout and "alerts.yml" in res.stdout, res.stdout


def test_promtool_check_rules() -> None:
    files = sorted(str(p.relative_to(ROOT)) for p in (PROM / "rules").glob("*.yml"))
    assert len(files) == 2, files
    res = promtool("check", "rules", *files)
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    files = sorted(str(p.relative_to(ROOT)) for p in (PROM / "tests").glob("*.yml"))
    assert files, "no rule unit tests under ops/prometheus/tests"
    res = promtool("test", "rules", *files)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("SUCCESS") == len(files), res.stdout


def test_every_rule_has_unit_tests() -> None:
    tests = "\n".join(p.read_text() for p in (PROM / "tests").glob("*.yml"))
    tested_exprs = set(re.findall(r"^\s*- expr:\s*([\w:]+)", tests, re.M))
    missing = [r for r in recording_rule_names() if r not in tested_exprs]
    assert not missing, f"recording rules without a promql_expr_test: {missing}"
    cases = re.findall(r"- alertname:\s*(\w+)\s*\n\s*eval_time:\s*\S+[^\n]*\n\s*exp_alerts:(.*)",
                       tests)
    for alert in alert_names():
        outcomes = {"quiet" if rest.strip().startswith("[]") else "fires"
                    for name, rest in cases if name == alert}
        assert outcomes == {"quiet", "fires"}, f"{alert}: tested cases {outcomes or 'none'}"


def test_alert_rules_carry_for_severity_annotations_and_a_runbook() -> None:
    text = ALERTS.read_text()
    blocks = re.split(r"^\s*- alert:\s*", text, flags=re.M)[1:]
    assert len(blocks) == len(alert_names()) >= 8
    doc = OPERATIONS_DOC.read_text()
    for block in blocks:
        name = block.split()[0]
        assert re.search(r"^\s+for:\s*\d+[smh]", block, re.M), f"{name}: no for:"
        sev = re.search(r"^\s+severity:\s*(\w+)", block, re.M)
        assert sev and sev.group(1) in SEVERITIES, f"{name}: severity {sev}"
        for key in ("summary", "description"):
            assert re.search(rf"^\s+{key}:\s*\S", block, re.M), f"{name}: no {key}"
        runbook = re.search(r"^\s+runbook:\s*\"docs/operations\.md#(\w+):", block, re.M)
        assert runbook and runbook.group(1) == name.lower(), f"{name}: runbook anchor"
        # the anchor exists: a heading named after the alert
        assert re.search(rf"^#+ {name}\s*$", doc, re.M), f"docs/operations.md: no {name} heading"


def test_recording_rule_names_follow_level_metric_operations() -> None:
    names = recording_rule_names()
    assert len(names) == len(set(names)), "duplicate recording rule"
    for name in names:
        assert re.fullmatch(r"[a-z_]+:persona_[a-z0-9_]+:[a-z0-9_]+", name), name


def test_rules_select_only_metrics_that_exist() -> None:
    known = known_names()
    for path in (RECORDING, ALERTS):
        exprs = rule_exprs(path)
        assert exprs, path
        for expr in exprs:
            unknown = metric_names(expr) - known
            assert not unknown, f"{path.name}: unknown metrics {unknown} in {expr!r}"


# --- Grafana ----------------------------------------------------------------------------------


def test_dashboard_has_the_two_rows_and_every_panel_is_in_one() -> None:
    dash = dashboard()
    assert dash["uid"] and dash["title"]
    rows = [p["title"] for p in dash["panels"] if p["type"] == "row"]
    assert tuple(rows) == ROWS, rows
    assert dash["panels"][0]["type"] == "row", "a panel above the first row"
    per_row: dict[str, list[str]] = {}
    current = ""
    for panel in dash["panels"]:
        if panel["type"] == "row":
            current = panel["title"]
            per_row[current] = [p["title"] for p in panel.get("panels", [])]
            continue
        per_row[current].append(panel["title"])
        assert panel.get("targets"), f"{panel['title']}: no query"
        assert panel["datasource"]["uid"] == "persona-prometheus", panel["title"]
    assert all(len(titles) >= 6 for titles in per_row.values()), per_row
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"


def test_dashboard_covers_what_operators_and_marketers_watch() -> None:
    exprs = " ".join(e for _, _, e in dashboard_targets())
    for name in ("persona_events_total", "persona_event_lag_seconds:p99",
                 "persona_dead_letters_per_events", "persona_event_processing_seconds_bucket",
                 "persona_profiles", "persona_model_checkpoints_total", 'up{job="persona"}',
                 "persona_recommendation_clicks_per_recommendations",
                 "persona_conversions_per_recommendations", "persona_revenue_per_user",
                 "persona_recommendation_hits_per_checks", "persona_ad_bids_total",
                 "persona_ad_spend_total", "persona_ad_budget_remaining",
                 "persona_ad_clicks_per_impressions", "persona_ad_roi",
                 "persona_ad_pctr_calibration", "persona_ad_kill_switch"):
        assert name in exprs, name


def test_dashboard_queries_select_only_metrics_that_exist() -> None:
    known = known_names()
    targets = dashboard_targets()
    assert len(targets) >= 20
    for title, ref, expr in targets:
        names = metric_names(expr)
        assert names, f"{title} {ref}: no metric in {expr!r}"
        assert not names - known, f"{title} {ref}: unknown metrics {names - known}"


def test_metric_name_check_catches_a_typo() -> None:
    expr = ('sum by (job) (rate(persona_evnts_total{topic="clicks"}[$__rate_interval]))'
            ' / on (job) group_left up{job="persona"} > 0.5e1 offset 5m')
    assert metric_names(expr) == {"persona_evnts_total", "up"}
    assert metric_names(expr) - known_names() == {"persona_evnts_total"}
    assert "persona_events_total" in known_names()


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    # promtool has no query parser here: each query becomes a recording rule it checks.
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, (_, _, expr) in enumerate(dashboard_targets()):
        lines += [f"      - record: dashboard:query_{i}:check",
                  f"        expr: {json.dumps(_GRAFANA_RANGES.sub('5m', expr))}"]
    rules = tmp_path / "dashboard_queries.yml"
    rules.write_text("\n".join(lines) + "\n")
    res = promtool("check", "rules", str(rules))
    assert res.returncode == 0, res.stdout + res.stderr


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    grafana = ROOT / "ops" / "grafana" / "provisioning"
    ds = (grafana / "datasources" / "prometheus.yml").read_text()
    assert "uid: persona-prometheus" in ds and "url: http://prometheus:9090" in ds
    prov = (grafana / "dashboards" / "persona.yml").read_text()
    assert "path: /var/lib/grafana/dashboards/persona" in prov


# --- docker-compose ---------------------------------------------------------------------------


def test_compose_runs_prometheus_with_the_rules_and_grafana_provisioned() -> None:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is missing: ./run test installs Debian's docker-compose package"
    env = {**os.environ, "PERSONA_SECRET_KEY": "x"}
    res = subprocess.run([exe, "-f", str(ROOT / "docker-compose.yml"), "config"], env=env,
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    text = res.stdout
    services = dict(re.findall(r"^  ([\w-]+):\n((?:    .*\n|  - .*\n)+)", text, re.M))
    assert {"prometheus", "grafana"} <= services.keys(), services.keys()
    prom, graf = services["prometheus"], services["grafana"]
    assert re.search(r"ops/prometheus/rules:/etc/prometheus/rules:ro$", prom, re.M), prom
    assert re.search(r"ops/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro$",
                     prom, re.M), prom
    # official image, pinned to a version
    assert re.search(r"^    image: grafana/grafana:\d+\.\d+\.\d+$", graf, re.M), graf
    assert re.search(r"ops/grafana/provisioning:/etc/grafana/provisioning:ro$", graf, re.M)
    assert re.search(r"ops/grafana/dashboards:/var/lib/grafana/dashboards/persona:ro$", graf,
                     re.M)
    assert re.findall(r"^    - (\S+:\d+:\d+)(?:/\w+)?$", graf, re.M) == ["127.0.0.1:3000:3000"]
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE: Viewer" in graf
