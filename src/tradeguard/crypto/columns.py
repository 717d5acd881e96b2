"""Encrypted columns (ENC-2) and blind indexes.

`EncryptedText` is a SQLAlchemy column type that encrypts on the way in and never decrypts
on the way out. A TypeDecorator sees a value and a dialect, never the row, so it cannot know
the record id that the ciphertext's associated data must bind; the value brings it:

    row.tax_id = keyring_field(keyring, "123-45-6789", record_id=row.id)   # sealed at flush
    row.tax_id_index = blind_index(keyring, DataClass.TAX_ID, "123-45-6789", digits_only)
    select(T).where(blind_index_matches(T.tax_id_index, keyring, DataClass.TAX_ID, ssn))
    row.tax_id.reveal(keyring, record_id=row.id)   # the full value: callers audit this
    row.tax_id.masked(keyring, record_id=row.id)   # ***6789, the default for display

Reads return `SealedField`, which holds only ciphertext: a value read from the database
cannot reach a log line, a template or a JSON body in clear by accident, and plaintext
assigned directly (a `str`) is refused at flush. Every write seals under the class's
encrypting version, so an updated row moves to the newest key as a matter of course (lazy
re-encryption); `tradeguard keys rewrap` moves the rest.

A blind index is an HMAC-SHA256 of the normalized value under the class's own index key
(never its encryption key), for equality lookups and duplicate checks without decrypting.
Index keys have versions and each stored index names its version (crypto/index_format.py):
write with `blind_index` (the current version), look up with `blind_index_matches` (every
live version), so a lookup finds rows indexed before a rotation as well as after it. The
table's index column goes into crypto/catalogue.py INDEX_LOCATIONS, so that
`tradeguard keys reindex` can move it to the new version and the old one can retire.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from sqlalchemy import LargeBinary
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ColumnElement
from sqlalchemy.types import TypeDecorator

from tradeguard.core.masking import HIDDEN
from tradeguard.crypto.classes import DataClass
from tradeguard.crypto.envelope import FieldBinding, stem
from tradeguard.crypto.keyring import Keyring

Normalizer = Callable[[str], str]


def digits_only(value: str) -> str:
    """`123-45-6789` and `123 45 6789` index alike."""
    return "".join(ch for ch in value if ch.isdigit())


def casefolded(value: str) -> str:
    return " ".join(value.split()).casefold()


def mask_last4(value: str) -> str:
    """`***6789`: the last four characters (PCI DSS 3.4.1 allows at most these and the
    first six); the hidden part never reveals the length."""
    return HIDDEN + value[-4:] if len(value) > 4 else HIDDEN


class PlainField(NamedTuple):
    """A value on its way into an encrypted column, with what sealing it needs."""

    value: str
    keyring: Keyring
    record_id: str

    def __str__(self) -> str:
        return HIDDEN

    def __repr__(self) -> str:
        return f"PlainField({HIDDEN}, record_id={self.record_id!r})"


def keyring_field(keyring: Keyring, value: str, *, record_id: str) -> PlainField:
    return PlainField(value, keyring, record_id)


class SealedField(NamedTuple):
    """A value as stored: ciphertext, and where it belongs (a named tuple: one is made per
    value read, and a tuple is cheap to build)."""

    blob: bytes
    data_class: DataClass
    table: str
    column: str
    # The column's part of the associated data (envelope.stem), when the column type made it.
    stem: bytes | None = None

    def __repr__(self) -> str:
        return f"SealedField({HIDDEN}, {self.data_class.value}, {self.table}.{self.column})"

    def binding(self, record_id: str) -> FieldBinding:
        return FieldBinding(self.data_class.value, self.table, self.column, record_id.encode())

    def reveal(self, keyring: Keyring, *, record_id: str) -> str:
        """The clear value; DecryptionFailed if it was moved here from another row."""
        return keyring.open_at(
            self.blob, self.data_class, record_id.encode(), (self.table, self.column), self.stem
        ).decode()

    def masked(
        self, keyring: Keyring, *, record_id: str, mask: Callable[[str], str] = mask_last4
    ) -> str:
        return mask(self.reveal(keyring, record_id=record_id))

    def version(self, keyring: Keyring) -> int | None:
        return keyring.version_of(self.blob, self.data_class)

    def __str__(self) -> str:
        return HIDDEN


class EncryptedText(TypeDecorator[Any]):
    """A text value stored as an AES-256-GCM envelope under its class's key."""

    impl = LargeBinary
    cache_ok = True

    def __init__(self, data_class: DataClass, *, table: str, column: str) -> None:
        super().__init__()
        self.data_class = data_class
        self.table = table
        self.column = column
        # The associated data's part shared by every row of this column.
        self._stem = stem(data_class.value, table, column)

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        if isinstance(value, PlainField):
            return value.keyring.seal_at(
                value.value.encode(), self.data_class, self._stem, value.record_id.encode()
            )
        if isinstance(value, SealedField):
            if (value.data_class, value.table, value.column) != (
                self.data_class,
                self.table,
                self.column,
            ):
                raise TypeError("a sealed value belongs to another column")
            return value.blob
        # Plaintext must never reach the database by mistake.
        raise TypeError("encrypted columns take PlainField or SealedField values only")

    def process_result_value(self, value: Any, dialect: Dialect) -> SealedField | None:
        if value is None:
            return None
        return SealedField(bytes(value), self.data_class, self.table, self.column, self._stem)


def blind_index(
    keyring: Keyring, data_class: DataClass, value: str, normalize: Normalizer = casefolded
) -> bytes:
    """The index value to store: under the current index key version, which it names."""
    return keyring.index_value(data_class, normalize(value))


def blind_index_candidates(
    keyring: Keyring, data_class: DataClass, value: str, normalize: Normalizer = casefolded
) -> tuple[bytes, ...]:
    """Every stored form of the value's index under the live index key versions."""
    return keyring.index_candidates(data_class, normalize(value))


def blind_index_matches(
    column: Any,
    keyring: Keyring,
    data_class: DataClass,
    value: str,
    normalize: Normalizer = casefolded,
) -> ColumnElement[bool]:
    """A WHERE clause: `column` holds the value's index under any live version (an IN of
    two or three bound parameters; the column's ordinary index serves it)."""
    return column.in_(blind_index_candidates(keyring, data_class, value, normalize))  # type: ignore[no-any-return]
