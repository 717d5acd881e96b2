"""Onboarding vocabulary (KYC-1): the application's statuses, its enumerations, the audit
event types and the bands of the investment profile (FINRA 2090/2111).

Pure: the standard library and core only.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum


class ApplicationStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    # Staff asked the customer for more; they edit and submit again.
    INFO_REQUESTED = "info_requested"
    APPROVED = "approved"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"


# The customer may still edit these.
EDITABLE = frozenset({ApplicationStatus.DRAFT, ApplicationStatus.INFO_REQUESTED})
# At most one application per customer is in one of these at a time.
OPEN = frozenset(
    {ApplicationStatus.DRAFT, ApplicationStatus.SUBMITTED, ApplicationStatus.INFO_REQUESTED}
)


class OnboardingEvent(StrEnum):
    APPLICATION_CREATED = "kyc:application:created"
    APPLICATION_SAVED = "kyc:application:saved"
    APPLICATION_SUBMITTED = "kyc:application:submitted"
    APPLICATION_WITHDRAWN = "kyc:application:withdrawn"
    APPLICATION_SCREENED = "kyc:application:screened"
    APPLICATION_INFO_REQUESTED = "kyc:application:info_requested"
    APPLICATION_REFUSED = "kyc:application:refused"
    # The first of two approvals a high-risk application needs (four eyes).
    APPLICATION_FIRST_APPROVAL = "kyc:application:first_approval"
    APPLICATION_APPROVED = "kyc:application:approved"
    # A customer verified before this system (a back-book migration, the demo's customers).
    APPLICATION_IMPORTED = "kyc:application:imported"
    APPLICATION_UNMASKED = "kyc:application:unmasked"
    # After approval: the customer changed their name or address (re-screened).
    APPLICATION_CHANGED = "kyc:application:changed"
    DUPLICATE_TAX_ID = "kyc:application:duplicate_tax_id"
    DUPLICATE_RESOLVED = "kyc:application:duplicate_resolved"
    EDD_RECORDED = "kyc:application:edd_recorded"
    ADDRESS_ACCEPTED = "kyc:application:address_accepted"
    RATING_ASSIGNED = "kyc:rating:assigned"
    RATING_OVERRIDDEN = "kyc:rating:overridden"
    # A lowering override proposed by one staff member, waiting for a second (four eyes).
    RATING_OVERRIDE_PROPOSED = "kyc:rating:override_proposed"
    # The customer's sanctions standing changed (a re-screen's hit, a reviewer's decision).
    SCREENING_CHANGED = "kyc:application:screening_changed"
    # An approved customer's accounts suspended for a sanctions hit, and the lift on a clear.
    ACCOUNTS_RESTRICTED = "kyc:accounts:restricted"
    RESTRICTION_LIFTED = "kyc:accounts:restriction_lifted"
    PERIODIC_REVIEW_DONE = "kyc:rating:reviewed"
    CONSENT_RECORDED = "kyc:consent:recorded"
    CONSENT_WITHDRAWN = "kyc:consent:withdrawn"


class TaxIdKind(StrEnum):
    SSN = "ssn"
    ITIN = "itin"
    FOREIGN = "foreign"
    NONE = "none"


class EmploymentStatus(StrEnum):
    EMPLOYED = "employed"
    SELF_EMPLOYED = "self_employed"
    UNEMPLOYED = "unemployed"
    RETIRED = "retired"
    STUDENT = "student"
    HOMEMAKER = "homemaker"


# Statuses for which employer and occupation are asked (FINRA 4512(a)(1)(D)).
WORKING = frozenset({EmploymentStatus.EMPLOYED, EmploymentStatus.SELF_EMPLOYED})


class Occupation(StrEnum):
    """Broad occupation groups; the risk rating weighs a few (cash-intensive, PEP-related)."""

    PROFESSIONAL = "professional"  # lawyer, doctor, engineer, accountant ...
    MANAGEMENT = "management"
    OFFICE = "office"
    SALES = "sales"
    TRADES = "trades"
    TECHNOLOGY = "technology"
    EDUCATION = "education"
    HEALTHCARE = "healthcare"
    FINANCE = "finance"
    GOVERNMENT = "government"  # public official, civil servant, military officer
    CASH_BUSINESS = "cash_business"  # owner/manager of a cash-intensive business
    GAMBLING = "gambling"  # casinos, betting
    PRECIOUS_METALS = "precious_metals"  # dealers in precious metals, stones or jewels
    REAL_ESTATE = "real_estate"
    ARMS = "arms"  # arms, defence dealing
    OTHER = "other"


CASH_INTENSIVE = frozenset(
    {Occupation.CASH_BUSINESS, Occupation.GAMBLING, Occupation.PRECIOUS_METALS, Occupation.ARMS}
)
PEP_RELATED = frozenset({Occupation.GOVERNMENT})


class FundsSource(StrEnum):
    EMPLOYMENT = "employment"
    SAVINGS = "savings"
    INVESTMENTS = "investments"
    PENSION = "pension"
    BUSINESS_INCOME = "business_income"
    INHERITANCE = "inheritance"
    GIFT = "gift"
    SALE_OF_PROPERTY = "sale_of_property"
    LEGAL_SETTLEMENT = "legal_settlement"
    GAMBLING = "gambling"
    OTHER = "other"


# Sources that need more explanation (and weigh in the risk rating).
HIGHER_RISK_SOURCES = frozenset(
    {FundsSource.GIFT, FundsSource.GAMBLING, FundsSource.LEGAL_SETTLEMENT, FundsSource.OTHER}
)


class Experience(StrEnum):
    NONE = "none"
    LIMITED = "limited"
    GOOD = "good"
    EXTENSIVE = "extensive"


class Objective(StrEnum):
    CAPITAL_PRESERVATION = "capital_preservation"
    INCOME = "income"
    GROWTH = "growth"
    SPECULATION = "speculation"


class RiskTolerance(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class TimeHorizon(StrEnum):
    SHORT = "short"  # under 3 years
    MEDIUM = "medium"  # 3 to 10 years
    LONG = "long"  # over 10 years


def _d(value: int) -> Decimal:
    return Decimal(value)


class IncomeBand(StrEnum):
    UNDER_25K = "under_25k"
    FROM_25K = "25k_50k"
    FROM_50K = "50k_100k"
    FROM_100K = "100k_200k"
    FROM_200K = "200k_500k"
    FROM_500K = "500k_1m"
    OVER_1M = "over_1m"


class WealthBand(StrEnum):
    UNDER_50K = "under_50k"
    FROM_50K = "50k_100k"
    FROM_100K = "100k_250k"
    FROM_250K = "250k_500k"
    FROM_500K = "500k_1m"
    FROM_1M = "1m_5m"
    OVER_5M = "over_5m"


# Each band's (lower bound, upper bound) in USD; None: no upper bound.
INCOME_BOUNDS: dict[IncomeBand, tuple[Decimal, Decimal | None]] = {
    IncomeBand.UNDER_25K: (_d(0), _d(25_000)),
    IncomeBand.FROM_25K: (_d(25_000), _d(50_000)),
    IncomeBand.FROM_50K: (_d(50_000), _d(100_000)),
    IncomeBand.FROM_100K: (_d(100_000), _d(200_000)),
    IncomeBand.FROM_200K: (_d(200_000), _d(500_000)),
    IncomeBand.FROM_500K: (_d(500_000), _d(1_000_000)),
    IncomeBand.OVER_1M: (_d(1_000_000), None),
}
WEALTH_BOUNDS: dict[WealthBand, tuple[Decimal, Decimal | None]] = {
    WealthBand.UNDER_50K: (_d(0), _d(50_000)),
    WealthBand.FROM_50K: (_d(50_000), _d(100_000)),
    WealthBand.FROM_100K: (_d(100_000), _d(250_000)),
    WealthBand.FROM_250K: (_d(250_000), _d(500_000)),
    WealthBand.FROM_500K: (_d(500_000), _d(1_000_000)),
    WealthBand.FROM_1M: (_d(1_000_000), _d(5_000_000)),
    WealthBand.OVER_5M: (_d(5_000_000), None),
}
WEALTH_ORDER = list(WealthBand)


class MaskedField(StrEnum):
    """What a reviewer may reveal, one at a time, with a reason (the tax id never)."""

    GIVEN_NAMES = "given_names"
    FAMILY_NAME = "family_name"
    BIRTH_DATE = "birth_date"
    ADDRESS = "address"
