"""Publishing checkpoints to a witness: a directory of write-once files, or an HTTP witness
speaking the C2SP tlog-witness protocol (c2sp.org/tlog-witness, `add-checkpoint`).

A checkpoint kept only in the database it commits to proves little against someone who can
rewrite that database: a copy elsewhere, which the log cannot take back, is what makes a
later fork or rollback visible (`tradeguard audit monitor` watches for both).

- Directory: each checkpoint becomes `<size>.checkpoint`, written to a temporary file, synced,
  then linked into place (link fails if the name exists, so a file is never replaced, where a
  rename would silently overwrite). An existing file with the same tree head is fine; one
  with a different root at the same size is a fork, refused and reported.
- HTTP: POST <prefix>/add-checkpoint with "old <size>", the consistency proof from the size
  the witness last cosigned, a blank line and the checkpoint. A 409 with a
  `text/x.tlog.size` body names the witness's size: the proof is rebuilt from there once.
  Plain http is refused except to a loopback address.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import logging
import os
import secrets
import ssl
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from tradeguard.core.errors import ConfigurationError, ServiceUnavailable, TradeguardError
from tradeguard.ledger.tree.errors import MalformedNote, WitnessConflict
from tradeguard.ledger.tree.note import parse_checkpoint, parse_note
from tradeguard.ledger.tree.service import LedgerTree, SignedCheckpoint

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIX = ".checkpoint"
SIZE_CONTENT_TYPE = "text/x.tlog.size"
# A witness that has never seen the log gets its history in passes of this many checkpoints.
PUBLISH_BATCH = 100

ProofSource = Callable[[int, int], Awaitable[list[bytes]]]


class WitnessUnavailable(ServiceUnavailable):
    slug = "witness-unavailable"
    title = "The witness could not be reached"


class WitnessRefused(TradeguardError):
    """The witness does not accept this log (unknown origin, untrusted key): configuration."""

    status = 502
    slug = "witness-refused"
    title = "The witness refused the checkpoint"


class Witness(Protocol):
    @property
    def identity(self) -> str:
        """A stable name of the location (SHA-256 hex), the key of its publication cursor."""

    @property
    def location(self) -> str:
        """Where it is, for messages (never a password or a query string)."""

    @property
    def keeps_history(self) -> bool:
        """True when every checkpoint is published; False when only the latest matters."""

    async def publish(
        self, checkpoint: SignedCheckpoint, *, previous_size: int, proofs: ProofSource
    ) -> None: ...


def _identity(location: str) -> str:
    return hashlib.sha256(location.encode()).hexdigest()


def checkpoint_file_name(size: int) -> str:
    return f"{size}{CHECKPOINT_SUFFIX}"


@dataclass(frozen=True, slots=True)
class DirectoryWitness:
    directory: Path

    @property
    def identity(self) -> str:
        return _identity(f"dir:{self.directory.resolve()}")

    @property
    def location(self) -> str:
        return str(self.directory)

    @property
    def keeps_history(self) -> bool:
        return True

    async def publish(
        self, checkpoint: SignedCheckpoint, *, previous_size: int, proofs: ProofSource
    ) -> None:
        try:
            await asyncio.to_thread(write_once, self.directory, checkpoint.size, checkpoint.note)
        except OSError as error:
            raise WitnessUnavailable(
                f"the witness directory {self.directory} cannot be written "
                f"({error.strerror or type(error).__name__})"
            ) from None


def write_once(directory: Path, size: int, note: str) -> bool:
    """Write `<size>.checkpoint` unless it exists; True when written. An existing file must
    hold the same tree head (its signatures may differ, e.g. after a key rotation)."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / checkpoint_file_name(size)
    temporary = directory / f".{size}.{secrets.token_hex(6)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(note.encode())
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, final)
        except FileExistsError:
            _same_tree_head(final, note)
            return False
    finally:
        temporary.unlink(missing_ok=True)
    directory_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)
    return True


def _same_tree_head(existing: Path, note: str) -> None:
    try:
        held = parse_checkpoint(parse_note(existing.read_text(encoding="utf-8")).text)
    except (MalformedNote, UnicodeDecodeError):
        raise WitnessConflict(f"{existing} exists and is not a checkpoint") from None
    ours = parse_checkpoint(parse_note(note).text)
    if (held.origin, held.size, held.root) != (ours.origin, ours.size, ours.root):
        raise WitnessConflict(
            f"{existing} holds a different tree head at size {ours.size}: a fork of the "
            "audit ledger, or a file replaced behind its back"
        )


@dataclass(frozen=True, slots=True)
class HttpWitness:
    """A tlog-witness submission prefix, e.g. https://witness.example/tlog."""

    prefix: str
    timeout_seconds: float = 10.0

    @property
    def identity(self) -> str:
        return _identity(f"http:{self.location}")

    @property
    def location(self) -> str:
        parts = urlsplit(self.prefix)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"

    @property
    def keeps_history(self) -> bool:
        return False

    async def publish(
        self, checkpoint: SignedCheckpoint, *, previous_size: int, proofs: ProofSource
    ) -> None:
        old = min(previous_size, checkpoint.size)
        for _attempt in range(2):
            proof = await proofs(old, checkpoint.size) if 0 < old < checkpoint.size else []
            status, content_type, body = await asyncio.to_thread(
                self._post, _add_checkpoint_body(old, proof, checkpoint.note)
            )
            if status == 200:
                return
            if status == 409 and content_type.startswith(SIZE_CONTENT_TYPE):
                held = _witness_size(body)
                if held > checkpoint.size:
                    # The witness has cosigned a newer checkpoint of ours already.
                    return
                if held != old:
                    old = held
                    continue
            raise _refusal(status, checkpoint.size, old)
        raise WitnessConflict(
            f"the witness at {self.location} keeps changing its size; checkpoint "
            f"{checkpoint.size} not cosigned"
        )

    def _post(self, body: bytes) -> tuple[int, str, bytes]:
        url = self.prefix.rstrip("/") + "/add-checkpoint"
        request = urllib.request.Request(  # noqa: S310 - scheme checked in witness_from_setting
            url, data=body, method="POST", headers={"Content-Type": "text/plain; charset=utf-8"}
        )
        context = ssl.create_default_context() if url.startswith("https://") else None
        try:
            with urllib.request.urlopen(  # noqa: S310 - scheme checked
                request, timeout=self.timeout_seconds, context=context
            ) as response:
                return response.status, response.headers.get("Content-Type", ""), response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.headers.get("Content-Type", ""), error.read(1024)
        except (OSError, ValueError) as error:
            raise WitnessUnavailable(
                f"the witness at {self.location} could not be reached ({type(error).__name__})"
            ) from None


def _add_checkpoint_body(old: int, proof: list[bytes], note: str) -> bytes:
    lines = [f"old {old}\n", *(base64.b64encode(h).decode() + "\n" for h in proof), "\n"]
    return ("".join(lines) + note).encode()


def _witness_size(body: bytes) -> int:
    text = body.decode("ascii", errors="replace").strip()
    if not text.isdigit():
        raise WitnessRefused("the witness answered 409 without a tree size")
    return int(text)


def _refusal(status: int, size: int, old: int) -> TradeguardError:
    if status == 409:
        return WitnessConflict(
            f"the witness holds a different checkpoint at size {old} than ours: possible fork"
        )
    if status == 422:
        return WitnessConflict(
            f"the witness refused our consistency proof from size {old} to {size}: the "
            "ledger does not extend what the witness cosigned"
        )
    if status in (403, 404):
        return WitnessRefused(
            f"the witness does not know this log or its key (HTTP {status}); give it the "
            "public key from `tradeguard audit keys list`"
        )
    if status >= 500:
        return WitnessUnavailable(f"the witness failed (HTTP {status})")
    return WitnessRefused(f"the witness refused checkpoint {size} (HTTP {status})")


def witness_from_setting(value: str | None, *, timeout_seconds: float = 10.0) -> Witness | None:
    """The witness a setting names: an http(s) URL, else a directory path."""
    if not value:
        return None
    if not value.startswith(("http://", "https://")):
        return DirectoryWitness(Path(value))
    parts = urlsplit(value)
    if parts.query or parts.fragment or not parts.hostname:
        raise ConfigurationError(
            "TRADEGUARD_LEDGER_WITNESS: an HTTP witness is a URL prefix without query or fragment"
        )
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ConfigurationError(
            "TRADEGUARD_LEDGER_WITNESS: plain http is only allowed to a loopback address; "
            "use https://"
        )
    return HttpWitness(value, timeout_seconds=timeout_seconds)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def publish_pending(tree: LedgerTree, witness: Witness) -> int:
    """Publish the checkpoints the witness has not had; how many were published.

    The cursor moves after each publication, so an interrupted pass resumes where it
    stopped. A witness that keeps no history gets only the newest checkpoint.
    """
    cursor = await tree.witness_cursor(witness.identity) or 0
    pending = await tree.checkpoints_after(cursor, limit=PUBLISH_BATCH)
    if not witness.keeps_history:
        pending = pending[-1:]
    for checkpoint in pending:
        try:
            await witness.publish(checkpoint, previous_size=cursor, proofs=tree.consistency_hashes)
        except WitnessConflict as conflict:
            # Fork evidence: said loudly, once per pass, and never skipped over.
            log.error(
                "witness %s refused checkpoint %d: %s",
                witness.location,
                checkpoint.size,
                conflict.detail,
            )
            raise
        await tree.advance_witness_cursor(witness.identity, checkpoint.size)
        cursor = checkpoint.size
    return len(pending)
