"""Account applications (KYC-1, KYC-2): the customer's draft, submission and withdrawal; staff
review (masked reads, audited reveals, more information, refusal, approval with its checks
and four eyes for high risk); the risk rating and its periodic review; consent (PRIV-1).
Every change appends a ledger event in the caller's transaction; nothing here commits."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.masking import HIDDEN
from tradeguard.crypto.classes import DataClass
from tradeguard.crypto.columns import (
    PlainField,
    SealedField,
    blind_index,
    blind_index_candidates,
    keyring_field,
)
from tradeguard.kyc.contracts import (
    ApplicantFacts,
    CustomerRiskProfile,
    EvidenceStatus,
    FilingPerson,
    RiskRating,
    ScreeningDecision,
    ScreeningOutcome,
    ScreeningSubject,
    SubjectKind,
)
from tradeguard.kyc.onboarding import repository
from tradeguard.kyc.onboarding.common import (
    ApplicationConflict,
    ApplicationNotFound,
    ApprovalBlocked,
    OnboardingDeps,
)
from tradeguard.kyc.onboarding.domain import (
    EDITABLE,
    INCOME_BOUNDS,
    WEALTH_BOUNDS,
    ApplicationStatus,
    IncomeBand,
    MaskedField,
    OnboardingEvent,
    WealthBand,
)
from tradeguard.kyc.onboarding.models import Application
from tradeguard.kyc.onboarding.risk import Assessment, Factor, assess, band, next_review
from tradeguard.kyc.onboarding.validation import (
    ApplicationInvalid,
    Cleaned,
    TaxId,
    check_address,
    check_declarations,
    check_tax_id_kind,
    clean,
    missing,
)
from tradeguard.ledger.domain import Party
from tradeguard.risk.domain import AccountStatus

# Sections a customer may still change after approval: a new name or a move (re-screened).
CHANGEABLE_AFTER_APPROVAL = frozenset({"identity", "address"})
CHANGEABLE_IDENTITY = frozenset({"given_names", "family_name"})
MAX_MESSAGE = 2000
# The account statuses a sanctions restriction suspends (PENDING stays PENDING: the gate
# keeps it there while the standing is not clear).
RESTRICTABLE = frozenset({AccountStatus.ACTIVE.value, AccountStatus.CLOSING_ONLY.value})
KYC_SYSTEM = Party("system", "kyc")
_RANK = {RiskRating.LOW.value: 0, RiskRating.MEDIUM.value: 1, RiskRating.HIGH.value: 2}


def computed_rating(row: Application) -> RiskRating | None:
    """The rating the factors give (whatever a staff override says)."""
    return None if row.rating_score is None else band(row.rating_score)


def needs_four_eyes(row: Application) -> bool:
    """HIGH by the override or by the factors: EDD and two approvers."""
    return row.rating == RiskRating.HIGH.value or computed_rating(row) is RiskRating.HIGH


class Blocker:
    """Stable codes of what stops an approval."""

    NOT_SUBMITTED = "NOT_SUBMITTED"
    SCREENING_UNAVAILABLE = "SCREENING_UNAVAILABLE"
    SANCTIONS_NOT_CLEAR = "SANCTIONS_NOT_CLEAR"
    EVIDENCE_UNAVAILABLE = "EVIDENCE_UNAVAILABLE"
    IDENTITY_NOT_VERIFIED = "IDENTITY_NOT_VERIFIED"
    ADDRESS_NOT_VERIFIED = "ADDRESS_NOT_VERIFIED"
    EDD_MISSING = "EDD_MISSING"
    DUPLICATE_TAX_ID = "DUPLICATE_TAX_ID"


@dataclass(frozen=True, slots=True)
class ApplicationView:
    """An application as its owner or a reviewer sees it (`sections` masked for staff
    until revealed); never the tax id, only its last four digits."""

    row: Application
    sections: dict[str, dict[str, Any]]


def _day(now_ns: int) -> date:
    return datetime.fromtimestamp(now_ns / 1e9, tz=UTC).date()


def _text(field: str, value: str, *, low: int = 3, high: int = MAX_MESSAGE) -> str:
    cleaned = value.strip()
    if not low <= len(cleaned) <= high:
        raise ApplicationInvalid(field, f"must be {low} to {high} characters")
    return cleaned


def _initial(name: str | None) -> str | None:
    return None if not name else name[0] + HIDDEN


def masked_sections(sections: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The reviewer's default view: initials, the year of birth, the address down to its
    city, region and country; the rest of the profile as declared."""
    out = {name: dict(fields) for name, fields in sections.items()}
    identity = out.get("identity", {})
    for name in ("given_names", "family_name"):
        if name in identity:
            identity[name] = _initial(identity[name])
    if "birth_date" in identity:
        identity["birth_date"] = identity["birth_date"][:4] + "-**-**"
    address = out.get("address", {})
    for name in ("line1", "line2", "postal_code"):
        if name in address:
            address[name] = HIDDEN
    return out


class OnboardingService:
    def __init__(self, deps: OnboardingDeps) -> None:
        self.deps = deps

    # Sealed data -----------------------------------------------------------------------------

    def _open(self, value: SealedField | PlainField | None, row: Application) -> str | None:
        """A sealed column's clear value; one assigned in this transaction and not yet read
        back is still the value on its way in."""
        if value is None:
            return None
        if isinstance(value, PlainField):
            return value.value
        return value.reveal(self.deps.keyring, record_id=row.id)

    def sections_of(self, row: Application) -> dict[str, dict[str, Any]]:
        loaded: dict[str, dict[str, Any]] = json.loads(self._open(row.details_enc, row) or "{}")
        return loaded

    def _seal(self, row: Application, sections: Mapping[str, Mapping[str, Any]]) -> None:
        document = json.dumps(sections, sort_keys=True, separators=(",", ":"))
        row.details_enc = keyring_field(self.deps.keyring, document, record_id=row.id)

    def _set_tax_id(self, row: Application, tax: TaxId) -> None:
        keyring = self.deps.keyring
        row.tax_id_enc = keyring_field(keyring, tax.value, record_id=row.id)
        row.tax_id_index = blind_index(keyring, DataClass.TAX_ID, tax.value, str)
        row.tax_id_last4 = tax.last4
        row.tax_id_kind = tax.kind.value

    def _tax_value(self, row: Application) -> str | None:
        return self._open(row.tax_id_enc, row)

    # The customer ----------------------------------------------------------------------------

    async def mine(self, session: AsyncSession, user_id: str) -> ApplicationView:
        row = await repository.latest_of(session, user_id)
        if row is None:
            raise ApplicationNotFound("no application yet")
        return ApplicationView(row, self.sections_of(row))

    async def save(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        sections: Mapping[str, Mapping[str, Any] | None],
        actor: Party,
        request_id: str | None = None,
    ) -> ApplicationView:
        """Create or update the customer's draft: fields given replace those stored, a field
        given as null is cleared. After approval only the name and the address change (and
        the customer is screened again at once)."""
        deps, now = self.deps, self.deps.clock.now_ns()
        row = await repository.latest_of(session, user_id, lock=True)
        saved = self.sections_of(row).get("identity", {}) if row is not None else {}
        cleaned = clean(
            sections,
            today=_day(now),
            min_age=deps.min_age,
            tax_id_country=saved.get("tax_id_country", "US"),
        )
        if row is not None and ApplicationStatus(row.status) is ApplicationStatus.APPROVED:
            return await self._change_after_approval(
                session, row, sections, cleaned, actor, request_id
            )
        if row is not None and ApplicationStatus(row.status) is ApplicationStatus.SUBMITTED:
            raise ApplicationConflict("the application is submitted: withdraw it to change it")
        stored: dict[str, dict[str, Any]] = {}
        created = row is None or ApplicationStatus(row.status) not in EDITABLE
        if row is None or created:
            row = Application(
                id=deps.ids.new_str(),
                user_id=user_id,
                status=ApplicationStatus.DRAFT.value,
                duplicate_tax_id=False,
                rating_overridden=False,
                marketing_opt_in=False,
                created_ns=now,
                updated_ns=now,
            )
        else:
            stored = self.sections_of(row)
        merged = _merge(stored, sections, cleaned)
        check_address(merged)
        check_declarations(merged)
        changed = sorted(
            f"{section}.{name}" for section, fields in sections.items() for name in (fields or {})
        )
        self._seal(row, merged)
        if cleaned.tax_id is not None:
            self._set_tax_id(row, cleaned.tax_id)
        row.updated_ns = now
        if created:
            repository.add(session, row)
            await deps.audit(
                session,
                OnboardingEvent.APPLICATION_CREATED,
                actor=actor,
                subject=Party("user", user_id),
                data={"application_id": row.id},
                request_id=request_id,
            )
        await self._note_marketing(session, row, merged, actor, request_id)
        await deps.audit(
            session,
            OnboardingEvent.APPLICATION_SAVED,
            actor=actor,
            subject=Party("user", user_id),
            # Which fields, never their values.
            data={"application_id": row.id, "fields": changed},
            request_id=request_id,
        )
        return ApplicationView(row, merged)

    async def _note_marketing(
        self,
        session: AsyncSession,
        row: Application,
        sections: Mapping[str, Mapping[str, Any]],
        actor: Party,
        request_id: str | None,
    ) -> None:
        """Marketing mail is opt-in and can be withdrawn at any time (PRIV-1)."""
        wanted = bool(sections.get("preferences", {}).get("marketing_opt_in", False))
        if wanted == row.marketing_opt_in:
            return
        row.marketing_opt_in = wanted
        row.marketing_changed_ns = self.deps.clock.now_ns()
        await self.deps.audit(
            session,
            OnboardingEvent.CONSENT_RECORDED if wanted else OnboardingEvent.CONSENT_WITHDRAWN,
            actor=actor,
            subject=Party("user", row.user_id),
            data={"application_id": row.id, "purpose": "marketing"},
            request_id=request_id,
        )

    async def _change_after_approval(  # noqa: PLR0917 - internal step of save
        self,
        session: AsyncSession,
        row: Application,
        sections: Mapping[str, Mapping[str, Any] | None],
        cleaned: Cleaned,
        actor: Party,
        request_id: str | None,
    ) -> ApplicationView:
        given = {name for name, fields in sections.items() if fields}
        identity = set((sections.get("identity") or {}).keys())
        allowed = CHANGEABLE_AFTER_APPROVAL | {"preferences"}
        if not given <= allowed or not identity <= CHANGEABLE_IDENTITY:
            raise ApplicationConflict(
                "after approval only your name, your address and your preferences change here"
            )
        merged = _merge(self.sections_of(row), sections, cleaned)
        check_address(merged)
        self._seal(row, merged)
        row.updated_ns = self.deps.clock.now_ns()
        await self._note_marketing(session, row, merged, actor, request_id)
        if given & CHANGEABLE_AFTER_APPROVAL:
            await self.deps.audit(
                session,
                OnboardingEvent.APPLICATION_CHANGED,
                actor=actor,
                subject=Party("user", row.user_id),
                data={"application_id": row.id, "sections": sorted(given - {"preferences"})},
                request_id=request_id,
            )
            await self._screen(session, row, merged, "customer details changed", actor, request_id)
            await self._rate(session, row, merged, actor, request_id)
        return ApplicationView(row, merged)

    async def submit(
        self, session: AsyncSession, *, user_id: str, actor: Party, request_id: str | None = None
    ) -> ApplicationView:
        """Submit for review: every required field present; consent to the current terms and
        privacy notice recorded; the tax id checked against other customers'; the customer
        screened and rated."""
        deps, now = self.deps, self.deps.clock.now_ns()
        row = await repository.latest_of(session, user_id, lock=True)
        if row is None or ApplicationStatus(row.status) not in EDITABLE:
            raise ApplicationConflict("there is no draft application to submit")
        sections = self.sections_of(row)
        needed = missing(sections, row.tax_id_enc is not None)
        if needed:
            raise ApplicationInvalid(needed[0], f"needed before submitting ({len(needed)} in all)")
        check_tax_id_kind(sections, row.tax_id_kind)
        row.status = ApplicationStatus.SUBMITTED.value
        row.submitted_ns = now
        row.updated_ns = now
        row.customer_message = None
        row.consent_version = deps.terms_version
        row.consent_ns = now
        subject = Party("user", user_id)
        await deps.audit(
            session,
            OnboardingEvent.CONSENT_RECORDED,
            actor=actor,
            subject=subject,
            data={
                "application_id": row.id,
                "purpose": "terms_and_privacy_notice",
                "version": deps.terms_version,
            },
            request_id=request_id,
        )
        await deps.audit(
            session,
            OnboardingEvent.APPLICATION_SUBMITTED,
            actor=actor,
            subject=subject,
            data={"application_id": row.id},
            request_id=request_id,
        )
        await self._check_duplicate(session, row, request_id)
        await self._screen(session, row, sections, "onboarding", actor, request_id)
        await self._rate(session, row, sections, actor, request_id)
        return ApplicationView(row, sections)

    async def withdraw(
        self, session: AsyncSession, *, user_id: str, actor: Party, request_id: str | None = None
    ) -> ApplicationView:
        row = await repository.latest_of(session, user_id, lock=True)
        if row is None or ApplicationStatus(row.status) not in (
            *EDITABLE,
            ApplicationStatus.SUBMITTED,
        ):
            raise ApplicationConflict("there is no open application to withdraw")
        row.status = ApplicationStatus.WITHDRAWN.value
        row.updated_ns = self.deps.clock.now_ns()
        await self.deps.audit(
            session,
            OnboardingEvent.APPLICATION_WITHDRAWN,
            actor=actor,
            subject=Party("user", user_id),
            data={"application_id": row.id},
            request_id=request_id,
        )
        return ApplicationView(row, self.sections_of(row))

    async def _check_duplicate(
        self, session: AsyncSession, row: Application, request_id: str | None
    ) -> None:
        """The same tax id on another user: flagged for staff, never told to the customer."""
        value = self._tax_value(row)
        if value is None:
            return
        forms = blind_index_candidates(self.deps.keyring, DataClass.TAX_ID, value, str)
        others = await repository.others_with_tax_id(session, forms, row.user_id)
        if not others:
            return
        row.duplicate_tax_id = True
        row.duplicate_resolved_by = None
        await self.deps.audit(
            session,
            OnboardingEvent.DUPLICATE_TAX_ID,
            actor=Party("system", "kyc"),
            subject=Party("user", row.user_id),
            data={
                "application_id": row.id,
                "other_users": sorted({other.user_id for other in others}),
            },
            request_id=request_id,
        )

    async def _screen(  # noqa: PLR0917 - internal step
        self,
        session: AsyncSession,
        row: Application,
        sections: Mapping[str, Mapping[str, Any]],
        reason: str,
        actor: Party,
        request_id: str | None,
    ) -> None:
        screener = self.deps.screener
        if screener is None:
            return
        outcome = await screener.screen(
            session,
            subject_of(row.user_id, sections),
            reason=reason,
            actor=actor,
            request_id=request_id,
        )
        row.screening = outcome.decision.value
        row.screened_ns = self.deps.clock.now_ns()
        await self.deps.audit(
            session,
            OnboardingEvent.APPLICATION_SCREENED,
            actor=actor,
            subject=Party("user", row.user_id),
            data={
                "application_id": row.id,
                "reason": reason,
                "decision": outcome.decision.value,
                "hits": len(outcome.hits),
                "list_version": outcome.list_version,
            },
            request_id=request_id,
        )

    async def _rate(
        self,
        session: AsyncSession,
        row: Application,
        sections: Mapping[str, Mapping[str, Any]],
        actor: Party,
        request_id: str | None,
    ) -> Assessment:
        decision, cleared = await self._standing(session, row)
        result = assess(
            sections,
            high_risk_countries=self.deps.high_risk_countries,
            screening=decision,
            cleared_hits=cleared,
        )
        if row.rating_overridden and row.rating is not None:
            # A staff override stands until staff change it; the computed factors are kept.
            result = Assessment(RiskRating(row.rating), result.score, result.factors)
        previous = row.rating
        row.rating = result.rating.value
        row.rating_score = result.score
        row.rating_factors = [factor.as_json() for factor in result.factors]
        if row.status == ApplicationStatus.APPROVED.value:
            row.next_review_on = next_review(
                result.rating, _day(self.deps.clock.now_ns())
            ).isoformat()
        if previous != row.rating or previous is None:
            await self.deps.audit(
                session,
                OnboardingEvent.RATING_ASSIGNED,
                actor=Party("system", "kyc"),
                subject=Party("user", row.user_id),
                data={"application_id": row.id, "from": previous, **result.as_json()},
                request_id=request_id,
            )
        return result

    async def _standing(
        self, session: AsyncSession, row: Application
    ) -> tuple[ScreeningDecision | None, int]:
        screener = self.deps.screener
        if screener is None:
            return None, 0
        outcome = await screener.standing(session, SubjectKind.CUSTOMER, row.user_id)
        cleared = len(outcome.hits) if outcome.decision is ScreeningDecision.CLEAR else 0
        return outcome.decision, cleared

    # Staff -----------------------------------------------------------------------------------

    async def queue(self, session: AsyncSession) -> Sequence[Application]:
        """Submitted applications, oldest first."""
        return await repository.by_status(session, [ApplicationStatus.SUBMITTED])

    async def listing(
        self, session: AsyncSession, statuses: Sequence[ApplicationStatus]
    ) -> Sequence[Application]:
        return await repository.by_status(session, statuses)

    async def get(
        self, session: AsyncSession, application_id: str, *, lock: bool = False
    ) -> Application:
        row = await repository.application(session, application_id, lock=lock)
        if row is None:
            raise ApplicationNotFound("no such application")
        return row

    async def staff_view(self, session: AsyncSession, application_id: str) -> ApplicationView:
        row = await self.get(session, application_id)
        return ApplicationView(row, masked_sections(self.sections_of(row)))

    async def reveal(
        self,
        session: AsyncSession,
        *,
        application_id: str,
        field: str,
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> Any:
        """One masked detail in clear, for a stated reason; audited. The tax id is never
        revealed (only its last four digits are ever shown)."""
        try:
            which = MaskedField(field)
        except ValueError:
            allowed = ", ".join(f.value for f in MaskedField)
            raise ApplicationInvalid("field", f"must be one of {allowed}") from None
        why = _text("reason", reason, low=5, high=500)
        row = await self.get(session, application_id)
        sections = self.sections_of(row)
        value: Any
        if which is MaskedField.ADDRESS:
            value = sections.get("address", {})
        else:
            value = sections.get("identity", {}).get(which.value)
        await self.deps.audit(
            session,
            OnboardingEvent.APPLICATION_UNMASKED,
            actor=actor,
            subject=Party("user", row.user_id),
            data={"application_id": row.id, "field": which.value, "reason": why},
            request_id=request_id,
        )
        return value

    async def blockers(self, session: AsyncSession, row: Application) -> list[str]:
        """What stops approval now (empty: it may be approved)."""
        found: list[str] = []
        if row.status != ApplicationStatus.SUBMITTED.value:
            return [Blocker.NOT_SUBMITTED]
        deps = self.deps
        if deps.screener is None:
            found.append(Blocker.SCREENING_UNAVAILABLE)
        else:
            standing = await deps.screener.standing(session, SubjectKind.CUSTOMER, row.user_id)
            if standing.decision is not ScreeningDecision.CLEAR:
                found.append(Blocker.SANCTIONS_NOT_CLEAR)
        if deps.evidence is None:
            found.append(Blocker.EVIDENCE_UNAVAILABLE)
        else:
            evidence = await deps.evidence.evidence(session, row.user_id)
            if evidence.identity is not EvidenceStatus.VERIFIED:
                found.append(Blocker.IDENTITY_NOT_VERIFIED)
            if evidence.address is not EvidenceStatus.VERIFIED and row.address_accepted_by is None:
                found.append(Blocker.ADDRESS_NOT_VERIFIED)
        if needs_four_eyes(row) and row.edd_ns is None:
            found.append(Blocker.EDD_MISSING)
        if row.duplicate_tax_id and row.duplicate_resolved_by is None:
            found.append(Blocker.DUPLICATE_TAX_ID)
        return found

    async def approve(
        self,
        session: AsyncSession,
        *,
        application_id: str,
        actor: Party,
        request_id: str | None = None,
    ) -> Application:
        """Approve when nothing blocks it. A high-risk application needs two different staff
        members: the first approval is recorded, the second approves."""
        deps, now = self.deps, self.deps.clock.now_ns()
        row = await self.get(session, application_id, lock=True)
        blockers = await self.blockers(session, row)
        if blockers:
            raise ApprovalBlocked(blockers)
        subject = Party("user", row.user_id)
        if needs_four_eyes(row):
            if row.first_approver is None:
                row.first_approver = actor.id
                row.updated_ns = now
                await deps.audit(
                    session,
                    OnboardingEvent.APPLICATION_FIRST_APPROVAL,
                    actor=actor,
                    subject=subject,
                    data={"application_id": row.id, "rating": row.rating},
                    request_id=request_id,
                )
                return row
            if row.first_approver == actor.id:
                raise ApplicationConflict(
                    "a high-risk application needs a second, different staff member to approve"
                )
        await self._approve(session, row, actor, request_id, OnboardingEvent.APPLICATION_APPROVED)
        await self._tell(
            session,
            row.user_id,
            template="kyc_approved",
            subject="Your tradeguard account application is approved",
            body="Your account application is approved: your accounts are open for trading.",
        )
        return row

    async def _approve(
        self,
        session: AsyncSession,
        row: Application,
        actor: Party,
        request_id: str | None,
        event: OnboardingEvent,
    ) -> None:
        now = self.deps.clock.now_ns()
        rating = RiskRating(row.rating or RiskRating.LOW.value)
        row.status = ApplicationStatus.APPROVED.value
        row.decided_ns = now
        row.decided_by = actor.id
        row.updated_ns = now
        row.next_review_on = next_review(rating, _day(now)).isoformat()
        await self.deps.audit(
            session,
            event,
            actor=actor,
            subject=Party("user", row.user_id),
            data={
                "application_id": row.id,
                "rating": rating.value,
                "first_approver": row.first_approver,
                "next_review_on": row.next_review_on,
            },
            request_id=request_id,
        )
        await self.activate_accounts(session, row.user_id, actor=actor, request_id=request_id)

    async def activate_accounts(
        self, session: AsyncSession, user_id: str, *, actor: Party, request_id: str | None
    ) -> list[str]:
        """Open the customer's accounts that waited for the approval (trading audits each)."""
        opened: list[str] = []
        for account in await self.deps.trading.list_for(session, user_id):
            if account.status != AccountStatus.PENDING.value:
                continue
            await self.deps.trading.set_status(
                session,
                account_id=account.id,
                status=AccountStatus.ACTIVE,
                trading_state=None,
                reason="account application approved (KYC)",
                actor=actor,
                request_id=request_id,
            )
            opened.append(account.id)
        return opened

    async def refuse(
        self,
        session: AsyncSession,
        *,
        application_id: str,
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> Application:
        why = _text("reason", reason)
        row = await self.get(session, application_id, lock=True)
        if row.status != ApplicationStatus.SUBMITTED.value:
            raise ApplicationConflict(f"the application is {row.status}, not submitted")
        now = self.deps.clock.now_ns()
        row.status = ApplicationStatus.REFUSED.value
        row.decided_ns = now
        row.decided_by = actor.id
        row.updated_ns = now
        row.customer_message = why
        await self.deps.audit(
            session,
            OnboardingEvent.APPLICATION_REFUSED,
            actor=actor,
            subject=Party("user", row.user_id),
            data={"application_id": row.id, "reason": why},
            request_id=request_id,
        )
        await self._tell(
            session,
            row.user_id,
            template="kyc_refused",
            subject="Your tradeguard account application",
            body=f"We cannot open your account. {why}",
        )
        return row

    async def request_info(
        self,
        session: AsyncSession,
        *,
        application_id: str,
        message: str,
        actor: Party,
        request_id: str | None = None,
    ) -> Application:
        """Send the application back to the customer with what to add or correct."""
        text = _text("message", message)
        row = await self.get(session, application_id, lock=True)
        if row.status != ApplicationStatus.SUBMITTED.value:
            raise ApplicationConflict(f"the application is {row.status}, not submitted")
        row.status = ApplicationStatus.INFO_REQUESTED.value
        row.customer_message = text
        row.first_approver = None
        row.updated_ns = self.deps.clock.now_ns()
        await self.deps.audit(
            session,
            OnboardingEvent.APPLICATION_INFO_REQUESTED,
            actor=actor,
            subject=Party("user", row.user_id),
            data={"application_id": row.id, "message": text},
            request_id=request_id,
        )
        await self._tell(
            session,
            row.user_id,
            template="kyc_info_requested",
            subject="Your tradeguard account application needs more information",
            body=f"Please update your account application and submit it again: {text}",
        )
        return row

    async def record_edd(
        self,
        session: AsyncSession,
        *,
        application_id: str,
        note: str,
        actor: Party,
        request_id: str | None = None,
    ) -> Application:
        """Enhanced due diligence: the reviewer's note of the source-of-wealth evidence seen
        (sealed: it quotes the customer's affairs)."""
        text = _text("note", note, low=20)
        row = await self.get(session, application_id, lock=True)
        if row.status != ApplicationStatus.SUBMITTED.value:
            raise ApplicationConflict(f"the application is {row.status}, not submitted")
        row.edd_note_enc = keyring_field(self.deps.keyring, text, record_id=row.id)
        row.edd_by = actor.id
        row.edd_ns = self.deps.clock.now_ns()
        await self.deps.audit(
            session,
            OnboardingEvent.EDD_RECORDED,
            actor=actor,
            subject=Party("user", row.user_id),
            data={"application_id": row.id},
            request_id=request_id,
        )
        return row

    def edd_note(self, row: Application) -> str | None:
        return self._open(row.edd_note_enc, row)

    async def accept_address(
        self,
        session: AsyncSession,
        *,
        application_id: str,
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> Application:
        """Staff accept the address on other evidence (a proof the document checks could not
        read, a call): recorded with the reason."""
        why = _text("reason", reason, low=5, high=500)
        row = await self.get(session, application_id, lock=True)
        if row.status != ApplicationStatus.SUBMITTED.value:
            raise ApplicationConflict(f"the application is {row.status}, not submitted")
        row.address_accepted_by = actor.id
        await self.deps.audit(
            session,
            OnboardingEvent.ADDRESS_ACCEPTED,
            actor=actor,
            subject=Party("user", row.user_id),
            data={"application_id": row.id, "reason": why},
            request_id=request_id,
        )
        return row

    async def resolve_duplicate(
        self,
        session: AsyncSession,
        *,
        application_id: str,
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> Application:
        why = _text("reason", reason, low=5, high=500)
        row = await self.get(session, application_id, lock=True)
        if not row.duplicate_tax_id:
            raise ApplicationConflict("this application has no duplicate tax id flag")
        row.duplicate_resolved_by = actor.id
        await self.deps.audit(
            session,
            OnboardingEvent.DUPLICATE_RESOLVED,
            actor=actor,
            subject=Party("user", row.user_id),
            data={"application_id": row.id, "reason": why},
            request_id=request_id,
        )
        return row

    async def override_rating(
        self,
        session: AsyncSession,
        *,
        application_id: str,
        rating: RiskRating,
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> Application:
        """A reviewer's rating instead of the computed one, with the reason (audited). One
        that lowers the rating (below the current or the computed one) is only proposed: a
        second, different staff member approves it by setting the same rating (four eyes)."""
        why = _text("reason", reason, low=5, high=500)
        row = await self.get(session, application_id, lock=True)
        if row.status not in (ApplicationStatus.SUBMITTED.value, ApplicationStatus.APPROVED.value):
            raise ApplicationConflict(f"the application is {row.status}: nothing to rate")
        previous = row.rating
        computed = computed_rating(row)
        floor = max(
            (_RANK[r] for r in (previous, computed.value if computed else None) if r), default=0
        )
        subject = Party("user", row.user_id)
        proposed_by: str | None = None
        if _RANK[rating.value] < floor:
            if row.rating_proposed != rating.value or row.rating_proposed_by is None:
                row.rating_proposed = rating.value
                row.rating_proposed_by = actor.id
                row.rating_proposed_reason = why
                await self.deps.audit(
                    session,
                    OnboardingEvent.RATING_OVERRIDE_PROPOSED,
                    actor=actor,
                    subject=subject,
                    data={
                        "application_id": row.id,
                        "from": previous,
                        "to": rating.value,
                        "reason": why,
                    },
                    request_id=request_id,
                )
                return row
            if row.rating_proposed_by == actor.id:
                raise ApplicationConflict(
                    "lowering a rating needs a second, different staff member to approve it"
                )
            if row.first_approver == actor.id:
                raise ApplicationConflict(
                    "the first approver of this application cannot also approve lowering its rating"
                )
            proposed_by = row.rating_proposed_by
        row.rating_proposed = None
        row.rating_proposed_by = None
        row.rating_proposed_reason = None
        row.rating = rating.value
        row.rating_overridden = True
        factors = [f for f in (row.rating_factors or []) if f.get("code") != "STAFF_OVERRIDE"]
        note = Factor("STAFF_OVERRIDE", 0, f"rating set to {rating.value} by staff: {why}")
        row.rating_factors = [*factors, note.as_json()]
        if row.status == ApplicationStatus.APPROVED.value:
            row.next_review_on = next_review(rating, _day(self.deps.clock.now_ns())).isoformat()
        if not needs_four_eyes(row):
            row.first_approver = row.first_approver if previous != RiskRating.HIGH.value else None
        data: dict[str, object] = {
            "application_id": row.id,
            "from": previous,
            "to": rating.value,
            "reason": why,
        }
        if proposed_by:
            data["proposed_by"] = proposed_by
        await self.deps.audit(
            session,
            OnboardingEvent.RATING_OVERRIDDEN,
            actor=actor,
            subject=subject,
            data=data,
            request_id=request_id,
        )
        return row

    async def reviews_due(
        self, session: AsyncSession, on: date | None = None
    ) -> Sequence[Application]:
        """Approved customers whose periodic review is due on or before `on` (today)."""
        day = on or _day(self.deps.clock.now_ns())
        return await repository.reviews_due(session, day.isoformat())

    async def record_review(
        self,
        session: AsyncSession,
        *,
        application_id: str,
        note: str,
        actor: Party,
        request_id: str | None = None,
    ) -> Application:
        """A periodic review done: re-rated from the current screening standing, next date set."""
        why = _text("note", note, low=20, high=MAX_MESSAGE)
        row = await self.get(session, application_id, lock=True)
        if row.status != ApplicationStatus.APPROVED.value:
            raise ApplicationConflict("only an approved customer has periodic reviews")
        await self._rate(session, row, self.sections_of(row), actor, request_id)
        row.next_review_on = next_review(
            RiskRating(row.rating or "low"), _day(self.deps.clock.now_ns())
        ).isoformat()
        await self.deps.audit(
            session,
            OnboardingEvent.PERIODIC_REVIEW_DONE,
            actor=actor,
            subject=Party("user", row.user_id),
            data={"application_id": row.id, "note": why, "next_review_on": row.next_review_on},
            request_id=request_id,
        )
        return row

    async def import_approved(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        sections: Mapping[str, Mapping[str, Any]],
        actor: Party,
        reason: str,
        request_id: str | None = None,
    ) -> Application:
        """Record a customer verified before this system (a back-book migration; the demo's
        customers) as approved, with the reason: the fields are validated as for a
        submission, the customer rated, and the import audited as such (never a review)."""
        why = _text("reason", reason, low=5, high=500)
        if await repository.open_of(session, user_id) or await repository.approved_of(
            session, user_id
        ):
            raise ApplicationConflict("the customer already has an application")
        view = await self.save(
            session, user_id=user_id, sections=sections, actor=actor, request_id=request_id
        )
        row = view.row
        needed = missing(view.sections, row.tax_id_enc is not None)
        if needed:
            raise ApplicationInvalid(needed[0], f"needed ({len(needed)} in all)")
        check_tax_id_kind(view.sections, row.tax_id_kind)
        now = self.deps.clock.now_ns()
        row.submitted_ns = now
        row.consent_version = self.deps.terms_version
        row.consent_ns = now
        await session.flush()
        await self._check_duplicate(session, row, request_id)
        await self._rate(session, row, view.sections, actor, request_id)
        row.customer_message = None
        await self.deps.audit(
            session,
            OnboardingEvent.APPLICATION_SUBMITTED,
            actor=actor,
            subject=Party("user", user_id),
            data={"application_id": row.id, "imported": why},
            request_id=request_id,
        )
        await self._approve(session, row, actor, request_id, OnboardingEvent.APPLICATION_IMPORTED)
        return row

    async def _tell(
        self, session: AsyncSession, user_id: str, *, template: str, subject: str, body: str
    ) -> None:
        user = await self.deps.users.user(session, user_id)
        if user is None:
            return
        await self.deps.notifier.enqueue_email(
            session, to=user.email, template=template, subject=subject, body=body
        )

    # What other parts read (kyc/contracts.py) ------------------------------------------------

    async def approved(self, session: AsyncSession, user_id: str) -> bool:
        return await repository.approved_of(session, user_id) is not None

    async def cleared(self, session: AsyncSession, user_id: str) -> bool:
        """Trading's gate: approved, and the sanctions standing clear now (an account opened
        while a hit is open or confirmed stays PENDING)."""
        row = await repository.approved_of(session, user_id)
        if row is None:
            return False
        screener = self.deps.screener
        if screener is None:
            return row.screening in (None, ScreeningDecision.CLEAR.value)
        outcome = await screener.standing(session, SubjectKind.CUSTOMER, user_id)
        return outcome.decision is ScreeningDecision.CLEAR

    # Sanctions standing after approval (kyc/contracts.py ScreeningListener) -------------------

    async def standing_changed(
        self,
        session: AsyncSession,
        kind: SubjectKind,
        ref: str,
        outcome: ScreeningOutcome,
        *,
        actor: Party,
        request_id: str | None = None,
    ) -> None:
        """The customer's standing follows sanctions: the application shows it; an approved
        customer who is no longer clear has their accounts suspended (no orders, no
        withdrawals) and is re-rated; clear again, what the hit imposed is lifted. A
        confirmed hit never clears (only staff lift a suspension then, in trading)."""
        if kind is not SubjectKind.CUSTOMER:
            return
        row = await repository.latest_of(session, ref, lock=True)
        if row is None:
            return
        previous = row.screening
        row.screening = outcome.decision.value
        row.screened_ns = self.deps.clock.now_ns()
        if previous != row.screening:
            await self.deps.audit(
                session,
                OnboardingEvent.SCREENING_CHANGED,
                actor=actor,
                subject=Party("user", row.user_id),
                data={
                    "application_id": row.id,
                    "from": previous,
                    "to": row.screening,
                    "hits": len(outcome.hits),
                    "list_version": outcome.list_version,
                },
                request_id=request_id,
            )
        if row.status != ApplicationStatus.APPROVED.value:
            # A submitted application already rated is rated again: a hit cleared as a false
            # positive no longer weighs on it (nor asks for enhanced due diligence).
            if row.rating is not None and previous != row.screening:
                await self._rate(session, row, self.sections_of(row), actor, request_id)
            return
        if outcome.decision is ScreeningDecision.CLEAR:
            await self._lift(session, row, actor, request_id)
        else:
            await self._restrict(session, row, outcome.decision, actor, request_id)
        await self._rate(session, row, self.sections_of(row), actor, request_id)

    async def _restrict(
        self,
        session: AsyncSession,
        row: Application,
        decision: ScreeningDecision,
        actor: Party,
        request_id: str | None,
    ) -> None:
        restricted: dict[str, str] = dict(row.sanctions_restricted or {})
        suspended: list[str] = []
        for account in await self.deps.trading.list_for(session, row.user_id):
            if account.status not in RESTRICTABLE:
                continue
            restricted.setdefault(account.id, account.status)
            await self.deps.trading.set_status(
                session,
                account_id=account.id,
                status=AccountStatus.SUSPENDED,
                trading_state=None,
                reason=f"sanctions screening: {decision.value} (KYC)",
                actor=actor,
                request_id=request_id,
            )
            suspended.append(account.id)
        if not suspended:
            return
        row.sanctions_restricted = restricted
        await self.deps.audit(
            session,
            OnboardingEvent.ACCOUNTS_RESTRICTED,
            actor=actor,
            subject=Party("user", row.user_id),
            data={"application_id": row.id, "decision": decision.value, "accounts": suspended},
            request_id=request_id,
        )

    async def _lift(
        self, session: AsyncSession, row: Application, actor: Party, request_id: str | None
    ) -> None:
        """Back to the status each account had before the hit, when it is still the
        suspension the hit imposed (a suspension staff set since stays)."""
        restricted: dict[str, str] = dict(row.sanctions_restricted or {})
        lifted: list[str] = []
        for account in await self.deps.trading.list_for(session, row.user_id):
            before = restricted.get(account.id)
            if before is None or account.status != AccountStatus.SUSPENDED.value:
                continue
            await self.deps.trading.set_status(
                session,
                account_id=account.id,
                status=AccountStatus(before),
                trading_state=None,
                reason="sanctions hit cleared (KYC)",
                actor=actor,
                request_id=request_id,
            )
            lifted.append(account.id)
        row.sanctions_restricted = None
        opened = await self.activate_accounts(
            session, row.user_id, actor=actor, request_id=request_id
        )
        if lifted or opened or restricted:
            await self.deps.audit(
                session,
                OnboardingEvent.RESTRICTION_LIFTED,
                actor=actor,
                subject=Party("user", row.user_id),
                data={"application_id": row.id, "accounts": lifted, "opened": opened},
                request_id=request_id,
            )

    async def applicant(self, session: AsyncSession, user_id: str) -> ApplicantFacts | None:
        row = await repository.latest_of(session, user_id)
        if row is None:
            return None
        sections = self.sections_of(row)
        identity, address = sections.get("identity", {}), sections.get("address", {})
        required = ("given_names", "family_name", "birth_date", "nationality")
        if not all(name in identity for name in required) or "country" not in address:
            return None
        return ApplicantFacts(
            user_id=user_id,
            application_id=row.id,
            given_names=identity["given_names"],
            family_name=identity["family_name"],
            birth_date=date.fromisoformat(identity["birth_date"]),
            nationality=identity["nationality"],
            country=address["country"],
            status=row.status,
            tax_id_last4=row.tax_id_last4,
            postal_code=address.get("postal_code"),
        )

    async def filing_person(self, session: AsyncSession, user_id: str) -> FilingPerson | None:
        row = await repository.approved_of(session, user_id)
        if row is None:
            return None
        sections = self.sections_of(row)
        identity, address = sections.get("identity", {}), sections.get("address", {})
        birth = identity.get("birth_date")
        street = " ".join(p for p in (address.get("line1"), address.get("line2")) if p) or None
        return FilingPerson(
            family_name=identity.get("family_name"),
            given_name=identity.get("given_names"),
            birth_date=date.fromisoformat(birth) if birth else None,
            tin=self._tax_value(row),
            street=street,
            city=address.get("city"),
            state=address.get("region"),
            zip_code=address.get("postal_code"),
            country=address.get("country"),
            occupation=sections.get("employment", {}).get("occupation"),
        )

    async def profile(self, session: AsyncSession, user_id: str) -> CustomerRiskProfile | None:
        row = await repository.approved_of(session, user_id)
        if row is None:
            return None
        sections = self.sections_of(row)
        identity, address = sections.get("identity", {}), sections.get("address", {})
        employment, funding = sections.get("employment", {}), sections.get("funding", {})
        profile = sections.get("profile", {})
        income = profile.get("annual_income")
        worth = profile.get("net_worth")
        monthly = None
        if "expected_monthly_deposits" in profile:
            monthly = Decimal(profile["expected_monthly_deposits"]) + Decimal(
                profile.get("expected_monthly_withdrawals", "0")
            )
        return CustomerRiskProfile(
            user_id=user_id,
            rating=RiskRating(row.rating or RiskRating.LOW.value),
            country=address.get("country"),
            nationality=identity.get("nationality"),
            occupation=employment.get("occupation"),
            annual_income=INCOME_BOUNDS[IncomeBand(income)][0] if income else None,
            net_worth=WEALTH_BOUNDS[WealthBand(worth)][0] if worth else None,
            expected_monthly_funding=monthly,
            source_of_funds=",".join(funding.get("source_of_funds", [])) or None,
            factors=tuple(f["code"] for f in (row.rating_factors or [])),
        )

    async def customers(self, session: AsyncSession) -> list[ScreeningSubject]:
        """Every approved customer as a screening subject (re-screening on a new list)."""
        return [
            subject_of(row.user_id, self.sections_of(row))
            for row in await repository.approved(session)
        ]


def subject_of(user_id: str, sections: Mapping[str, Mapping[str, Any]]) -> ScreeningSubject:
    identity, address = sections.get("identity", {}), sections.get("address", {})
    name = " ".join(p for p in (identity.get("given_names"), identity.get("family_name")) if p)
    born = identity.get("birth_date")
    return ScreeningSubject(
        kind=SubjectKind.CUSTOMER,
        ref=user_id,
        name=name,
        user_id=user_id,
        birth_date=date.fromisoformat(born) if born else None,
        nationality=identity.get("nationality"),
        country=address.get("country"),
    )


def _merge(
    stored: Mapping[str, Mapping[str, Any]],
    given: Mapping[str, Mapping[str, Any] | None],
    cleaned: Cleaned,
) -> dict[str, dict[str, Any]]:
    merged = {name: dict(fields) for name, fields in stored.items()}
    for section, fields in given.items():
        if fields is None:
            continue
        target = merged.setdefault(section, {})
        for name, value in fields.items():
            if name == "tax_id":
                continue
            if value is None:
                target.pop(name, None)
            else:
                target[name] = cleaned.sections[section][name]
    return {name: fields for name, fields in merged.items() if fields}
