"""The support view of a customer: masked by default, one field revealed per stated reason
(RBAC-1: support views user data and assists users; IAC-1: minimum necessary access).

Only customers (TRADER accounts) are shown: a staff account is not a customer, and an id
that is not a customer's gets the same 404 as an id that does not exist. Every view and
every reveal is a ledger event and an entry in the customer's own access log, written in
the same transaction as the read.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.access.domain import Permission, Role
from tradeguard.backoffice.access_log import AccessLog
from tradeguard.backoffice.common import Actor, BackofficeDeps
from tradeguard.backoffice.domain import (
    AccessAction,
    BackofficeEvent,
    FieldKind,
    FieldRef,
    SelfActionRefused,
    parse_field,
    stated_reason,
)
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.core.errors import InvalidInput, NotFound
from tradeguard.core.masking import mask_account_number, mask_email, mask_ip, mask_phone
from tradeguard.identity.administration import AccountRecord, UserAdministration
from tradeguard.identity.service import normalize_email
from tradeguard.ledger.domain import Party
from tradeguard.trading.accounts import AccountService

SEARCH_RESULTS_MAX = 20
# Searches per staff member per window: enough for a support desk, too few to sweep the
# customer base for which addresses have accounts.
SEARCHES_PER_WINDOW = 60
SEARCH_WINDOW_SECONDS = 600
USERNAME_PREFIX = re.compile(r"^[a-z0-9][a-z0-9._-]{2,31}$")
NO_SUCH_CUSTOMER = "no customer with that id"


@dataclass(frozen=True, slots=True)
class MaskedValue:
    """A masked value and the name to reveal it by (`POST .../unmask {"field": ...}`)."""

    field: str
    masked: str | None


@dataclass(frozen=True, slots=True)
class PhoneView:
    factor_id: str
    label: str
    number: MaskedValue


@dataclass(frozen=True, slots=True)
class FactorSummary:
    id: str
    kind: str
    label: str
    status: str
    created_ns: int
    last_used_ns: int | None


@dataclass(frozen=True, slots=True)
class AccountSummary:
    id: str
    number: MaskedValue
    type: str
    status: str
    trading_state: str
    created_ns: int


@dataclass(frozen=True, slots=True)
class DeviceSummary:
    id: str
    name: str
    authorized: bool
    created_ns: int
    last_seen_ns: int
    last_ip: MaskedValue


@dataclass(frozen=True, slots=True)
class SignInSummary:
    session_id: str
    at_ns: int
    last_seen_ns: int
    methods: tuple[str, ...]
    ip: MaskedValue
    user_agent: str | None
    active: bool
    ended_reason: str | None


@dataclass(frozen=True, slots=True)
class CustomerProfile:
    id: str
    username: str
    email: MaskedValue
    email_verified: bool
    status: str
    created_ns: int
    # The firm stores no legal name or postal address yet (KYC is a later issue): when it
    # does, they join this view masked by `masking.mask_name` / `mask_postal_address`.
    phones: tuple[PhoneView, ...]
    factors: tuple[FactorSummary, ...]
    accounts: tuple[AccountSummary, ...]
    devices: tuple[DeviceSummary, ...]
    recent_sign_ins: tuple[SignInSummary, ...]


@dataclass(frozen=True, slots=True)
class CustomerHit:
    id: str
    username: str
    email: MaskedValue
    status: str
    created_ns: int


def _field(kind: FieldKind, owner: str | None = None) -> str:
    return FieldRef(kind, owner).name


class CustomerDesk:
    def __init__(
        self,
        deps: BackofficeDeps,
        *,
        administration: UserAdministration,
        accounts: AccountService,
        access_log: AccessLog,
    ) -> None:
        self.deps = deps
        self.administration = administration
        self.accounts = accounts
        self.access_log = access_log

    async def _customer(
        self, session: AsyncSession, customer_id: str, actor: Actor
    ) -> AccountRecord:
        if customer_id == actor.user_id:
            raise SelfActionRefused("look up your own account under /api/v1/me, not as staff")
        record = await self.administration.account_record(session, customer_id)
        if record is None or record.user.role is not Role.TRADER:
            raise NotFound(NO_SUCH_CUSTOMER)
        return record

    async def profile(
        self, session: AsyncSession, *, customer_id: str, actor: Actor
    ) -> CustomerProfile:
        """The customer's profile with personal data masked; the view itself is logged."""
        actor.require(Permission.CUSTOMER_READ)
        record = await self._customer(session, customer_id, actor)
        accounts = await self.accounts.list_for(session, customer_id)
        await self.deps.audit(
            session,
            BackofficeEvent.CUSTOMER_VIEWED,
            actor=actor,
            subject=Party("user", customer_id),
            data={},
        )
        await self.access_log.record(
            session, customer_id=customer_id, actor=actor, action=AccessAction.PROFILE_VIEWED
        )
        user = record.user
        return CustomerProfile(
            id=user.id,
            username=user.username,
            email=MaskedValue(_field(FieldKind.EMAIL), mask_email(user.email)),
            email_verified=user.email_verified,
            status=user.status,
            created_ns=user.created_ns,
            phones=tuple(
                PhoneView(
                    factor_id=f.id,
                    label=f.label,
                    number=MaskedValue(_field(FieldKind.PHONE, f.id), mask_phone(f.phone)),
                )
                for f in record.factors
                if f.phone is not None
            ),
            factors=tuple(
                FactorSummary(f.id, f.kind, f.label, f.status, f.created_ns, f.last_used_ns)
                for f in record.factors
            ),
            accounts=tuple(
                AccountSummary(
                    id=a.id,
                    number=MaskedValue(
                        _field(FieldKind.ACCOUNT_NUMBER, a.id), mask_account_number(a.number)
                    ),
                    type=a.account_type,
                    status=a.status,
                    trading_state=a.trading_state,
                    created_ns=a.created_ns,
                )
                for a in accounts
            ),
            devices=tuple(
                DeviceSummary(
                    id=d.id,
                    name=d.name,
                    authorized=d.authorized,
                    created_ns=d.created_ns,
                    last_seen_ns=d.last_seen_ns,
                    last_ip=MaskedValue(_field(FieldKind.DEVICE_IP, d.id), mask_ip(d.last_ip)),
                )
                for d in record.devices
            ),
            recent_sign_ins=tuple(
                SignInSummary(
                    session_id=s.session_id,
                    at_ns=s.created_ns,
                    last_seen_ns=s.last_seen_ns,
                    methods=s.methods,
                    ip=MaskedValue(_field(FieldKind.SIGN_IN_IP, s.session_id), mask_ip(s.ip)),
                    user_agent=s.user_agent,
                    active=s.active,
                    ended_reason=s.ended_reason,
                )
                for s in record.sign_ins
            ),
        )

    async def unmask(
        self,
        session: AsyncSession,
        *,
        customer_id: str,
        field: str,
        reason: str,
        actor: Actor,
    ) -> tuple[str, str | None]:
        """Reveal one field for a stated reason: (field name, clear value).

        The ledger event and the customer's log entry name the field and the reason, never
        the value.
        """
        actor.require(Permission.CUSTOMER_UNMASK)
        ref = parse_field(field)
        why = stated_reason(reason)
        record = await self._customer(session, customer_id, actor)
        value = await self._value_of(session, record, ref)
        await self.deps.audit(
            session,
            BackofficeEvent.CUSTOMER_UNMASKED,
            actor=actor,
            subject=Party("user", customer_id),
            data={"field": ref.name, "reason": why},
        )
        await self.access_log.record(
            session,
            customer_id=customer_id,
            actor=actor,
            action=AccessAction.FIELD_UNMASKED,
            field=ref,
            reason=why,
        )
        return ref.name, value

    async def _value_of(
        self, session: AsyncSession, record: AccountRecord, ref: FieldRef
    ) -> str | None:
        """The clear value of a field of this customer's profile; InvalidInput if the
        profile has no such field (another customer's factor id is no such field)."""
        values: dict[str, str | None] = {_field(FieldKind.EMAIL): record.user.email}
        values |= {_field(FieldKind.PHONE, f.id): f.phone for f in record.factors if f.phone}
        values |= {_field(FieldKind.DEVICE_IP, d.id): d.last_ip for d in record.devices}
        values |= {_field(FieldKind.SIGN_IN_IP, s.session_id): s.ip for s in record.sign_ins}
        if ref.kind is FieldKind.ACCOUNT_NUMBER:
            accounts = await self.accounts.list_for(session, record.user.id)
            values |= {_field(FieldKind.ACCOUNT_NUMBER, a.id): a.number for a in accounts}
        if ref.name not in values:
            raise InvalidInput("this customer's profile has no such field")
        return values[ref.name]

    async def search_refused(self, session: AsyncSession, *, actor: Actor) -> int:
        """Count one search against the searcher's quota; whole seconds to wait, or 0.

        The edge commits this count in a unit of work of its own, so refused searches count.
        """
        if actor.user_id is None:
            return 0
        wait_ns = await self.administration.quota_wait(
            session,
            key=f"backoffice-search:{actor.user_id}",
            limit=SEARCHES_PER_WINDOW,
            window_seconds=SEARCH_WINDOW_SECONDS,
        )
        if not wait_ns:
            return 0
        retry = -(-wait_ns // NS_PER_SECOND)
        await self.deps.audit(
            session,
            BackofficeEvent.CUSTOMER_SEARCH_THROTTLED,
            actor=actor,
            subject=None,
            data={"retry_after_seconds": retry},
        )
        return retry

    async def search(self, session: AsyncSession, *, query: str, actor: Actor) -> list[CustomerHit]:
        """Customers by exact email or username prefix; audited with a keyed digest of the
        query (not the query: it may be an address)."""
        actor.require(Permission.CUSTOMER_READ)
        kind, normalized = search_terms(query)
        users = await self.administration.search(
            session, query=normalized, roles=[Role.TRADER], limit=SEARCH_RESULTS_MAX
        )
        await self.deps.audit(
            session,
            BackofficeEvent.CUSTOMERS_SEARCHED,
            actor=actor,
            subject=None,
            data={
                "kind": kind,
                "query_digest": self.deps.query_digest(normalized),
                "results": len(users),
            },
        )
        return [
            CustomerHit(
                id=u.id,
                username=u.username,
                email=MaskedValue(_field(FieldKind.EMAIL), mask_email(u.email)),
                status=u.status,
                created_ns=u.created_ns,
            )
            for u in users
            if u.id != actor.user_id
        ]


def search_terms(query: str) -> tuple[str, str]:
    """("email", address) for an exact address, ("username_prefix", prefix) otherwise."""
    if "@" in query:
        return "email", normalize_email(query)
    prefix = unicodedata.normalize("NFKC", query).strip().casefold()
    if not USERNAME_PREFIX.fullmatch(prefix):
        raise InvalidInput(
            "search by a whole email address, or by the first 3 or more characters of a "
            "username (letters, digits, '.', '_' or '-')"
        )
    return "username_prefix", prefix
