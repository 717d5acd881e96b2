"""The keyring's jobs: the worker of a serving process (re-read the key table every few
seconds, rotate classes whose cryptoperiod ended) and the resumable rewrap.

Several processes may run the worker: a rotation is one INSERT of the next version, and the
primary key lets only one process's insert through (the others skip).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tradeguard.config import Settings
from tradeguard.core.clock import NS_PER_SECOND, Clock
from tradeguard.core.errors import ConfigurationError, TradeguardError
from tradeguard.core.workers import (
    BackoffPolicy,
    FailureObserver,
    FailureTracker,
    pause,
    run_until_stopped,
)
from tradeguard.crypto import repository
from tradeguard.crypto.catalogue import (
    LOCATIONS,
    IndexLocation,
    Location,
    index_locations_of,
    locations_of,
)
from tradeguard.crypto.classes import SPEC_OF, DataClass, parse_data_class
from tradeguard.crypto.keyring import Keyring
from tradeguard.crypto.kms_settings import KmsSettings
from tradeguard.crypto.providers import KekProvider, LocalFileKek, read_master_key
from tradeguard.crypto.service import KeyManagement, KeyPolicy, NewKeyVersion, RewrapBatch
from tradeguard.db.availability import unavailable_reason
from tradeguard.db.engine import unit_of_work
from tradeguard.ledger.domain import Party

log = logging.getLogger(__name__)

# A catalogued location: of encrypted values (rewrap) or of blind indexes (reindex).
L = TypeVar("L", Location, IndexLocation)
L_contra = TypeVar("L_contra", Location, IndexLocation, contravariant=True)

COMPONENT = "keyring"
# The in-process card vault's key table (its own database, its own worker).
VAULT_COMPONENT = "vault-keyring"
BACKOFF = BackoffPolicy(base_seconds=1.0, cap_seconds=60.0)
# Must stay below KeyPolicy.activation_delay_ns: a version is read by every process before
# it encrypts anywhere.
REFRESH_SECONDS = 5.0
ROTATION_CHECK_SECONDS = 3600.0


async def open_keyring(
    management: KeyManagement, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """At process start: make the first keys if there are none, then read them."""
    async with unit_of_work(sessions) as session:
        await management.ensure_keys(session)
    async with sessions() as session:
        await management.keyring.refresh(session)


class KeyringWorker:
    def __init__(
        self,
        management: KeyManagement,
        sessions: async_sessionmaker[AsyncSession],
        *,
        refresh_seconds: float = REFRESH_SECONDS,
        rotation_check_seconds: float = ROTATION_CHECK_SECONDS,
        component: str = COMPONENT,
    ) -> None:
        self._component = component
        self._management = management
        self._sessions = sessions
        self._refresh = refresh_seconds
        self._check_ns = int(rotation_check_seconds * NS_PER_SECOND)
        self._next_check_ns: int | None = None

    @property
    def _clock(self) -> Clock:
        return self._management.keyring.clock

    async def run_once(self) -> list[NewKeyVersion]:
        """Rotate what is due (at most once per check interval), then re-read the keys."""
        rotated: list[NewKeyVersion] = []
        now = self._clock.now_ns()
        if self._next_check_ns is None or now >= self._next_check_ns:
            async with unit_of_work(self._sessions) as session:
                if not self._management.keyring.loaded:
                    await self._management.ensure_keys(session)
                rotated = await self._management.rotate_due(session)
            self._next_check_ns = now + self._check_ns
            for made in rotated:
                log.info(
                    "data key rotated (cryptoperiod ended)",
                    extra={"data_class": made.data_class.value, "version": made.version},
                )
        async with self._sessions() as session:
            await self._management.keyring.refresh(session)
        return rotated

    async def run_forever(
        self, stop: asyncio.Event | None = None, *, tracker: FailureTracker | None = None
    ) -> None:
        async def one_pass() -> float:
            await self.run_once()
            return self._refresh

        await run_until_stopped(one_pass, tracker=tracker or self.failure_tracker(), stop=stop)

    def failure_tracker(self, observer: FailureObserver | None = None) -> FailureTracker:
        return FailureTracker(
            self._component,
            logger=log,
            clock=self._clock,
            policy=BACKOFF,
            observer=observer,
            describe=unavailable_reason,
        )


@dataclass(frozen=True, slots=True)
class RewrapRun:
    data_class: DataClass
    batches: int
    rewrapped: int
    unreadable: int
    finished: bool


class _BatchOf(Protocol[L_contra]):
    """KeyManagement.rewrap_batch or .reindex_batch: one committed batch of one location."""

    async def __call__(
        self,
        session: AsyncSession,
        data_class: DataClass,
        location: L_contra,
        *,
        batch_size: int,
        actor: Party,
        first_of_run: bool,
    ) -> RewrapBatch: ...


@dataclass(frozen=True, slots=True)
class BatchRun:
    """How a batched job runs: its size, its pace, and where it reports."""

    actor: Party
    batch_size: int = 1000
    pause_seconds: float = 0.0
    max_batches: int | None = None
    on_batch: Callable[[RewrapBatch], None] | None = None


async def _batches(
    sessions: async_sessionmaker[AsyncSession],
    data_class: DataClass,
    locations: list[L],
    batch_of: _BatchOf[L],
    run: BatchRun,
) -> RewrapRun:
    """Each location, one committed batch at a time, until it is finished; run again after
    a crash and it resumes where the last commit left it."""
    batches = rewrapped = unreadable = 0
    for location in locations:
        first = True
        while run.max_batches is None or batches < run.max_batches:
            async with unit_of_work(sessions) as session:
                batch = await batch_of(
                    session,
                    data_class,
                    location,
                    batch_size=run.batch_size,
                    actor=run.actor,
                    first_of_run=first,
                )
            first = False
            batches += 1
            rewrapped += batch.rewrapped
            unreadable += batch.unreadable
            if run.on_batch is not None:
                run.on_batch(batch)
            if batch.finished:
                break
            if run.pause_seconds and await pause(None, run.pause_seconds):
                break
        else:
            return RewrapRun(data_class, batches, rewrapped, unreadable, finished=False)
    return RewrapRun(data_class, batches, rewrapped, unreadable, finished=True)


async def rewrap_class(
    management: KeyManagement,
    sessions: async_sessionmaker[AsyncSession],
    data_class: DataClass,
    *,
    actor: Party,
    batch_size: int = 1000,
    pause_seconds: float = 0.0,
    max_batches: int | None = None,
    on_batch: Callable[[RewrapBatch], None] | None = None,
) -> RewrapRun:
    """Re-encrypt every stored value of a class under its encrypting version, one committed
    batch at a time; run again after a crash and it resumes where the last commit left it."""
    run = BatchRun(actor, batch_size, pause_seconds, max_batches, on_batch)
    locations = locations_of(data_class, management.keyring.catalogue)
    return await _batches(sessions, data_class, locations, management.rewrap_batch, run)


async def reindex_class(
    management: KeyManagement,
    sessions: async_sessionmaker[AsyncSession],
    data_class: DataClass,
    *,
    actor: Party,
    batch_size: int = 1000,
    pause_seconds: float = 0.0,
    max_batches: int | None = None,
    on_batch: Callable[[RewrapBatch], None] | None = None,
) -> RewrapRun:
    """Recompute every blind index of a class under its current index key version, one
    committed batch at a time; run again after a crash and it resumes where it stopped."""
    run = BatchRun(actor, batch_size, pause_seconds, max_batches, on_batch)
    locations = index_locations_of(data_class, management.keyring.indexes)
    return await _batches(sessions, data_class, locations, management.reindex_batch, run)


def key_policy_from(settings: Settings) -> KeyPolicy:
    """The cryptoperiods and delays configured; a ConfigurationError names an unknown class."""
    try:
        per_class = {
            parse_data_class(name): days
            for name, days in settings.key_rotation_days_by_class.items()
        }
    except ValueError as exc:
        raise ConfigurationError(f"TRADEGUARD_KEY_ROTATION_DAYS_BY_CLASS: {exc}") from None
    for data_class in per_class:
        if SPEC_OF[data_class].in_vault:
            # Not silently ignored: the vault's cryptoperiod has a setting of its own.
            raise ConfigurationError(
                f"TRADEGUARD_KEY_ROTATION_DAYS_BY_CLASS: {data_class.value} keys live in the "
                "card vault; set TRADEGUARD_VAULT_KEY_ROTATION_DAYS instead"
            )
    activation_ns = int(settings.key_activation_delay_seconds * NS_PER_SECOND)
    if 0 < activation_ns <= int(REFRESH_SECONDS * NS_PER_SECOND):
        raise ConfigurationError(
            f"TRADEGUARD_KEY_ACTIVATION_DELAY_SECONDS must be 0 or above {REFRESH_SECONDS:g} "
            "(the interval at which running processes re-read the keys)"
        )
    return KeyPolicy(
        rotation_days=per_class,
        default_rotation_days=settings.key_rotation_days,
        activation_delay_ns=activation_ns,
        retire_grace_ns=int(settings.key_retire_grace_seconds * NS_PER_SECOND),
    )


def vault_key_policy_from(settings: Settings) -> KeyPolicy:
    """The card vault's cryptoperiod (TRADEGUARD_VAULT_KEY_ROTATION_DAYS, PCI-4), with the
    platform's activation delay and retire grace."""
    return replace(
        key_policy_from(settings),
        rotation_days={},
        default_rotation_days=settings.vault_key_rotation_days,
    )


LOCAL: Final = "local"
AWS_KMS: Final = "aws-kms"
KEK_PROVIDERS: Final = (LOCAL, AWS_KMS)


@dataclass(frozen=True, slots=True)
class KekSetup:
    """Where one key table's key-encrypting key is, and the settings that say so (named in
    errors): the platform's, or the card vault's own, kept apart (PCI DSS 3.6/3.7)."""

    provider: str
    master_key: Path
    passphrase: str | None
    kms_key_id: str | None
    provider_setting: str
    kms_key_setting: str
    # The command that re-wraps this table's keys (named in the hints).
    rotate_command: str

    @property
    def pending_master_key(self) -> Path:
        """The new master key of a local rotation under way (renamed over the key file when
        done)."""
        return self.master_key.with_name(self.master_key.name + ".next")


def platform_kek(settings: Settings) -> KekSetup:
    passphrase = settings.master_key_passphrase
    return KekSetup(
        provider=settings.kek_provider,
        master_key=settings.keys_dir / "master.key",
        passphrase=passphrase.get_secret_value() if passphrase else None,
        kms_key_id=settings.aws_kms_key_id,
        provider_setting="TRADEGUARD_KEK_PROVIDER",
        kms_key_setting="TRADEGUARD_AWS_KMS_KEY_ID",
        rotate_command="tradeguard keys rotate-master",
    )


def vault_kek(settings: Settings) -> KekSetup:
    """The card vault's key-encrypting key: its own master key file, or its own KMS key
    (never the platform's: the platform's credentials must not open the vault's keys)."""
    passphrase = settings.vault_master_key_passphrase
    return KekSetup(
        provider=settings.vault_kek_provider,
        master_key=settings.vault_master_key_file,
        passphrase=passphrase.get_secret_value() if passphrase else None,
        kms_key_id=settings.vault_aws_kms_key_id,
        provider_setting="TRADEGUARD_VAULT_KEK_PROVIDER",
        kms_key_setting="TRADEGUARD_VAULT_AWS_KMS_KEY_ID",
        rotate_command="tradeguard vault rotate-master",
    )


def kms_settings_from(
    settings: Settings,
    *,
    key_id: str | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    kek: KekSetup | None = None,
) -> KmsSettings:
    """The KMS key of `kek` (the platform's by default); region, endpoint and timeout are
    the platform's AWS settings either way."""
    setup = kek or platform_kek(settings)
    key = key_id or setup.kms_key_id
    if not key or not key.strip():
        raise ConfigurationError(
            f"no KMS key named: set {setup.kms_key_setting} (or pass --key-id) to the ARN, "
            "id or alias/ name of the KMS key that wraps the data keys"
        )
    timeout = settings.aws_kms_timeout_seconds
    return KmsSettings(
        key_id=key.strip(),
        region=region or settings.aws_kms_region,
        endpoint_url=endpoint_url or settings.aws_kms_endpoint_url,
        connect_timeout_seconds=min(timeout, 5.0),
        read_timeout_seconds=timeout,
    )


def connect_kms(kms: KmsSettings) -> KekProvider:
    """The KMS key resolved and checked (DescribeKey): a blocking call, once at start."""
    # botocore is loaded only where a KMS is used.
    from tradeguard.crypto.kms import AwsKmsKek  # noqa: PLC0415

    return AwsKmsKek.connect(kms)


def kek_provider_from(
    settings: Settings, *, create: bool = True, kek: KekSetup | None = None
) -> KekProvider:
    """The key-encrypting key that wraps new keys: the local master-key file (made on first
    start when `create`), or the AWS KMS key named (TRADEGUARD_AWS_KMS_KEY_ID for the
    platform's keys; `kek` names the vault's)."""
    setup = kek or platform_kek(settings)
    kind = setup.provider.strip().lower()
    if kind == LOCAL:
        if create:
            return LocalFileKek.load_or_create(setup.master_key, passphrase=setup.passphrase)
        return LocalFileKek(read_master_key(setup.master_key, passphrase=setup.passphrase))
    if kind == AWS_KMS:
        return connect_kms(kms_settings_from(settings, kek=setup))
    raise ConfigurationError(
        f"{setup.provider_setting}={setup.provider!r} is not known: use "
        + " or ".join(KEK_PROVIDERS)
    )


def retired_master_key_paths(kek: KekSetup) -> list[Path]:
    """The dated copies of earlier master keys that a master-key rotation keeps
    (<key file>.retired-<date>-<fingerprint>): they open backups made before."""
    return sorted(kek.master_key.parent.glob(kek.master_key.name + ".retired-*"))


def retired_local_keks(kek: KekSetup) -> list[KekProvider]:
    """The earlier master keys kept beside the key file, each as an unwrap-only KEK; one
    that does not read (sealed under another passphrase, loose permissions) is left out."""
    found: list[KekProvider] = []
    for path in retired_master_key_paths(kek):
        try:
            found.append(LocalFileKek(read_master_key(path, passphrase=kek.passphrase)))
        except TradeguardError:
            continue
    return found


def unwrap_only_providers_from(
    settings: Settings, current: KekProvider, *, kek: KekSetup | None = None
) -> list[KekProvider]:
    """Key-encrypting keys that only unwrap: the new master key of a local rotation under way
    (master.key.next), the local master key beside a KMS (keys wrapped under it before the
    move, and the HKDF scheme of version 0), and the KMS key named while local still wraps
    (a move to it under way)."""
    setup = kek or platform_kek(settings)
    found: list[KekProvider] = []
    if setup.pending_master_key.exists():
        found.append(
            LocalFileKek(read_master_key(setup.pending_master_key, passphrase=setup.passphrase))
        )
    if current.legacy is None and setup.master_key.exists():
        found.append(LocalFileKek(read_master_key(setup.master_key, passphrase=setup.passphrase)))
    if current.legacy is not None and setup.kms_key_id:
        # Local still wraps, a KMS key is named: a move to it (rotate-master --to aws-kms)
        # may be under way, and keys it already moved must read here too.
        found.append(connect_kms(kms_settings_from(settings, kek=setup)))
    return [p for p in found if p.kek_id != current.kek_id]


def keyring_from(
    settings: Settings,
    *,
    clock: Clock,
    kek: KekSetup | None = None,
    catalogue: tuple[Location, ...] = LOCATIONS,
    create: bool = True,
) -> Keyring:
    provider = kek_provider_from(settings, kek=kek, create=create)
    return Keyring(
        provider,
        clock=clock,
        catalogue=catalogue,
        also=unwrap_only_providers_from(settings, provider, kek=kek),
    )


@dataclass(frozen=True, slots=True)
class MasterRotationRun:
    to_kek_id: str
    pending: int
    rewrapped: int
    # Keys still under another KEK per KEK id (made by a process that ran meanwhile).
    remaining: dict[str, int]

    @property
    def finished(self) -> bool:
        return not self.remaining


async def rotate_master_key(
    management: KeyManagement,
    sessions: async_sessionmaker[AsyncSession],
    target: KekProvider,
    *,
    actor: Party,
    on_start: Callable[[int], None] | None = None,
    on_key: Callable[[str], None] | None = None,
) -> MasterRotationRun:
    """Re-wrap every stored key (data, index, peppers) under `target`, one committed row at a
    time, each with its ledger event: stopped anywhere, every row opens under one of the two
    KEKs, and a rerun finishes. Done when no row names another KEK."""
    async with unit_of_work(sessions) as session:
        pending = await management.begin_master_rotation(session, target, actor=actor)
    if on_start is not None:
        on_start(len(pending))
    rewrapped = 0
    for listed in pending:
        async with unit_of_work(sessions) as session:
            row = await repository.key_version(
                session, listed.data_class, listed.kind, listed.version
            )
            if (
                row is not None
                and row.wrapped_key is not None
                and row.kek_id != target.kek_id
                and await management.rewrap_key(session, row, target, actor=actor)
            ):
                rewrapped += 1
        if on_key is not None:
            on_key(f"{listed.data_class} {listed.kind} v{listed.version}")
    async with unit_of_work(sessions) as session:
        remaining = await management.finish_master_rotation(session, target, actor=actor)
    return MasterRotationRun(target.kek_id, len(pending), rewrapped, remaining)
