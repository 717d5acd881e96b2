"""The payment processor adapter, and a deterministic simulated processor (the sandbox).

A real processor (an ACH originator, a wire desk, a card acquirer) is reached through
`PaymentProcessor`; tradeguard never pretends inside business code that money moved. The
simulated processor is the default, like Stripe's test mode or Plaid's sandbox: it answers
as a processor would, from documented test values, and the same inputs always give the same
outcome.

Sandbox behaviour (docs/funds.md lists it for testers):

- micro-deposits: two amounts of 1-99 cents, derived from the bank account's id under the
  sandbox's secret, shown by `tradeguard funds sandbox statement <bank-account-id>` (the
  customer's bank statement);
- a debit (ACH deposit) settles after `ach_settle_seconds`; bank account numbers ending in
  a test suffix come back instead, at the same time, with that return code:
  `...0001` R01 insufficient funds, `...0002` R02 account closed, `...0003` R03 no account,
  `...0010` R10 customer says not authorized;
- a debit from an account ending in `0020` settles, then comes back R10 (not authorized)
  `late_return_seconds` after settling, as a consumer's bank may for 60 days; a card charge
  on the dispute test number 4000 0000 0000 0259 settles, then comes back `CB10` (the
  cardholder disputes it as fraud) as late;
- a credit (withdrawal) to an account ending in `0002` or `0003` comes back failed (R02,
  R03); any other settles after `ach_settle_seconds` (`wire_settle_seconds` for wires);
- a card charge is authorized at once and settles after `ach_settle_seconds`, except the
  card networks' well-known decline test numbers (as in Stripe's test mode):
  4000 0000 0000 0002 `card_declined`, 4000 0000 0000 9995 `insufficient_funds`,
  4000 0000 0000 0069 `expired_card`; a security code of `000` is `incorrect_cvc`.

Outcomes are computed, not stored: the reference the processor returns carries what the
sandbox decided at submission and an HMAC over it, so a reference edited in the database is
refused rather than obeyed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.funds.domain import Rail

SANDBOX_RETURNS = {"0001": "R01", "0002": "R02", "0003": "R03", "0010": "R10"}
# Debits that settle and come back later (after `late_return_seconds`).
SANDBOX_LATE_RETURNS = {"0020": "R10"}
SANDBOX_DISPUTES = {"4000000000000259": "CB10"}
SANDBOX_FAILED_CREDITS = {"0002": "R02", "0003": "R03"}
SANDBOX_DECLINES = {
    "4000000000000002": "card_declined",
    "4000000000009995": "insufficient_funds",
    "4000000000000069": "expired_card",
}


class TransferState(StrEnum):
    PENDING = "pending"
    SETTLED = "settled"
    RETURNED = "returned"


@dataclass(frozen=True, slots=True)
class Transfer:
    """What the processor is asked to move: never logged (it holds the account number)."""

    transfer_id: str
    rail: Rail
    amount: Decimal
    routing_number: str
    account_number: str

    def __repr__(self) -> str:
        return f"Transfer({self.transfer_id}, {self.rail}, {self.amount})"


@dataclass(frozen=True, slots=True)
class Submitted:
    reference: str
    settles_ns: int


@dataclass(frozen=True, slots=True)
class CardCharge:
    """A card charge for the processor: the card as the vault revealed it for this one call
    (number, expiry, security code), never logged, never stored."""

    transfer_id: str
    amount: Decimal
    pan: str
    expiry_month: int
    expiry_year: int
    cvv: str

    def __repr__(self) -> str:
        return f"CardCharge({self.transfer_id}, {self.amount})"


@dataclass(frozen=True, slots=True)
class Declined:
    """The issuer said no; `code` is the processor's decline code (no card data)."""

    code: str


@dataclass(frozen=True, slots=True)
class Outcome:
    state: TransferState
    code: str | None = None


class ProcessorError(RuntimeError):
    """The processor refused or could not be reached; the message names no account data."""


class PaymentProcessor(Protocol):
    name: str

    async def send_micro_deposits(self, *, bank_account_id: str, transfer: Transfer) -> None: ...

    async def check_micro_deposits(
        self, *, bank_account_id: str, amounts: tuple[Decimal, Decimal]
    ) -> bool:
        """Whether the two amounts are the ones sent (the processor knows them; the firm
        never stores them, like Stripe's and Plaid's verification calls)."""
        ...

    async def debit(self, transfer: Transfer, *, now_ns: int) -> Submitted: ...

    async def credit(self, transfer: Transfer, *, now_ns: int) -> Submitted: ...

    async def charge_card(self, charge: CardCharge, *, now_ns: int) -> Submitted | Declined: ...

    async def outcome(self, reference: str, *, now_ns: int) -> Outcome: ...


class SimulatedProcessor:
    """The sandbox processor: deterministic, stateless, no network."""

    name = "simulated"

    def __init__(
        self,
        *,
        secret: Callable[[], bytes],
        ach_settle_seconds: int,
        wire_settle_seconds: int,
        late_return_seconds: int = 3 * 86_400,
    ) -> None:
        # A function, read on first use: the keyring holding it may not be loaded yet when
        # the services are built.
        self._read_secret = secret
        self._cached: bytes | None = None
        self._delays = {
            Rail.ACH: ach_settle_seconds * NS_PER_SECOND,
            Rail.WIRE: wire_settle_seconds * NS_PER_SECOND,
            Rail.CARD: ach_settle_seconds * NS_PER_SECOND,
        }
        self._late_seconds = late_return_seconds

    @property
    def _secret(self) -> bytes:
        if self._cached is None:
            secret = self._read_secret()
            if len(secret) < 32:
                raise ValueError("the sandbox secret must be at least 32 bytes")
            self._cached = secret
        return self._cached

    # Micro-deposits -------------------------------------------------------------------------

    def statement(self, bank_account_id: str) -> tuple[Decimal, Decimal]:
        """The two micro-deposit amounts the customer's bank statement shows."""
        digest = hmac.new(self._secret, f"micro:{bank_account_id}".encode(), hashlib.sha256)
        raw = digest.digest()
        first = raw[0] % 99 + 1
        second = raw[1] % 98 + 1
        if second >= first:
            second += 1  # two different amounts, so their order matters to nobody
        return Decimal(first) / 100, Decimal(second) / 100

    async def send_micro_deposits(self, *, bank_account_id: str, transfer: Transfer) -> None:
        # Nothing to remember: the statement is derived from the id.
        return None

    async def check_micro_deposits(
        self, *, bank_account_id: str, amounts: tuple[Decimal, Decimal]
    ) -> bool:
        sent = sorted(self.statement(bank_account_id))
        given = sorted(amounts)
        # Compared as text in constant time, so the time taken says nothing about how close
        # a guess came.
        expected = f"{sent[0]:.2f}:{sent[1]:.2f}".encode()
        offered = f"{given[0]:.2f}:{given[1]:.2f}".encode()
        return hmac.compare_digest(expected, offered)

    # Transfers --------------------------------------------------------------------------------

    def _sign(self, body: str) -> str:
        tag = hmac.new(self._secret, body.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{body}.{tag}"

    def _submit(self, transfer: Transfer, *, now_ns: int, code: str | None) -> Submitted:
        settles = now_ns + self._delays[transfer.rail]
        body = f"sim:{transfer.rail.value}:{transfer.transfer_id}:{settles}:{code or 'OK'}"
        return Submitted(self._sign(body), settles)

    def _late(self, code: str) -> str:
        # Settles first, then comes back this many seconds later.
        return f"{code}+{self._late_seconds}"

    async def debit(self, transfer: Transfer, *, now_ns: int) -> Submitted:
        code = SANDBOX_RETURNS.get(transfer.account_number[-4:])
        late = SANDBOX_LATE_RETURNS.get(transfer.account_number[-4:])
        if late is not None:
            code = self._late(late)
        return self._submit(transfer, now_ns=now_ns, code=code)

    async def credit(self, transfer: Transfer, *, now_ns: int) -> Submitted:
        code = SANDBOX_FAILED_CREDITS.get(transfer.account_number[-4:])
        return self._submit(transfer, now_ns=now_ns, code=code)

    async def charge_card(self, charge: CardCharge, *, now_ns: int) -> Submitted | Declined:
        declined = SANDBOX_DECLINES.get(charge.pan)
        if declined is None and charge.cvv == "000":
            declined = "incorrect_cvc"
        if declined is not None:
            return Declined(declined)
        transfer = Transfer(charge.transfer_id, Rail.CARD, charge.amount, "", charge.pan)
        dispute = SANDBOX_DISPUTES.get(charge.pan)
        return self._submit(transfer, now_ns=now_ns, code=self._late(dispute) if dispute else None)

    async def outcome(self, reference: str, *, now_ns: int) -> Outcome:
        body, _, _tag = reference.rpartition(".")
        if not body or not hmac.compare_digest(self._sign(body), reference):
            raise ProcessorError("the processor does not know this transfer reference")
        parts = body.split(":")
        if len(parts) != 5 or parts[0] != "sim":
            raise ProcessorError("the processor does not know this transfer reference")
        settles, code = int(parts[3]), parts[4]
        if now_ns < settles:
            return Outcome(TransferState.PENDING)
        if code == "OK":
            return Outcome(TransferState.SETTLED)
        code, late, after = code.partition("+")
        if late and now_ns < settles + int(after) * NS_PER_SECOND:
            return Outcome(TransferState.SETTLED)
        return Outcome(TransferState.RETURNED, code)
