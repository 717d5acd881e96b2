"""The audit search operations keep their documented contract when a compliance officer calls
them (the suite-wide schemathesis test calls every operation as a trader, who only ever gets
403 here): generated positive and negative cases against the real app on both databases."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.core.failures import FailureGroup

from tests.integration.audit.test_search_api import compliance, seed
from tests.integration.web.test_schemathesis import CHECKS, send
from tests.support.api import Api

OPERATIONS = ("audit.events.search", "audit.events.export")
# More than the suite-wide two per mode: these are the only cases that reach the handlers.
EXAMPLES = 25


def cases(operation: Any, mode: GenerationMode) -> list[Case]:
    found: list[Case] = []

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(generation_mode=mode))
    def collect(case: Case) -> None:
        found.append(case)

    collect()
    return found


class TestSearchContract:
    async def test_search_and_export_match_their_documented_contract_for_compliance(
        self, api: Api
    ) -> None:
        await seed(api)
        schema = schemathesis.openapi.from_dict(api.app.openapi())
        failures: list[str] = []
        statuses: set[int] = set()
        async with api.client() as client:
            carol = await compliance(api, client)
            for result in schema.get_all_operations():
                operation = result.ok()
                if operation.definition.raw.get("operationId") not in OPERATIONS:
                    continue
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    for case in cases(operation, mode):
                        response = await send(client, case, carol.access)
                        statuses.add(response.status_code)
                        try:
                            case.validate_response(response, checks=CHECKS)
                        except FailureGroup as failure:
                            failures.append(f"{operation.label} ({mode.value}): {failure}")
        assert failures == [], "\n".join(failures)
        # 401 only for negative cases sent without the Authorization header; never 403 or 5xx.
        assert {200, 422} <= statuses <= {200, 401, 422}, statuses
