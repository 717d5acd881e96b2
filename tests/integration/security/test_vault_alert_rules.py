"""The card vault's alert rules (deploy/prometheus/tradeguard-vault-alerts.yml) against the
metrics `tradeguard vault serve` really exposes on its metrics listener, and promtool."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import IN_CI
from tests.integration.security.test_alert_rules import (
    _LITERAL_ALTERNATION,
    _MATCHER,
    _METRIC_NAME,
    _SELECTOR,
    PROMETHEUS_SERIES,
)
from tradeguard.vault.metrics import VaultMetrics
from tradeguard.vault.serving import MetricsListener

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "prometheus" / "tradeguard-vault-alerts.yml"


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def exposition() -> dict[str, dict[str, set[str]]]:
    """What the vault's metrics listener serves, scraped over HTTP."""
    listener = MetricsListener(VaultMetrics(), "127.0.0.1:0")
    listener.start()
    try:
        with urllib.request.urlopen(listener.url, timeout=5) as response:  # noqa: S310
            text = response.read().decode()
    finally:
        listener.stop()
    samples: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = samples[sample.name]
            for name, value in sample.labels.items():
                labels[name].add(value)
    return samples


class TestVaultAlertRules:
    def test_every_rule_is_an_alert_with_a_severity_and_a_summary(self) -> None:
        names = [rule["alert"] for rule in rules()]
        assert len(names) == len(set(names))
        for rule in rules():
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule
            assert rule["annotations"]["summary"], rule
            assert rule["alert"].startswith("TradeguardVault"), rule

    @pytest.mark.spec("PCI-1")
    def test_every_metric_and_label_value_a_rule_uses_is_exposed_by_the_vault(self) -> None:
        exposed = exposition()
        for rule in rules():
            expr = " ".join(rule["expr"].split())
            used = set(_METRIC_NAME.findall(expr)) | {n for n, _ in _SELECTOR.findall(expr)}
            assert used, f"{rule['alert']} uses no metric"
            for name in used - PROMETHEUS_SERIES:
                assert name in exposed, f"{rule['alert']}: {name} is not exposed by the vault"
            for name, matchers in _SELECTOR.findall(expr):
                if name in PROMETHEUS_SERIES:
                    continue
                for label, operator, value in _MATCHER.findall(matchers):
                    assert label in exposed[name], f"{rule['alert']}: {name} has no {label!r}"
                    if operator == "=":
                        wanted = {value}
                    elif operator == "=~" and _LITERAL_ALTERNATION.match(value):
                        wanted = set(value.split("|"))
                    else:
                        continue
                    missing = wanted - exposed[name][label]
                    assert not missing, f"{rule['alert']}: {name}{{{label}}} never has {missing}"

    def test_the_rules_pass_promtool(self) -> None:
        promtool = shutil.which("promtool") or str(
            ROOT / ".venv-tools" / "prometheus" / "usr" / "bin" / "promtool"
        )
        if not os.access(promtool, os.X_OK):
            reason = "promtool missing (scripts/ensure-test-tools.sh unpacks it)"
            if IN_CI:
                pytest.fail(reason)
            pytest.skip(reason)
        checked = subprocess.run(
            [promtool, "check", "rules", str(RULES)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert f"SUCCESS: {len(rules())} rules found" in checked.stdout + checked.stderr
