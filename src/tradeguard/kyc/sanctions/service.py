"""Sanctions screening use cases (KYC-2): load a list version, screen a subject (the
`Screener` protocol of kyc/contracts.py), a subject's standing, review of hits, and the
re-screening of every registered subject on a new version. Never commits.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tradeguard.core.errors import NotFound
from tradeguard.crypto.columns import PlainField, SealedField, keyring_field
from tradeguard.kyc.contracts import (
    ScreeningDecision,
    ScreeningHit,
    ScreeningListener,
    ScreeningOutcome,
    ScreeningSubject,
    SubjectKind,
    SubjectSource,
)
from tradeguard.kyc.sanctions import repository
from tradeguard.kyc.sanctions.common import (
    HitConflict,
    HitStatus,
    ListRefused,
    ListShrinkRefused,
    NoListLoaded,
    SanctionsDeps,
    SanctionsEvent,
    SanctionsInputError,
)
from tradeguard.kyc.sanctions.index import (
    EVERY_KIND,
    INDIVIDUALS,
    Match,
    Query,
    ScreeningIndex,
)
from tradeguard.kyc.sanctions.lists import (
    LIST_NAME,
    BirthDate,
    EntryKind,
    ListEntry,
    ListFormatError,
    ListName,
    NameKind,
    ParsedList,
    parse_sdn,
)
from tradeguard.kyc.sanctions.models import SanctionsHit, SanctionsListVersion, SanctionsRescreen
from tradeguard.kyc.sanctions.normalize import name_words
from tradeguard.kyc.sanctions.source import read_files
from tradeguard.ledger.domain import Party

logger = logging.getLogger("tradeguard.kyc.sanctions")

MAX_NAME_CHARS = 300
MAX_NOTE_CHARS = 1000
_SEVERITY = {
    ScreeningDecision.CLEAR: 0,
    ScreeningDecision.REVIEW: 1,
    ScreeningDecision.BLOCK: 2,
}


def kinds_for(kind: SubjectKind) -> frozenset[EntryKind]:
    """A customer is a person: screened against individuals. A payee (a bank account's
    holder) may be a person or a company: screened against every entry."""
    return INDIVIDUALS if kind is SubjectKind.CUSTOMER else EVERY_KIND


def party_label(party: Party) -> str:
    return f"{party.kind}:{party.id}"[:100]


@dataclass(frozen=True, slots=True)
class LoadResult:
    version: SanctionsListVersion
    created: bool


@dataclass(slots=True)
class _Loaded:
    version_id: str
    index: ScreeningIndex


def entry_from_row(
    *,
    entry_id: str,
    kind: str,
    primary: str,
    details: Mapping[str, Any],
    content_hash: str,
    names: Iterable[tuple[str, str]],
) -> ListEntry:
    """A stored entry back as the pure type the index is built from."""
    birth = tuple(
        BirthDate(text, date.fromisoformat(earliest), date.fromisoformat(latest))
        for text, earliest, latest in details.get("birth_dates", [])
    )
    return ListEntry(
        entry_id=entry_id,
        kind=EntryKind(kind),
        name=primary,
        names=tuple(ListName(n, NameKind(k), name_words(n)) for k, n in names),
        programs=tuple(details.get("programs", [])),
        title=details.get("title"),
        birth_dates=birth,
        birth_places=tuple(details.get("birth_places", [])),
        nationalities=tuple(details.get("nationalities", [])),
        countries=tuple(details.get("countries", [])),
        linked_to=tuple(details.get("linked_to", [])),
        content_hash=content_hash,
    )


@dataclass(slots=True)
class SanctionsService:
    deps: SanctionsDeps
    sources: dict[SubjectKind, SubjectSource] = field(default_factory=dict)
    # Told of every standing that may have changed (onboarding restricts customers).
    listeners: list[ScreeningListener] = field(default_factory=list)
    _loaded: _Loaded | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    # Subject sources -----------------------------------------------------------------------

    def register_source(self, kind: SubjectKind, source: SubjectSource) -> None:
        """Every subject of this kind is re-screened on a new list version (onboarding
        registers customers, the app registers funds' payees)."""
        self.sources[kind] = source

    def add_listener(self, listener: ScreeningListener) -> None:
        """Told after new hits are recorded on a subject and after a hit is reviewed."""
        self.listeners.append(listener)

    async def _changed(
        self,
        session: AsyncSession,
        kind: SubjectKind,
        ref: str,
        *,
        actor: Party,
        request_id: str | None,
    ) -> None:
        if not self.listeners:
            return
        outcome = await self.standing(session, kind, ref)
        for listener in self.listeners:
            await listener.standing_changed(
                session, kind, ref, outcome, actor=actor, request_id=request_id
            )

    # List versions -------------------------------------------------------------------------

    async def fetch(self, location: str) -> dict[str, bytes]:
        return await read_files(
            location,
            max_bytes=self.deps.max_file_bytes,
            timeout_seconds=self.deps.fetch_timeout_seconds,
        )

    async def load(
        self,
        session: AsyncSession,
        files: Mapping[str, bytes],
        *,
        source: str,
        actor: Party,
        request_id: str | None = None,
        allow_shrink: bool = False,
        reason: str | None = None,
    ) -> LoadResult:
        """Store a new version from the three files, unless they are the current version's
        (then nothing changes). A malformed file refuses the whole load. A list that would
        shrink the current one (more than `max_shrink_fraction` fewer entries, or a strict
        subset of its entries: the legacy files carry no publish date, so an older or partial
        file shows this way) is refused unless `allow_shrink` with a reason (audited)."""
        note = None
        if allow_shrink:
            note = " ".join((reason or "").split())
            if not 3 <= len(note) <= MAX_NOTE_CHARS:
                raise SanctionsInputError(
                    "allowing a shrinking list needs a reason of 3 to 1000 characters"
                )
        try:
            parsed = parse_sdn(files)
        except ListFormatError as exc:
            raise ListRefused(str(exc), file=exc.file, line=exc.line) from None
        current = await repository.current_version(session, parsed.list_name)
        if current is not None and current.sha256 == parsed.sha256:
            return LoadResult(current, created=False)
        shrink = None
        if current is not None:
            shrink = await self._shrinks(session, current, parsed)
        if shrink is not None and note is None:
            raise ListShrinkRefused(
                f"{shrink}; nothing was loaded. If this is intended (OFAC removed entries), "
                "load again with --allow-shrink and --reason (API: allow_shrink and reason)"
            )
        row = await self._store(session, parsed, source, actor, request_id)
        if shrink is not None and current is not None:
            await self.deps.audit(
                session,
                SanctionsEvent.LIST_SHRINK_ALLOWED,
                actor=actor,
                data={
                    "version_id": row.id,
                    "previous_version_id": current.id,
                    "previous_entries": current.entries,
                    "entries": len(parsed.entries),
                    "why_guarded": shrink,
                    "reason": note,
                },
                request_id=request_id,
            )
        return LoadResult(row, True)

    async def _shrinks(
        self, session: AsyncSession, current: SanctionsListVersion, parsed: ParsedList
    ) -> str | None:
        """Why the new list looks like a shrunk (partial or older) one, or None."""
        before, after = current.entries, len(parsed.entries)
        if after < before * (1 - self.deps.max_shrink_fraction):
            return (
                f"the new list has {after} entries where the current version has {before} "
                f"(more than {self.deps.max_shrink_fraction:.0%} fewer)"
            )
        aliases_before, aliases_after = current.aliases, parsed.alias_count
        if aliases_after < aliases_before * (1 - self.deps.max_shrink_fraction):
            return (
                f"the new list has {aliases_after} aliases where the current version has "
                f"{aliases_before} (more than {self.deps.max_shrink_fraction:.0%} fewer: an "
                "empty or partial alt.csv?)"
            )
        if after < before:
            old = {
                (e.entry_id, e.content_hash)
                for e in await repository.entries_of(session, current.id)
            }
            new = {(e.entry_id, e.content_hash) for e in parsed.entries}
            if new < old:
                return (
                    f"the new list's {after} entries are a strict subset of the current "
                    f"version's {before} (nothing added or amended: an older or partial file?)"
                )
        return None

    async def _store(
        self,
        session: AsyncSession,
        parsed: ParsedList,
        source: str,
        actor: Party,
        request_id: str | None,
    ) -> SanctionsListVersion:
        deps = self.deps
        version_id = deps.ids.new_str()
        row = SanctionsListVersion(
            id=version_id,
            list_name=parsed.list_name,
            sha256=parsed.sha256,
            file_hashes=dict(parsed.file_hashes),
            source=source[:500],
            entries=len(parsed.entries),
            names=parsed.name_count,
            aliases=parsed.alias_count,
            addresses=parsed.address_count,
            loaded_ns=deps.clock.now_ns(),
            loaded_by=party_label(actor),
        )
        repository.add(session, row)
        await session.flush()
        await repository.insert_entries(
            session,
            [
                {
                    "version_id": version_id,
                    "entry_id": e.entry_id,
                    "kind": e.kind.value,
                    "name": e.name[:400],
                    "details": e.details(),
                    "content_hash": e.content_hash,
                }
                for e in parsed.entries
            ],
            [
                {
                    "version_id": version_id,
                    "entry_id": e.entry_id,
                    "kind": n.kind.value,
                    "name": n.name[:400],
                }
                for e in parsed.entries
                for n in e.names
            ],
        )
        await deps.audit(
            session,
            SanctionsEvent.LIST_LOADED,
            actor=actor,
            data={
                "version_id": version_id,
                "list_name": parsed.list_name,
                "sha256": parsed.sha256,
                "entries": len(parsed.entries),
                "names": parsed.name_count,
            },
            request_id=request_id,
        )
        return row

    async def versions(self, session: AsyncSession) -> Sequence[SanctionsListVersion]:
        return await repository.versions(session)

    async def index(self, session: AsyncSession) -> ScreeningIndex:
        """The in-memory index of the current version, rebuilt when another process (or
        this one) has loaded a newer one."""
        current = await repository.current_version(session, LIST_NAME)
        if current is None:
            raise NoListLoaded()
        loaded = self._loaded
        if loaded is not None and loaded.version_id == current.id:
            return loaded.index
        async with self._lock:
            loaded = self._loaded
            if loaded is not None and loaded.version_id == current.id:
                return loaded.index
            index = await self._build(session, current.id)
            self._loaded = _Loaded(current.id, index)
            return index

    async def _build(self, session: AsyncSession, version_id: str) -> ScreeningIndex:
        names: dict[str, list[tuple[str, str]]] = {}
        for entry_id, kind, name in await repository.names_of(session, version_id):
            names.setdefault(entry_id, []).append((kind, name))
        entries = [
            entry_from_row(
                entry_id=row.entry_id,
                kind=row.kind,
                primary=row.name,
                details=row.details,
                content_hash=row.content_hash,
                names=names.get(row.entry_id, []),
            )
            for row in await repository.entries_of(session, version_id)
        ]
        entries.sort(key=lambda e: int(e.entry_id))
        return ScreeningIndex(entries, version=version_id, thresholds=self.deps.thresholds)

    # Screening -----------------------------------------------------------------------------

    async def search(
        self,
        session: AsyncSession,
        name: str,
        *,
        birth_date: date | None = None,
        nationality: str | None = None,
        kinds: frozenset[EntryKind] = EVERY_KIND,
        limit: int = 10,
    ) -> tuple[str, list[Match]]:
        """An ad hoc screen (staff, CLI): the current version's matches, nothing recorded."""
        cleaned = _checked_name(name)
        index = await self.index(session)
        query = Query(cleaned, birth_date, _checked_nationality(nationality), kinds)
        return index.version, index.screen(query, limit=limit)

    async def screen(
        self,
        session: AsyncSession,
        subject: ScreeningSubject,
        *,
        reason: str,
        actor: Party,
        request_id: str | None = None,
    ) -> ScreeningOutcome:
        """Screen against the current version. With no version loaded yet, nothing can be
        screened: the outcome is the standing so far with list_version None, and the first
        version's load re-screens every registered subject."""
        try:
            index = await self.index(session)
        except NoListLoaded:
            logger.warning("sanctions screening skipped: no list version is loaded")
            return await self.standing(session, subject.kind, subject.ref)
        known = {
            (h.entry_id, h.entry_hash)
            for h in await repository.hits_of_subject(session, subject.kind.value, subject.ref)
        }
        matches = self.matches_for(index, subject)
        await self.record(
            session,
            subject=subject,
            matches=matches,
            known=known,
            version_id=index.version,
            reason=reason,
            actor=actor,
            request_id=request_id,
        )
        return await self.standing(session, subject.kind, subject.ref)

    def matches_for(self, index: ScreeningIndex, subject: ScreeningSubject) -> list[Match]:
        query = Query(
            _checked_name(subject.name),
            subject.birth_date,
            _checked_nationality(subject.nationality),
            kinds_for(subject.kind),
        )
        return index.screen(query)

    async def record(
        self,
        session: AsyncSession,
        *,
        subject: ScreeningSubject,
        matches: Sequence[Match],
        known: set[tuple[str, str]],
        version_id: str,
        reason: str,
        actor: Party,
        request_id: str | None,
    ) -> list[SanctionsHit]:
        """Store the matches not already on file for this subject (open, cleared or
        confirmed for the same entry content) as open hits; audit a screen that found any."""
        if not matches:
            return []
        deps, now = self.deps, self.deps.clock.now_ns()
        new: list[SanctionsHit] = []
        for match in matches:
            key = (match.entry.entry_id, match.entry.content_hash)
            if key in known:
                continue
            known.add(key)
            hit_id = deps.ids.new_str()
            row = SanctionsHit(
                id=hit_id,
                subject_kind=subject.kind.value,
                subject_ref=subject.ref,
                user_id=subject.user_id,
                list_name=LIST_NAME,
                version_id=version_id,
                entry_id=match.entry.entry_id,
                entry_hash=match.entry.content_hash,
                matched_name=match.name.name[:400],
                score=round(match.score, 4),
                decision=match.decision.value,
                reasons_enc=keyring_field(
                    deps.keyring, json.dumps(list(match.reasons)), record_id=hit_id
                ),
                status=HitStatus.OPEN.value,
                created_ns=now,
            )
            repository.add(session, row)
            new.append(row)
        await deps.audit(
            session,
            SanctionsEvent.SUBJECT_SCREENED,
            actor=actor,
            subject=Party("user", subject.user_id),
            data={
                "subject_kind": subject.kind.value,
                "subject_ref": subject.ref,
                "reason": reason[:80],
                "list_version": version_id,
                "matches": len(matches),
                "new_hits": [
                    {
                        "hit_id": h.id,
                        "entry_id": h.entry_id,
                        "score": f"{h.score:.4f}",
                        "decision": h.decision,
                    }
                    for h in new
                ],
            },
            request_id=request_id,
        )
        if new:
            await session.flush()
            await self._changed(
                session, subject.kind, subject.ref, actor=actor, request_id=request_id
            )
        return new

    async def standing(
        self, session: AsyncSession, kind: SubjectKind, ref: str
    ) -> ScreeningOutcome:
        rows = await repository.hits_of_subject(session, kind.value, ref)
        live = [r for r in rows if r.status != HitStatus.CLEARED.value]
        current = await repository.current_version(session, LIST_NAME)
        version = current.id if current is not None else None
        if not live:
            return ScreeningOutcome(ScreeningDecision.CLEAR, (), version)
        hits = tuple(self.hit_of(r) for r in live)
        worst = max((h.decision for h in hits), key=lambda d: _SEVERITY[d])
        return ScreeningOutcome(worst, hits, version)

    def hit_of(self, row: SanctionsHit) -> ScreeningHit:
        decision = (
            ScreeningDecision.BLOCK
            if row.status == HitStatus.CONFIRMED.value
            else ScreeningDecision(row.decision)
        )
        return ScreeningHit(
            hit_id=row.id,
            list_name=row.list_name,
            list_version=row.version_id,
            entry_id=row.entry_id,
            matched_name=row.matched_name,
            score=row.score,
            decision=decision,
            reasons=tuple(self.reasons(row)),
        )

    def _reveal(self, value: SealedField | PlainField | None, record_id: str) -> str | None:
        # A row written in this session still holds the value on its way in.
        if isinstance(value, PlainField):
            return value.value
        if isinstance(value, SealedField):
            return value.reveal(self.deps.keyring, record_id=record_id)
        return None

    def reasons(self, row: SanctionsHit) -> list[str]:
        opened = self._reveal(row.reasons_enc, row.id)
        found: list[str] = json.loads(opened) if opened else []
        return found

    def review_note(self, row: SanctionsHit) -> str | None:
        return self._reveal(row.review_note_enc, row.id)

    # Review --------------------------------------------------------------------------------

    async def hits(
        self,
        session: AsyncSession,
        *,
        status: HitStatus | None = None,
        subject_kind: SubjectKind | None = None,
        subject_ref: str | None = None,
        limit: int = 100,
    ) -> Sequence[SanctionsHit]:
        return await repository.hits(
            session,
            status=status.value if status else None,
            subject_kind=subject_kind.value if subject_kind else None,
            subject_ref=subject_ref,
            limit=limit,
        )

    async def hit(self, session: AsyncSession, hit_id: str) -> SanctionsHit:
        row = await repository.hit(session, hit_id)
        if row is None:
            raise NotFound("no such sanctions hit")
        return row

    async def clear(
        self,
        session: AsyncSession,
        *,
        hit_id: str,
        staff_id: str,
        note: str,
        request_id: str | None = None,
    ) -> SanctionsHit:
        """A false positive: the pair is not raised again until the entry changes."""
        return await self._review(
            session,
            hit_id=hit_id,
            staff_id=staff_id,
            note=note,
            status=HitStatus.CLEARED,
            event=SanctionsEvent.HIT_CLEARED,
            request_id=request_id,
        )

    async def confirm(
        self,
        session: AsyncSession,
        *,
        hit_id: str,
        staff_id: str,
        note: str,
        request_id: str | None = None,
    ) -> SanctionsHit:
        """The subject is the listed party: their standing is BLOCK for good."""
        return await self._review(
            session,
            hit_id=hit_id,
            staff_id=staff_id,
            note=note,
            status=HitStatus.CONFIRMED,
            event=SanctionsEvent.HIT_CONFIRMED,
            request_id=request_id,
        )

    async def _review(
        self,
        session: AsyncSession,
        *,
        hit_id: str,
        staff_id: str,
        note: str,
        status: HitStatus,
        event: SanctionsEvent,
        request_id: str | None,
    ) -> SanctionsHit:
        cleaned = " ".join(note.split())
        if not 3 <= len(cleaned) <= MAX_NOTE_CHARS:
            raise SanctionsInputError(
                f"give the reason for the decision (3 to {MAX_NOTE_CHARS} characters)"
            )
        row = await repository.hit(session, hit_id, lock=True)
        if row is None:
            raise NotFound("no such sanctions hit")
        if row.status != HitStatus.OPEN.value:
            raise HitConflict(f"this hit is already {row.status}")
        row.status = status.value
        row.reviewed_by = staff_id
        row.reviewed_ns = self.deps.clock.now_ns()
        row.review_note_enc = keyring_field(self.deps.keyring, cleaned, record_id=row.id)
        await self.deps.audit(
            session,
            event,
            actor=Party("user", staff_id),
            subject=Party("user", row.user_id),
            data={
                "hit_id": row.id,
                "subject_kind": row.subject_kind,
                "subject_ref": row.subject_ref,
                "entry_id": row.entry_id,
                "score": f"{row.score:.4f}",
            },
            request_id=request_id,
        )
        await session.flush()
        await self._changed(
            session,
            SubjectKind(row.subject_kind),
            row.subject_ref,
            actor=Party("user", staff_id),
            request_id=request_id,
        )
        return row

    # Re-screening --------------------------------------------------------------------------

    async def start_rescreen(
        self, session: AsyncSession, *, actor: Party, request_id: str | None = None
    ) -> SanctionsRescreen:
        index = await self.index(session)
        row = SanctionsRescreen(
            id=self.deps.ids.new_str(),
            version_id=index.version,
            status="running",
            subjects=0,
            new_hits=0,
            started_ns=self.deps.clock.now_ns(),
        )
        repository.add(session, row)
        await self.deps.audit(
            session,
            SanctionsEvent.RESCREEN_STARTED,
            actor=actor,
            data={"rescreen_id": row.id, "list_version": index.version},
            request_id=request_id,
        )
        return row

    async def rescreen_row(self, session: AsyncSession, rescreen_id: str) -> SanctionsRescreen:
        row = await repository.rescreen(session, rescreen_id)
        if row is None:
            raise NotFound("no such re-screening")
        return row

    async def rescreens(self, session: AsyncSession) -> Sequence[SanctionsRescreen]:
        return await repository.rescreens(session)

    async def known_pairs(self, session: AsyncSession) -> set[tuple[str, str, str, str]]:
        return await repository.known_pairs(session)

    async def finish_rescreen(
        self,
        session: AsyncSession,
        rescreen_id: str,
        *,
        subjects: int,
        new_hits: int,
        actor: Party,
        error: str | None = None,
    ) -> None:
        row = await repository.rescreen(session, rescreen_id)
        if row is None:
            return
        row.status = "failed" if error else "done"
        row.subjects = subjects
        row.new_hits = new_hits
        row.error = error[:200] if error else None
        row.finished_ns = self.deps.clock.now_ns()
        await self.deps.audit(
            session,
            SanctionsEvent.RESCREEN_FINISHED,
            actor=actor,
            data={
                "rescreen_id": rescreen_id,
                "list_version": row.version_id,
                "subjects": subjects,
                "new_hits": new_hits,
                "failed": error is not None,
            },
        )

    async def progress(
        self, session: AsyncSession, rescreen_id: str, *, subjects: int, new_hits: int
    ) -> None:
        row = await repository.rescreen(session, rescreen_id)
        if row is not None:
            row.subjects = subjects
            row.new_hits = new_hits


def _checked_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned or len(cleaned) > MAX_NAME_CHARS:
        raise SanctionsInputError(f"the name must be 1 to {MAX_NAME_CHARS} characters")
    if not name_words(cleaned):
        raise SanctionsInputError("the name has no letters or digits to screen")
    return cleaned


def _checked_nationality(code: str | None) -> str | None:
    if code is None:
        return None
    cleaned = code.strip().upper()
    if len(cleaned) != 2 or not cleaned.isascii() or not cleaned.isalpha():
        raise SanctionsInputError("nationality is an ISO 3166-1 alpha-2 code such as RU")
    return cleaned
