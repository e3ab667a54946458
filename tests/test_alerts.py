"""The alert rules (config/prometheus/alerts.yml) with Debian's promtool: they parse, they
fire on the series their unit tests feed them and not on the ones beside them
(tests/prometheus/alerts_test.yml), and every sambertd metric they read is one that a real
daemon exports (a rule over a misspelt metric would never fire).  The Grafana dashboard
(config/grafana/sambertd.json) is checked against the same scrape: well-formed, importable
(a datasource input, unique panel ids, no overlapping panels), every query over exported
metrics and the node selector."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.daemon import DaemonProcess

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "config" / "prometheus" / "alerts.yml"
UNIT_TESTS = REPO / "tests" / "prometheus" / "alerts_test.yml"
DASHBOARD = REPO / "config" / "grafana" / "sambertd.json"
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package prometheus) missing"
)
# What a metric family of each type is queried as.
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=120, cwd=UNIT_TESTS.parent
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The series names a real daemon's /metrics offers, as PromQL queries them."""
    d = DaemonProcess(tmp_path_factory.mktemp("metrics"))
    try:
        d.wait_ready()
        status, _, body = d.get("/metrics")
    finally:
        d.stop()
    assert status == 200
    families = re.findall(r"^# TYPE (\S+) (\w+)$", body.decode(), re.M)
    return {
        name.removesuffix("_total") + suffix  # the text format's TYPE line may say _total
        for name, kind in families
        for suffix in SUFFIXES.get(kind, ("",))
    }


def metrics_in(text: str) -> set[str]:
    return set(re.findall(r"\bsambertd_[a-z_]+", text))


@needs_promtool
def test_rules_parse() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 14 rules found" in checked.stdout


@needs_promtool
def test_rules_fire_on_their_unit_tests() -> None:
    tested = promtool("test", "rules", UNIT_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_unit_test() -> None:
    alerts = set(re.findall(r"^\s+- alert: (\w+)$", RULES.read_text(), re.M))
    tested = set(re.findall(r"alertname: (\w+)", UNIT_TESTS.read_text()))
    assert len(alerts) == 14 and alerts == tested, alerts ^ tested


def test_rules_read_only_metrics_the_daemon_exports(exported: set[str]) -> None:
    used = metrics_in(RULES.read_text())
    assert used and used <= exported, sorted(used - exported)


def test_dashboard_is_importable_and_reads_exported_metrics(exported: set[str]) -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "sambertd" and dash["__inputs"][0]["name"] == "DS_PROMETHEUS"
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels) >= 10
    cells = [
        (p["gridPos"]["x"] + dx, p["gridPos"]["y"] + dy)
        for p in panels
        for dx in range(p["gridPos"]["w"])
        for dy in range(p["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells)), "panels overlap"
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    assert all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in panels)
    assert all('instance=~"$instance"' in e for e in exprs), "a query ignores the node selector"
    used = metrics_in(" ".join(exprs))
    assert used <= exported, sorted(used - exported)
    # Everything the alerts watch is on the dashboard too.
    assert metrics_in(RULES.read_text()) <= used, sorted(metrics_in(RULES.read_text()) - used)
