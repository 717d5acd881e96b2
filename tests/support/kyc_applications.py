"""Account applications for tests: a complete US applicant, variations by section."""

from __future__ import annotations

import copy
from typing import Any

# Valid by format, outside any range the SSA issued to the public's knowledge in tests.
SSN = "123-45-6780"
OTHER_SSN = "234-56-7891"
ITIN = "912-70-1234"

COMPLETE: dict[str, dict[str, Any]] = {
    "identity": {
        "given_names": "Alice Marie",
        "family_name": "Example",
        "birth_date": "1985-04-30",
        "nationality": "US",
        "tax_id": SSN,
    },
    "address": {
        "line1": "1 Main Street",
        "line2": "Apt 4",
        "city": "Springfield",
        "region": "IL",
        "postal_code": "62701",
        "country": "US",
    },
    "employment": {
        "status": "employed",
        "employer": "Acme Widgets",
        "occupation": "technology",
        "broker_dealer_affiliated": False,
        "control_person": False,
        "politically_exposed": False,
    },
    "funding": {
        "source_of_funds": ["employment", "savings"],
        "source_of_wealth": ["employment"],
    },
    "profile": {
        "annual_income": "100k_200k",
        "net_worth": "250k_500k",
        "liquid_net_worth": "100k_250k",
        "experience": "good",
        "options_experience": False,
        "objectives": ["growth"],
        "risk_tolerance": "medium",
        "time_horizon": "long",
        "margin_requested": False,
        "expected_monthly_deposits": "2000",
        "expected_monthly_withdrawals": "500",
    },
}


def application(**changes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The complete application with some sections' fields changed (None removes one)."""
    body = copy.deepcopy(COMPLETE)
    for section, fields in changes.items():
        target = body.setdefault(section, {})
        for name, value in fields.items():
            if value is None:
                target.pop(name, None)
            else:
                target[name] = value
    return body


def high_risk(**changes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A self-declared politically exposed person (HIGH on its own)."""
    base = {"employment": {"politically_exposed": True, "pep_details": "Mayor of a small town"}}
    base.update(changes)
    return application(**base)
