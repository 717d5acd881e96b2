"""Field encryption: the encrypted column type against raw AES-256-GCM, and rewrap speed.

Usage: python bench/crypto.py [--fields N] [--size BYTES] [--rows N] [--batch N]
Prints one JSON object.

- Fields: encrypt and decrypt of one value, in microseconds per field (median of 7 runs of N
  fields each), through `EncryptedText` (bind processing of a `PlainField`: class lookup,
  header, associated data of class/table/column/record, AES-GCM; result processing and
  `SealedField.reveal`), and through `AESGCM` with a random nonce and no associated data,
  in the same process, interleaved. The ratio is column / raw (target <= 2x).
- Rewrap: N rows of a 40-byte value in the notify outbox of a fresh SQLite database, sealed
  under v1, then rotated and rewrapped through `rewrap_class` (committed batches, progress
  row per batch) as `tradeguard keys rewrap` does; rows per second of the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import column, insert, table

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_info
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.crypto.classes import DataClass
from tradeguard.crypto.columns import EncryptedText, keyring_field
from tradeguard.crypto.keyring import Keyring
from tradeguard.crypto.tasks import rewrap_class
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.db.migrate import upgrade
from tradeguard.identity.container import start_identity
from tradeguard.ledger.domain import Party
from tradeguard.notify.service import BODY_PURPOSE, seal_context

OUTBOX = table(
    "notify_outbox",
    *(
        column(name)
        for name in (
            "id",
            "channel",
            "template",
            "recipient_enc",
            "subject",
            "body_enc",
            "created_ns",
            "next_attempt_ns",
            "attempts",
        )
    ),
)


def field_costs(keyring: Keyring, count: int, size: int) -> dict[str, float]:
    column = EncryptedText(DataClass.TAX_ID, table="accounts", column="tax_id")
    dialect = None
    raw = AESGCM(secrets.token_bytes(32))
    values = [secrets.token_hex(size // 2) for _ in range(count)]
    ids = [f"0190c5a0-0000-7000-8000-{n:012d}" for n in range(count)]
    runs: dict[str, list[float]] = {
        "column_encrypt": [],
        "column_decrypt": [],
        "raw_encrypt": [],
        "raw_decrypt": [],
    }
    for _ in range(7):
        start = time.perf_counter()
        sealed = [
            column.process_bind_param(keyring_field(keyring, v, record_id=i), dialect)  # type: ignore[arg-type]
            for v, i in zip(values, ids, strict=True)
        ]
        runs["column_encrypt"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for blob, record in zip(sealed, ids, strict=True):
            field = column.process_result_value(blob, dialect)  # type: ignore[arg-type]
            field.reveal(keyring, record_id=record)  # type: ignore[union-attr]
        runs["column_decrypt"].append(time.perf_counter() - start)
        start = time.perf_counter()
        boxes = []
        for v in values:
            nonce = os.urandom(12)
            boxes.append(nonce + raw.encrypt(nonce, v.encode(), None))
        runs["raw_encrypt"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for box in boxes:
            raw.decrypt(box[:12], box[12:], None).decode()
        runs["raw_decrypt"].append(time.perf_counter() - start)
    micro = {k: statistics.median(v) / count * 1e6 for k, v in runs.items()}
    return {
        **{f"{k}_us": round(v, 2) for k, v in micro.items()},
        "encrypt_ratio": round(micro["column_encrypt"] / micro["raw_encrypt"], 2),
        "decrypt_ratio": round(micro["column_decrypt"] / micro["raw_decrypt"], 2),
    }


async def rewrap_speed(directory: Path, rows: int, batch: int) -> dict[str, object]:
    settings = Settings(  # type: ignore[call-arg]
        data_dir=directory, key_activation_delay_seconds=0, _env_file=None
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.main_database_url)
    await upgrade(engine)
    clock = SystemClock()
    sessions = session_factory(engine)
    identity = await start_identity(
        settings, clock=clock, ids=IdGenerator(clock), sessions=sessions
    )
    keyring = identity.deps.keyring
    ids = IdGenerator(clock)
    start = time.perf_counter()
    for first in range(0, rows, 10_000):
        values = []
        for _ in range(min(10_000, rows - first)):
            message = ids.new_str()
            context = seal_context(message)
            values.append(
                {
                    "id": message,
                    "channel": "sms",
                    "template": "auth.sms_otp",
                    "recipient_enc": keyring.encrypt(
                        b"+14155550100", purpose="notify.recipient", context=context
                    ),
                    "subject": "",
                    "body_enc": keyring.encrypt(
                        secrets.token_hex(20).encode(), purpose=BODY_PURPOSE, context=context
                    ),
                    "created_ns": 0,
                    "next_attempt_ns": 2**62,
                    "attempts": 0,
                }
            )
        async with unit_of_work(sessions) as session:
            await session.execute(insert(OUTBOX), values)
    seeded = time.perf_counter() - start
    management = identity.key_management
    async with unit_of_work(sessions) as session:
        await management.rotate(session, DataClass.NOTIFY_BODY, actor=Party("operator", "bench"))
    async with sessions() as session:
        await keyring.refresh(session)
    start = time.perf_counter()
    run = await rewrap_class(
        management,
        sessions,
        DataClass.NOTIFY_BODY,
        actor=Party("operator", "bench"),
        batch_size=batch,
    )
    elapsed = time.perf_counter() - start
    await engine.dispose()
    return {
        "rows": rows,
        "batch_size": batch,
        "seed_seconds": round(seeded, 1),
        "rewrap_seconds": round(elapsed, 2),
        "rewrap_rows_per_second": round(run.rewrapped / elapsed),
        "rewrapped": run.rewrapped,
        "batches": run.batches,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fields", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        rewrap = await rewrap_speed(Path(directory), args.rows, args.batch)
        settings = Settings(data_dir=Path(directory), _env_file=None)  # type: ignore[call-arg]
        engine = create_engine(settings.main_database_url)
        clock = SystemClock()
        identity = await start_identity(
            settings, clock=clock, ids=IdGenerator(clock), sessions=session_factory(engine)
        )
        fields = field_costs(identity.deps.keyring, args.fields, args.size)
        await engine.dispose()
    print(
        json.dumps(
            {
                "machine": machine_info(),
                "load_average": os.getloadavg(),
                "field_bytes": args.size,
                "fields": fields,
                "rewrap_sqlite": rewrap,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
