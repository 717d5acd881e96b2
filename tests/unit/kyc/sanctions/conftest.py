"""The OFAC reference files (read in place, never copied into the repository)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradeguard.kyc.sanctions.index import ScreeningIndex
from tradeguard.kyc.sanctions.lists import FILES, ParsedList, parse_sdn
from tradeguard.kyc.sanctions.scoring import Thresholds

OFAC = Path("/work/shared/data/ofac")
FULL_2021 = OFAC / "sdn-2021"
SAMPLE = OFAC / "sdn-sample"


def read_list(directory: Path) -> dict[str, bytes]:
    if not directory.is_dir():
        pytest.skip(f"the OFAC reference files are not at {directory}")
    return {name: (directory / name).read_bytes() for name in FILES}


@pytest.fixture(scope="session")
def full_list() -> ParsedList:
    return parse_sdn(read_list(FULL_2021))


@pytest.fixture(scope="session")
def full_index(full_list: ParsedList) -> ScreeningIndex:
    return ScreeningIndex(full_list.entries, version="sdn-2021", thresholds=Thresholds())
