"""Card data rules of the vault: PAN validation (ISO/IEC 7812 Luhn, length, brand by IIN),
expiry and CVV checks, random tokens, masking (PCI DSS v4 3.3.1, 3.4.1, 3.5.1).

Pure: no database, no framework. Every error here says what is wrong with a card number and
never repeats it, not even its last digits: error bodies and log lines may be read by people
who must never see a PAN (PCI DSS 3.4.1, 3.5.1). `CardNumber`, `CardSecret` and
`RevealedCard` hide their values from `repr` and `str`, so a PAN that reaches a log line or a
traceback by accident prints as `***`.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from tradeguard.core.errors import Forbidden, InvalidInput, NotFound
from tradeguard.core.masking import HIDDEN

# The longest input looked at: a 19-digit PAN written in groups with separators is under
# 40 characters. Anything longer is refused before it is scanned (no work on huge input).
MAX_PAN_INPUT: Final = 40
MIN_PAN_DIGITS: Final = 12
MAX_PAN_DIGITS: Final = 19
SEPARATORS: Final = frozenset(" -")
ASCII_DIGITS: Final = frozenset("0123456789")
# How far ahead an expiry date may lie: cards are issued for at most a few years; twenty
# covers every real card and refuses a typo such as 2205.
MAX_EXPIRY_YEARS_AHEAD: Final = 20


class CardBrand(StrEnum):
    VISA = "visa"
    MASTERCARD = "mastercard"
    AMEX = "amex"
    DISCOVER = "discover"
    JCB = "jcb"
    DINERS = "diners"
    UNIONPAY = "unionpay"


@dataclass(frozen=True, slots=True)
class IinRange:
    """Card numbers whose first `len(str(low))` digits lie in [low, high] belong to `brand`."""

    brand: CardBrand
    low: int
    high: int
    lengths: frozenset[int]

    @property
    def prefix_digits(self) -> int:
        return len(str(self.low))

    def matches(self, digits: str) -> bool:
        head = int(digits[: self.prefix_digits])
        return self.low <= head <= self.high


def _lengths(*values: int) -> frozenset[int]:
    return frozenset(values)


_SIXTEEN_TO_NINETEEN = _lengths(16, 17, 18, 19)

# Issuer identification number ranges, longest prefixes first so that a narrower range wins
# over a broader one (Discover's 6011 before UnionPay's 62, Mastercard's 2-series as a
# 4-digit range). Sources: the card networks' published BIN tables, as summarized by ISO/IEC
# 7812 registries and the payment processors' documentation (Stripe, Adyen). UnionPay's
# 622126-622925 is co-branded with Discover; it is reported as UnionPay, the issuer's brand.
IIN_RANGES: Final[tuple[IinRange, ...]] = (
    IinRange(CardBrand.UNIONPAY, 622126, 622925, _SIXTEEN_TO_NINETEEN),
    IinRange(CardBrand.DISCOVER, 6011, 6011, _SIXTEEN_TO_NINETEEN),
    IinRange(CardBrand.MASTERCARD, 2221, 2720, _lengths(16)),
    IinRange(CardBrand.JCB, 3528, 3589, _SIXTEEN_TO_NINETEEN),
    IinRange(CardBrand.DINERS, 3095, 3095, _lengths(14, 15, 16, 17, 18, 19)),
    IinRange(CardBrand.DINERS, 300, 305, _lengths(14, 15, 16, 17, 18, 19)),
    IinRange(CardBrand.DISCOVER, 644, 649, _SIXTEEN_TO_NINETEEN),
    IinRange(CardBrand.AMEX, 34, 34, _lengths(15)),
    IinRange(CardBrand.AMEX, 37, 37, _lengths(15)),
    IinRange(CardBrand.DINERS, 36, 36, _lengths(14, 15, 16, 17, 18, 19)),
    IinRange(CardBrand.DINERS, 38, 39, _lengths(16, 17, 18, 19)),
    IinRange(CardBrand.MASTERCARD, 51, 55, _lengths(16)),
    IinRange(CardBrand.DISCOVER, 65, 65, _SIXTEEN_TO_NINETEEN),
    IinRange(CardBrand.UNIONPAY, 62, 62, _SIXTEEN_TO_NINETEEN),
    IinRange(CardBrand.UNIONPAY, 81, 81, _SIXTEEN_TO_NINETEEN),
    IinRange(CardBrand.VISA, 4, 4, _lengths(13, 16, 19)),
)


class PanProblem(StrEnum):
    """Why a card number was refused: stable codes, the `reason` of the problem body."""

    EMPTY = "empty"
    TOO_LONG_INPUT = "too_long_input"
    NOT_DIGITS = "not_digits"
    LENGTH = "length"
    CHECKSUM = "checksum"
    UNKNOWN_BRAND = "unknown_brand"
    BRAND_LENGTH = "brand_length"


_PAN_MESSAGES: Final[dict[PanProblem, str]] = {
    PanProblem.EMPTY: "the card number is empty",
    PanProblem.TOO_LONG_INPUT: f"the card number is longer than {MAX_PAN_INPUT} characters",
    PanProblem.NOT_DIGITS: "the card number may contain only digits 0-9, spaces and dashes",
    PanProblem.LENGTH: (f"a card number has between {MIN_PAN_DIGITS} and {MAX_PAN_DIGITS} digits"),
    PanProblem.CHECKSUM: "the card number is mistyped (its check digit does not match)",
    PanProblem.UNKNOWN_BRAND: (
        "the card number belongs to no supported card brand "
        "(Visa, Mastercard, American Express, Discover, JCB, Diners Club, UnionPay)"
    ),
    PanProblem.BRAND_LENGTH: "the card number has the wrong number of digits for its brand",
}


class InvalidCardNumber(InvalidInput):
    """A PAN that fails validation. The detail names the rule, never the number."""

    slug = "card-number-invalid"
    title = "The card number is not valid"

    def __init__(self, problem: PanProblem) -> None:
        super().__init__(_PAN_MESSAGES[problem], reason=problem.value)
        self.problem = problem


class InvalidExpiry(InvalidInput):
    slug = "card-expiry-invalid"
    title = "The card expiry date is not valid"


class InvalidCardSecret(InvalidInput):
    slug = "card-security-code-invalid"
    title = "The card security code is not valid"


class TokenNotFound(NotFound):
    slug = "card-token-not-found"
    title = "No card is stored under this token"


class VaultAccessDenied(Forbidden):
    slug = "vault-access-denied"
    title = "This caller may not use this vault operation"


def luhn_valid(digits: str) -> bool:
    """ISO/IEC 7812-1 Annex B (Luhn mod 10): the check digit makes the weighted sum 0 mod 10."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def normalize_pan(raw: str) -> str:
    """The digits of a typed card number; InvalidCardNumber for anything that is not one.

    Spaces and dashes between digit groups are allowed (as printed on cards and pasted from
    documents); anything else (letters, other Unicode digits such as Arabic-Indic ones that
    `str.isdigit` would accept, control characters) is refused.
    """
    if len(raw) > MAX_PAN_INPUT:
        raise InvalidCardNumber(PanProblem.TOO_LONG_INPUT)
    stripped = raw.strip()
    if not stripped:
        raise InvalidCardNumber(PanProblem.EMPTY)
    digits: list[str] = []
    for char in stripped:
        if char in ASCII_DIGITS:
            digits.append(char)
        elif char not in SEPARATORS:
            raise InvalidCardNumber(PanProblem.NOT_DIGITS)
    if not MIN_PAN_DIGITS <= len(digits) <= MAX_PAN_DIGITS:
        raise InvalidCardNumber(PanProblem.LENGTH)
    return "".join(digits)


def brand_of(digits: str) -> CardBrand | None:
    """The brand whose IIN range the number falls in (None: no supported brand)."""
    for iin in IIN_RANGES:
        if iin.matches(digits):
            return iin.brand
    return None


def _range_of(digits: str) -> IinRange | None:
    for iin in IIN_RANGES:
        if iin.matches(digits):
            return iin
    return None


@dataclass(frozen=True, slots=True)
class CardNumber:
    """A validated PAN. Its repr and str never show it."""

    digits: str = field(repr=False)
    brand: CardBrand

    @property
    def last4(self) -> str:
        return self.digits[-4:]

    @property
    def first6(self) -> str:
        return self.digits[:6]

    def __str__(self) -> str:
        return HIDDEN

    def __repr__(self) -> str:
        return f"CardNumber({HIDDEN}, {self.brand.value})"


def parse_pan(raw: str) -> CardNumber:
    """Validate a typed card number: characters, length, Luhn check digit, brand, length
    for the brand. The check digit is tested before the brand, so a mistyped number says
    "mistyped" rather than "unsupported brand"."""
    digits = normalize_pan(raw)
    if not luhn_valid(digits):
        raise InvalidCardNumber(PanProblem.CHECKSUM)
    iin = _range_of(digits)
    if iin is None:
        raise InvalidCardNumber(PanProblem.UNKNOWN_BRAND)
    if len(digits) not in iin.lengths:
        raise InvalidCardNumber(PanProblem.BRAND_LENGTH)
    return CardNumber(digits, iin.brand)


@dataclass(frozen=True, slots=True, order=True)
class Expiry:
    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12:
            raise InvalidExpiry("the expiry month must be between 1 and 12")
        if not 2000 <= self.year <= 2199:
            raise InvalidExpiry("the expiry year must be a four-digit year such as 2029")

    def expired_at(self, now_ns: int) -> bool:
        """A card is valid through the last day of its expiry month (UTC)."""
        now = datetime.fromtimestamp(now_ns / 1e9, tz=UTC)
        return (self.year, self.month) < (now.year, now.month)

    def label(self) -> str:
        return f"{self.month:02d}/{self.year % 100:02d}"


def parse_expiry(month: int, year: int, *, now_ns: int) -> Expiry:
    """An expiry date that has not passed and is not absurdly far ahead; a two-digit year
    means 20YY."""
    if 0 <= year <= 99:
        year += 2000
    expiry = Expiry(year, month)
    if expiry.expired_at(now_ns):
        raise InvalidExpiry("the card has expired")
    now = datetime.fromtimestamp(now_ns / 1e9, tz=UTC)
    if year > now.year + MAX_EXPIRY_YEARS_AHEAD:
        raise InvalidExpiry(f"the expiry year lies more than {MAX_EXPIRY_YEARS_AHEAD} years ahead")
    return expiry


@dataclass(frozen=True, slots=True)
class CardSecret:
    """A card verification code (CVV2, CVC2, CID). Held in memory for one authorization and
    never stored (PCI DSS 3.3.1): no table has a column for it, and its repr is `***`."""

    value: str = field(repr=False)

    def __str__(self) -> str:
        return HIDDEN

    def __repr__(self) -> str:
        return f"CardSecret({HIDDEN})"


def parse_card_secret(raw: str, brand: CardBrand) -> CardSecret:
    """Three ASCII digits, four for American Express (its CID)."""
    expected = 4 if brand is CardBrand.AMEX else 3
    if len(raw) != expected or not all(char in ASCII_DIGITS for char in raw):
        raise InvalidCardSecret(f"the security code of this card is {expected} digits")
    return CardSecret(raw)


# -- tokens -----------------------------------------------------------------------------


class TokenFormat(StrEnum):
    """How a token looks. Every format is drawn from the operating system's CSPRNG
    (`secrets`), never computed from the PAN: a token reveals nothing the vault did not
    choose to keep (the last four digits, or the first six and last four)."""

    # `tok_` and 26 base32 characters: 128 random bits, unmistakable for a card number.
    OPAQUE = "opaque"
    # Format-preserving and Luhn-valid (VGS's FPE_T_FOUR): the PAN's length, its last four
    # digits, random digits before them, one of which is chosen to make the check digit
    # hold, so systems that validate card numbers accept the token.
    LUHN_T_FOUR = "luhn_t_four"
    # As above keeping the first six digits too (VGS's FPE_SIX_T_FOUR), for systems that
    # route by IIN. Fewer random digits: the vault refuses a collision and draws again.
    LUHN_SIX_T_FOUR = "luhn_six_t_four"


OPAQUE_PREFIX: Final = "tok_"
MAX_TOKEN_CHARS: Final = 64
MAX_TOKEN_DRAWS: Final = 16


def _random_digits(count: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(count))


def _fix_check(digits: list[str], position: int) -> None:
    """Set `digits[position]` to the one value that makes the whole number Luhn-valid.

    A digit's contribution to the Luhn sum (doubled or not) is a permutation of 0-9, so
    exactly one value works."""
    for candidate in "0123456789":
        digits[position] = candidate
        if luhn_valid("".join(digits)):
            return
    raise AssertionError("unreachable: every Luhn position has one fitting digit")


def new_token(card: CardNumber, token_format: TokenFormat) -> str:
    """A fresh random token for `card` (the caller retries on a collision)."""
    if token_format is TokenFormat.OPAQUE:
        raw = base64.b32encode(secrets.token_bytes(16)).decode("ascii").rstrip("=").lower()
        return OPAQUE_PREFIX + raw
    kept_head = 6 if token_format is TokenFormat.LUHN_SIX_T_FOUR else 0
    length = len(card.digits)
    while True:
        digits = list(card.digits[:kept_head] + _random_digits(length - kept_head - 4))
        digits += list(card.last4)
        # The fitted digit is the last random one, just before the kept last four.
        _fix_check(digits, length - 5)
        token = "".join(digits)
        # Never hand back the card number itself as its own token.
        if not secrets.compare_digest(token, card.digits):
            return token


def token_shape_valid(token: str) -> bool:
    """Whether a string can be a token at all (checked before any lookup)."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return False
    if token.startswith(OPAQUE_PREFIX):
        rest = token[len(OPAQUE_PREFIX) :]
        return len(rest) == 26 and all(c in "abcdefghijklmnopqrstuvwxyz234567" for c in rest)
    return MIN_PAN_DIGITS <= len(token) <= MAX_PAN_DIGITS and all(c in ASCII_DIGITS for c in token)


def loggable_token(token: str | None, *, confirmed: bool) -> str | None:
    """The token as it may be written to an audit record, or None.

    A format-preserving token looks exactly like a card number, so a caller who sends a PAN
    where a token belongs must not have it recorded: a digit-shaped value is written only
    once the vault has found it as a token; an opaque one (`tok_...`) always."""
    if token is None or not token_shape_valid(token):
        return None
    if token.startswith(OPAQUE_PREFIX) or confirmed:
        return token
    return None


def mask_card(last4: str) -> str:
    """`***1111`: the last four digits only (PCI DSS 3.4.1 allows at most the first six and
    the last four); the hidden part never reveals the length."""
    return HIDDEN + last4


# -- the vault's own roles ---------------------------------------------------------------


class VaultOperation(StrEnum):
    TOKENIZE = "tokenize"
    DETOKENIZE = "detokenize"
    DESCRIBE = "describe"
    FORGET = "forget"
    AUTHORIZE = "authorize"


class VaultRole(StrEnum):
    """Who calls the vault. A person never does: the customer-facing platform (`app`) may
    store cards and forget them but never read a PAN back; only the payment service
    (`payment`, the component that talks to the card processor, issue #11) may
    detokenize. Over mutual TLS the role is the client certificate's; in process it is
    the one the calling code was built with."""

    APP = "app"
    PAYMENT = "payment"


ROLE_OPERATIONS: Final[dict[VaultRole, frozenset[VaultOperation]]] = {
    VaultRole.APP: frozenset(
        {VaultOperation.TOKENIZE, VaultOperation.DESCRIBE, VaultOperation.FORGET}
    ),
    VaultRole.PAYMENT: frozenset(VaultOperation),
}

DETOKENIZE_PERMISSION: Final = "vault:detokenize"


def may(role: VaultRole, operation: VaultOperation) -> bool:
    return operation in ROLE_OPERATIONS[role]


@dataclass(frozen=True, slots=True)
class TokenizedCard:
    """What tokenizing returns: never the PAN."""

    token: str
    brand: CardBrand
    last4: str
    expiry: Expiry
    # HMAC-SHA256 of the PAN under the vault's fingerprint key (hex): equal for the same
    # card, whatever its token, so duplicates are found without detokenizing.
    fingerprint: str


@dataclass(frozen=True, slots=True)
class RevealedCard:
    """A detokenized card, for the payment service only; repr shows no number."""

    token: str
    pan: str = field(repr=False)
    brand: CardBrand
    expiry: Expiry

    def __str__(self) -> str:
        return f"RevealedCard({self.token}, {HIDDEN})"


@dataclass(frozen=True, slots=True)
class AuthorizationCard:
    """What a card authorization sends to the processor: the PAN, expiry and the security
    code, held in memory for that one call (PCI DSS 3.3.1: the code is never stored)."""

    card: RevealedCard = field(repr=False)
    secret: CardSecret = field(repr=False)

    def __repr__(self) -> str:
        return f"AuthorizationCard({self.card.token}, {HIDDEN})"
