"""The staff authenticator catalogue file (IAC-3): read at start, read again when it changes.

`TRADEGUARD_WEBAUTHN_STAFF_METADATA_FILE` names a FIDO MDS3-style file (see
`mfa/attestation.py`); unset, the file shipped in the package is used. An operator updates
the allow-list by replacing the file: the next staff registration sees the new catalogue, no
restart. A replacement that cannot be read is refused and the previous catalogue stays in
force (logged once per change), so a botched edit never opens or closes the door silently.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from tradeguard.core.errors import ConfigurationError
from tradeguard.identity.mfa.attestation import (
    MAX_METADATA_BYTES,
    AuthenticatorCatalogue,
    MetadataInvalid,
    parse_catalogue,
)

logger = logging.getLogger("tradeguard.identity")


def default_metadata_file() -> Path:
    """The catalogue shipped with tradeguard (entries taken from the FIDO MDS3 BLOB)."""
    return Path(str(resources.files("tradeguard.identity.mfa") / "data/staff_authenticators.json"))


def read_catalogue(path: Path) -> AuthenticatorCatalogue:
    """Parse the file; `ConfigurationError` names the file and what is wrong with it."""
    try:
        with path.open("rb") as handle:
            text = handle.read(MAX_METADATA_BYTES + 1)
        return parse_catalogue(text)
    except OSError as exc:
        raise ConfigurationError(
            f"staff authenticator metadata {path}: cannot be read ({exc.strerror or exc})"
        ) from None
    except MetadataInvalid as exc:
        raise ConfigurationError(f"staff authenticator metadata {path}: {exc}") from None


class AuthenticatorMetadataFile:
    """The catalogue from one file, re-read when its size or modification time changes."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_metadata_file()
        self._signature = self._stat()
        self._catalogue = read_catalogue(self.path)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def __call__(self) -> AuthenticatorCatalogue:
        signature = self._stat()
        if signature is not None and signature != self._signature:
            self._signature = signature
            try:
                self._catalogue = read_catalogue(self.path)
                logger.info(
                    "staff authenticator metadata reloaded: %d models", len(self._catalogue)
                )
            except ConfigurationError as exc:
                logger.error("%s; the previous catalogue stays in force", exc)
        return self._catalogue
