"""Encrypted backups: backup and restore throughput on SQLite and PostgreSQL.

Usage: python bench/backup.py [--mb 150] [--backend sqlite|postgresql|both]
       [--postgres-url postgresql://postgres@127.0.0.1:5432/test]
Prints one JSON object.

A migrated tradeguard database plus one table of `--mb` MB of rows that look like stored
records (JSON-ish text around 400 hex characters of random bytes: zstd gets about 2-3x,
not the 100x of repeated filler). The backup runs `create_backup` as `tradeguard backup
create` does (SQLite online backup API or pg_dump, zstd, AES-256-GCM chunks, signed
manifest); the restore runs `restore_backup` (a full verification pass, then the restore
into a new SQLite file or a new PostgreSQL database with pg_restore). MB/s is the database
contents (the SQLite file, the pg_dump stream) per second of wall time, MB = 10^6 bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info
from tradeguard.backup.keys import load_or_create_backup_keys
from tradeguard.backup.service import (
    DatabaseLocation,
    create_backup,
    restore_backup,
)
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.keyring import Keyring
from tradeguard.crypto.service import KeyManagement
from tradeguard.crypto.tasks import kek_provider_from, open_keyring
from tradeguard.db.engine import async_url, create_engine, session_factory
from tradeguard.db.migrate import upgrade
from tradeguard.ledger.service import Ledger

ROW_BYTES = 1400
MB = 1_000_000

FILL_SQLITE = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows)
INSERT INTO bench_records (id, body)
SELECT i, '{"account":"ACC' || i || '","kind":"execution","venue":"SIM","note":"'
       || hex(randomblob(200)) || '","status":"filled","symbol":"AAPL","side":"buy",'
       || '"quantity":' || (i % 500) || ',"price":"' || (100 + i % 50) || '.25",'
       || '"padding":"' || substr(hex(randomblob(300)), 1, 400) || '"}'
       || printf('%.*c', 300, '-')
FROM n
"""
FILL_POSTGRES = """
INSERT INTO bench_records (id, body)
SELECT i, '{"account":"ACC' || i || '","kind":"execution","venue":"SIM","note":"'
       || encode(gen_random_bytes(200), 'hex') || '","status":"filled","symbol":"AAPL",'
       || '"side":"buy","quantity":' || (i % 500) || ',"price":"' || (100 + i % 50)
       || '.25","padding":"' || substr(encode(gen_random_bytes(300), 'hex'), 1, 400) || '"}'
       || repeat('-', 300)
FROM generate_series(1, :rows) AS i
"""


async def _admin(url: str, statement: str) -> None:
    admin = create_async_engine(async_url(url), isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        async with admin.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await admin.dispose()


async def run_backend(backend: str, megabytes: int, postgres_url: str, work: Path) -> dict:
    settings = Settings(data_dir=work / "var", _env_file=None)  # type: ignore[call-arg]
    rows = megabytes * MB // ROW_BYTES
    databases: list[str] = []
    if backend == "sqlite":
        url = f"sqlite:///{work / 'source.db'}"
    else:
        base = make_url(postgres_url)
        name = f"{base.database}_bench_{secrets.token_hex(3)}"
        await _admin(postgres_url, f'CREATE DATABASE "{name}"')
        databases.append(name)
        url = base.set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(
                text("CREATE TABLE bench_records (id bigint PRIMARY KEY, body text)")
            )
            if backend == "postgresql":
                await conn.execute(text("CREATE EXTENSION IF NOT EXISTS pgcrypto"))
                await conn.execute(text(FILL_POSTGRES), {"rows": rows})
            else:
                await conn.execute(text(FILL_SQLITE), {"rows": rows})
        clock = SystemClock()
        sessions = session_factory(engine)
        ledger = Ledger(clock=clock, ids=IdGenerator(clock))
        management = KeyManagement(Keyring(kek_provider_from(settings), clock=clock), ledger=ledger)
        await open_keyring(management, sessions)
        signer = load_or_create_backup_keys(settings.backup_keys_dir).active
        out = work / f"{backend}.tgbk"
        started = time.perf_counter()
        made = await create_backup(
            source=DatabaseLocation(url),
            out=out,
            management=management,
            sessions=sessions,
            signer=signer,
            clock=clock,
        )
        backup_seconds = time.perf_counter() - started
        if backend == "sqlite":
            target = DatabaseLocation(f"sqlite:///{work / 'restored.db'}")
        else:
            base = make_url(postgres_url)
            name = f"{base.database}_bench_{secrets.token_hex(3)}"
            await _admin(postgres_url, f'CREATE DATABASE "{name}"')
            databases.append(name)
            target = DatabaseLocation(base.set(database=name).render_as_string(hide_password=False))
        started = time.perf_counter()
        await restore_backup(
            data=out,
            trusted=[signer.key],
            provider=management.keyring.provider,
            target=target,
        )
        restore_seconds = time.perf_counter() - started
        size = made.manifest.plaintext_bytes
        return {
            "database_mb": round(size / MB, 1),
            "backup_file_mb": round(made.manifest.ciphertext_bytes / MB, 1),
            "compression_ratio": round(size / made.manifest.ciphertext_bytes, 2),
            "chunks": made.manifest.chunk_count,
            "backup_seconds": round(backup_seconds, 2),
            "backup_mb_per_s": round(size / MB / backup_seconds, 1),
            "restore_seconds": round(restore_seconds, 2),
            "restore_mb_per_s": round(size / MB / restore_seconds, 1),
            "restore_includes": "a full verification pass before the restore pass",
        }
    finally:
        await engine.dispose()
        for name in databases:
            await _admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=150)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "TRADEGUARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results: dict[str, object] = {"machine": machine_info(), "load_average_before": os.getloadavg()}
    for backend in backends:
        with tempfile.TemporaryDirectory() as directory:
            results[backend] = await run_backend(
                backend, args.mb, args.postgres_url, Path(directory)
            )
    results["load_average_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
