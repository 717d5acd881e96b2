"""Account-takeover defence (ATO-1, ATO-2, ACCT-5): signals at sign-in, after it (trading)
and at withdrawal; the policy's responses; the "was this you?" prompt; withdrawal freezes
and takeover reviews worked by staff, a freeze lifted only by two staff members.

Every change appends its ledger event in the caller's transaction; nothing here commits.
Signal events carry their evidence in plain data (countries, network names, distances,
counts) and the client address only in the sealed personal section, owned by the user, as
identity records addresses (identity/common.py `IdentityDeps.audit`).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access.domain import STAFF_ROLES
from tradeguard.core.clock import Clock
from tradeguard.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from tradeguard.core.ids import IdGenerator
from tradeguard.core.orders import Side
from tradeguard.fraud import repository
from tradeguard.fraud.domain import (
    Assessment,
    FraudEvent,
    Holding,
    PastSignIn,
    PromptAnswer,
    RaisedSignal,
    ReviewOutcome,
    SignInFacts,
    TakeoverPolicy,
    TakeoverResponse,
    assess,
    security_change_signal,
    sign_in_signals,
    unusual_trading,
)
from tradeguard.fraud.geo import GeoLocator
from tradeguard.fraud.models import FraudSignIn, TakeoverPrompt, TakeoverReview, WithdrawalFreeze
from tradeguard.identity.common import RequestInfo, SignIn
from tradeguard.identity.events import IdentityEvent
from tradeguard.identity.service import AccountService as IdentityAccounts
from tradeguard.identity.sessions import AuthService
from tradeguard.ledger.domain import SYSTEM, LedgerEvent, Party, PersonalData
from tradeguard.ledger.service import Ledger, latest_about
from tradeguard.notify.service import Notifier
from tradeguard.trading.accounts import AccountService as TradingAccounts
from tradeguard.trading.orders import OrderService

# Customers are assessed; staff sign in with hardware keys from allowlisted networks (IAC-3)
# and are watched by the access alerts (IAC-4) instead.
ASSESSED_ROLE: Final = "TRADER"
HISTORY: Final = 50
ORDERS_LOOKED_AT: Final = 500
PROMPT_PATH: Final = "/was-this-you"
_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{16,128}")
# Security changes whose ledger events make a following withdrawal suspect (ATO-1): the
# password, the email address, and second factors (a phone is an SMS factor).
SECURITY_CHANGES: Final = (
    IdentityEvent.PASSWORD_CHANGED.value,
    IdentityEvent.EMAIL_CHANGED.value,
    IdentityEvent.FACTOR_CONFIRMED.value,
    IdentityEvent.FACTOR_REMOVED.value,
    IdentityEvent.FACTORS_RESET.value,
    # New backup codes are a second factor whoever made them can keep using.
    IdentityEvent.BACKUP_CODES_GENERATED.value,
)


class LinkRefused(NotFound):
    """A prompt link that is unknown, used or expired: all look the same to the holder."""

    slug = "takeover-link-refused"
    title = "This link is not valid"


class FourEyesRequired(Forbidden):
    slug = "four-eyes-required"
    title = "A second staff member must approve"


@dataclass(frozen=True, slots=True)
class TakeoverDecision:
    """What the takeover defence says about a withdrawal (for the funds service).

    `allowed` False: refuse it (withdrawals are frozen, now or already). Allowed, it may
    still need a fresh second factor (`needs_step_up`) or the owner's email/SMS
    confirmation (`needs_verification`) before it goes on.
    """

    allowed: bool
    response: TakeoverResponse
    score: int
    signals: tuple[str, ...]
    reason: str
    review_id: str | None = None

    @property
    def needs_step_up(self) -> bool:
        return self.response.includes(TakeoverResponse.STEP_UP)

    @property
    def needs_verification(self) -> bool:
        return self.response.includes(TakeoverResponse.VERIFY)


@dataclass(frozen=True, slots=True)
class PromptOutcome:
    answer: PromptAnswer
    sessions_ended: tuple[str, ...] = ()
    review_id: str | None = None
    freeze_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReviewView:
    review: TakeoverReview
    freezes: tuple[WithdrawalFreeze, ...]
    sign_ins: tuple[FraudSignIn, ...]


def hash_token(token: str) -> bytes:
    # A 256-bit random token needs no slow hash: the digest makes a leaked table useless
    # and is what the lookup (by value) uses.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def valid_token(token: str | None) -> str | None:
    return token if token is not None and _TOKEN.fullmatch(token) else None


@dataclass
class TakeoverDefence:
    clock: Clock
    ids: IdGenerator
    ledger: Ledger
    policy: TakeoverPolicy
    locator: GeoLocator
    auth: AuthService
    identity_accounts: IdentityAccounts
    notifier: Notifier
    trading_accounts: TradingAccounts
    orders: OrderService
    origin: str
    # Told of sessions ended here (the API process's session-state cache drops them).
    on_sessions_ended: Callable[[tuple[str, ...]], None] | None = field(default=None)

    # Sign-in --------------------------------------------------------------------------

    async def signed_in(self, session: AsyncSession, sign_in: SignIn) -> None:
        """Assess a new session (identity's sign-in observer): record the signals, choose
        the response from the policy table and carry it out, in the sign-in's transaction."""
        if sign_in.role != ASSESSED_ROLE:
            return
        location = self.locator.locate(sign_in.request.ip)
        history = await repository.recent_sign_ins(session, sign_in.user_id, limit=HISTORY)
        facts = SignInFacts(at_ns=sign_in.at_ns, device_id=sign_in.device_id, location=location)
        signals = sign_in_signals(facts, [_past(row) for row in history], self.policy)
        assessment = assess(signals, self.policy)
        row = FraudSignIn(
            id=self.ids.new_str(),
            user_id=sign_in.user_id,
            session_id=sign_in.session_id,
            at_ns=sign_in.at_ns,
            device_id=sign_in.device_id,
            country=location.country if location else None,
            network=location.network if location else None,
            latitude=location.latitude if location else None,
            longitude=location.longitude if location else None,
            score=assessment.score,
            response=assessment.response.value,
        )
        session.add(row)
        context = {"sign_in_id": row.id, "session_id": sign_in.session_id}
        await self._record_signals(session, sign_in.user_id, signals, context, sign_in.request)
        await self._event(
            session,
            FraudEvent.SIGN_IN_ASSESSED,
            user_id=sign_in.user_id,
            data={
                **context,
                "score": assessment.score,
                "response": assessment.response.value,
                "signals": [s.signal.value for s in signals],
                "country": row.country,
                "network": row.network,
                "first_sign_in": not history,
            },
            request=sign_in.request,
        )
        if assessment.response.includes(TakeoverResponse.STEP_UP):
            await self.auth.demand_step_up(session, session_id=sign_in.session_id)
        await self._respond(
            session,
            sign_in.user_id,
            assessment,
            trigger="sign_in",
            sign_in=row,
            request=sign_in.request,
        )

    async def _respond(
        self,
        session: AsyncSession,
        user_id: str,
        assessment: Assessment,
        *,
        trigger: str,
        sign_in: FraudSignIn | None,
        request: RequestInfo | None,
    ) -> str | None:
        """Carry out the chosen response past step-up; returns the review's id if one is open."""
        response = assessment.response
        review_id: str | None = None
        if response.includes(TakeoverResponse.REVIEW):
            review = await self._open_review(
                session, user_id, trigger=trigger, assessment=assessment
            )
            review_id = review.id
            await self._freeze(session, user_id, reason=trigger, review_id=review.id)
        if response.includes(TakeoverResponse.LOCK):
            ended = await self.auth.lock_for_takeover(
                session, user_id=user_id, request=request or RequestInfo()
            )
            self._sessions_ended(ended)
        if response.includes(TakeoverResponse.VERIFY):
            await self._send_prompt(session, user_id, sign_in=sign_in, trigger=trigger)
        return review_id

    # "Was this you?" ------------------------------------------------------------------

    async def _send_prompt(
        self, session: AsyncSession, user_id: str, *, sign_in: FraudSignIn | None, trigger: str
    ) -> None:
        address = await self.identity_accounts.contact_of(session, user_id)
        if address is None:
            return
        now = self.clock.now_ns()
        token = secrets.token_urlsafe(32)
        prompt = TakeoverPrompt(
            id=self.ids.new_str(),
            user_id=user_id,
            sign_in_id=sign_in.id if sign_in else None,
            token_hash=hash_token(token),
            created_ns=now,
            expires_ns=now + self.policy.prompt_ttl_ns,
        )
        session.add(prompt)
        where = f" from {sign_in.country}" if sign_in is not None and sign_in.country else ""
        hours = self.policy.prompt_ttl_ns // (3600 * 10**9)
        link = f"{self.origin}{PROMPT_PATH}"
        what = (
            f"a new sign-in to your account{where}"
            if trigger == "sign_in"
            else "activity on your account that did not look like yours"
        )
        await self.notifier.enqueue_email(
            session,
            to=address,
            template="takeover_prompt",
            subject="Was this you? Activity on your tradeguard account",
            body=(
                f"We noticed {what}.\n\n"
                f"If it was NOT you, open this link now: it signs you out everywhere, freezes "
                f"withdrawals and sends your account to our security team:\n"
                f"{link}?answer=no&token={token}\n\n"
                f"If it was you, confirm here:\n{link}?answer=yes&token={token}\n\n"
                f"The link works once, without signing in, for {hours} hours "
                "(or POST /api/v1/takeover/answers with the token and your answer)."
            ),
        )
        # The same question by text message to a confirmed SMS factor (ATO-2 email/SMS
        # verification): a mailbox the intruder controls does not silence it.
        number = await self.identity_accounts.text_number_of(session, user_id)
        if number is not None:
            await self.notifier.enqueue_sms(
                session,
                to=number,
                template="takeover_prompt",
                body=(
                    f"tradeguard: {what}. Not you? Open {link}?answer=no&token={token} "
                    "now to sign out everywhere and freeze withdrawals."
                ),
            )
        await self._event(
            session,
            FraudEvent.PROMPT_SENT,
            user_id=user_id,
            data={
                "prompt_id": prompt.id,
                "sign_in_id": prompt.sign_in_id,
                "trigger": trigger,
                "expires_ns": prompt.expires_ns,
                "channels": ["email", "sms"] if number is not None else ["email"],
            },
        )

    async def answer(
        self, session: AsyncSession, *, token: str, answer: PromptAnswer, request: RequestInfo
    ) -> PromptOutcome:
        """The owner's answer through the emailed link (no sign-in: the token is the
        authority). "no" signs out every session, freezes withdrawals and opens a review;
        "yes" dismisses: the sign-in it was about no longer weighs on withdrawals nor makes
        trading suspect (a freeze already set stays for staff). A link that is unknown, used
        or expired changes nothing."""
        valid = valid_token(token)
        if valid is None:
            raise LinkRefused("this link is not valid: it may have been used or have expired")
        prompt = await repository.prompt_by_hash(session, hash_token(valid))
        now = self.clock.now_ns()
        if prompt is None or prompt.answered_ns is not None or prompt.expires_ns <= now:
            raise LinkRefused("this link is not valid: it may have been used or have expired")
        # Spent by a conditional update: two clicks at once answer once.
        if not await repository.answer_prompt(session, prompt.id, answer.value, now):
            raise LinkRefused("this link is not valid: it may have been used or have expired")
        user_id = prompt.user_id
        if answer is PromptAnswer.YES:
            if prompt.sign_in_id is not None:
                await repository.confirm_sign_in(session, prompt.sign_in_id, now)
            await self._event(
                session,
                FraudEvent.PROMPT_CONFIRMED,
                user_id=user_id,
                actor=Party("user", user_id),
                data={"prompt_id": prompt.id, "sign_in_id": prompt.sign_in_id},
                request=request,
            )
            return PromptOutcome(answer)
        ended, review_id, freeze_id = await self._owner_denied(
            session, user_id, trigger="owner_denied", request=request
        )
        await self._event(
            session,
            FraudEvent.PROMPT_DENIED,
            user_id=user_id,
            actor=Party("user", user_id),
            data={
                "prompt_id": prompt.id,
                "sign_in_id": prompt.sign_in_id,
                "sessions_ended": len(ended),
                "review_id": review_id,
                "freeze_id": freeze_id,
            },
            request=request,
        )
        return PromptOutcome(answer, tuple(ended), review_id, freeze_id)

    async def _owner_denied(
        self, session: AsyncSession, user_id: str, *, trigger: str, request: RequestInfo | None
    ) -> tuple[list[str], str, str]:
        """The owner says someone else acts on their account: every session ends,
        withdrawals freeze, a review opens. (sessions ended, review id, freeze id)"""
        ended = await self.auth.revoke(
            session, user_id=user_id, request=request or RequestInfo(), reason="takeover_reported"
        )
        review = await self._open_review(
            session, user_id, trigger=trigger, assessment=None, actor=Party("user", user_id)
        )
        freeze = await self._freeze(
            session, user_id, reason=trigger, review_id=review.id, actor=Party("user", user_id)
        )
        self._sessions_ended(ended)
        return ended, review.id, freeze.id

    async def freeze_withdrawals(self, session: AsyncSession, *, user_id: str, reason: str) -> str:
        """Freeze the user's withdrawals and open a review (the funds service, when a bank
        says a debit was not authorized); returns the review id. Lifted by staff, four-eyes."""
        review = await self._open_review(session, user_id, trigger=reason, assessment=None)
        await self._freeze(session, user_id, reason=reason, review_id=review.id)
        return review.id

    async def withdrawal_disowned(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        withdrawal_id: str,
        request: RequestInfo | None = None,
    ) -> None:
        """The owner refused a withdrawal through its emailed "this was not me" link (funds):
        treated as a "no" to "was this you?" (ATO-2)."""
        ended, review_id, freeze_id = await self._owner_denied(
            session, user_id, trigger="withdrawal_disowned", request=request
        )
        await self._event(
            session,
            FraudEvent.PROMPT_DENIED,
            user_id=user_id,
            actor=Party("user", user_id),
            data={
                "withdrawal_id": withdrawal_id,
                "sessions_ended": len(ended),
                "review_id": review_id,
                "freeze_id": freeze_id,
            },
            request=request,
        )

    # Withdrawals (called by the funds service) ------------------------------------------

    async def withdrawals_frozen(self, session: AsyncSession, user_id: str) -> bool:
        return bool(await repository.active_freezes(session, user_id))

    async def last_security_change_ns(self, session: AsyncSession, user_id: str) -> int | None:
        """When the user's password, email or second factors (a phone is an SMS factor; new
        backup codes count) last changed, from identity's ledger events (committed ones,
        chained or not yet)."""
        return await latest_about(session, subject_id=user_id, event_types=SECURITY_CHANGES)

    async def withdrawal_requested(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        amount: Decimal,
        withdrawal_id: str | None = None,
        request: RequestInfo | None = None,
    ) -> TakeoverDecision:
        """Assess a withdrawal request before any money moves (ATO-1: a security change
        followed by a withdrawal; unusual trading after a risky sign-in; the risk of recent
        sign-ins). A frozen user's withdrawal is refused; otherwise the policy table answers
        and a response of review or stronger freezes withdrawals and opens a review."""
        if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
            raise InvalidInput("a withdrawal's amount must be a positive decimal")
        context: dict[str, Any] = {"withdrawal_id": withdrawal_id, "amount": str(amount)}
        frozen = await repository.active_freezes(session, user_id)
        if frozen:
            await self._event(
                session,
                FraudEvent.WITHDRAWAL_ASSESSED,
                user_id=user_id,
                data={**context, "allowed": False, "reason": "withdrawals_frozen"},
                request=request,
            )
            return TakeoverDecision(
                allowed=False,
                response=TakeoverResponse.REVIEW,
                score=0,
                signals=(),
                reason="withdrawals_frozen",
                review_id=frozen[0].review_id,
            )
        now = self.clock.now_ns()
        signals: list[RaisedSignal] = []
        changed = security_change_signal(
            await self.last_security_change_ns(session, user_id), self.policy, now_ns=now
        )
        if changed is not None:
            signals.append(changed)
        trading = await self.check_trading(session, user_id, respond=False)
        if trading is not None:
            signals.append(trading)
        recent = await repository.risky_sign_ins_since(
            session,
            user_id,
            since_ns=now - self.policy.withdrawal_lookback_ns,
            min_score=self.policy.risky_score,
        )
        base = max((row.score for row in recent), default=0)
        assessment = assess(signals, self.policy, base=base)
        await self._record_signals(session, user_id, signals, context, request)
        review_id = await self._respond(
            session,
            user_id,
            assessment,
            trigger="withdrawal",
            sign_in=recent[0] if recent else None,
            request=request,
        )
        allowed = review_id is None
        reason = "allowed" if allowed else "review"
        await self._event(
            session,
            FraudEvent.WITHDRAWAL_ASSESSED,
            user_id=user_id,
            data={
                **context,
                "allowed": allowed,
                "reason": reason,
                "score": assessment.score,
                "sign_in_score": base,
                "response": assessment.response.value,
                "signals": [s.signal.value for s in signals],
                "review_id": review_id,
            },
            request=request,
        )
        return TakeoverDecision(
            allowed=allowed,
            response=assessment.response,
            score=assessment.score,
            signals=tuple(s.signal.value for s in signals),
            reason=reason,
            review_id=review_id,
        )

    # Trading after a risky sign-in -----------------------------------------------------

    async def check_trading(
        self, session: AsyncSession, user_id: str, *, respond: bool = True
    ) -> RaisedSignal | None:
        """Unusual trading after the user's risky sign-in (selling most positions within
        the window): raised once per sign-in. With `respond` (the sweep), the policy's
        response to the sign-in's score plus this signal is carried out here."""
        now = self.clock.now_ns()
        risky = await repository.risky_sign_ins_since(
            session,
            user_id,
            since_ns=now - self.policy.trading_window_ns,
            min_score=self.policy.risky_score,
        )
        if not risky or any(row.trading_flagged_ns is not None for row in risky):
            return None
        first = min(risky, key=lambda row: row.at_ns)
        holdings = await self._holdings_since(session, user_id, first.at_ns)
        found = unusual_trading(holdings, self.policy, sign_in_ns=first.at_ns, now_ns=now)
        if found is None or not await repository.flag_trading(session, first.id, now):
            return None
        signal = RaisedSignal(found.signal, found.score, {**found.evidence, "sign_in_id": first.id})
        if respond:
            assessment = assess([signal], self.policy, base=first.score)
            await self._record_signals(session, user_id, [signal], {"sign_in_id": first.id}, None)
            await self._respond(
                session, user_id, assessment, trigger="trading", sign_in=first, request=None
            )
        return signal

    async def sweep_trading(self, session: AsyncSession) -> int:
        """Check the trading of every user with a risky sign-in inside the window and not yet
        flagged; returns how many were flagged. Risky sign-ins are rare next to orders, so
        this reads a handful of users' orders instead of every order on the ledger."""
        now = self.clock.now_ns()
        users = await repository.users_with_risky_sign_ins(
            session, since_ns=now - self.policy.trading_window_ns, min_score=self.policy.risky_score
        )
        flagged = 0
        for user_id in users:
            if await self.check_trading(session, user_id) is not None:
                flagged += 1
        return flagged

    async def _holdings_since(
        self, session: AsyncSession, user_id: str, since_ns: int
    ) -> list[Holding]:
        holdings: list[Holding] = []
        for account in await self.trading_accounts.list_for(session, user_id):
            view = await self.trading_accounts.view(session, account)
            sold: dict[str, int] = {}
            offered: dict[str, int] = {}
            orders = await self.orders.list(
                session,
                account_id=account.id,
                user_id=None,
                open_only=False,
                before_ns=None,
                limit=ORDERS_LOOKED_AT,
            )
            for order in orders:
                if order.created_ns < since_ns or order.side != Side.SELL.value:
                    continue
                sold[order.symbol] = sold.get(order.symbol, 0) + order.filled_quantity
                if order.open:
                    rest = order.quantity - order.filled_quantity
                    offered[order.symbol] = offered.get(order.symbol, 0) + rest
            symbols = {p.symbol for p in view.positions} | set(sold)
            quantities = {p.symbol: max(p.quantity, 0) for p in view.positions}
            holdings.extend(
                Holding(
                    account_id=account.id,
                    symbol=symbol,
                    quantity_now=quantities.get(symbol, 0),
                    sold_since=sold.get(symbol, 0),
                    offered_since=offered.get(symbol, 0),
                )
                for symbol in sorted(symbols)
            )
        return holdings

    # Reviews and freezes (staff) ---------------------------------------------------------

    async def _open_review(
        self,
        session: AsyncSession,
        user_id: str,
        *,
        trigger: str,
        assessment: Assessment | None,
        actor: Party = SYSTEM,
    ) -> TakeoverReview:
        existing = await repository.open_review_of(session, user_id)
        if existing is not None:
            return existing
        signals = [s.signal.value for s in assessment.signals] if assessment else []
        review = TakeoverReview(
            id=self.ids.new_str(),
            user_id=user_id,
            status=repository.OPEN,
            trigger=trigger,
            score=assessment.score if assessment else 0,
            signals=",".join(signals)[:400],
            opened_ns=self.clock.now_ns(),
        )
        session.add(review)
        await self._event(
            session,
            FraudEvent.REVIEW_OPENED,
            user_id=user_id,
            actor=actor,
            data={
                "review_id": review.id,
                "trigger": trigger,
                "score": review.score,
                "signals": signals,
            },
        )
        return review

    async def _freeze(
        self,
        session: AsyncSession,
        user_id: str,
        *,
        reason: str,
        review_id: str | None,
        actor: Party = SYSTEM,
    ) -> WithdrawalFreeze:
        active = await repository.active_freezes(session, user_id)
        if active:
            return active[0]
        freeze = WithdrawalFreeze(
            id=self.ids.new_str(),
            user_id=user_id,
            frozen_ns=self.clock.now_ns(),
            reason=reason,
            review_id=review_id,
        )
        session.add(freeze)
        await self._event(
            session,
            FraudEvent.WITHDRAWALS_FROZEN,
            user_id=user_id,
            actor=actor,
            data={"freeze_id": freeze.id, "reason": reason, "review_id": review_id},
        )
        return freeze

    async def reviews(
        self, session: AsyncSession, *, status: str | None, user_id: str | None, limit: int
    ) -> Sequence[TakeoverReview]:
        return await repository.reviews(session, status=status, user_id=user_id, limit=limit)

    async def review(self, session: AsyncSession, review_id: str) -> ReviewView:
        row = await repository.review(session, review_id)
        if row is None:
            raise NotFound("no such review")
        freezes = await repository.active_freezes(session, row.user_id)
        sign_ins = await repository.recent_sign_ins(session, row.user_id, limit=20)
        return ReviewView(row, tuple(freezes), tuple(sign_ins))

    async def assign_review(
        self, session: AsyncSession, *, review_id: str, assignee: str, actor: Party
    ) -> TakeoverReview:
        row = await self._open(session, review_id)
        if await self.identity_accounts.role_of(session, assignee) not in STAFF_ROLES:
            raise InvalidInput("reviews are assigned to staff members")
        row.assignee = assignee
        await self._event(
            session,
            FraudEvent.REVIEW_ASSIGNED,
            user_id=row.user_id,
            actor=actor,
            data={"review_id": row.id, "assignee": assignee},
        )
        return row

    async def close_review(
        self,
        session: AsyncSession,
        *,
        review_id: str,
        outcome: ReviewOutcome,
        note: str,
        actor: Party,
    ) -> TakeoverReview:
        """Close a review with its outcome. Closing does not lift a freeze: that takes two
        staff members (`request_lift`, `approve_lift`)."""
        row = await self._open(session, review_id)
        _not_own_account(row.user_id, actor)
        if not await repository.close_review(
            session,
            row.id,
            now_ns=self.clock.now_ns(),
            by=actor.id,
            outcome=outcome.value,
            note=note,
        ):
            raise Conflict("the review is already closed")
        await session.refresh(row)
        await self._event(
            session,
            FraudEvent.REVIEW_CLOSED,
            user_id=row.user_id,
            actor=actor,
            data={"review_id": row.id, "outcome": outcome.value, "note": note},
        )
        return row

    async def _open(self, session: AsyncSession, review_id: str) -> TakeoverReview:
        row = await repository.review(session, review_id)
        if row is None:
            raise NotFound("no such review")
        if row.status != repository.OPEN:
            raise Conflict("the review is already closed")
        return row

    async def freezes(
        self, session: AsyncSession, *, active_only: bool, limit: int
    ) -> Sequence[WithdrawalFreeze]:
        return await repository.freezes(session, active_only=active_only, limit=limit)

    async def request_lift(
        self, session: AsyncSession, *, freeze_id: str, reason: str, actor: Party
    ) -> WithdrawalFreeze:
        """The first of two staff members asks to lift a freeze (four-eyes, WDL-3 style)."""
        freeze = await self._active_freeze(session, freeze_id)
        _not_own_account(freeze.user_id, actor)
        if freeze.lift_requested_by is not None:
            raise Conflict("a lift of this freeze is already asked for")
        if freeze.review_id is not None:
            review = await repository.review(session, freeze.review_id)
            if review is not None and review.status == repository.OPEN:
                raise Conflict("close the freeze's review before lifting it")
            if review is not None and review.outcome == ReviewOutcome.TAKEOVER_CONFIRMED:
                raise Conflict("the review confirmed a takeover: recover the account (ATO-3) first")
        freeze.lift_requested_by = actor.id
        freeze.lift_requested_ns = self.clock.now_ns()
        freeze.lift_reason = reason
        await self._event(
            session,
            FraudEvent.FREEZE_LIFT_REQUESTED,
            user_id=freeze.user_id,
            actor=actor,
            data={"freeze_id": freeze.id, "reason": reason},
        )
        return freeze

    async def approve_lift(
        self, session: AsyncSession, *, freeze_id: str, actor: Party
    ) -> WithdrawalFreeze:
        """A second staff member, not the one who asked, lifts the freeze."""
        freeze = await self._active_freeze(session, freeze_id)
        _not_own_account(freeze.user_id, actor)
        if freeze.lift_requested_by is None:
            raise Conflict("nobody asked to lift this freeze yet")
        if freeze.lift_requested_by == actor.id:
            raise FourEyesRequired("the staff member who asked cannot also approve")
        if not await repository.lift_freeze(
            session, freeze.id, now_ns=self.clock.now_ns(), by=actor.id
        ):
            raise Conflict("the freeze was lifted or changed meanwhile")
        await session.refresh(freeze)
        await self._event(
            session,
            FraudEvent.FREEZE_LIFTED,
            user_id=freeze.user_id,
            actor=actor,
            data={"freeze_id": freeze.id, "requested_by": freeze.lift_requested_by},
        )
        return freeze

    async def _active_freeze(self, session: AsyncSession, freeze_id: str) -> WithdrawalFreeze:
        freeze = await repository.freeze(session, freeze_id)
        if freeze is None:
            raise NotFound("no such freeze")
        if freeze.lifted_ns is not None:
            raise Conflict("the freeze is already lifted")
        return freeze

    # Ledger ------------------------------------------------------------------------------

    async def _record_signals(
        self,
        session: AsyncSession,
        user_id: str,
        signals: Sequence[RaisedSignal],
        context: Mapping[str, Any],
        request: RequestInfo | None,
    ) -> None:
        for signal in signals:
            await self._event(
                session,
                FraudEvent.SIGNAL_RAISED,
                user_id=user_id,
                data={
                    **context,
                    "signal": signal.signal.value,
                    "score": signal.score,
                    "evidence": dict(signal.evidence),
                },
                request=request,
            )

    async def _event(
        self,
        session: AsyncSession,
        event_type: FraudEvent,
        *,
        user_id: str,
        data: Mapping[str, Any],
        actor: Party = SYSTEM,
        request: RequestInfo | None = None,
    ) -> None:
        subject = Party("user", user_id)
        await self.ledger.append(
            session,
            LedgerEvent(
                type=event_type.value,
                actor=actor,
                subject=subject,
                data=dict(data),
                request_id=request.request_id if request else None,
                # The client address, sealed under the user's own key (erasable), never in
                # the event's plain data.
                personal=PersonalData.of(subject, ip=request.ip if request else None),
            ),
        )

    def _sessions_ended(self, ended: Sequence[str]) -> None:
        if ended and self.on_sessions_ended is not None:
            self.on_sessions_ended(tuple(ended))


def _past(row: FraudSignIn) -> PastSignIn:
    return PastSignIn(
        at_ns=row.at_ns,
        device_id=row.device_id,
        country=row.country,
        network=row.network,
        latitude=row.latitude,
        longitude=row.longitude,
    )


def _not_own_account(user_id: str, actor: Party) -> None:
    if actor.id == user_id:
        raise Forbidden("staff cannot decide about their own account")
