"""Uploading identity documents through the real API, and reading what was stored."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select

from tests.support.api import Api
from tests.support.trading import Trader
from tradeguard.kyc.documents.models import KycDocument, KycDocumentChunk

DOCUMENTS = "/api/v1/kyc/documents"
STAFF_DOCUMENTS = "/api/v1/admin/kyc/documents"


async def upload(
    who: Trader,
    content: bytes,
    *,
    kind: str = "passport",
    filename: str = "passport.jpg",
    content_type: str = "image/jpeg",
    side: str | None = None,
    mrz: str | None = None,
) -> httpx.Response:
    data: dict[str, Any] = {"kind": kind}
    if side is not None:
        data["side"] = side
    if mrz is not None:
        data["mrz"] = mrz
    return await who.client.post(
        DOCUMENTS,
        data=data,
        files={"file": (filename, content, content_type)},
        headers=who.headers,
    )


async def stored_counts(api: Api) -> tuple[int, int]:
    """How many document rows and chunk rows the database holds."""
    async with api.services.unit_of_work() as session:
        documents = (
            await session.execute(select(func.count()).select_from(KycDocument))
        ).scalar_one()
        chunks = (
            await session.execute(select(func.count()).select_from(KycDocumentChunk))
        ).scalar_one()
    return int(documents), int(chunks)
