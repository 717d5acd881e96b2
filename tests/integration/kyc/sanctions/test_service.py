"""Loading list versions, screening subjects, review, and re-screening on a new version,
through the service against SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select, text

from tests.integration.kyc.sanctions.conftest import (
    ADDED,
    FULL_2021,
    MORENO,
    OPERATOR,
    load_list,
    person,
    sample_dir,
    sanctions_of,
    updated_copy,
    version_count,
)
from tests.support.api import Api, audit_events
from tests.support.kyc import approved_customer
from tradeguard.core.errors import NotFound
from tradeguard.db.engine import unit_of_work
from tradeguard.kyc.contracts import ScreeningDecision, SubjectKind
from tradeguard.kyc.sanctions.common import (
    HitConflict,
    ListRefused,
    ListShrinkRefused,
    SanctionsInputError,
)
from tradeguard.kyc.sanctions.models import SanctionsHit
from tradeguard.kyc.sanctions.tasks import run_rescreen
from tradeguard.ledger.domain import Party

STAFF = "0190c5a0-0000-7000-8000-0000000000aa"


async def screen(api: Api, subject_name: str, ref: str = "u-1", **kw: object):  # type: ignore[no-untyped-def]
    services = sanctions_of(api)
    async with unit_of_work(services.sessions) as session:
        return await services.service.screen(
            session, person(ref, subject_name, **kw), reason="test", actor=OPERATOR
        )


class TestLoading:
    async def test_a_version_is_recorded_and_the_same_files_again_change_nothing(
        self, api: Api
    ) -> None:
        first = await load_list(api, sample_dir())
        assert first.created
        assert (first.version.entries, first.version.loaded_by) == (17, "operator:tester")
        assert len(first.version.sha256) == 64
        again = await load_list(api, sample_dir())
        assert not again.created
        assert again.version.id == first.version.id
        assert await version_count(api) == 1
        assert len(await audit_events(api, "sanctions:list:loaded")) == 1

    async def test_a_malformed_file_is_refused_naming_file_and_line_and_nothing_loads(
        self, api: Api, tmp_path: Path
    ) -> None:
        broken = updated_copy(tmp_path)
        (broken / "alt.csv").write_bytes((broken / "alt.csv").read_bytes() + b'11195,1,"aka"\r\n')
        with pytest.raises(ListRefused) as refused:
            await load_list(api, broken)
        assert refused.value.extensions["file"] == "alt.csv"
        assert "alt.csv line 19" in refused.value.detail
        assert await version_count(api) == 0

    async def test_the_full_2021_list_loads_with_every_name(self, api: Api) -> None:
        if not FULL_2021.is_dir():
            pytest.skip("the full 2021 list is not present")
        loaded = await load_list(api, FULL_2021)
        assert (loaded.version.entries, loaded.version.aliases) == (8976, 11910)
        assert loaded.version.names == 8976 + 11910


@pytest.mark.spec("KYC-2")
class TestScreening:
    async def test_a_listed_name_is_blocked_and_audited_without_the_name(self, api: Api) -> None:
        await load_list(api, sample_dir())
        # sdn.csv 15102: "DOB 12 Oct 1972": the list's date of birth corroborates the name.
        outcome = await screen(api, "Daniel Moreno", birth_date=date(1972, 10, 12))
        assert outcome.decision is ScreeningDecision.BLOCK
        assert [h.entry_id for h in outcome.hits] == [MORENO]
        assert outcome.hits[0].reasons[0] == "matched the list's name: 'MORENO, Daniel'"
        events = await audit_events(api, "sanctions:subject:screened")
        assert len(events) == 1
        assert events[0]["data"]["new_hits"][0]["entry_id"] == MORENO
        assert "daniel" not in str(events[0]).casefold()
        # The reasons quote the screened words: stored encrypted, never in clear.
        async with api.engine.connect() as conn:
            raw = (await conn.execute(text("SELECT reasons_enc FROM sanctions_hits"))).scalar_one()
        assert b"daniel" not in bytes(raw).lower()

    async def test_a_name_not_on_the_list_records_nothing(self, api: Api) -> None:
        await load_list(api, sample_dir())
        outcome = await screen(api, "Jordan Example")
        assert outcome.decision is ScreeningDecision.CLEAR
        assert outcome.list_version is not None
        assert await audit_events(api, "sanctions:subject:screened") == []

    async def test_before_any_list_is_loaded_nothing_is_screened(self, api: Api) -> None:
        outcome = await screen(api, "Daniel Moreno")
        assert (outcome.decision, outcome.list_version) == (ScreeningDecision.CLEAR, None)

    async def test_a_contradicting_birth_date_lowers_a_block_to_review(self, api: Api) -> None:
        await load_list(api, sample_dir())
        # sdn.csv 10278 "LOGAN MOREY, Elvis Angus": "DOB 28 Jul 1963"
        same = await screen(api, "Elvis Angus Logan Morey", "u-1", birth_date=date(1963, 7, 28))
        other = await screen(api, "Elvis Angus Logan Morey", "u-2", birth_date=date(1999, 1, 1))
        assert same.decision is ScreeningDecision.BLOCK
        # The whole name still deserves a person's look, but no longer blocks by itself.
        assert other.decision is ScreeningDecision.REVIEW
        assert any("contradicts every date of birth" in r for r in other.hits[0].reasons)


@pytest.mark.spec("KYC-2")
class TestReview:
    async def test_a_cleared_pair_is_not_raised_again_until_the_entry_changes(
        self, api: Api, tmp_path: Path
    ) -> None:
        services = sanctions_of(api)
        await load_list(api, sample_dir())
        hit = (await screen(api, "Daniel Moreno")).hits[0]
        async with unit_of_work(services.sessions) as session:
            await services.service.clear(
                session, hit_id=hit.hit_id, staff_id=STAFF, note="different person: DOB 1990"
            )
        assert (await screen(api, "Daniel Moreno")).decision is ScreeningDecision.CLEAR
        # Another version with the same entry unchanged: still not raised.
        await load_list(api, updated_copy(tmp_path))
        assert (await screen(api, "Daniel Moreno")).decision is ScreeningDecision.CLEAR
        # The entry's content changes (a program added): raised again.
        await load_list(api, updated_copy(tmp_path, change_moreno=True))
        again = await screen(api, "Daniel Moreno")
        # The name alone: a person decides again (no automatic block without corroboration).
        assert again.decision is ScreeningDecision.REVIEW
        assert again.hits[0].hit_id != hit.hit_id
        cleared = await audit_events(api, "sanctions:hit:cleared")
        assert [e["data"]["hit_id"] for e in cleared] == [hit.hit_id]
        assert "DOB 1990" not in str(cleared)

    async def test_a_confirmed_hit_makes_the_standing_block(self, api: Api) -> None:
        services = sanctions_of(api)
        await load_list(api, sample_dir())
        # sdn.csv 29702 "LIFSHITS, Artem Mikhaylovich": without the patronymic, review.
        outcome = await screen(api, "Artem Lifshits")
        assert outcome.decision is ScreeningDecision.REVIEW
        async with unit_of_work(services.sessions) as session:
            await services.service.confirm(
                session, hit_id=outcome.hits[0].hit_id, staff_id=STAFF, note="passport matches"
            )
        async with unit_of_work(services.sessions) as session:
            standing = await services.service.standing(session, SubjectKind.CUSTOMER, "u-1")
        assert standing.decision is ScreeningDecision.BLOCK

    async def test_a_review_needs_a_reason_and_an_open_hit(self, api: Api) -> None:
        services = sanctions_of(api)
        await load_list(api, sample_dir())
        hit = (await screen(api, "Daniel Moreno")).hits[0]
        async with unit_of_work(services.sessions) as session:
            with pytest.raises(SanctionsInputError):
                await services.service.clear(session, hit_id=hit.hit_id, staff_id=STAFF, note=" ")
            with pytest.raises(NotFound):
                await services.service.clear(
                    session,
                    hit_id="0190c5a0-0000-7000-8000-0000000000ff",
                    staff_id=STAFF,
                    note="not a hit",
                )
        async with unit_of_work(services.sessions) as session:
            await services.service.confirm(session, hit_id=hit.hit_id, staff_id=STAFF, note="yes")
        async with unit_of_work(services.sessions) as session:
            with pytest.raises(HitConflict):
                await services.service.clear(
                    session, hit_id=hit.hit_id, staff_id=STAFF, note="changed my mind"
                )


@pytest.mark.spec("KYC-2")
class TestRescreen:
    async def test_a_new_version_raises_exactly_the_new_hit(self, api: Api, tmp_path: Path) -> None:
        services = sanctions_of(api)
        # Onboarding's approved customers are the re-screen's subjects (kyc/container.py):
        # one named as the entry the update adds, one listed in the sample, one not listed.
        u1 = await approved_customer(
            api,
            "jordan",
            {
                "given_names": "Jordan Quincy",
                "family_name": "Example",
                "birth_date": "1980-03-01",
                "nationality": "IR",
            },
            tax_id="123-45-6781",
        )
        u2 = await approved_customer(
            api,
            "daniel",
            {"given_names": "Daniel", "family_name": "Moreno", "birth_date": "1972-10-12"},
            tax_id="123-45-6782",
        )
        await approved_customer(
            api, "priya", {"given_names": "Priya", "family_name": "Raman"}, tax_id="123-45-6783"
        )
        await load_list(api, sample_dir())
        first = await run_rescreen(services)
        assert [(h.subject_ref, h.entry_id) for h in first.new_hits] == [(u2, MORENO)]
        assert first.subjects == 3

        seen: list[tuple[int, int]] = []
        await load_list(api, updated_copy(tmp_path))
        second = await run_rescreen(
            services, progress=lambda done, total: seen.append((done, total))
        )
        assert [(h.subject_ref, h.entry_id, h.decision) for h in second.new_hits] == [
            # The name, the year of birth and the nationality all agree: blocked.
            (u1, ADDED, "block")
        ]
        assert seen[0] == (0, 3)
        assert seen[-1] == (3, 3)
        async with unit_of_work(services.sessions) as session:
            row = await services.service.rescreen_row(session, second.rescreen_id)
            assert (row.status, row.subjects, row.new_hits) == ("done", 3, 1)
            hits = (await session.execute(select(SanctionsHit))).scalars().all()
        assert sorted((h.subject_ref, h.entry_id) for h in hits) == sorted(
            [
                (u1, ADDED),
                (u2, MORENO),
            ]
        )
        finished = await audit_events(api, "sanctions:rescreen:finished")
        assert [e["data"]["new_hits"] for e in finished] == [1, 1]
        assert all(e["actor"] == Party("system", "sanctions-rescreen").as_json() for e in finished)


def _sample_without(tmp_path: Path, keep: int) -> Path:
    """The sample list with only its first `keep` entries (an extract or a cut-off file)."""
    target = tmp_path / f"first-{keep}"
    target.mkdir()
    for name in ("alt.csv", "add.csv"):
        (target / name).write_bytes((sample_dir() / name).read_bytes())
    lines = (sample_dir() / "sdn.csv").read_bytes().rstrip(b"\x1a\r\n").split(b"\r\n")
    (target / "sdn.csv").write_bytes(b"\r\n".join(lines[:keep]) + b"\r\n")
    return target


async def _load(api: Api, directory: Path, **kw: object) -> None:
    services = sanctions_of(api)
    files = await services.service.fetch(str(directory))
    async with unit_of_work(services.sessions) as session:
        await services.service.load(
            session,
            files,
            source=str(directory),
            actor=OPERATOR,
            **kw,  # type: ignore[arg-type]
        )


@pytest.mark.spec("KYC-2")
class TestShrinkGuard:
    async def test_a_much_smaller_list_is_refused_and_changes_nothing(
        self, api: Api, tmp_path: Path
    ) -> None:
        await load_list(api, sample_dir())  # 17 entries
        with pytest.raises(ListShrinkRefused, match="10 entries where the current version has 17"):
            await _load(api, _sample_without(tmp_path, 10))
        assert await version_count(api) == 1
        # Still screened against the full version.
        assert (await screen(api, "Daniel Moreno")).decision is ScreeningDecision.REVIEW

    async def test_a_strict_subset_is_refused(self, api: Api, tmp_path: Path) -> None:
        await load_list(api, sample_dir())
        # One entry fewer (6%, under the 10% bound), nothing added or amended.
        with pytest.raises(ListShrinkRefused, match="strict subset"):
            await _load(api, _sample_without(tmp_path, 16))
        assert await version_count(api) == 1

    async def test_an_emptied_alias_file_is_refused(self, api: Api, tmp_path: Path) -> None:
        await load_list(api, sample_dir())
        target = tmp_path / "no-aliases"
        target.mkdir()
        for name in ("sdn.csv", "add.csv"):
            (target / name).write_bytes((sample_dir() / name).read_bytes())
        (target / "alt.csv").write_bytes(b"")
        with pytest.raises(ListShrinkRefused, match="aliases"):
            await _load(api, target)

    async def test_allowed_explicitly_with_a_reason_and_audited(
        self, api: Api, tmp_path: Path
    ) -> None:
        await load_list(api, sample_dir())
        smaller = _sample_without(tmp_path, 10)
        with pytest.raises(SanctionsInputError, match="reason"):
            await _load(api, smaller, allow_shrink=True, reason=" ")
        await _load(api, smaller, allow_shrink=True, reason="OFAC delisted seven entries")
        assert await version_count(api) == 2
        events = await audit_events(api, "sanctions:list:shrink_allowed")
        assert len(events) == 1
        data = events[0]["data"]
        assert (data["previous_entries"], data["entries"]) == (17, 10)
        assert data["reason"] == "OFAC delisted seven entries"

    async def test_a_growing_or_amended_list_loads_as_before(
        self, api: Api, tmp_path: Path
    ) -> None:
        await load_list(api, sample_dir())
        assert (await load_list(api, updated_copy(tmp_path))).created
        assert await audit_events(api, "sanctions:list:shrink_allowed") == []
