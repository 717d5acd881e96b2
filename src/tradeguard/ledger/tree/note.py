"""C2SP signed notes (c2sp.org/signed-note) and transparency-log checkpoints
(c2sp.org/tlog-checkpoint), signed with Ed25519 (signature type 0x01).

A checkpoint is the note text

    <origin>\\n<tree size in decimal>\\n<base64 root hash>\\n

followed by a blank line and one line per signature, "— <key name> <base64(key ID ||
Ed25519 signature over the text)>". The key ID is SHA-256(key name || 0x0A || 0x01 ||
public key)[:4]. A verifier key travels as "<name>+<key ID in hex>+<base64(0x01 || public
key)>" (the vkey format of golang.org/x/mod/sumdb/note). Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tradeguard.ledger.tree.errors import MalformedNote, NoteNotVerified
from tradeguard.ledger.tree.merkle import HASH_SIZE

EM_DASH = "\u2014"
ED25519 = 0x01
# The note spec asks verifiers to accept at least 16 signatures and to bound the rest.
MAX_SIGNATURES = 64
MAX_NOTE_BYTES = 64 * 1024
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_NAME_FORBIDDEN = re.compile(r"[\s+]")
_HEX8 = re.compile(r"[0-9a-f]{8}")


def valid_key_name(name: str) -> bool:
    """Key names are non-empty, with no Unicode space and no plus sign."""
    return bool(name) and not _NAME_FORBIDDEN.search(name) and name.isprintable()


def key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise MalformedNote("not standard base64") from None


@dataclass(frozen=True, slots=True)
class VerifierKey:
    """A public key that checks note signatures: its name, 4-byte ID and Ed25519 key."""

    name: str
    public_key: bytes
    id: bytes = field(init=False)

    def __post_init__(self) -> None:
        if not valid_key_name(self.name):
            raise MalformedNote("a key name is non-empty, without spaces or '+'")
        if len(self.public_key) != 32:
            raise MalformedNote("an Ed25519 public key is 32 bytes")
        object.__setattr__(self, "id", key_id(self.name, self.public_key))

    @property
    def id_hex(self) -> str:
        return self.id.hex()

    @property
    def vkey(self) -> str:
        encoded = base64.b64encode(bytes([ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.id_hex}+{encoded}"

    @classmethod
    def parse(cls, vkey: str) -> VerifierKey:
        """Read "<name>+<hex key ID>+<base64(0x01 || key)>"; the ID must match the key."""
        # The name has no '+'; the base64 key may (so split twice, from the left).
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3 or not _HEX8.fullmatch(parts[1]):
            raise MalformedNote("a verifier key reads <name>+<8 hex digits>+<base64 key>")
        raw = _b64decode(parts[2])
        if len(raw) != 33 or raw[0] != ED25519:
            raise MalformedNote("only Ed25519 verifier keys (type 0x01) are supported")
        key = cls(parts[0], raw[1:])
        if key.id_hex != parts[1]:
            raise MalformedNote("the verifier key's ID does not match its name and key")
        return key

    def verifies(self, text: bytes, signature: bytes) -> bool:
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, text)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, slots=True)
class NoteSigner:
    """An Ed25519 private key with the name it signs under."""

    name: str
    private_key: ed25519.Ed25519PrivateKey = field(repr=False)
    key: VerifierKey = field(init=False, repr=False)

    def __post_init__(self) -> None:
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        object.__setattr__(self, "key", VerifierKey(self.name, public))

    def signature_line(self, text: str) -> str:
        signature = self.private_key.sign(text.encode())
        encoded = base64.b64encode(self.key.id + signature).decode()
        return f"{EM_DASH} {self.name} {encoded}\n"


@dataclass(frozen=True, slots=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class SignedNote:
    text: str
    signatures: tuple[NoteSignature, ...]


def sign_note(text: str, signer: NoteSigner) -> str:
    """The signed note: the text (ending in a newline), a blank line, the signature line."""
    _check_text(text)
    return text + "\n" + signer.signature_line(text)


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise MalformedNote("a note's text ends with a newline")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise MalformedNote("a note holds no control characters other than newline")


def parse_note(note: str) -> SignedNote:
    """Split a signed note into its text and signature lines (nothing is verified here)."""
    if len(note.encode()) > MAX_NOTE_BYTES:
        raise MalformedNote("the note is too large")
    # The text is separated from the signatures by the LAST blank line.
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise MalformedNote("a signed note is text, a blank line, then signature lines")
    text, block = note[: cut + 1], note[cut + 2 :]
    _check_text(text)
    lines = block[:-1].split("\n") if block else []
    if not lines or len(lines) > MAX_SIGNATURES:
        raise MalformedNote("a signed note carries between 1 and 64 signature lines")
    signatures = []
    for line in lines:
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != EM_DASH or not valid_key_name(parts[1]):
            raise MalformedNote("a signature line reads '— <key name> <base64 signature>'")
        raw = _b64decode(parts[2])
        if len(raw) < 5:
            raise MalformedNote("a signature is a 4-byte key ID and the signature bytes")
        signatures.append(NoteSignature(parts[1], raw[:4], raw[4:]))
    return SignedNote(text, tuple(signatures))


def open_note(note: str, keys: Iterable[VerifierKey]) -> tuple[SignedNote, list[VerifierKey]]:
    """Verify a note against trusted keys; the keys whose signatures verified.

    As the spec says: signatures of unknown keys are ignored (even if they share a name or an
    ID with a known key, but not both); a known key's signature that fails rejects the note;
    a note with no verified signature of a known key is rejected.
    """
    parsed = parse_note(note)
    known = {(k.name, k.id): k for k in keys}
    text = parsed.text.encode()
    verified = []
    for signature in parsed.signatures:
        key = known.get((signature.name, signature.key_id))
        if key is None:
            continue
        if not key.verifies(text, signature.signature):
            raise NoteNotVerified(f"the signature of key {key.name}+{key.id_hex} does not verify")
        verified.append(key)
    if not verified:
        raise NoteNotVerified("no signature of a trusted key on this note")
    return parsed, verified


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: the log's origin, its tree size and the RFC 9162 root hash."""

    origin: str
    size: int
    root: bytes

    def __post_init__(self) -> None:
        if not self.origin or any(ord(c) < 0x20 for c in self.origin):
            raise MalformedNote("a checkpoint's origin is a non-empty line")
        if self.size < 0 or len(self.root) != HASH_SIZE:
            raise MalformedNote("a checkpoint has a size >= 0 and a 32-byte root hash")

    @property
    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @property
    def root_b64(self) -> str:
        return base64.b64encode(self.root).decode()


def parse_checkpoint(text: str) -> Checkpoint:
    """The tree head of a checkpoint's note text (extension lines, if any, are not used)."""
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "" or any(not line for line in lines[:-1]):
        raise MalformedNote("a checkpoint is at least three non-empty lines")
    origin, size, root = lines[0], lines[1], lines[2]
    if not _DECIMAL.fullmatch(size) or len(size) > 20:
        raise MalformedNote("a checkpoint's tree size is a decimal without leading zeros")
    digest = _b64decode(root)
    if len(digest) != HASH_SIZE:
        raise MalformedNote("a checkpoint's root hash is 32 bytes")
    return Checkpoint(origin, int(size), digest)


def open_checkpoint(
    note: str, keys: Iterable[VerifierKey], *, origin: str | None = None
) -> tuple[Checkpoint, list[VerifierKey]]:
    """Verify a signed checkpoint with trusted keys and read its tree head."""
    parsed, verified = open_note(note, keys)
    checkpoint = parse_checkpoint(parsed.text)
    if origin is not None and checkpoint.origin != origin:
        raise NoteNotVerified(f"the checkpoint is for log {checkpoint.origin!r}, not {origin!r}")
    return checkpoint, verified
