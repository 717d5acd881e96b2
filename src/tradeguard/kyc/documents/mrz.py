"""ICAO Doc 9303 machine readable zones: TD3 (Part 4, passports, 2 x 44), TD1 (Part 5, ID
cards, 3 x 30) and TD2 (Part 6, 2 x 36); check digits (Part 3, 4.9), dates, codes, names.

Pure: the MRZ text as the client's scanner read it goes in, a parsed record and named
problems come out. `today` is the caller's (the injectable clock's) date, never the system's.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from anyascii import anyascii

from tradeguard.kyc.contracts import ApplicantFacts
from tradeguard.kyc.documents.countries import CodeKind, IcaoCode, icao_code

FILLER = "<"
_WEIGHTS = (7, 3, 1)
_MRZ_CHARACTERS = re.compile(r"^[A-Z0-9<]+$")


class MrzFormat(StrEnum):
    TD1 = "TD1"
    TD2 = "TD2"
    TD3 = "TD3"


class MrzProblem(StrEnum):
    """Why an MRZ fails its own checks: stable codes."""

    DOCUMENT_NUMBER_CHECK_FAILED = "MRZ_DOCUMENT_NUMBER_CHECK_FAILED"
    BIRTH_DATE_CHECK_FAILED = "MRZ_BIRTH_DATE_CHECK_FAILED"
    EXPIRY_DATE_CHECK_FAILED = "MRZ_EXPIRY_DATE_CHECK_FAILED"
    OPTIONAL_DATA_CHECK_FAILED = "MRZ_OPTIONAL_DATA_CHECK_FAILED"
    COMPOSITE_CHECK_FAILED = "MRZ_COMPOSITE_CHECK_FAILED"
    BIRTH_DATE_INVALID = "MRZ_BIRTH_DATE_INVALID"
    BIRTH_DATE_IN_FUTURE = "MRZ_BIRTH_DATE_IN_FUTURE"
    EXPIRY_DATE_INVALID = "MRZ_EXPIRY_DATE_INVALID"
    DOCUMENT_EXPIRED = "MRZ_DOCUMENT_EXPIRED"
    SEX_INVALID = "MRZ_SEX_INVALID"
    ISSUING_STATE_UNKNOWN = "MRZ_ISSUING_STATE_UNKNOWN"
    NATIONALITY_UNKNOWN = "MRZ_NATIONALITY_UNKNOWN"
    NAME_MISSING = "MRZ_NAME_MISSING"


class Inconsistency(StrEnum):
    """Where the MRZ disagrees with the application: stable codes."""

    FAMILY_NAME_MISMATCH = "FAMILY_NAME_MISMATCH"
    GIVEN_NAMES_MISMATCH = "GIVEN_NAMES_MISMATCH"
    BIRTH_DATE_MISMATCH = "BIRTH_DATE_MISMATCH"
    NATIONALITY_MISMATCH = "NATIONALITY_MISMATCH"


class MrzUnreadable(ValueError):
    """The text is not an MRZ of a known format (line count, lengths, characters)."""


@dataclass(frozen=True, slots=True)
class MrzRecord:
    format: MrzFormat
    document_code: str  # "P", "I", "ID", "AC", ... (fillers removed)
    issuing_state: str  # as printed, fillers removed
    document_number: str
    nationality: str
    birth_date: date | None  # None when the field is not a calendar date
    sex: str  # "M", "F", "X" or "<" (unspecified)
    expiry_date: date | None
    optional_data: str  # fillers removed
    optional_data_2: str  # TD1 line 2's optional data; empty elsewhere
    family_name: str  # words separated by spaces
    given_names: str
    # The name field was filled to its last position: the name may have been truncated.
    name_truncated: bool
    problems: tuple[MrzProblem, ...]  # check digits and field syntax (dates need `today`)

    @property
    def issuing_country(self) -> str | None:
        found = icao_code(self.issuing_state)
        return found.alpha2 if found else None

    @property
    def nationality_country(self) -> str | None:
        found = icao_code(self.nationality)
        return found.alpha2 if found else None


def character_value(ch: str) -> int:
    """Part 3, 4.9: digits are themselves, A-Z are 10-35, the filler is 0."""
    if ch.isdigit():
        return int(ch)
    if "A" <= ch <= "Z":
        return ord(ch) - ord("A") + 10
    if ch == FILLER:
        return 0
    raise MrzUnreadable("not an MRZ character")


def check_digit(field: str) -> str:
    """Part 3, 4.9: the weighted sum (weights 7, 3, 1 repeating) modulo 10."""
    total = sum(character_value(ch) * _WEIGHTS[i % 3] for i, ch in enumerate(field))
    return str(total % 10)


def _digit_ok(field: str, digit: str) -> bool:
    # A filler check digit is allowed only over an all-filler (absent) field (Part 3, 4.9).
    if digit == FILLER:
        return set(field) <= {FILLER}
    return check_digit(field) == digit


def _lines(text: str) -> list[str]:
    lines = [line.strip().replace(" ", "") for line in text.strip().splitlines()]
    lines = [line for line in lines if line]
    if not lines or any(not _MRZ_CHARACTERS.match(line) for line in lines):
        raise MrzUnreadable("an MRZ has only A-Z, 0-9 and < on each line")
    return lines


def _yymmdd(text: str) -> tuple[int, int, int] | None:
    if not text.isdigit() or len(text) != 6:
        return None
    return int(text[:2]), int(text[2:4]), int(text[4:6])


def _date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def birth_date_of(text: str, today: date) -> date | None:
    """YYMMDD as a birth date: the latest century that does not put it after today."""
    parts = _yymmdd(text)
    if parts is None:
        return None
    yy, mm, dd = parts
    century = today.year // 100 * 100
    found = _date(century + yy, mm, dd)
    if found is None and _date(2000, mm, dd) is None and _date(2004, mm, dd) is None:
        return None  # not a date in any year
    if found is None or found > today:
        found = _date(century - 100 + yy, mm, dd)
    return found


def expiry_date_of(text: str, today: date) -> date | None:
    """YYMMDD as an expiry date: the century that puts it nearest today (documents are valid
    for at most a few decades, before or after)."""
    parts = _yymmdd(text)
    if parts is None:
        return None
    yy, mm, dd = parts
    candidates = [
        found
        for century in (
            today.year // 100 * 100 - 100,
            today.year // 100 * 100,
            today.year // 100 * 100 + 100,
        )
        if (found := _date(century + yy, mm, dd)) is not None
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda d: abs((d - today).days))


def _names(field: str) -> tuple[str, str, bool]:
    truncated = not field.endswith(FILLER)
    primary, _, secondary = field.rstrip(FILLER).partition(FILLER * 2)
    family = " ".join(part for part in primary.split(FILLER) if part)
    given = " ".join(part for part in secondary.split(FILLER) if part)
    return family, given, truncated


@dataclass(frozen=True, slots=True)
class _Fields:
    document_code: str
    issuing_state: str
    number_field: str
    number_digit: str
    nationality: str
    birth: str
    birth_digit: str
    sex: str
    expiry: str
    expiry_digit: str
    optional: str
    optional_digit: str | None
    optional_2: str
    composite_input: str | None
    composite_digit: str | None
    names: str


def _td3(l1: str, l2: str) -> _Fields:
    return _Fields(
        document_code=l1[0:2],
        issuing_state=l1[2:5],
        number_field=l2[0:9],
        number_digit=l2[9],
        nationality=l2[10:13],
        birth=l2[13:19],
        birth_digit=l2[19],
        sex=l2[20],
        expiry=l2[21:27],
        expiry_digit=l2[27],
        optional=l2[28:42],
        optional_digit=l2[42],
        optional_2="",
        composite_input=l2[0:10] + l2[13:20] + l2[21:43],
        composite_digit=l2[43],
        names=l1[5:44],
    )


def _td2(l1: str, l2: str) -> _Fields:
    return _Fields(
        document_code=l1[0:2],
        issuing_state=l1[2:5],
        number_field=l2[0:9],
        number_digit=l2[9],
        nationality=l2[10:13],
        birth=l2[13:19],
        birth_digit=l2[19],
        sex=l2[20],
        expiry=l2[21:27],
        expiry_digit=l2[27],
        optional=l2[28:35],
        optional_digit=None,
        optional_2="",
        composite_input=l2[0:10] + l2[13:20] + l2[21:35],
        composite_digit=l2[35],
        names=l1[5:36],
    )


def _td1(l1: str, l2: str, l3: str) -> _Fields:
    return _Fields(
        document_code=l1[0:2],
        issuing_state=l1[2:5],
        number_field=l1[5:14],
        number_digit=l1[14],
        nationality=l2[15:18],
        birth=l2[0:6],
        birth_digit=l2[6],
        sex=l2[7],
        expiry=l2[8:14],
        expiry_digit=l2[14],
        optional=l1[15:30],
        optional_digit=None,
        optional_2=l2[18:29],
        composite_input=l1[5:30] + l2[0:7] + l2[8:15] + l2[18:29],
        composite_digit=l2[29],
        names=l3[0:30],
    )


def _document_number(fields: _Fields) -> tuple[str, bool, str]:
    """The number, whether its check digit holds, and the optional data left after it.

    Part 4/5/6: a number longer than 9 characters puts a filler in the check digit's place
    and continues in the optional data, its own check digit being the character before the
    first filler there."""
    if fields.number_digit == FILLER and fields.optional and fields.optional[0] != FILLER:
        tail, _, rest = fields.optional.partition(FILLER)
        number = fields.number_field + tail[:-1]
        return number, _digit_ok(number, tail[-1]), rest
    number = fields.number_field.rstrip(FILLER)
    return number, _digit_ok(fields.number_field, fields.number_digit), fields.optional


def _field_problems(fields: _Fields, *, number_ok: bool) -> list[MrzProblem]:
    """Check digits, sex and codes of the fields as printed."""
    problems: list[MrzProblem] = []
    if not number_ok:
        problems.append(MrzProblem.DOCUMENT_NUMBER_CHECK_FAILED)
    if not _digit_ok(fields.birth, fields.birth_digit):
        problems.append(MrzProblem.BIRTH_DATE_CHECK_FAILED)
    if not _digit_ok(fields.expiry, fields.expiry_digit):
        problems.append(MrzProblem.EXPIRY_DATE_CHECK_FAILED)
    if fields.optional_digit is not None and not _digit_ok(fields.optional, fields.optional_digit):
        problems.append(MrzProblem.OPTIONAL_DATA_CHECK_FAILED)
    if (
        fields.composite_input is not None
        and fields.composite_digit is not None
        and not _digit_ok(fields.composite_input, fields.composite_digit)
    ):
        problems.append(MrzProblem.COMPOSITE_CHECK_FAILED)
    if fields.sex not in {"M", "F", "X", FILLER}:
        problems.append(MrzProblem.SEX_INVALID)
    issuer = icao_code(fields.issuing_state)
    if issuer is None or issuer.kind is CodeKind.NATIONALITY_CLASS:
        problems.append(MrzProblem.ISSUING_STATE_UNKNOWN)
    if icao_code(fields.nationality) is None:
        problems.append(MrzProblem.NATIONALITY_UNKNOWN)
    return problems


def parse_mrz(text: str, *, today: date) -> MrzRecord:
    """Parse an MRZ of any of the three formats; its problems are listed in the record."""
    lines = _lines(text)
    shape = [len(line) for line in lines]
    if shape == [44, 44]:
        fmt, fields = MrzFormat.TD3, _td3(*lines)
    elif shape == [36, 36]:
        fmt, fields = MrzFormat.TD2, _td2(*lines)
    elif shape == [30, 30, 30]:
        fmt, fields = MrzFormat.TD1, _td1(*lines)
    else:
        raise MrzUnreadable("an MRZ is 2 lines of 44 (TD3) or 36 (TD2), or 3 of 30 (TD1)")
    number, number_ok, optional = _document_number(fields)
    problems = _field_problems(fields, number_ok=number_ok)
    birth = birth_date_of(fields.birth, today)
    expiry = expiry_date_of(fields.expiry, today)
    family, given, truncated = _names(fields.names)
    if not family:
        problems.append(MrzProblem.NAME_MISSING)
    return MrzRecord(
        format=fmt,
        document_code=fields.document_code.rstrip(FILLER),
        issuing_state=fields.issuing_state.rstrip(FILLER),
        document_number=number,
        nationality=fields.nationality.rstrip(FILLER),
        birth_date=birth,
        sex=fields.sex,
        expiry_date=expiry,
        optional_data=optional.strip(FILLER),
        optional_data_2=fields.optional_2.strip(FILLER),
        family_name=family,
        given_names=given,
        name_truncated=truncated,
        problems=tuple(problems),
    )


def check_dates(record: MrzRecord, *, today: date) -> tuple[MrzProblem, ...]:
    """Birth in the past, expiry after today (an expired document fails)."""
    problems: list[MrzProblem] = []
    if record.birth_date is None:
        problems.append(MrzProblem.BIRTH_DATE_INVALID)
    elif record.birth_date > today:
        problems.append(MrzProblem.BIRTH_DATE_IN_FUTURE)
    if record.expiry_date is None:
        problems.append(MrzProblem.EXPIRY_DATE_INVALID)
    elif record.expiry_date < today:
        problems.append(MrzProblem.DOCUMENT_EXPIRED)
    return tuple(problems)


def mrz_problems(record: MrzRecord, *, today: date) -> tuple[MrzProblem, ...]:
    """Every problem of the MRZ on its own: check digits, fields and dates."""
    return record.problems + check_dates(record, today=today)


# Names --------------------------------------------------------------------------------------

# Part 3, 6.A: the recommended transliterations of Latin letters with diacritics where they
# differ from dropping the mark (Ä -> AE or A: both are seen in practice, so both match).
_ICAO_LATIN: dict[str, tuple[str, ...]] = {
    "Ä": ("AE", "A"),
    "Ö": ("OE", "O"),
    "Ü": ("UE", "U"),
    "Å": ("AA", "A"),
    "Æ": ("AE",),
    "Ø": ("OE",),
    "Œ": ("OE",),
    "ß": ("SS",),
    "Þ": ("TH",),
    "Ð": ("D",),
    "Đ": ("D",),
    "Ĳ": ("IJ",),
    "Ł": ("L",),
    "Ñ": ("N", "NXX"),
}


def _strip_marks(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _mrz_words(text: str) -> str:
    """A name as MRZ characters: upper case, anything but A-Z a word break, one space apart."""
    upper = anyascii(_strip_marks(text)).upper()
    return " ".join(re.sub(r"[^A-Z]+", " ", upper).split())


def transliterations(name: str) -> set[str]:
    """The forms an issuer may print for `name` (bounded: at most 16)."""
    forms = {""}
    for ch in name.upper():
        options = _ICAO_LATIN.get(ch) or _ICAO_LATIN.get(ch.lower()) or (ch,)
        forms = {form + option for form in forms for option in options}
        if len(forms) > 16:
            forms = set(sorted(forms)[:16])
    return {_mrz_words(form) for form in forms}


def name_matches(printed: str, declared: str, *, truncated: bool) -> bool:
    """The MRZ's name equals the declared one once transliterated; a truncated MRZ name
    (its field full) matches a declared name it is the start of."""
    mrz = " ".join(printed.split())
    for form in transliterations(declared):
        if mrz == form:
            return True
        if truncated and mrz and form.startswith(mrz):
            return True
        # Hyphens and apostrophes may be dropped rather than turned into a filler.
        if mrz.replace(" ", "") == form.replace(" ", ""):
            return True
    return False


def inconsistencies(record: MrzRecord, applicant: ApplicantFacts) -> tuple[Inconsistency, ...]:
    """Each way the MRZ disagrees with the applicant's declared identity."""
    found: list[Inconsistency] = []
    # In TD1/TD2/TD3 the family name comes first and may take the whole field, leaving the
    # given names truncated: the given names may be truncated whenever the field is full.
    family_truncated = record.name_truncated and not record.given_names
    if not name_matches(record.family_name, applicant.family_name, truncated=family_truncated):
        found.append(Inconsistency.FAMILY_NAME_MISMATCH)
    if not name_matches(record.given_names, applicant.given_names, truncated=record.name_truncated):
        found.append(Inconsistency.GIVEN_NAMES_MISMATCH)
    if record.birth_date != applicant.birth_date:
        found.append(Inconsistency.BIRTH_DATE_MISMATCH)
    nationality: IcaoCode | None = icao_code(record.nationality)
    if nationality is None or nationality.alpha2 != applicant.nationality.upper():
        found.append(Inconsistency.NATIONALITY_MISMATCH)
    return tuple(found)
