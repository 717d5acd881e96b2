"""A monitor of the ledger's checkpoints (`tradeguard audit monitor`): every checkpoint it
sees must be signed by a trusted key and extend the last one it accepted.

It keeps its own state (the last accepted checkpoint) in a file outside the log, reads
checkpoints from a witness directory or the API, and asks for a consistency proof (RFC 9162
section 2.1.4) from the accepted size to each newer one, verified here. What it alarms on:

- fork: a checkpoint at the accepted size with a different root;
- rollback: the source's newest checkpoint (or tree) is smaller than the accepted one;
- inconsistent: a larger tree that does not extend the accepted one (history rewritten);
- bad_signature: a checkpoint not signed by a trusted key, or for another log.

After an alarm the state is not moved on, so every later run alarms again until someone
has looked. The first run trusts the newest checkpoint it finds (trust on first use); give
the monitor a state file seeded from a checkpoint obtained out of band to avoid that.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from tradeguard.core.errors import InvalidInput, TradeguardError
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.tree.errors import MalformedNote, NoteNotVerified, TreeSizeOutOfRange
from tradeguard.ledger.tree.merkle import verify_consistency
from tradeguard.ledger.tree.note import Checkpoint, VerifierKey, open_checkpoint
from tradeguard.ledger.tree.service import LedgerTree
from tradeguard.ledger.tree.witness import CHECKPOINT_SUFFIX

MONITOR_ALARM = "ledger:monitor:alarm"
MONITOR = Party("system", "audit-monitor")


class AlarmKind(StrEnum):
    FORK = "fork"
    ROLLBACK = "rollback"
    INCONSISTENT = "inconsistent"
    BAD_SIGNATURE = "bad_signature"


@dataclass(frozen=True, slots=True)
class Alarm:
    kind: AlarmKind
    detail: str
    seen_size: int | None
    observed_size: int | None
    where: str

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "kind": self.kind.value}


class StateFileInvalid(InvalidInput):
    slug = "monitor-state-invalid"
    title = "The monitor's state file cannot be read"


# A tree size as the ledger stores it (a signed 64-bit integer).
MAX_TREE_SIZE = 2**63 - 1


def _damaged(path: Path, why: str) -> StateFileInvalid:
    return StateFileInvalid(
        f"damaged state file {path}: {why}; nothing was checked or recorded (restore the "
        "file, or seed it from a checkpoint obtained out of band)"
    )


@dataclass(frozen=True, slots=True)
class MonitorState:
    """The last checkpoint the monitor accepted."""

    origin: str
    size: int
    root: bytes
    note: str

    @classmethod
    def load(cls, path: Path, keys: Sequence[VerifierKey]) -> MonitorState | None:
        """The state in `path`; None when there is no file yet. A damaged file is an error,
        never a fresh start: starting over would accept a rolled-back log.

        Only the signed note is evidence: its signature must verify under `keys`, and the
        file's plain `origin`, `size` and `root` (kept for people and scripts) must be the
        note's. Otherwise an edit of the file (a size or root changed by hand, a number out of
        range) would be taken for a log that forked or rolled back, and alarm falsely.
        """
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError):
            raise _damaged(path, "it cannot be read") from None
        try:
            data = json.loads(raw)
            size = data["size"]
            state = cls(
                origin=str(data["origin"]),
                size=size if type(size) is int else -1,
                root=base64.b64decode(data["root"], validate=True),
                note=str(data["note"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise _damaged(path, "not a monitor state file") from None
        if len(state.root) != 32 or not 0 <= state.size <= MAX_TREE_SIZE:
            raise _damaged(path, "not a monitor state file")
        try:
            signed, _ = open_checkpoint(state.note, keys, origin=state.origin)
        except (MalformedNote, NoteNotVerified) as error:
            raise _damaged(path, f"its note does not verify ({error.detail})") from None
        if (signed.size, signed.root) != (state.size, state.root):
            raise _damaged(path, "its size or root is not the one its signed note names")
        return state

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(path.suffix + ".tmp")
        document = {
            "origin": self.origin,
            "size": self.size,
            "root": base64.b64encode(self.root).decode(),
            "note": self.note,
        }
        temporary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, path)


@dataclass(frozen=True, slots=True)
class Observation:
    """A signed checkpoint as found, and where (a file name, a URL path)."""

    note: str
    where: str


class ProofUnavailable(TradeguardError):
    status = 502
    slug = "proof-unavailable"
    title = "No consistency proof could be obtained"


class CheckpointSource(Protocol):
    @property
    def name(self) -> str: ...

    async def observations(self, seen_size: int | None) -> list[Observation]:
        """Checkpoints to check: the one at `seen_size` (when there is one) and newer ones;
        when there is none at or above it, the newest there is (a rollback shows)."""

    async def consistency_proof(self, first: int, second: int) -> list[bytes]: ...


ProofSource = Callable[[int, int], Awaitable[list[bytes]]]


class DirectorySource:
    """A witness directory of `<size>.checkpoint` files; proofs from elsewhere."""

    def __init__(self, directory: Path, proofs: ProofSource) -> None:
        self._directory = directory
        self._proofs = proofs

    @property
    def name(self) -> str:
        return str(self._directory)

    def _files(self) -> dict[int, Path]:
        found = {}
        for path in self._directory.glob(f"*{CHECKPOINT_SUFFIX}"):
            stem = path.name.removesuffix(CHECKPOINT_SUFFIX)
            if stem.isdigit():
                found[int(stem)] = path
        return found

    async def observations(self, seen_size: int | None) -> list[Observation]:
        if not self._directory.is_dir():
            raise InvalidInput(f"{self._directory} is not a directory")
        files = self._files()
        sizes = sorted(s for s in files if seen_size is None or s >= seen_size)
        if not sizes and files:
            sizes = [max(files)]
        return [
            Observation(files[s].read_text(encoding="utf-8", errors="replace"), files[s].name)
            for s in sizes
        ]

    async def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return await self._proofs(first, second)


Fetch = Callable[[str, dict[str, str]], Awaitable[tuple[int, Any]]]


class ApiSource:
    """The API's checkpoint and proof routes (compliance:audit), through `fetch`, which
    answers (HTTP status, decoded JSON body) for a path and query parameters."""

    PREFIX = "/api/v1/audit"

    def __init__(self, base_url: str, fetch: Fetch) -> None:
        self._base = base_url.rstrip("/")
        self._fetch = fetch

    @property
    def name(self) -> str:
        return self._base

    async def _get(self, path: str, params: dict[str, str] | None = None) -> tuple[int, Any]:
        return await self._fetch(self.PREFIX + path, params or {})

    async def observations(self, seen_size: int | None) -> list[Observation]:
        found = []
        if seen_size is not None:
            status, body = await self._get(f"/checkpoints/{seen_size}")
            if status == 200:
                found.append(Observation(str(body["note"]), f"checkpoints/{seen_size}"))
            elif status != 404:
                raise ProofUnavailable(f"{self._base} answered {status} for a checkpoint")
        status, body = await self._get("/checkpoints/latest")
        if status == 200:
            found.append(Observation(str(body["note"]), "checkpoints/latest"))
        elif status != 404:
            raise ProofUnavailable(f"{self._base} answered {status} for the latest checkpoint")
        return found

    async def consistency_proof(self, first: int, second: int) -> list[bytes]:
        status, body = await self._get(
            "/proofs/consistency", {"first": str(first), "second": str(second)}
        )
        if status != 200:
            detail = body.get("detail", "") if isinstance(body, dict) else ""
            raise ProofUnavailable(f"no consistency proof {first}->{second}: {status} {detail}")
        return [base64.b64decode(h, validate=True) for h in body["proof"]]


def database_proofs(tree: LedgerTree) -> ProofSource:
    async def proof(first: int, second: int) -> list[bytes]:
        return (await tree.consistency(first, second)).proof

    return proof


@dataclass(frozen=True, slots=True)
class MonitorResult:
    state: MonitorState | None
    alarms: list[Alarm]
    accepted: list[Checkpoint]


async def check_source(
    state: MonitorState | None,
    source: CheckpointSource,
    keys: Sequence[VerifierKey],
    *,
    origin: str | None = None,
) -> MonitorResult:
    """One look at the source: alarms, and the state to keep (moved on only past
    checkpoints that verified)."""
    alarms: list[Alarm] = []
    seen: list[tuple[Checkpoint, Observation]] = []
    expected_origin = state.origin if state is not None else origin
    for observation in await source.observations(state.size if state else None):
        try:
            checkpoint, _ = open_checkpoint(observation.note, keys, origin=expected_origin)
        except (MalformedNote, NoteNotVerified) as error:
            alarms.append(
                Alarm(
                    AlarmKind.BAD_SIGNATURE,
                    error.detail,
                    state.size if state else None,
                    None,
                    observation.where,
                )
            )
            continue
        seen.append((checkpoint, observation))
    seen.sort(key=lambda item: item[0].size)
    if not seen:
        return MonitorResult(state, alarms, [])
    if state is None:
        checkpoint, observation = seen[-1]
        first = MonitorState(checkpoint.origin, checkpoint.size, checkpoint.root, observation.note)
        return MonitorResult(first, alarms, [checkpoint])
    newest = seen[-1][0]
    if newest.size < state.size:
        alarms.append(
            Alarm(
                AlarmKind.ROLLBACK,
                f"the newest checkpoint has {newest.size} entries, but one with {state.size} "
                "was seen before: the log was rolled back",
                state.size,
                newest.size,
                seen[-1][1].where,
            )
        )
        return MonitorResult(state, alarms, [])
    accepted = []
    for checkpoint, observation in seen:
        if checkpoint.size < state.size:
            continue
        if checkpoint.size == state.size:
            if checkpoint.root != state.root:
                alarms.append(
                    Alarm(
                        AlarmKind.FORK,
                        f"two different trees at size {state.size}: root "
                        f"{checkpoint.root_b64} now, {_b64(state.root)} seen before",
                        state.size,
                        checkpoint.size,
                        observation.where,
                    )
                )
                break
            continue
        alarm = await _extends(state, checkpoint, source, observation.where)
        if alarm is not None:
            alarms.append(alarm)
            break
        state = MonitorState(checkpoint.origin, checkpoint.size, checkpoint.root, observation.note)
        accepted.append(checkpoint)
    return MonitorResult(state, alarms, accepted)


async def _extends(
    state: MonitorState, checkpoint: Checkpoint, source: CheckpointSource, where: str
) -> Alarm | None:
    try:
        proof = await source.consistency_proof(state.size, checkpoint.size)
    except TreeSizeOutOfRange as error:
        # The checkpoint was signed over a tree the log no longer has.
        return Alarm(AlarmKind.ROLLBACK, error.detail, state.size, checkpoint.size, where)
    except ProofUnavailable as error:
        return Alarm(AlarmKind.INCONSISTENT, error.detail, state.size, checkpoint.size, where)
    if verify_consistency(state.size, checkpoint.size, state.root, checkpoint.root, proof):
        return None
    return Alarm(
        AlarmKind.INCONSISTENT,
        f"the tree at size {checkpoint.size} does not extend the one seen at size "
        f"{state.size}: the log's history was rewritten",
        state.size,
        checkpoint.size,
        where,
    )


async def check_database(state: MonitorState, tree: LedgerTree) -> Alarm | None:
    """The log's own database against the checkpoint the monitor last accepted: its tree
    must have that size and that root there. A database rewritten with its checkpoint rows
    deleted passes every check of the witnessed checkpoints alone; this names it."""
    where = "the log's database"
    try:
        root = (await tree.consistency(state.size, state.size)).second_root
    except TreeSizeOutOfRange as error:
        return Alarm(AlarmKind.ROLLBACK, error.detail, state.size, None, where)
    if root == state.root:
        return None
    return Alarm(
        AlarmKind.FORK,
        f"the database's tree at size {state.size} has root {_b64(root)}, the witnessed "
        f"checkpoint {_b64(state.root)}: the log's database was rewritten",
        state.size,
        state.size,
        where,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def alarm_event(alarm: Alarm, *, source: str) -> LedgerEvent:
    """The ledger record of an alarm, written when the monitor can reach the database."""
    return LedgerEvent(
        type=MONITOR_ALARM,
        actor=MONITOR,
        data={**alarm.as_json(), "source": source},
    )
