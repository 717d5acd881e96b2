"""Funds HTTP API: a customer's bank accounts, deposits and withdrawals under /api/v1/funds,
and the staff review queue under /api/v1/admin/funds. Thin: parse, authorize (the guard),
call the service, shape. Another user's ids answer 404."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from tradeguard.access.domain import Permission
from tradeguard.core.clock import ns_to_iso
from tradeguard.core.context import request_id_var
from tradeguard.core.errors import InvalidInput, TradeguardError
from tradeguard.core.masking import HIDDEN
from tradeguard.db.engine import unit_of_work
from tradeguard.funds import schemas as s
from tradeguard.funds.container import FundsServices
from tradeguard.funds.models import BankAccount, Deposit, Withdrawal
from tradeguard.funds.withdrawals import Refused
from tradeguard.identity.guard import CurrentPrincipal, guarded, problems, request_info
from tradeguard.ledger.domain import Party
from tradeguard.vault.api import vault_of

router = APIRouter(prefix="/api/v1/funds", tags=["funds"])
staff_router = APIRouter(prefix="/api/v1/admin/funds", tags=["funds (staff)"])

IdPath = Annotated[str, Path(min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")]


class CodesRejected(InvalidInput):
    slug = "codes-rejected"
    title = "The codes do not match"


class CardDeclined(TradeguardError):
    status = 402
    slug = "card-declined"
    title = "The card was declined"


def funds(request: Request) -> FundsServices:
    services: FundsServices = request.app.state.funds
    return services


def _iso(ns: int | None) -> str | None:
    return ns_to_iso(ns) if ns is not None else None


def bank_out(row: BankAccount) -> s.BankAccountOut:
    return s.BankAccountOut(
        id=row.id,
        nickname=row.nickname,
        routing_number=row.routing_number,
        account_type=row.account_type,
        last4=row.last4,
        masked=HIDDEN + row.last4,
        status=row.status,
        added_at=ns_to_iso(row.created_ns),
        verified_at=_iso(row.verified_ns),
        verification_attempts_left=row.micro_attempts_left,
    )


def deposit_out(row: Deposit) -> s.DepositOut:
    return s.DepositOut(
        id=row.id,
        account_id=row.account_id,
        bank_account_id=row.bank_account_id,
        card_id=row.card_id,
        rail=row.rail,
        amount=f"{row.amount:.2f}",
        currency=row.currency,
        status=row.status,
        created_at=ns_to_iso(row.created_ns),
        settles_at=ns_to_iso(row.settles_ns),
        settled_at=_iso(row.settled_ns),
        returned_at=_iso(row.returned_ns),
        return_code=row.return_code,
        decline_code=row.decline_code,
    )


def _withdrawal_fields(row: Withdrawal) -> dict[str, object]:
    return {
        "id": row.id,
        "account_id": row.account_id,
        "bank_account_id": row.bank_account_id,
        "amount": f"{row.amount:.2f}",
        "currency": row.currency,
        "status": row.status,
        "review_reason": row.review_reason,
        "created_at": ns_to_iso(row.created_ns),
        "confirm_by": ns_to_iso(row.verify_deadline_ns),
        "verified_at": _iso(row.verified_ns),
        "settles_at": _iso(row.settles_ns),
        "completed_at": _iso(row.completed_ns),
        "failure_code": row.failure_code,
    }


# What the customer is told of a withdrawal held for review: never why (the reason may name
# the takeover signal that flagged it, which would teach an intruder what to avoid). Staff
# views keep the reason.
CUSTOMER_REVIEW_REASON = "held for review"


def withdrawal_out(row: Withdrawal) -> s.WithdrawalOut:
    fields = _withdrawal_fields(row)
    if row.review_reason is not None:
        fields["review_reason"] = CUSTOMER_REVIEW_REASON
    return s.WithdrawalOut.model_validate(fields)


def staff_withdrawal_out(row: Withdrawal) -> s.StaffWithdrawalOut:
    return s.StaffWithdrawalOut.model_validate(
        _withdrawal_fields(row)
        | {
            "user_id": row.user_id,
            "first_approver": row.first_approver,
            "decided_by": row.decided_by,
        }
    )


# Bank accounts ----------------------------------------------------------------------------------


@router.get("/bank-accounts", **guarded(Permission.ACCOUNT_WITHDRAW))
async def list_bank_accounts(
    request: Request, principal: CurrentPrincipal
) -> list[s.BankAccountOut]:
    """Your bank accounts: routing number and the last four digits only."""
    services = funds(request)
    async with unit_of_work(services.sessions) as session:
        rows = await services.banks.of_user(session, principal.user_id)
        return [bank_out(row) for row in rows]


@router.post(
    "/bank-accounts",
    status_code=201,
    responses=problems(409),
    **guarded(Permission.ACCOUNT_WITHDRAW),
)
async def add_bank_account(
    body: s.AddBankAccountIn, request: Request, principal: CurrentPrincipal
) -> s.BankAccountOut:
    """Add a bank account (needs a fresh second factor; at most 3 a day): two micro-deposits
    are sent to it; confirm their amounts at POST /api/v1/funds/bank-accounts/{id}/verify.
    Adding one starts the cooling period for withdrawals (ATO-1)."""
    services = funds(request)
    async with unit_of_work(services.sessions) as session:
        await services.banks.require_fresh_factor(session, principal.user_id, principal.state)
        row = await services.banks.add(
            session,
            user_id=principal.user_id,
            routing_number=body.routing_number,
            account_number=body.account_number,
            account_type=body.account_type,
            nickname=body.nickname,
            holder_name=body.holder_name,
            actor=Party("user", principal.user_id),
            request_id=request_id_var.get(),
        )
        return bank_out(row)


@router.post(
    "/bank-accounts/{bank_account_id}/verify",
    responses=problems(409),
    **guarded(Permission.ACCOUNT_WITHDRAW),
)
async def verify_bank_account(
    bank_account_id: IdPath,
    body: s.VerifyBankAccountIn,
    request: Request,
    principal: CurrentPrincipal,
) -> s.BankAccountOut:
    """Confirm the two micro-deposit amounts (e.g. ["0.32", "0.45"], in either order).
    Each wrong answer spends an attempt; with none left the account must be added again."""
    services = funds(request)
    async with unit_of_work(services.sessions) as session:
        await services.banks.require_fresh_factor(session, principal.user_id, principal.state)
        row = await services.banks.verify(
            session,
            user_id=principal.user_id,
            bank_account_id=bank_account_id,
            amounts=body.amounts,
            actor=Party("user", principal.user_id),
            request_id=request_id_var.get(),
        )
        return bank_out(row)


@router.delete(
    "/bank-accounts/{bank_account_id}", status_code=204, **guarded(Permission.ACCOUNT_WITHDRAW)
)
async def remove_bank_account(
    bank_account_id: IdPath, request: Request, principal: CurrentPrincipal
) -> Response:
    """Remove a bank account (withdrawals already sent to it are not affected)."""
    services = funds(request)
    async with unit_of_work(services.sessions) as session:
        await services.banks.require_fresh_factor(session, principal.user_id, principal.state)
        await services.banks.remove(
            session,
            user_id=principal.user_id,
            bank_account_id=bank_account_id,
            actor=Party("user", principal.user_id),
            request_id=request_id_var.get(),
        )
    return Response(status_code=204)


# Deposits -----------------------------------------------------------------------------------------


@router.get("/deposits", **guarded(Permission.ACCOUNT_VIEW))
async def list_deposits(request: Request, principal: CurrentPrincipal) -> list[s.DepositOut]:
    """Your deposits, newest first."""
    services = funds(request)
    async with unit_of_work(services.sessions) as session:
        return [deposit_out(r) for r in await services.deposits.of_user(session, principal.user_id)]


@router.post(
    "/deposits",
    status_code=201,
    responses=problems(402, 409, 503),
    **guarded(Permission.ACCOUNT_WITHDRAW),
)
async def deposit(
    body: s.DepositIn, request: Request, response: Response, principal: CurrentPrincipal
) -> s.DepositOut:
    """Deposit from a confirmed bank account, or charge a stored card. ACH and card:
    credited at once for trading, withdrawable once collected. Wire: credited when it
    arrives. A declined card answers 402 (the failed deposit is kept). A retry with the
    same idempotency key returns the first deposit (200)."""
    services = funds(request)
    actor = Party("user", principal.user_id)
    if body.rail == "card":
        await vault_of(request)  # the vault must have read its keys
        row, created = await services.deposits.card_deposit(
            services.sessions,
            user_id=principal.user_id,
            account_id=body.account_id,
            card_id=body.card_id or "",
            cvv=body.cvv or "",
            amount=Decimal(body.amount),
            idempotency_key=body.idempotency_key,
            actor=actor,
            request_id=request_id_var.get(),
        )
        out = deposit_out(row)
    else:
        async with unit_of_work(services.sessions) as session:
            row, created = await services.deposits.deposit(
                session,
                user_id=principal.user_id,
                account_id=body.account_id,
                bank_account_id=body.bank_account_id or "",
                rail=body.rail,
                amount=Decimal(body.amount),
                idempotency_key=body.idempotency_key,
                actor=actor,
                request_id=request_id_var.get(),
            )
            out = deposit_out(row)
    if row.decline_code is not None and created:
        # After the commit: the declined attempt is on record.
        raise CardDeclined(
            f"the card was declined ({row.decline_code}); try another card or a bank transfer",
            decline_code=row.decline_code,
            deposit_id=row.id,
        )
    if not created:
        response.status_code = 200
    return out


@router.get("/deposits/{deposit_id}", **guarded(Permission.ACCOUNT_VIEW))
async def get_deposit(
    deposit_id: IdPath, request: Request, principal: CurrentPrincipal
) -> s.DepositOut:
    """One of your deposits: its status, when it settles, and any return code."""
    services = funds(request)
    async with unit_of_work(services.sessions) as session:
        return deposit_out(await services.deposits.get(session, principal.user_id, deposit_id))


# Withdrawals --------------------------------------------------------------------------------------


@router.get("/limits", **guarded(Permission.ACCOUNT_VIEW))
async def withdrawal_limits(request: Request, principal: CurrentPrincipal) -> s.LimitsOut:
    """Your withdrawal limits (WDL-1 per calendar day in the firm's time zone, WDL-2 per
    rolling 7 days) and what is left of them."""
    services = funds(request)
    async with unit_of_work(services.sessions) as session:
        view = await services.withdrawals.limits(session, principal.user_id)
    return s.LimitsOut(
        timezone=view.timezone,
        daily_limit=f"{view.daily_limit:.2f}",
        weekly_limit=f"{view.weekly_limit:.2f}",
        used_today=f"{view.day_used:.2f}",
        used_last_7_days=f"{view.week_used:.2f}",
        left_today=f"{view.day_left:.2f}",
        left_last_7_days=f"{view.week_left:.2f}",
        day_resets_at=ns_to_iso(view.day_resets_ns),
    )


@router.get("/withdrawals", **guarded(Permission.ACCOUNT_VIEW))
async def list_withdrawals(request: Request, principal: CurrentPrincipal) -> list[s.WithdrawalOut]:
    """Your withdrawals, newest first."""
    services = funds(request)
    async with unit_of_work(services.sessions) as session:
        rows = await services.withdrawals.of_user(session, principal.user_id)
        return [withdrawal_out(row) for row in rows]


@router.post(
    "/withdrawals",
    status_code=202,
    responses=problems(409),
    **guarded(Permission.ACCOUNT_WITHDRAW),
)
async def request_withdrawal(
    body: s.WithdrawalIn, request: Request, response: Response, principal: CurrentPrincipal
) -> s.WithdrawalOut:
    """Request a withdrawal to one of your confirmed bank accounts. Needs a fresh second
    factor (POST /api/v1/auth/mfa/step-up first). The cash is set aside at once; a code is
    emailed and another texted: confirm both at POST /api/v1/funds/withdrawals/{id}/confirm
    within the deadline. Refused requests answer 403 with a stable `reason`."""
    services = funds(request)
    async with unit_of_work(services.sessions) as session:
        result = await services.withdrawals.request(
            session,
            user_id=principal.user_id,
            state=principal.state,
            account_id=body.account_id,
            bank_account_id=body.bank_account_id,
            amount=Decimal(body.amount),
            idempotency_key=body.idempotency_key,
            request=request_info(request),
        )
        if not isinstance(result, Refused):
            out = withdrawal_out(result.withdrawal)
            if result.codes is not None:
                out.codes_sent = s.CodesSentOut(
                    email=result.codes.email_hint,
                    phone=result.codes.phone_hint,
                    expires_at=ns_to_iso(result.codes.expires_ns),
                )
    if isinstance(result, Refused):
        # Raised after the commit: the refusal's ledger event stays.
        raise result.error
    if not result.created:
        response.status_code = 200
    return out


@router.get("/withdrawals/{withdrawal_id}", **guarded(Permission.ACCOUNT_VIEW))
async def get_withdrawal(
    withdrawal_id: IdPath, request: Request, principal: CurrentPrincipal
) -> s.WithdrawalOut:
    """One of your withdrawals: its status, deadline for the codes, and settlement."""
    services = funds(request)
    async with unit_of_work(services.sessions) as session:
        row = await services.withdrawals.get(session, principal.user_id, withdrawal_id)
        return withdrawal_out(row)


@router.post(
    "/withdrawals/{withdrawal_id}/confirm",
    responses=problems(409),
    **guarded(Permission.ACCOUNT_WITHDRAW),
)
async def confirm_withdrawal(
    withdrawal_id: IdPath,
    body: s.WithdrawalCodesIn,
    request: Request,
    principal: CurrentPrincipal,
) -> s.WithdrawalOut:
    """Confirm with the emailed code and the texted code (ACCT-2). Then the withdrawal is
    sent, or waits for review (large or flagged ones, WDL-3)."""
    services = funds(request)
    async with unit_of_work(services.sessions) as session:
        row = await services.withdrawals.confirm(
            session,
            user_id=principal.user_id,
            state=principal.state,
            withdrawal_id=withdrawal_id,
            email_code=body.email_code,
            sms_code=body.sms_code,
            request=request_info(request),
        )
        out = withdrawal_out(row) if row is not None else None
    if out is None:
        # After the commit: the failed guess is counted.
        raise CodesRejected("the codes do not match; check both messages and try again")
    return out


@router.post(
    "/withdrawals/{withdrawal_id}/codes",
    status_code=202,
    responses=problems(409, 429),
    **guarded(Permission.ACCOUNT_WITHDRAW),
)
async def resend_withdrawal_codes(
    withdrawal_id: IdPath, request: Request, principal: CurrentPrincipal
) -> s.CodesSentOut:
    """Send a new emailed code and a new texted code for a withdrawal still waiting for
    them (each code lasts 5 minutes; the withdrawal waits until its `confirm_by`)."""
    services = funds(request)
    async with unit_of_work(services.sessions) as session:
        sent = await services.withdrawals.resend_codes(
            session,
            user_id=principal.user_id,
            state=principal.state,
            withdrawal_id=withdrawal_id,
            request=request_info(request),
        )
    return s.CodesSentOut(
        email=sent.email_hint, phone=sent.phone_hint, expires_at=ns_to_iso(sent.expires_ns)
    )


@router.post(
    "/withdrawals/{withdrawal_id}/cancel",
    responses=problems(409),
    **guarded(Permission.ACCOUNT_WITHDRAW),
)
async def cancel_withdrawal(
    withdrawal_id: IdPath, request: Request, principal: CurrentPrincipal
) -> s.WithdrawalOut:
    """Cancel a withdrawal that has not been sent yet; its cash comes back."""
    services = funds(request)
    async with unit_of_work(services.sessions) as session:
        row = await services.withdrawals.cancel(
            session,
            user_id=principal.user_id,
            withdrawal_id=withdrawal_id,
            request_id=request_id_var.get(),
        )
        return withdrawal_out(row)


# Staff: the review queue (WDL-3, four-eyes) -----------------------------------------------------


@staff_router.get("/withdrawals/review", **guarded(Permission.FUNDS_REVIEW))
async def review_queue(request: Request) -> list[s.StaffWithdrawalOut]:
    """Withdrawals waiting for staff approval, oldest first."""
    services = funds(request)
    async with unit_of_work(services.sessions) as session:
        return [staff_withdrawal_out(r) for r in await services.withdrawals.in_review(session)]


@staff_router.post(
    "/withdrawals/{withdrawal_id}/approve",
    responses=problems(409),
    **guarded(Permission.FUNDS_REVIEW),
)
async def approve_withdrawal(
    withdrawal_id: IdPath, request: Request, principal: CurrentPrincipal
) -> s.StaffWithdrawalOut:
    """Approve a withdrawal in review. Two different staff members must approve (four-eyes);
    the second approval sends it."""
    services = funds(request)
    async with unit_of_work(services.sessions) as session:
        row = await services.withdrawals.approve(
            session,
            staff_id=principal.user_id,
            withdrawal_id=withdrawal_id,
            request_id=request_id_var.get(),
        )
        return staff_withdrawal_out(row)


@staff_router.post(
    "/withdrawals/{withdrawal_id}/refuse",
    responses=problems(409),
    **guarded(Permission.FUNDS_REVIEW),
)
async def refuse_withdrawal(
    withdrawal_id: IdPath, body: s.RefuseIn, request: Request, principal: CurrentPrincipal
) -> s.StaffWithdrawalOut:
    """Refuse a withdrawal in review, with a reason; its cash comes back and the customer is
    told."""
    services = funds(request)
    async with unit_of_work(services.sessions) as session:
        row = await services.withdrawals.refuse(
            session,
            staff_id=principal.user_id,
            withdrawal_id=withdrawal_id,
            reason=body.reason,
            request_id=request_id_var.get(),
        )
        return staff_withdrawal_out(row)
