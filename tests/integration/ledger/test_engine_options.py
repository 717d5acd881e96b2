"""Engine options the ledger depends on (db/engine.py): hidden SQL parameters."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from tradeguard.db.engine import create_engine
from tradeguard.db.migrate import upgrade

SECRET = b"$argon2id$v=19$m=65536,t=3,p=4$c2VjcmV0LXNhbHQ$never-in-a-log"

# Duplicate primary key: fails on both engines, with the secret bound as a parameter.
FAILING_INSERT = text(
    "INSERT INTO audit_sequencer_state (id, last_seq, last_chain_hash, cursor_txid, cursor_pk) "
    "VALUES (1, 0, :secret, 0, 0)"
)


class TestHiddenParameters:
    @pytest.mark.spec("ENC-3")
    async def test_failed_statement_does_not_echo_bound_values(self, engine: AsyncEngine) -> None:
        with pytest.raises(DBAPIError) as failure:
            async with engine.begin() as conn:
                await conn.execute(FAILING_INSERT, {"secret": SECRET})
        message = str(failure.value)
        assert "audit_sequencer_state" in message  # the statement is still named
        assert "never-in-a-log" not in message
        assert "argon2id" not in message
        assert "hidden due to hide_parameters" in message

    @pytest.mark.spec("ENC-3")
    async def test_sql_echo_log_does_not_show_bound_values(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        engine = create_engine(f"sqlite:///{tmp_path / 'echo.db'}", echo=True)
        try:
            await upgrade(engine)
            with caplog.at_level(logging.INFO, logger="sqlalchemy.engine"):
                async with engine.begin() as conn:
                    await conn.execute(
                        text("SELECT count(*) FROM audit_event WHERE body = :secret"),
                        {"secret": SECRET},
                    )
        finally:
            await engine.dispose()
        assert "FROM audit_event WHERE body" in caplog.text
        assert "never-in-a-log" not in caplog.text
