"""The dependency audit's dated ignore list (scripts/audit_dependencies.py): an entry must name
the advisory, the package, a reason and a review date, and stops counting once that date has
passed."""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
TODAY = dt.date(2026, 11, 30)


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "audit_dependencies", ROOT / "scripts" / "audit_dependencies.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("audit_dependencies", module)
    spec.loader.exec_module(module)
    return module


audit = _load()


def entry(**overrides: str) -> str:
    fields = {
        "id": '"GHSA-aaaa-bbbb-cccc"',
        "package": '"Example_Pkg"',
        "reason": '"not reachable from tradeguard; no fix released"',
        "review_by": "2027-01-31",
        **overrides,
    }
    return "[[ignore]]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items() if v != "-")


def report(*vulns: tuple[str, str, list[str]]) -> dict[str, object]:
    return {
        "dependencies": [
            {"name": name, "version": "1.0", "vulns": [{"id": ident, "aliases": aliases}]}
            for name, ident, aliases in vulns
        ]
        + [{"name": "clean", "version": "2.0", "vulns": []}],
        "fixes": [],
    }


class TestIgnoreList:
    def test_the_committed_ignore_list_is_valid_today(self) -> None:
        text = (ROOT / "requirements" / "pip-audit-ignore.toml").read_text()
        audit.load_ignore_list(text, today=dt.datetime.now(dt.UTC).date())

    def test_a_complete_entry_is_read_with_its_package_name_normalized(self) -> None:
        [loaded] = audit.load_ignore_list(entry(), today=TODAY)
        assert (loaded.id, loaded.package, loaded.review_by) == (
            "GHSA-aaaa-bbbb-cccc",
            "example-pkg",
            dt.date(2027, 1, 31),
        )

    def test_an_entry_past_its_review_date_fails_the_check(self) -> None:
        with pytest.raises(audit.IgnoreListError, match="has passed"):
            audit.load_ignore_list(entry(review_by="2026-11-29"), today=TODAY)

    def test_an_entry_due_today_still_counts(self) -> None:
        assert audit.load_ignore_list(entry(review_by="2026-11-30"), today=TODAY)

    def test_a_review_date_too_far_ahead_is_refused(self) -> None:
        with pytest.raises(audit.IgnoreListError, match="more than 180 days"):
            audit.load_ignore_list(entry(review_by="2027-12-31"), today=TODAY)

    @pytest.mark.parametrize("missing", ["id", "package", "reason", "review_by"])
    def test_an_entry_missing_a_field_is_refused(self, missing: str) -> None:
        with pytest.raises(audit.IgnoreListError, match="missing"):
            audit.load_ignore_list(entry(**{missing: "-"}), today=TODAY)

    @pytest.mark.parametrize(
        ("field", "value"),
        [("review_by", '"2027-01-31"'), ("review_by", "2027-01-31T00:00:00Z"), ("reason", '" "')],
    )
    def test_a_date_as_text_or_an_empty_reason_is_refused(self, field: str, value: str) -> None:
        with pytest.raises(audit.IgnoreListError):
            audit.load_ignore_list(entry(**{field: value}), today=TODAY)

    def test_unknown_fields_and_duplicates_are_refused(self) -> None:
        with pytest.raises(audit.IgnoreListError, match="unknown"):
            audit.load_ignore_list(entry(severity='"low"'), today=TODAY)
        with pytest.raises(audit.IgnoreListError, match="twice"):
            audit.load_ignore_list(entry() + entry(package='"example-pkg"'), today=TODAY)


class TestFindings:
    def test_an_ignored_advisory_is_accepted_by_id_or_alias_for_its_package_only(self) -> None:
        ignores = audit.load_ignore_list(
            entry(id='"CVE-2026-0001"', package='"example-pkg"'), today=TODAY
        )
        findings = audit.findings_of(
            report(
                ("Example.Pkg", "GHSA-1111-2222-3333", ["CVE-2026-0001"]),
                ("other", "GHSA-1111-2222-3333", ["CVE-2026-0001"]),
                ("example-pkg", "PYSEC-2026-9", []),
            ),
            "run.lock",
        )
        open_findings, stale = audit.unaccepted(findings, ignores)
        assert [(f.package, f.id) for f in open_findings] == [
            ("other", "GHSA-1111-2222-3333"),
            ("example-pkg", "PYSEC-2026-9"),
        ]
        assert stale == []

    def test_an_entry_that_matches_nothing_is_reported_as_stale(self) -> None:
        ignores = audit.load_ignore_list(entry(), today=TODAY)
        open_findings, stale = audit.unaccepted(audit.findings_of(report(), "dev.lock"), ignores)
        assert open_findings == []
        assert [e.id for e in stale] == ["GHSA-aaaa-bbbb-cccc"]

    def test_a_report_without_a_dependency_list_is_a_failure_to_audit(self) -> None:
        with pytest.raises(audit.AuditUnavailable):
            audit.findings_of({"dependencies": "nope"}, "run.lock")

    def test_packages_pip_audit_skipped_are_reported_with_their_pinned_versions(self) -> None:
        lock = (
            "alembic==1.20.1 \\\n    --hash=sha256:aa\n"
            "uvicorn[standard]==0.40.0 ; python_version >= '3.11' \\\n    --hash=sha256:bb\n"
        )
        pins = audit.pins_of(lock)
        assert pins == {"alembic": "1.20.1", "uvicorn": "0.40.0"}
        skipped = {
            "dependencies": [
                {"name": "Alembic", "skip_reason": "Dependency not found on PyPI"},
                {"name": "uvicorn", "version": "0.40.0", "vulns": []},
            ]
        }
        assert audit.unaudited_of(skipped, pins) == {"alembic": "1.20.1"}
