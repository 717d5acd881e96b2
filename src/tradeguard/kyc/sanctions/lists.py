"""OFAC's Specially Designated Nationals list in its legacy CSV layout (sdn.csv, alt.csv,
add.csv; no header row; "-0-" means empty), parsed into entries with their names, dates of
birth, nationalities and countries. Pure: bytes in, entries out.

A file that does not have the layout is refused whole, naming the file and line, so a
truncated download never replaces a good list with half of one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from tradeguard.kyc.sanctions.countries import country_code
from tradeguard.kyc.sanctions.normalize import name_words

LIST_NAME = "OFAC SDN"
FILES = ("sdn.csv", "alt.csv", "add.csv")
_COLUMNS = {"sdn.csv": 12, "alt.csv": 5, "add.csv": 6}
EMPTY = "-0-"
# The legacy files end with a DOS end-of-file character (0x1A) after the last line.
_EOF = "\x1a"


class ListFormatError(ValueError):
    """A list file without the expected layout: which file, which line, what is wrong."""

    def __init__(self, file: str, line: int, problem: str) -> None:
        super().__init__(f"{file} line {line}: {problem}")
        self.file = file
        self.line = line
        self.problem = problem


class EntryKind(StrEnum):
    INDIVIDUAL = "individual"
    ENTITY = "entity"
    VESSEL = "vessel"
    AIRCRAFT = "aircraft"


class NameKind(StrEnum):
    PRIMARY = "primary"
    AKA = "aka"  # also known as
    FKA = "fka"  # formerly known as
    NKA = "nka"  # now known as


@dataclass(frozen=True, slots=True)
class BirthDate:
    """A date of birth as the list gives it: a day, a month, a year, "circa" a year, or a
    range; held as the earliest and latest day it may be."""

    text: str
    earliest: date
    latest: date

    @property
    def exact(self) -> bool:
        return self.earliest == self.latest


@dataclass(frozen=True, slots=True)
class ListName:
    name: str
    kind: NameKind
    words: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ListEntry:
    entry_id: str
    kind: EntryKind
    name: str
    names: tuple[ListName, ...]
    programs: tuple[str, ...] = ()
    title: str | None = None
    birth_dates: tuple[BirthDate, ...] = ()
    birth_places: tuple[str, ...] = ()
    # ISO alpha-2 codes: nationality and citizenship from the remarks, address countries.
    nationalities: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    # "Linked To:" relationships from the remarks (owners, controllers, agents).
    linked_to: tuple[str, ...] = ()
    # SHA-256 of the entry's rows in all three files: a changed entry has a new hash.
    content_hash: str = ""

    def details(self) -> dict[str, object]:
        """What is stored with the entry besides its names (JSON-ready)."""
        return {
            "programs": list(self.programs),
            "title": self.title,
            "birth_dates": [
                [b.text, b.earliest.isoformat(), b.latest.isoformat()] for b in self.birth_dates
            ],
            "birth_places": list(self.birth_places),
            "nationalities": list(self.nationalities),
            "countries": list(self.countries),
            "linked_to": list(self.linked_to),
        }


@dataclass(frozen=True, slots=True)
class ParsedList:
    list_name: str
    sha256: str
    file_hashes: Mapping[str, str]
    entries: tuple[ListEntry, ...]
    alias_count: int
    address_count: int
    # Alias and address rows naming no entry of sdn.csv (skipped).
    orphans: int = 0
    name_count: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name_count", sum(len(e.names) for e in self.entries))


def _text(raw: bytes, file: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # OFAC's legacy files are Windows-1252 when they are not plain ASCII.
        text = raw.decode("cp1252", errors="strict")
    return text.rstrip().rstrip(_EOF).rstrip()


def _field(value: str) -> str | None:
    cleaned = value.strip()
    return None if cleaned in ("", EMPTY) else cleaned


def _rows(raw: bytes, file: str) -> list[tuple[int, list[str | None]]]:
    try:
        text = _text(raw, file)
    except UnicodeDecodeError as exc:
        raise ListFormatError(file, 1, f"not UTF-8 or Windows-1252 text ({exc.reason})") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, list[str | None]]] = []
    expected = _COLUMNS[file]
    try:
        for values in reader:
            if not values or values == [_EOF]:
                continue
            if len(values) != expected:
                raise ListFormatError(
                    file, reader.line_num, f"{len(values)} fields where {expected} are expected"
                )
            fields = [_field(v) for v in values]
            if fields[0] is None or not fields[0].isdigit():
                raise ListFormatError(
                    file, reader.line_num, "the first field (ent_num) is not a number"
                )
            rows.append((reader.line_num, fields))
    except csv.Error as exc:
        raise ListFormatError(file, reader.line_num, f"not CSV ({exc})") from None
    return rows


_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_DAY = re.compile(r"^(\d{1,2}) ([a-z]{3}) (\d{4})$")
_MONTH = re.compile(r"^([a-z]{3}) (\d{4})$")
_YEAR = re.compile(r"^(\d{4})$")
_CIRCA_YEARS = 2


def _bounds(text: str) -> tuple[date, date] | None:
    t = " ".join(text.casefold().replace(",", " ").split())
    circa = t.startswith("circa ")
    t = t.removeprefix("circa ").strip()
    try:
        if m := _DAY.match(t):
            day = date(int(m[3]), _MONTHS[m[2]], int(m[1]))
            return (day, day) if not circa else _circa(day.year)
        if m := _MONTH.match(t):
            year, month = int(m[2]), _MONTHS[m[1]]
            last = (date(year + (month == 12), month % 12 + 1, 1)).toordinal() - 1
            return date(year, month, 1), date.fromordinal(last)
        if m := _YEAR.match(t):
            year = int(m[1])
            return _circa(year) if circa else (date(year, 1, 1), date(year, 12, 31))
    except (KeyError, ValueError):
        return None
    return None


def _circa(year: int) -> tuple[date, date]:
    return date(year - _CIRCA_YEARS, 1, 1), date(year + _CIRCA_YEARS, 12, 31)


def parse_birth_date(text: str) -> BirthDate | None:
    """ "10 Jul 1970", "Jul 1970", "1970", "circa 1970", "1968 to 1970", "01 Jan 1960 to
    31 Dec 1961"; None when it is none of these."""
    cleaned = text.strip().rstrip(".").strip()
    parts = re.split(r"\s+to\s+", cleaned, flags=re.IGNORECASE)
    if len(parts) == 2:
        start, end = _bounds(parts[0]), _bounds(parts[1])
        if start is None or end is None or end[1] < start[0]:
            return None
        return BirthDate(cleaned, start[0], end[1])
    found = _bounds(cleaned)
    return BirthDate(cleaned, found[0], found[1]) if found else None


_REMARK = re.compile(
    r"^(?:alt\.\s+)?(DOB|POB|nationality|citizen|Linked To:)\s*(.+)$", re.IGNORECASE
)


@dataclass(slots=True)
class _Remarks:
    birth_dates: list[BirthDate] = field(default_factory=list)
    birth_places: list[str] = field(default_factory=list)
    nationalities: list[str] = field(default_factory=list)
    linked_to: list[str] = field(default_factory=list)


def parse_remarks(remarks: str | None) -> _Remarks:
    """The parts of an SDN entry's Remarks that screening uses: dates and places of birth,
    nationality and citizenship (as ISO codes), and "Linked To:" relationships."""
    found = _Remarks()
    if not remarks:
        return found
    for part in remarks.split(";"):
        m = _REMARK.match(part.strip().rstrip("."))
        if not m:
            continue
        label, value = m[1].casefold(), m[2].strip()
        if label == "dob":
            dob = parse_birth_date(value)
            if dob is not None:
                found.birth_dates.append(dob)
        elif label == "pob":
            found.birth_places.append(value)
        elif label in ("nationality", "citizen"):
            code = country_code(value)
            if code and code not in found.nationalities:
                found.nationalities.append(code)
        else:
            found.linked_to.append(value)
    return found


def _programs(value: str | None) -> tuple[str, ...]:
    # "SDGT] [IFSR": the legacy layout joins several programs with "] [".
    if not value:
        return ()
    return tuple(p.strip(" []") for p in value.split("] [") if p.strip(" []"))


def _hash(rows: object) -> str:
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


def _check_entries(sdn_rows: list[tuple[int, list[str | None]]]) -> None:
    if not sdn_rows:
        raise ListFormatError("sdn.csv", 1, "no entries")
    seen: dict[str, int] = {}
    for line, row in sdn_rows:
        ent = str(row[0])
        if ent in seen:
            raise ListFormatError("sdn.csv", line, f"ent_num {ent} repeats line {seen[ent]}")
        if row[1] is None:
            raise ListFormatError("sdn.csv", line, "SDN_Name is empty")
        kind = (row[2] or "entity").casefold()
        if kind not in {k.value for k in EntryKind}:
            raise ListFormatError("sdn.csv", line, f"SDN_Type {row[2]!r} is not known")
        seen[ent] = line


def _check_aliases(alt_rows: list[tuple[int, list[str | None]]]) -> None:
    for line, row in alt_rows:
        if row[3] is None:
            raise ListFormatError("alt.csv", line, "alt_name is empty")
        if (row[2] or "").casefold() not in ("aka", "fka", "nka"):
            raise ListFormatError("alt.csv", line, f"alt_type {row[2]!r} is not aka, fka or nka")


def _by_entry(
    rows: list[tuple[int, list[str | None]]], known: set[str]
) -> tuple[dict[str, list[list[str | None]]], int]:
    """Rows grouped by ent_num; rows of an ent_num not in sdn.csv are skipped and counted
    (OFAC's own extracts, such as the sample files, carry such rows)."""
    grouped: dict[str, list[list[str | None]]] = {}
    orphans = 0
    for _line, row in rows:
        ent = str(row[0])
        if ent not in known:
            orphans += 1
            continue
        grouped.setdefault(ent, []).append(row)
    return grouped, orphans


def _entry(
    row: list[str | None], alts: list[list[str | None]], adds: list[list[str | None]]
) -> ListEntry:
    ent, primary = str(row[0]), str(row[1])
    remarks = parse_remarks(row[11])
    countries: list[str] = []
    for add in adds:
        code = country_code(add[4] or "")
        if code and code not in countries:
            countries.append(code)
    names = [ListName(primary, NameKind.PRIMARY, name_words(primary))]
    names.extend(
        ListName(str(a[3]), NameKind(str(a[2]).casefold()), name_words(str(a[3]))) for a in alts
    )
    return ListEntry(
        entry_id=ent,
        kind=EntryKind((row[2] or "entity").casefold()),
        name=primary,
        names=tuple(n for n in names if n.words),
        programs=_programs(row[3]),
        title=row[4],
        birth_dates=tuple(remarks.birth_dates),
        birth_places=tuple(remarks.birth_places),
        nationalities=tuple(remarks.nationalities),
        countries=tuple(countries),
        linked_to=tuple(remarks.linked_to),
        content_hash=_hash([row, sorted(alts, key=str), sorted(adds, key=str)]),
    )


def parse_sdn(files: Mapping[str, bytes]) -> ParsedList:
    """Parse sdn.csv, alt.csv and add.csv; ListFormatError names the first bad line."""
    missing = [f for f in FILES if f not in files]
    if missing:
        raise ListFormatError(missing[0], 0, "the file is missing")
    sdn_rows = _rows(files["sdn.csv"], "sdn.csv")
    alt_rows = _rows(files["alt.csv"], "alt.csv")
    add_rows = _rows(files["add.csv"], "add.csv")
    _check_entries(sdn_rows)
    _check_aliases(alt_rows)
    known = {str(row[0]) for _line, row in sdn_rows}
    aliases, alias_orphans = _by_entry(alt_rows, known)
    addresses, address_orphans = _by_entry(add_rows, known)
    entries = tuple(
        _entry(row, aliases.get(str(row[0]), []), addresses.get(str(row[0]), []))
        for _line, row in sdn_rows
    )
    file_hashes = {f: hashlib.sha256(files[f]).hexdigest() for f in FILES}
    combined = hashlib.sha256("".join(file_hashes[f] for f in FILES).encode()).hexdigest()
    return ParsedList(
        list_name=LIST_NAME,
        sha256=combined,
        file_hashes=file_hashes,
        entries=entries,
        alias_count=sum(len(a) for a in aliases.values()),
        address_count=sum(len(a) for a in addresses.values()),
        orphans=alias_orphans + address_orphans,
    )
