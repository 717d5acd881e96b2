"""The backup manifest signing key on disk: an Ed25519 key of its own, not the ledger's.

Files live in `<data_dir>/keys/backup/` (directory 0700), laid out like the ledger's
checkpoint key (ledger/tree/keys.py, whose functions this reuses): `active.pem` (PKCS #8,
mode 0600) and `retired-<key ID>.vkey` for the public keys of earlier ones, so backups they
signed still verify. A separate key because the purposes differ: whoever holds the backup
key can make a manifest look genuine, and should not thereby be able to sign audit
checkpoints (or the other way round); each can be rotated or revoked on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from tradeguard.ledger.tree.keys import (
    ACTIVE_KEY_FILE,
    RETIRED_KEY_GLOB,
    LogKeys,
    load_log_keys,
    load_or_create_log_keys,
    read_verifier_keys,
    rotate_log_key,
)
from tradeguard.ledger.tree.note import VerifierKey

BACKUP_KEY_NAME: Final = "tradeguard-backup"
# The card vault's backups are signed by a key of the vault's own (keys/vault/backup/), held
# on the vault host: a platform operator's key cannot make a vault manifest look genuine.
VAULT_BACKUP_KEY_NAME: Final = "tradeguard-vault-backup"


def load_or_create_backup_keys(directory: Path, name: str = BACKUP_KEY_NAME) -> LogKeys:
    return load_or_create_log_keys(directory, name)


def load_backup_keys(directory: Path, name: str = BACKUP_KEY_NAME) -> LogKeys:
    return load_log_keys(directory, name)


def rotate_backup_key(directory: Path) -> tuple[LogKeys, VerifierKey]:
    return rotate_log_key(directory, BACKUP_KEY_NAME)


def trusted_backup_keys(directory: Path, name: str = BACKUP_KEY_NAME) -> list[VerifierKey]:
    """The public keys of this installation's backup keys (active and retired); the private
    key is read only to derive its public half."""
    keys: list[VerifierKey] = []
    if (directory / ACTIVE_KEY_FILE).exists():
        keys.append(load_backup_keys(directory, name).active.key)
    for path in sorted(directory.glob(RETIRED_KEY_GLOB)):
        keys.extend(read_verifier_keys(path))
    return keys
