"""The customer's stored cards at /api/v1/me/cards (PCI-2). Thin: parse, authorize (the
guard), call the service, shape. There is no detokenize route: no person ever reads a card
number back (the payment service calls the vault directly, vault/cards.py)."""

from __future__ import annotations

import contextlib
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from tradeguard.access.domain import Permission
from tradeguard.core.clock import ns_to_iso
from tradeguard.core.context import request_id_var
from tradeguard.identity.guard import CurrentPrincipal, guarded, problems
from tradeguard.vault.cards import StoredCard
from tradeguard.vault.container import VaultServices
from tradeguard.vault.schemas import AddCardIn, CardOut
from tradeguard.vault.store import VaultUnavailable

router = APIRouter(prefix="/api/v1/me/cards", tags=["cards"])

CardId = Annotated[str, Path(min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")]


async def vault_of(request: Request) -> VaultServices:
    services: VaultServices = request.app.state.vault
    if not services.ready:
        # The vault database was not ready when the server started: try again now.
        with contextlib.suppress(Exception):
            await services.start()
        if not services.ready:
            raise VaultUnavailable("the card vault has not read its keys yet")
    return services


def _out(card: StoredCard, now_ns: int) -> CardOut:
    return CardOut(
        id=card.id,
        brand=card.brand,
        last4=card.last4,
        masked=card.masked,
        expiry_month=card.expiry.month,
        expiry_year=card.expiry.year,
        expired=card.expiry.expired_at(now_ns),
        added_at=ns_to_iso(card.created_ns),
    )


@router.get("", responses=problems(503), **guarded(Permission.CARD_MANAGE))
async def list_cards(request: Request, principal: CurrentPrincipal) -> list[CardOut]:
    """The customer's cards, masked to the last four digits."""
    vault = await vault_of(request)
    async with vault.cards.unit_of_work() as session:
        cards = await vault.cards.cards_of(session, user_id=principal.user_id)
    now = vault.cards.clock.now_ns()
    return [_out(card, now) for card in cards]


@router.post(
    "",
    status_code=201,
    responses=problems(409, 503),
    **guarded(Permission.CARD_MANAGE),
)
async def add_card(request: Request, principal: CurrentPrincipal, body: AddCardIn) -> CardOut:
    """Store a card: the number goes to the vault, the profile keeps a token and the last
    four digits. The same card twice on one profile is refused (409)."""
    vault = await vault_of(request)
    card = await vault.cards.add(
        user_id=principal.user_id,
        pan=body.pan,
        expiry_month=body.expiry_month,
        expiry_year=body.expiry_year,
        request_id=request_id_var.get(),
    )
    return _out(card, vault.cards.clock.now_ns())


@router.delete(
    "/{card_id}",
    status_code=204,
    responses=problems(503),
    **guarded(Permission.CARD_MANAGE),
)
async def remove_card(request: Request, principal: CurrentPrincipal, card_id: CardId) -> Response:
    """Remove a card: the vault forgets the number, the profile the token."""
    vault = await vault_of(request)
    await vault.cards.remove(
        user_id=principal.user_id, card_id=card_id, request_id=request_id_var.get()
    )
    return Response(status_code=204)
