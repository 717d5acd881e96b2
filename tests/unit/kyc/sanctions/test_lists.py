"""OFAC's legacy SDN CSV files parsed into entries, and malformed files refused whole with
the file and line (kyc/sanctions/lists.py)."""

from __future__ import annotations

from datetime import date

import pytest

from tests.unit.kyc.sanctions.conftest import SAMPLE, read_list
from tradeguard.kyc.sanctions.lists import (
    EntryKind,
    ListFormatError,
    NameKind,
    ParsedList,
    parse_birth_date,
    parse_remarks,
    parse_sdn,
)


class TestFullList:
    def test_the_2021_list_has_every_entry_and_alias(self, full_list: ParsedList) -> None:
        assert len(full_list.entries) == 8976
        assert full_list.alias_count == 11910
        assert full_list.name_count == 8976 + 11910

    def test_an_entry_keeps_its_dob_nationality_citizenship_and_address_countries(
        self, full_list: ParsedList
    ) -> None:
        # sdn.csv 24283: "DERIPASKA, Oleg Vladimirovich" ... "DOB 02 Jan 1968; ... citizen
        # Russia; alt. citizen Cyprus"
        entry = next(e for e in full_list.entries if e.entry_id == "24283")
        assert entry.kind is EntryKind.INDIVIDUAL
        assert [(b.earliest, b.latest) for b in entry.birth_dates] == [
            (date(1968, 1, 2), date(1968, 1, 2))
        ]
        assert entry.nationalities == ("RU", "CY")
        assert "RU" in entry.countries
        assert entry.programs == ("UKRAINE-EO13661", "UKRAINE-EO13662")

    def test_aliases_are_names_of_their_entry(self, full_list: ParsedList) -> None:
        # alt.csv: 6861,4618,"aka","GUZMAN, Chapo"
        entry = next(e for e in full_list.entries if e.entry_id == "6861")
        assert ("GUZMAN, Chapo", NameKind.AKA) in {(n.name, n.kind) for n in entry.names}

    def test_linked_to_relationships_are_kept(self, full_list: ParsedList) -> None:
        # sdn.csv 24223 "B-FINANCE LTD": "Linked To: DERIPASKA, Oleg Vladimirovich."
        entry = next(e for e in full_list.entries if e.entry_id == "24223")
        assert entry.linked_to == ("DERIPASKA, Oleg Vladimirovich",)


class TestBirthDates:
    @pytest.mark.parametrize(
        ("text", "earliest", "latest"),
        [
            ("10 Jul 1970", date(1970, 7, 10), date(1970, 7, 10)),
            ("Jul 1970", date(1970, 7, 1), date(1970, 7, 31)),
            ("1970", date(1970, 1, 1), date(1970, 12, 31)),
            ("circa 1970", date(1968, 1, 1), date(1972, 12, 31)),
            ("1968 to 1970", date(1968, 1, 1), date(1970, 12, 31)),
            ("01 Jan 1960 to 31 Dec 1961", date(1960, 1, 1), date(1961, 12, 31)),
            ("Dec 1999", date(1999, 12, 1), date(1999, 12, 31)),
        ],
    )
    def test_every_form_the_list_uses(self, text: str, earliest: date, latest: date) -> None:
        found = parse_birth_date(text)
        assert found is not None
        assert (found.earliest, found.latest) == (earliest, latest)

    @pytest.mark.parametrize("text", ["sometime", "31 Feb 1970", "1970 to 1960", ""])
    def test_what_is_no_date_is_ignored(self, text: str) -> None:
        assert parse_birth_date(text) is None

    def test_remarks_give_dates_places_nationality_and_links(self) -> None:
        found = parse_remarks(
            "DOB 10 Jul 1970; alt. DOB 1971; POB Tehran, Iran; nationality Iran; citizen "
            "Iraq; Linked To: SOME BANK."
        )
        assert [b.text for b in found.birth_dates] == ["10 Jul 1970", "1971"]
        assert found.birth_places == ["Tehran, Iran"]
        assert found.nationalities == ["IR", "IQ"]
        assert found.linked_to == ["SOME BANK"]


class TestMalformedFiles:
    def _sample(self) -> dict[str, bytes]:
        return read_list(SAMPLE)

    def test_the_sample_parses(self) -> None:
        parsed = parse_sdn(self._sample())
        assert len(parsed.entries) == 17

    def test_a_short_row_names_the_file_and_line(self) -> None:
        files = self._sample()
        lines = files["sdn.csv"].split(b"\n")
        lines[3] = b'99999,"SHORT ROW","individual"'
        files["sdn.csv"] = b"\n".join(lines)
        with pytest.raises(ListFormatError) as refused:
            parse_sdn(files)
        assert (refused.value.file, refused.value.line) == ("sdn.csv", 4)
        assert "3 fields where 12 are expected" in str(refused.value)

    def test_an_alias_of_no_entry_is_skipped_and_counted(self) -> None:
        files = self._sample()
        before = parse_sdn(files)
        files["alt.csv"] += b'424242,1,"aka","NOBODY",-0- \n'
        after = parse_sdn(files)
        assert after.orphans == before.orphans + 1
        assert after.alias_count == before.alias_count

    def test_an_unknown_alias_type_is_refused(self) -> None:
        files = self._sample()
        files["alt.csv"] += b'10278,1,"xyz","NOBODY",-0- \n'
        with pytest.raises(ListFormatError, match="alt_type 'xyz'"):
            parse_sdn(files)

    def test_a_repeated_entry_is_refused(self) -> None:
        files = self._sample()
        first = files["sdn.csv"].split(b"\n")[0]
        files["sdn.csv"] = files["sdn.csv"].rstrip(b"\r\n\x1a") + b"\r\n" + first + b"\n"
        with pytest.raises(ListFormatError, match=r"repeats line 1"):
            parse_sdn(files)

    def test_a_missing_file_is_refused(self) -> None:
        files = self._sample()
        del files["add.csv"]
        with pytest.raises(ListFormatError, match=r"add\.csv"):
            parse_sdn(files)

    def test_an_empty_list_is_refused(self) -> None:
        files = self._sample() | {"sdn.csv": b""}
        with pytest.raises(ListFormatError, match="no entries"):
            parse_sdn(files)

    def test_an_empty_alias_or_address_file_is_accepted(self) -> None:
        # A small list may have no aliases or no addresses; an empty sdn.csv is refused (above),
        # and the load's shrink guard refuses an alt.csv that loses most of the aliases.
        parsed = parse_sdn(self._sample() | {"add.csv": b"", "alt.csv": b"\x1a"})
        assert len(parsed.entries) == 17
        assert (parsed.alias_count, parsed.address_count) == (0, 0)

    def test_a_non_numeric_ent_num_is_refused(self) -> None:
        files = self._sample()
        files["add.csv"] = b"abc,1,-0- ,-0- ,-0- ,-0- \n" + files["add.csv"]
        with pytest.raises(ListFormatError, match=r"add\.csv line 1: the first field"):
            parse_sdn(files)


class TestContentHash:
    def test_a_changed_alias_changes_only_its_entrys_hash(self) -> None:
        files = read_list(SAMPLE)
        before = {e.entry_id: e.content_hash for e in parse_sdn(files).entries}
        files["alt.csv"] += b'10278,99999999,"aka","ANOTHER NAME",-0- \n'
        after = {e.entry_id: e.content_hash for e in parse_sdn(files).entries}
        assert {k for k in before if before[k] != after[k]} == {"10278"}

    def test_the_same_files_have_the_same_version_hash(self) -> None:
        assert parse_sdn(read_list(SAMPLE)).sha256 == parse_sdn(read_list(SAMPLE)).sha256
