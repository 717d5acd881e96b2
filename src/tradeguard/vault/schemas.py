"""Request and response bodies: the customer's card API, and the vault server's wire format.

Card numbers and security codes are plain strings here, validated by vault/domain.py, whose
errors never repeat them; pydantic's own errors for these fields are rendered without the
input (web/problems.py, vault/server.py).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from tradeguard.vault.domain import (
    MAX_PAN_INPUT,
    MAX_TOKEN_CHARS,
    CardBrand,
    Expiry,
    RevealedCard,
    TokenFormat,
    TokenizedCard,
)

PanText = Annotated[str, Field(max_length=MAX_PAN_INPUT)]
TokenText = Annotated[str, Field(min_length=1, max_length=MAX_TOKEN_CHARS)]
Month = Annotated[int, Field(ge=1, le=12)]
Year = Annotated[int, Field(ge=0, le=2199)]
Party = Annotated[str, Field(min_length=1, max_length=120)]
RequestId = Annotated[str | None, Field(default=None, max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- the customer's cards (main API) ----------------------------------------------------


class AddCardIn(_Strict):
    """A card to store on the customer's profile. No security code: it is taken only for a
    payment authorization (PCI DSS 3.3.1), never to store a card."""

    pan: PanText = Field(description="The card number; spaces and dashes are allowed.")
    expiry_month: Month
    expiry_year: Year = Field(description="Four digits (2029), or two (29).")


class CardOut(_Strict):
    id: str
    brand: CardBrand
    last4: str
    masked: str = Field(description="The card as shown: the last four digits only.")
    expiry_month: int
    expiry_year: int
    expired: bool
    added_at: str


# -- the vault server's wire format ---------------------------------------------------------


class TokenizeIn(_Strict):
    pan: PanText
    expiry_month: Month
    expiry_year: Year
    token_format: TokenFormat | None = None
    on_behalf_of: Party
    request_id: RequestId


class DescribeIn(_Strict):
    tokens: Annotated[list[TokenText], Field(max_length=100)]
    on_behalf_of: Party
    request_id: RequestId


class TokenIn(_Strict):
    token: TokenText
    on_behalf_of: Party
    request_id: RequestId


class AuthorizationIn(TokenIn):
    cvv: Annotated[str, Field(max_length=8)]


class TokenizedOut(_Strict):
    token: str
    brand: CardBrand
    last4: str
    expiry_month: int
    expiry_year: int
    fingerprint: str

    @classmethod
    def of(cls, card: TokenizedCard) -> TokenizedOut:
        return cls(
            token=card.token,
            brand=card.brand,
            last4=card.last4,
            expiry_month=card.expiry.month,
            expiry_year=card.expiry.year,
            fingerprint=card.fingerprint,
        )

    def card(self) -> TokenizedCard:
        return TokenizedCard(
            self.token,
            self.brand,
            self.last4,
            Expiry(self.expiry_year, self.expiry_month),
            self.fingerprint,
        )


class DescribedOut(_Strict):
    cards: list[TokenizedOut]


class RevealedOut(_Strict):
    token: str
    # repr=False: a model printed in a log line or a traceback shows no card number.
    pan: str = Field(repr=False)
    brand: CardBrand
    expiry_month: int
    expiry_year: int

    @classmethod
    def of(cls, card: RevealedCard) -> RevealedOut:
        return cls(
            token=card.token,
            pan=card.pan,
            brand=card.brand,
            expiry_month=card.expiry.month,
            expiry_year=card.expiry.year,
        )

    def card(self) -> RevealedCard:
        return RevealedCard(
            self.token, self.pan, self.brand, Expiry(self.expiry_year, self.expiry_month)
        )


class AuthorizationOut(RevealedOut):
    cvv: str = Field(repr=False)


class ForgottenOut(_Strict):
    forgotten: bool
