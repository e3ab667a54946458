"""The alert rules (config/prometheus/alerts.yml) with Debian's promtool: they parse, they
fire on the series their unit tests feed them and not on the ones beside them
(tests/prometheus/alerts_test.yml), and every sambertd metric they read is one that a real
daemon exports (a rule over a misspelt metric would never fire)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.daemon import DaemonProcess

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "config" / "prometheus" / "alerts.yml"
UNIT_TESTS = REPO / "tests" / "prometheus" / "alerts_test.yml"
pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package prometheus) missing"
)
# What a metric family of each type is queried as.
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=120, cwd=UNIT_TESTS.parent
    )


def test_rules_parse() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 13 rules found" in checked.stdout


def test_rules_fire_on_their_unit_tests() -> None:
    tested = promtool("test", "rules", UNIT_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_unit_test() -> None:
    alerts = set(re.findall(r"^\s+- alert: (\w+)$", RULES.read_text(), re.M))
    tested = set(re.findall(r"alertname: (\w+)", UNIT_TESTS.read_text()))
    assert len(alerts) == 13 and alerts == tested, alerts ^ tested


def test_rules_read_only_metrics_the_daemon_exports(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path)
    try:
        d.wait_ready()
        status, _, body = d.get("/metrics")
    finally:
        d.stop()
    assert status == 200
    families = re.findall(r"^# TYPE (\S+) (\w+)$", body.decode(), re.M)
    exported = {
        name.removesuffix("_total") + suffix  # the text format's TYPE line may say _total
        for name, kind in families
        for suffix in SUFFIXES.get(kind, ("",))
    }
    used = set(re.findall(r"\bsambertd_[a-z_]+", RULES.read_text()))
    assert used and used <= exported, sorted(used - exported)
