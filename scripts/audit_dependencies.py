"""Vulnerability management for the locked dependencies (PCI DSS v4 6.3.1, 6.3.3; PCI-1).

Runs pip-audit (from its own venv, .venv-tools/pip-audit, made by
scripts/ensure-test-tools.sh) over requirements/run.lock and requirements/dev.lock against the
PyPA advisory database, and fails on any known vulnerability that the dated ignore list
(requirements/pip-audit-ignore.toml) does not accept. An ignore entry names the advisory,
the package, why it is accepted and the date by which it must be reviewed again: past that
date the entry no longer counts and the check fails until someone re-decides.

The lock files pin every package with its hashes, so pip-audit reads them as they are
(`--disable-pip --require-hashes`): no resolver, no virtualenv, one query per package.
A package pip-audit could not look up (an index that serves the project document but not
the per-version one) is looked up again in the project document, whose advisories describe
the latest release: that answers for a pin that is the latest release. What is still not
audited is named in a warning, and fails the check with
TRADEGUARD_REQUIRE_FULL_DEPENDENCY_AUDIT=1.

Exit 0: no unaccepted vulnerability. Exit 1: vulnerabilities, an expired or malformed ignore
entry, or (with CI=true) pip-audit missing or the advisory service unreachable; outside CI
the last two print a note and exit 0, as the other test tools do.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tomllib
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKS = (ROOT / "requirements" / "run.lock", ROOT / "requirements" / "dev.lock")
IGNORE_FILE = ROOT / "requirements" / "pip-audit-ignore.toml"
PIP_AUDIT = ROOT / ".venv-tools" / "pip-audit" / "bin" / "pip-audit"
# An accepted risk is re-decided at least this often.
MAX_IGNORE_DAYS = 180
TIMEOUT_SECONDS = 300
# Set to 1 where the index serves every package's advisories (pypi.org itself): then a
# package that could not be audited fails the check instead of warning.
REQUIRE_ALL_ENV = "TRADEGUARD_REQUIRE_FULL_DEPENDENCY_AUDIT"


class IgnoreListError(ValueError):
    """The ignore list is malformed or holds an expired entry."""


class AuditUnavailable(RuntimeError):
    """pip-audit is missing or could not reach the advisory service."""


@dataclass(frozen=True, slots=True)
class IgnoreEntry:
    id: str
    package: str
    reason: str
    review_by: dt.date


@dataclass(frozen=True, slots=True)
class Finding:
    lock: str
    package: str
    version: str
    id: str
    aliases: tuple[str, ...]
    fix_versions: tuple[str, ...]

    def names(self) -> frozenset[str]:
        return frozenset((self.id, *self.aliases))


def _normalize(package: str) -> str:
    """PEP 503 name normalization, so `Jinja2` and `jinja2` are one package."""
    return "-".join(part for part in package.lower().replace("_", "-").replace(".", "-").split("-"))


def load_ignore_list(text: str, *, today: dt.date) -> list[IgnoreEntry]:
    """Parse and validate the ignore list; every problem is named, none is skipped."""
    document = tomllib.loads(text)
    unknown = set(document) - {"ignore"}
    if unknown:
        raise IgnoreListError(f"unknown top-level keys: {sorted(unknown)}")
    raw_entries = document.get("ignore", [])
    if not isinstance(raw_entries, list):
        raise IgnoreListError("`ignore` must be an array of tables ([[ignore]])")
    entries: list[IgnoreEntry] = []
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for index, raw in enumerate(raw_entries, start=1):
        where = f"entry {index}"
        if not isinstance(raw, dict):
            problems.append(f"{where}: not a table")
            continue
        missing = [key for key in ("id", "package", "reason", "review_by") if key not in raw]
        extra = sorted(set(raw) - {"id", "package", "reason", "review_by"})
        if missing or extra:
            problems.append(f"{where}: missing {missing}, unknown {extra}")
            continue
        ident, package, reason, review_by = (
            raw["id"],
            raw["package"],
            raw["reason"],
            raw["review_by"],
        )
        if not all(isinstance(v, str) and v.strip() for v in (ident, package, reason)):
            problems.append(f"{where}: id, package and reason must be non-empty strings")
            continue
        where = f"{ident} ({package})"
        # A TOML date, not a string: `review_by = 2027-01-31`.
        if not isinstance(review_by, dt.date) or isinstance(review_by, dt.datetime):
            problems.append(f"{where}: review_by must be a date (review_by = 2027-01-31)")
            continue
        if review_by < today:
            problems.append(f"{where}: review date {review_by} has passed; re-decide it")
            continue
        if (review_by - today).days > MAX_IGNORE_DAYS:
            problems.append(
                f"{where}: review date {review_by} is more than {MAX_IGNORE_DAYS} days away"
            )
            continue
        key = (ident, _normalize(package))
        if key in seen:
            problems.append(f"{where}: listed twice")
            continue
        seen.add(key)
        entries.append(IgnoreEntry(ident, _normalize(package), reason.strip(), review_by))
    if problems:
        raise IgnoreListError("; ".join(problems))
    return entries


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", re.MULTILINE)


def pins_of(lock_text: str) -> dict[str, str]:
    """{package: pinned version} of a lock file."""
    return {_normalize(m.group(1)): m.group(2) for m in _PIN.finditer(lock_text)}


def unaudited_of(report: dict[str, object], pins: dict[str, str]) -> dict[str, str]:
    """The packages pip-audit could not look up ({name: pinned version}): not a pass."""
    dependencies = report.get("dependencies", [])
    if not isinstance(dependencies, list):
        return {}
    names = [_normalize(d["name"]) for d in dependencies if d.get("skip_reason")]
    return {name: pins.get(name, "?") for name in names}


def latest_release_findings(lock: str, package: str, version: str) -> list[Finding] | None:
    """The PyPI project document's vulnerabilities, which describe its latest release only:
    a finding list when `version` is that release, None when it cannot tell (an older pin,
    or no answer). A fallback for indexes that serve the project document but not the
    per-version one pip-audit asks for."""
    url = f"https://pypi.org/pypi/{urllib.parse.quote(package)}/json"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            document = json.load(response)
    except (OSError, ValueError):
        return None
    if document.get("info", {}).get("version") != version:
        return None
    report: dict[str, object] = {
        "dependencies": [
            {"name": package, "version": version, "vulns": document.get("vulnerabilities", [])}
        ]
    }
    return findings_of(report, lock)


def findings_of(report: dict[str, object], lock: str) -> list[Finding]:
    """The vulnerabilities in one pip-audit JSON report."""
    found: list[Finding] = []
    dependencies = report.get("dependencies", [])
    if not isinstance(dependencies, list):
        raise AuditUnavailable(f"pip-audit wrote an unexpected report for {lock}")
    for dependency in dependencies:
        for vuln in dependency.get("vulns", []):
            found.append(
                Finding(
                    lock=lock,
                    package=_normalize(dependency["name"]),
                    version=dependency.get("version", "?"),
                    id=vuln["id"],
                    aliases=tuple(vuln.get("aliases", [])),
                    fix_versions=tuple(vuln.get("fix_versions", [])),
                )
            )
    return found


def unaccepted(
    findings: Sequence[Finding], ignores: Sequence[IgnoreEntry]
) -> tuple[list[Finding], list[IgnoreEntry]]:
    """Findings no ignore entry accepts, and ignore entries that accept nothing any more."""
    used: set[IgnoreEntry] = set()
    open_findings: list[Finding] = []
    for finding in findings:
        match = next(
            (
                entry
                for entry in ignores
                if entry.package == finding.package and entry.id in finding.names()
            ),
            None,
        )
        if match is None:
            open_findings.append(finding)
        else:
            used.add(match)
    return open_findings, [entry for entry in ignores if entry not in used]


def run_pip_audit(lock: Path) -> dict[str, object]:
    if not PIP_AUDIT.is_file():
        raise AuditUnavailable(f"{PIP_AUDIT} is missing (scripts/ensure-test-tools.sh makes it)")
    command = [
        str(PIP_AUDIT),
        "--requirement",
        str(lock),
        "--disable-pip",
        "--require-hashes",
        "--format",
        "json",
        "--progress-spinner",
        "off",
        "--timeout",
        "30",
    ]
    try:
        completed = subprocess.run(  # noqa: S603 - our own tool path and arguments
            command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise AuditUnavailable(f"pip-audit took over {TIMEOUT_SECONDS} s on {lock.name}") from exc
    # Exit 1 with a JSON report means "vulnerabilities found"; anything else without a report
    # is a failure to audit (no network, a lock it cannot read).
    try:
        report: dict[str, object] = json.loads(completed.stdout)
    except json.JSONDecodeError:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
        raise AuditUnavailable(
            f"pip-audit could not audit {lock.name} (exit {completed.returncode}): "
            + " | ".join(tail)
        ) from None
    return report


def collect_findings() -> tuple[list[Finding], list[tuple[str, str]]]:
    """Every finding in both lock files, and the (package, version) pairs nothing audited."""
    findings: list[Finding] = []
    skipped: dict[tuple[str, str], list[str]] = {}
    for lock in LOCKS:
        report = run_pip_audit(lock)
        findings.extend(findings_of(report, lock.name))
        pins = pins_of(lock.read_text(encoding="utf-8"))
        for package, version in unaudited_of(report, pins).items():
            skipped.setdefault((package, version), []).append(lock.name)
    unaudited: list[tuple[str, str]] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = pool.map(
            lambda key: latest_release_findings(skipped[key][0], *key), list(skipped)
        )
        for key, fallback in zip(list(skipped), answers, strict=True):
            if fallback is None:
                unaudited.append(key)
            else:
                findings.extend(fallback)
    return findings, unaudited


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ignore-file", type=Path, default=IGNORE_FILE)
    args = parser.parse_args(argv)
    in_ci = os.environ.get("CI", "").lower() == "true"
    today = dt.datetime.now(dt.UTC).date()
    try:
        ignores = load_ignore_list(args.ignore_file.read_text(encoding="utf-8"), today=today)
    except (IgnoreListError, tomllib.TOMLDecodeError, OSError) as exc:
        print(f"dependency audit: {args.ignore_file.name}: {exc}", file=sys.stderr)
        return 1
    try:
        findings, unaudited = collect_findings()
    except AuditUnavailable as exc:
        if in_ci:
            print(f"dependency audit failed: {exc}", file=sys.stderr)
            return 1
        print(f"note: dependency audit skipped outside CI: {exc}", file=sys.stderr)
        return 0
    if unaudited:
        names = ", ".join(f"{package} {version}" for package, version in unaudited)
        print(
            f"WARNING: {len(unaudited)} locked packages could not be audited (the index "
            f"answered for neither their version nor, as the latest release, their project): "
            f"{names}",
            file=sys.stderr,
        )
        if os.environ.get(REQUIRE_ALL_ENV) == "1":
            print(f"dependency audit failed: {REQUIRE_ALL_ENV}=1", file=sys.stderr)
            return 1
    open_findings, stale = unaccepted(findings, ignores)
    for entry in stale:
        print(
            f"note: ignore entry {entry.id} ({entry.package}) matches nothing any more; remove it",
            file=sys.stderr,
        )
    if open_findings:
        print("dependency audit: known vulnerabilities in the locked dependencies:")
        for f in open_findings:
            fixes = ", ".join(f.fix_versions) or "no fix yet"
            aliases = f" ({', '.join(f.aliases)})" if f.aliases else ""
            print(f"  {f.lock}: {f.package} {f.version}: {f.id}{aliases}; fixed in {fixes}")
        print(
            "Upgrade the pin (pyproject.toml, then `make lock`), or accept it in "
            f"{IGNORE_FILE.relative_to(ROOT)} with a reason and a review date."
        )
        return 1
    accepted = len(findings) - len(open_findings)
    print(
        f"dependency audit: no unaccepted known vulnerabilities in {len(LOCKS)} lock files"
        + (f" ({accepted} accepted, see {IGNORE_FILE.name})" if accepted else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
