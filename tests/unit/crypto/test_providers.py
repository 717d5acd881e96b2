"""The local key-encrypting-key provider: owner-only key files, passphrase sealing."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from tradeguard.config import Settings
from tradeguard.crypto.envelope import EnvelopeBroken
from tradeguard.crypto.providers import (
    KeyFileError,
    LocalFileKek,
    create_master_key_file,
    read_master_key,
    replace_master_key_file,
)
from tradeguard.crypto.tasks import kek_provider_from, vault_kek

FAST_SCRYPT = 14  # the minimum accepted; production uses 17


class TestKeyFile:
    def test_a_new_key_file_is_owner_only(self, tmp_path: Path) -> None:
        path = tmp_path / "keys" / "master.key"
        LocalFileKek.load_or_create(path)
        assert (path.stat().st_mode & 0o777) == 0o600
        assert len(read_master_key(path)) == 32

    @pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o666])
    def test_a_key_file_others_can_read_or_write_is_refused(
        self, tmp_path: Path, mode: int
    ) -> None:
        path = tmp_path / "master.key"
        create_master_key_file(path, secrets.token_bytes(32), None)
        path.chmod(mode)
        with pytest.raises(KeyFileError, match=r"chmod 600") as refused:
            LocalFileKek.load_or_create(path)
        assert f"{mode:04o}" in refused.value.detail

    def test_a_key_file_of_another_user_is_refused(self, tmp_path: Path) -> None:
        if os.geteuid() != 0:
            pytest.skip("changing a file's owner needs root")
        path = tmp_path / "master.key"
        create_master_key_file(path, secrets.token_bytes(32), None)
        os.chown(path, 65534, -1)
        with pytest.raises(KeyFileError, match="not owned"):
            read_master_key(path)

    def test_a_symlink_in_place_of_the_key_file_is_refused(self, tmp_path: Path) -> None:
        real = tmp_path / "real.key"
        create_master_key_file(real, secrets.token_bytes(32), None)
        link = tmp_path / "master.key"
        link.symlink_to(real)
        with pytest.raises(KeyFileError, match="cannot open"):
            read_master_key(link)

    def test_a_file_of_the_wrong_size_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "master.key"
        create_master_key_file(path, secrets.token_bytes(32), None)
        path.write_bytes(b"short")
        with pytest.raises(KeyFileError, match="not a master key file"):
            read_master_key(path)

    def test_an_existing_key_file_is_never_overwritten(self, tmp_path: Path) -> None:
        path = tmp_path / "master.key"
        create_master_key_file(path, secrets.token_bytes(32), None)
        with pytest.raises(FileExistsError):
            create_master_key_file(path, secrets.token_bytes(32), None)


class TestPassphrase:
    def test_a_sealed_key_opens_with_its_passphrase_only(self, tmp_path: Path) -> None:
        path = tmp_path / "master.key"
        master = secrets.token_bytes(32)
        create_master_key_file(path, master, "correct horse", FAST_SCRYPT)
        assert master not in path.read_bytes()
        assert read_master_key(path, passphrase="correct horse") == master
        with pytest.raises(KeyFileError, match="passphrase does not open"):
            read_master_key(path, passphrase="wrong horse")
        with pytest.raises(KeyFileError, match="TRADEGUARD_MASTER_KEY_PASSPHRASE"):
            read_master_key(path)

    def test_sealing_an_existing_key_keeps_the_key(self, tmp_path: Path) -> None:
        path = tmp_path / "master.key"
        kek = LocalFileKek.load_or_create(path)
        replace_master_key_file(path, read_master_key(path), "pass phrase", FAST_SCRYPT)
        assert LocalFileKek(read_master_key(path, passphrase="pass phrase")).kek_id == kek.kek_id
        assert (path.stat().st_mode & 0o777) == 0o600

    def test_a_bare_key_is_refused_when_a_passphrase_is_configured(self, tmp_path: Path) -> None:
        # A bare key put in place of a sealed one must not silently drop the protection.
        path = tmp_path / "master.key"
        create_master_key_file(path, secrets.token_bytes(32), None)
        with pytest.raises(KeyFileError, match="not sealed under a passphrase"):
            read_master_key(path, passphrase="correct horse")
        with pytest.raises(KeyFileError, match="not sealed under a passphrase"):
            LocalFileKek.load_or_create(path, passphrase="correct horse")

    def test_the_vaults_bare_key_is_refused_under_the_vaults_passphrase(
        self, tmp_path: Path
    ) -> None:
        settings = Settings(  # type: ignore[call-arg]
            data_dir=tmp_path, vault_master_key_passphrase="vault pass phrase", _env_file=None
        )
        create_master_key_file(settings.vault_master_key_file, secrets.token_bytes(32), None)
        with pytest.raises(KeyFileError, match="not sealed under a passphrase"):
            kek_provider_from(settings, create=False, kek=vault_kek(settings))

    def test_a_damaged_sealed_file_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "master.key"
        create_master_key_file(path, secrets.token_bytes(32), "p", FAST_SCRYPT)
        data = bytearray(path.read_bytes())
        data[-1] ^= 1
        path.write_bytes(bytes(data))
        with pytest.raises(KeyFileError):
            read_master_key(path, passphrase="p")


class TestWrapping:
    async def test_a_wrapped_key_opens_only_in_its_slot_and_under_its_kek(self) -> None:
        kek = LocalFileKek(secrets.token_bytes(32))
        key = secrets.token_bytes(32)
        wrapped = await kek.wrap(key, associated_data=b"slot a")
        assert await kek.unwrap(wrapped, associated_data=b"slot a") == key
        with pytest.raises(EnvelopeBroken):
            await kek.unwrap(wrapped, associated_data=b"slot b")
        with pytest.raises(EnvelopeBroken):
            await LocalFileKek(secrets.token_bytes(32)).unwrap(wrapped, associated_data=b"slot a")
