"""API request and response bodies for funds (pydantic v2, extra fields refused). Amounts
travel as decimal strings; bank account numbers only ever come in, and go out as the last
four digits."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PositiveAmount = Annotated[
    str,
    Field(
        pattern=r"^(0|[1-9]\d{0,8})(\.\d{1,2})?$",
        description="An amount in USD as a decimal string with at most 2 decimals.",
        examples=["2500.00"],
    ),
]
IdempotencyKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="Your id for this request: a retry with the same key returns the first "
        "result, never a second movement.",
    ),
]
Id = Annotated[str, Field(min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")]
Code = Annotated[str, Field(min_length=6, max_length=12)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AddBankAccountIn(Strict):
    routing_number: Annotated[str, Field(min_length=9, max_length=9, pattern=r"^\d{9}$")]
    account_number: Annotated[
        str,
        Field(min_length=4, max_length=24, description="4 to 17 digits (spaces, dashes allowed)"),
    ]
    account_type: Literal["checking", "savings"]
    nickname: Annotated[str, Field(min_length=1, max_length=60)]
    # The account holder's name as the bank knows it: screened against the sanctions list
    # as a payee (KYC-2), stored encrypted.
    holder_name: Annotated[str, Field(min_length=2, max_length=140)]

    def __repr__(self) -> str:  # never the account number, even in a debugger's repr
        return f"AddBankAccountIn(routing_number={self.routing_number!r}, …)"


class VerifyBankAccountIn(Strict):
    amounts: Annotated[
        list[Annotated[str, Field(max_length=8)]],
        Field(min_length=2, max_length=2, examples=[["0.32", "0.45"]]),
    ]


class BankAccountOut(BaseModel):
    id: str
    nickname: str
    routing_number: str
    account_type: str
    last4: str
    masked: str
    status: str
    added_at: str
    verified_at: str | None
    verification_attempts_left: int


class DepositIn(Strict):
    account_id: Id
    rail: Literal["ach", "wire", "card"] = "ach"
    # ACH and wire: a confirmed bank account. Card: a stored card and its security code,
    # used for this one authorization and never stored (PCI DSS 3.3.1).
    bank_account_id: Id | None = None
    card_id: Id | None = None
    cvv: Annotated[str | None, Field(pattern=r"^\d{3,4}$", repr=False)] = None
    amount: PositiveAmount
    idempotency_key: IdempotencyKey

    @model_validator(mode="after")
    def _source_matches_rail(self) -> DepositIn:
        if self.rail == "card":
            if self.card_id is None or self.cvv is None or self.bank_account_id is not None:
                raise ValueError("a card deposit takes card_id and cvv (and no bank_account_id)")
        elif self.bank_account_id is None or self.card_id is not None or self.cvv is not None:
            raise ValueError(f"an {self.rail} deposit takes bank_account_id (and no card)")
        return self


class DepositOut(BaseModel):
    id: str
    account_id: str
    bank_account_id: str | None
    card_id: str | None
    rail: str
    amount: str
    currency: str
    status: str
    created_at: str
    settles_at: str
    settled_at: str | None
    returned_at: str | None
    return_code: str | None
    decline_code: str | None


class WithdrawalIn(Strict):
    account_id: Id
    bank_account_id: Id
    amount: PositiveAmount
    idempotency_key: IdempotencyKey


class WithdrawalCodesIn(Strict):
    email_code: Code
    sms_code: Code


class CodesSentOut(BaseModel):
    email: str
    phone: str
    expires_at: str


class WithdrawalOut(BaseModel):
    id: str
    account_id: str
    bank_account_id: str
    amount: str
    currency: str
    status: str
    review_reason: str | None
    created_at: str
    confirm_by: str
    verified_at: str | None
    settles_at: str | None
    completed_at: str | None
    failure_code: str | None
    codes_sent: CodesSentOut | None = None


class StaffWithdrawalOut(WithdrawalOut):
    user_id: str
    first_approver: str | None
    decided_by: str | None


class RefuseIn(Strict):
    reason: Annotated[str, Field(min_length=3, max_length=200)]


class LimitsOut(BaseModel):
    timezone: str
    daily_limit: str
    weekly_limit: str
    used_today: str
    used_last_7_days: str
    left_today: str
    left_last_7_days: str
    day_resets_at: str


class DisownedOut(BaseModel):
    withdrawal_id: str
    status: str
    detail: str
