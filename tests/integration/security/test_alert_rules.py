"""The Prometheus alert rules (deploy/prometheus/tradeguard-alerts.yml) against the metrics
the app really exposes, and the security signals those metrics count, moved by real events:
a failed sign-in, a forged access token, a value that does not decrypt, a refused
detokenization (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from tests.conftest import IN_CI
from tests.support.api import PASSWORD, Api, bearer, login, register_verified
from tests.support.cards import VISA
from tests.support.trading import signed_in_trader
from tradeguard.access.domain import Role, permissions_for
from tradeguard.crypto.classes import CLASS_OF_PURPOSE
from tradeguard.crypto.keyring import DecryptionFailed
from tradeguard.identity.sessions import TOTP_SECRET_PURPOSE
from tradeguard.ledger.domain import Party
from tradeguard.vault.cards import CardCaller, CustomerCards
from tradeguard.vault.cards_models import CustomerCardRow
from tradeguard.vault.domain import VaultAccessDenied

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "prometheus" / "tradeguard-alerts.yml"
# Series Prometheus itself writes for every target; the app cannot expose them.
PROMETHEUS_SERIES = frozenset({"up"})
# Label values of these metrics come from fixed sets the app registers at start, so every
# value a rule matches must be among them (a typo would make the alert never fire).
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
_METRIC_NAME = re.compile(r"\btradeguard_[a-zA-Z0-9_:]*")
_LITERAL_ALTERNATION = re.compile(r"^[A-Za-z0-9_:\-]+(\|[A-Za-z0-9_:\-]+)*$")


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


async def exposition(api: Api) -> dict[str, dict[str, set[str]]]:
    """Each sample name on /metrics with the values each of its labels takes (after one
    request, so the per-request series exist)."""
    async with api.client() as client:
        assert (await client.get("/health/live")).status_code == 200
        response = await client.get("/metrics")
    assert response.status_code == 200
    samples: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = samples[sample.name]
            for name, value in sample.labels.items():
                labels[name].add(value)
    return samples


async def sample_value(api: Api, name: str, **labels: str) -> float:
    async with api.client() as client:
        text = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"{name}{labels} is not exposed")


class TestAlertRules:
    def test_every_rule_is_an_alert_with_a_severity_and_a_summary(self) -> None:
        names = [rule["alert"] for rule in rules()]
        assert len(names) == len(set(names))
        for rule in rules():
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule
            assert rule["annotations"]["summary"], rule
            assert rule["expr"].strip(), rule

    async def test_every_metric_and_label_value_an_alert_uses_is_exposed_by_the_app(
        self, api: Api
    ) -> None:
        exposed = await exposition(api)
        for rule in rules():
            expr = " ".join(rule["expr"].split())
            used = set(_METRIC_NAME.findall(expr))
            selectors = _SELECTOR.findall(expr)
            used |= {name for name, _ in selectors}
            assert used, f"{rule['alert']} uses no metric"
            for name in used - PROMETHEUS_SERIES:
                assert name in exposed, f"{rule['alert']}: {name} is not on /metrics"
            for name, matchers in selectors:
                if name in PROMETHEUS_SERIES:
                    continue
                for label, operator, value in _MATCHER.findall(matchers):
                    assert label in exposed[name], f"{rule['alert']}: {name} has no {label!r}"
                    if operator == "=":
                        wanted = {value}
                    elif operator == "=~" and _LITERAL_ALTERNATION.match(value):
                        wanted = set(value.split("|"))
                    else:
                        continue  # a real pattern (status=~"5.."): label existence suffices
                    missing = wanted - exposed[name][label]
                    assert not missing, f"{rule['alert']}: {name}{{{label}}} never has {missing}"

    def test_the_rules_pass_promtool(self) -> None:
        promtool = shutil.which("promtool") or str(
            ROOT / ".venv-tools" / "prometheus" / "usr" / "bin" / "promtool"
        )
        if not os.access(promtool, os.X_OK):
            reason = (
                "promtool missing (scripts/ensure-test-tools.sh unpacks it from Debian's "
                "prometheus package)"
            )
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


def _flip_signature_bit(token: str) -> str:
    header, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[10] ^= 0x01
    return f"{header}.{payload}." + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


class TestSecuritySignals:
    async def test_failed_sign_ins_are_counted_by_event_type(self, api: Api) -> None:
        failed = "tradeguard_security_events_total"
        before = await sample_value(api, failed, event="identity:login:failed")
        async with api.client() as client:
            await register_verified(api, client, "alice")
            for attempt in range(3):
                response = await client.post(
                    "/api/v1/auth/login",
                    json={"login": "alice", "password": f"wrong password {attempt}"},
                )
                assert response.status_code == 401
        assert await sample_value(api, failed, event="identity:login:failed") == before + 3

    async def test_a_forged_token_is_counted_as_a_signature_refusal_and_an_expired_one_apart(
        self, api: Api
    ) -> None:
        refused = "tradeguard_access_tokens_refused_total"
        async with api.client() as client:
            await register_verified(api, client, "alice")
            access = (await login(client, "alice"))["access_token"]
            forged = await client.get(
                "/api/v1/auth/mfa", headers=bearer(_flip_signature_bit(access))
            )
            assert forged.status_code == 401
            assert await sample_value(api, refused, reason="signature") == 1
            api.clock.advance(seconds=16 * 60)
            stale = await client.get("/api/v1/auth/mfa", headers=bearer(access))
            assert stale.status_code == 401
        assert await sample_value(api, refused, reason="expired") == 1
        assert await sample_value(api, refused, reason="signature") == 1

    async def test_a_value_moved_to_another_record_is_counted_as_a_decryption_failure(
        self, api: Api
    ) -> None:
        keyring = api.services.deps.keyring
        data_class = CLASS_OF_PURPOSE[TOTP_SECRET_PURPOSE].value
        sealed = keyring.encrypt(b"JBSWY3DPEHPK3PXP", purpose=TOTP_SECRET_PURPOSE, context=b"f-1")
        assert keyring.decrypt(sealed, purpose=TOTP_SECRET_PURPOSE, context=b"f-1")
        failures = "tradeguard_decryption_failures_total"
        assert await sample_value(api, failures, data_class=data_class) == 0
        with pytest.raises(DecryptionFailed):
            keyring.decrypt(sealed, purpose=TOTP_SECRET_PURPOSE, context=b"f-2")
        assert await sample_value(api, failures, data_class=data_class) == 1

    async def test_vault_access_and_refusals_are_counted(self, api: Api) -> None:
        async with api.client() as client:
            alice = await signed_in_trader(api, client, "alice")
            added = await alice.post(
                "/api/v1/me/cards", {"pan": VISA, "expiry_month": 12, "expiry_year": 2030}
            )
            assert added.status_code == 201, added.text
        cards: CustomerCards = api.app.state.vault.cards
        async with cards.unit_of_work() as session:
            token = (await session.execute(select(CustomerCardRow.token))).scalar_one()
        events = "tradeguard_security_events_total"
        admin = CardCaller(Party("user", alice.user_id), frozenset(permissions_for(Role.ADMIN)))
        with pytest.raises(VaultAccessDenied):
            await cards.detokenize(caller=admin, token=token, request_id="r1")
        await cards.detokenize(caller=CardCaller.payment_service(), token=token)
        assert await sample_value(api, events, event="vault:token:detokenize_denied") == 1
        assert await sample_value(api, events, event="vault:token:detokenized") == 1
        # Only the security events are labels: ordinary ones leave no series behind.
        exposed = await exposition(api)
        assert "vault:card:added" not in exposed[events]["event"]
        assert PASSWORD not in str(dict(exposed))
