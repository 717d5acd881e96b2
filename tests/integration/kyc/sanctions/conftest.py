"""Sanctions tests run against the real app, database and ledger, with the OFAC reference
files read in place (never copied into the repository)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.api import Api, running_api
from tradeguard.config import Settings
from tradeguard.core.clock import FrozenClock
from tradeguard.db.engine import unit_of_work
from tradeguard.kyc.contracts import ScreeningSubject, SubjectKind
from tradeguard.kyc.sanctions.container import SanctionsServices
from tradeguard.kyc.sanctions.models import SanctionsListVersion
from tradeguard.kyc.sanctions.service import LoadResult
from tradeguard.ledger.domain import Party

OFAC = Path("/work/shared/data/ofac")
FULL_2021 = OFAC / "sdn-2021"
SAMPLE = OFAC / "sdn-sample"
OPERATOR = Party("operator", "tester")
# A sample entry, sdn.csv 15102: "MORENO, Daniel","individual","SDNTK"
MORENO = "15102"
# A new entry the "update" adds (not in the sample).
ADDED = "99000001"
ADDED_ROW = (
    b'99000001,"EXAMPLE, Jordan Quincy","individual","SDGT",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,'
    b'-0- ,"DOB 1980; nationality Iran."\r\n'
)


def sample_dir() -> Path:
    if not SAMPLE.is_dir():
        pytest.skip("the OFAC sample files are not present")
    return SAMPLE


def updated_copy(tmp_path: Path, *, add: bool = True, change_moreno: bool = False) -> Path:
    """The sample list with one more entry, and/or MORENO's remarks changed."""
    target = tmp_path / f"update-{add}-{change_moreno}"
    shutil.copytree(sample_dir(), target)
    sdn = (target / "sdn.csv").read_bytes().rstrip(b"\x1a").rstrip(b"\r\n") + b"\r\n"
    if change_moreno:
        lines = sdn.split(b"\r\n")
        lines = [
            line.replace(b'"individual","SDNTK"', b'"individual","SDNTK] [SDGT"')
            if line.startswith(MORENO.encode() + b",")
            else line
            for line in lines
        ]
        sdn = b"\r\n".join(lines)
    if add:
        sdn += ADDED_ROW
    (target / "sdn.csv").write_bytes(sdn)
    return target


def person(ref: str, name: str, **kw: object) -> ScreeningSubject:
    return ScreeningSubject(SubjectKind.CUSTOMER, ref, name, ref, **kw)  # type: ignore[arg-type]


def sanctions_of(api: Api) -> SanctionsServices:
    services: SanctionsServices = api.app.state.sanctions
    return services


async def load_list(api: Api, directory: Path) -> LoadResult:
    services = sanctions_of(api)
    files = await services.service.fetch(str(directory))
    async with unit_of_work(services.sessions) as session:
        return await services.service.load(session, files, source=str(directory), actor=OPERATOR)


async def version_count(api: Api) -> int:
    async with unit_of_work(sanctions_of(api).sessions) as session:
        return int(
            (
                await session.execute(select(func.count()).select_from(SanctionsListVersion))
            ).scalar_one()
        )


@pytest.fixture
async def api(settings: Settings, engine: AsyncEngine, clock: FrozenClock) -> AsyncIterator[Api]:
    configured = settings.model_copy(update={"sanctions_list_source": str(sample_dir())})
    async with running_api(configured, engine, clock) as running:
        yield running
