"""The audit ledger's Merkle tree, checkpoints and witnesses against real SQLite and
PostgreSQL databases; every proof and signature is checked by the independent verifier in
tests/support/rfc9162.py, with nothing but the public key."""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import random
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.conftest import POSTGRES_URL, require_service
from tests.support import rfc9162
from tests.support.failures import SignallingObserver
from tests.support.ledger import cut_chain_after, rewrite_behind_triggers, settle
from tests.support.witness import WitnessState, running_witness
from tradeguard.core.clock import FrozenClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.db.migrate import upgrade
from tradeguard.ledger.chain import GENESIS_HASH, chain_hash, leaf_hash
from tradeguard.ledger.domain import LedgerEvent, Party
from tradeguard.ledger.models import AuditChainRow, AuditEventRow, SequencerStateRow
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.ledger.service import Ledger
from tradeguard.ledger.tree import repository
from tradeguard.ledger.tree.errors import (
    EventNotCheckpointed,
    InconsistentTree,
    LeafMismatch,
    NoCheckpoint,
    SignerStateUnreadable,
    TreeSizeOutOfRange,
    UnknownEvent,
    UnverifiedChain,
    WitnessConflict,
)
from tradeguard.ledger.tree.integrity import TreeFailure, TreeReport, verify_tree
from tradeguard.ledger.tree.keys import ACTIVE_KEY_FILE, SIGNED_STATE_FILE, rotate_log_key
from tradeguard.ledger.tree.layout import Span
from tradeguard.ledger.tree.models import TreeNodeRow
from tradeguard.ledger.tree.note import Checkpoint, open_checkpoint, sign_note
from tradeguard.ledger.tree.service import LedgerTree, LogKeySource
from tradeguard.ledger.tree.store import TreeReader
from tradeguard.ledger.tree.tasks import Checkpointer
from tradeguard.ledger.tree.witness import (
    DirectoryWitness,
    HttpWitness,
    WitnessRefused,
    publish_pending,
)

ORIGIN = "tradeguard.test/audit-ledger"


def event(n: int) -> LedgerEvent:
    return LedgerEvent(
        type="trading:order:placed",
        actor=Party("user", f"u{n % 3}"),
        subject=Party("order", f"o{n}"),
        data={"quantity": n},
    )


@pytest.fixture
def ledger(clock: FrozenClock) -> Ledger:
    return Ledger(clock=clock, ids=IdGenerator(clock))


@pytest.fixture
def tree(engine: AsyncEngine, tmp_path: Path, clock: FrozenClock) -> LedgerTree:
    return LedgerTree(
        engine, keys=LogKeySource(tmp_path / "keys", ORIGIN), origin=ORIGIN, clock=clock
    )


async def append(
    sessions: async_sessionmaker[AsyncSession], ledger: Ledger, count: int, start: int = 0
) -> list[str]:
    ids = []
    async with unit_of_work(sessions) as session:
        for n in range(start, start + count):
            ids.append((await ledger.append(session, event(n))).event_id)
    return ids


async def leaves(engine: AsyncEngine) -> list[bytes]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(AuditChainRow.leaf_hash).order_by(AuditChainRow.seq))
        return [bytes(r) for r in rows.scalars()]


def vkey(tree: LedgerTree) -> str:
    return tree.keys().active.key.vkey


async def alter_body(engine: AsyncEngine, seq: int) -> None:
    """Change the stored body of the event at `seq` behind the triggers (chain left as is)."""
    async with engine.connect() as conn:
        pk, body = (
            await conn.execute(
                select(AuditEventRow.pk, AuditEventRow.body)
                .join(AuditChainRow, AuditChainRow.event_pk == AuditEventRow.pk)
                .where(AuditChainRow.seq == seq)
            )
        ).one()
    altered = bytes(body).replace(b'"quantity":', b'"quantity":9')
    assert altered != bytes(body)
    await rewrite_behind_triggers(
        engine,
        "audit_event",
        "UPDATE audit_event SET body = :b WHERE pk = :pk",
        {"b": altered, "pk": pk},
    )


async def forge_history(engine: AsyncEngine, seq: int) -> bytes:
    """What a database-only attacker does: alter the event at `seq`, recompute every leaf,
    chain link, stored subtree and the sequencer's head so the chain and the tree agree
    with the forgery, and delete every checkpoint row. Returns the forged root."""
    await alter_body(engine, seq)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(AuditChainRow.seq, AuditEventRow.body)
                .join(AuditEventRow, AuditEventRow.pk == AuditChainRow.event_pk)
                .order_by(AuditChainRow.seq)
            )
        ).all()
        nodes = (await conn.execute(select(TreeNodeRow.level, TreeNodeRow.idx))).all()
    previous, hashes = GENESIS_HASH, []
    for position, body in rows:
        leaf = leaf_hash(bytes(body))
        previous = chain_hash(previous, int(position), leaf)
        hashes.append(leaf)
        await rewrite_behind_triggers(
            engine,
            "audit_chain",
            "UPDATE audit_chain SET leaf_hash = :l, chain_hash = :c WHERE seq = :s",
            {"l": leaf, "c": previous, "s": position},
        )
    for level, index in nodes:
        width = 1 << level
        await rewrite_behind_triggers(
            engine,
            "audit_tree_node",
            "UPDATE audit_tree_node SET hash = :h WHERE level = :l AND idx = :i",
            {"h": rfc9162.mth(hashes[index * width : (index + 1) * width]), "l": level, "i": index},
        )
    async with engine.begin() as conn:
        await conn.execute(update(SequencerStateRow).values(last_chain_hash=previous))
    await rewrite_behind_triggers(engine, "audit_checkpoint", "DELETE FROM audit_checkpoint")
    return rfc9162.mth(hashes)


async def checkpoint_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM audit_checkpoint"))).scalar_one())


class TestStoredTree:
    @pytest.mark.spec("AUD-2")
    async def test_roots_at_every_size_match_the_rfc_after_chaining_in_uneven_batches(
        self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], ledger: Ledger
    ) -> None:
        rng = random.Random(4)
        sequencer = LedgerSequencer(engine, batch_size=13)
        appended = 0
        while appended < 300:
            count = rng.randint(1, 40)
            await append(sessions, ledger, count, appended)
            appended += count
            if rng.random() < 0.6:
                await sequencer.drain()
        await settle(engine)
        hashes = await leaves(engine)
        async with engine.connect() as conn:
            reader = TreeReader(conn)
            roots = [await reader.root(n) for n in range(1, len(hashes) + 1)]
            stored = (await conn.execute(select(func.count()).select_from(TreeNodeRow))).scalar()
        assert roots == [rfc9162.mth(hashes[:n]) for n in range(1, len(hashes) + 1)]
        # Levels 4 and 8: one row per complete 16 and 256 leaves.
        assert stored == len(hashes) // 16 + len(hashes) // 256

    @pytest.mark.spec("AUD-2")
    async def test_proofs_read_from_the_database_verify_independently(
        self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], ledger: Ledger
    ) -> None:
        await append(sessions, ledger, 277)
        await settle(engine)
        hashes = await leaves(engine)
        async with engine.connect() as conn:
            reader = TreeReader(conn)
            for size in (1, 2, 16, 17, 255, 256, 257, 277):
                root = rfc9162.mth(hashes[:size])
                for index in {0, size // 3, size - 1}:
                    proof = await reader.inclusion_proof(index, size)
                    assert rfc9162.verify_inclusion(index, size, hashes[index], proof, root)
                for first in {1, size // 2, size - 1} - {0, size}:
                    proof = await reader.consistency_proof(first, size)
                    assert rfc9162.verify_consistency(
                        first, size, rfc9162.mth(hashes[:first]), root, proof
                    )

    @pytest.mark.spec("AUD-2", "ENC-3")
    @pytest.mark.parametrize("table", ["audit_tree_node", "audit_checkpoint"])
    @pytest.mark.parametrize("statement", ["UPDATE {t} SET {c} = {c}", "DELETE FROM {t}"])
    async def test_the_database_refuses_update_and_delete(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
        table: str,
        statement: str,
    ) -> None:
        await append(sessions, ledger, 20)
        await settle(engine)
        await tree.sign_checkpoint()
        column = "hash" if table == "audit_tree_node" else "root_hash"
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(statement.format(t=table, c=column)))

    async def test_a_span_longer_than_a_read_may_return_is_refused_not_cut(
        self, engine: AsyncEngine
    ) -> None:
        async with engine.connect() as conn:
            with pytest.raises(ValueError, match="read in pieces"):
                await repository.read_spans(conn, [Span(0, 0, repository.SPAN_LIMIT + 1)])


class TestBackfill:
    async def test_events_chained_before_the_migration_get_their_tree(
        self, db_backend: str, tmp_path: Path, clock: FrozenClock
    ) -> None:
        engine, cleanup = await fresh_engine(db_backend, tmp_path)
        try:
            await upgrade(engine, "0009_access_alerts")
            # Chain 100 events the way ledger v1 did, without a tree.
            hashes = await chain_without_tree(engine, 100)
            await upgrade(engine)
            ledger = Ledger(clock=clock, ids=IdGenerator(clock))
            await append(session_factory(engine), ledger, 41, 100)
            await settle(engine)
            hashes = await leaves(engine)
            async with engine.connect() as conn:
                reader = TreeReader(conn)
                assert await reader.root(100) == rfc9162.mth(hashes[:100])
                assert await reader.root(141) == rfc9162.mth(hashes)
                proof = await reader.inclusion_proof(57, 141)
            assert rfc9162.verify_inclusion(57, 141, hashes[57], proof, rfc9162.mth(hashes))
        finally:
            await cleanup()


async def fresh_engine(db_backend: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """An unmigrated database (the shared fixture migrates to head)."""
    if db_backend == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")

        async def dispose() -> None:
            await engine.dispose()

        return engine, dispose
    schema = "t_" + base64.b32encode(random.randbytes(5)).decode().lower()
    admin = create_engine(POSTGRES_URL, pool_size=1)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OSError as exc:
        require_service("PostgreSQL", exc)
    finally:
        await admin.dispose()
    engine = create_engine(POSTGRES_URL, pg_schema=schema)

    async def drop() -> None:
        await engine.dispose()
        admin = create_engine(POSTGRES_URL, pool_size=1)
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()

    return engine, drop


async def chain_without_tree(engine: AsyncEngine, count: int) -> list[bytes]:
    hashes, previous = [], GENESIS_HASH
    async with engine.begin() as conn:
        for n in range(1, count + 1):
            body = f'{{"n":{n}}}'.encode()
            pk = (
                await conn.execute(
                    insert(AuditEventRow)
                    .values(
                        event_id=f"00000000-0000-7000-8000-{n:012d}",
                        event_type="test:old:event",
                        occurred_ns=n,
                        body=body,
                    )
                    .returning(AuditEventRow.pk)
                )
            ).scalar_one()
            leaf = leaf_hash(body)
            previous = chain_hash(previous, n, leaf)
            await conn.execute(
                insert(AuditChainRow).values(
                    seq=n, event_pk=pk, leaf_hash=leaf, chain_hash=previous, sequenced_ns=n
                )
            )
            hashes.append(leaf)
        txid = (
            await conn.execute(select(func.max(AuditEventRow.txid)))
            if conn.dialect.name == "postgresql"
            else None
        )
        await conn.execute(
            update(SequencerStateRow)
            .where(SequencerStateRow.id == 1)
            .values(
                last_seq=count,
                last_chain_hash=previous,
                cursor_pk=pk,
                cursor_txid=(txid.scalar_one() if txid is not None else 0),
            )
        )
    return hashes


class TestCheckpoints:
    @pytest.mark.spec("AUD-3")
    async def test_a_signed_checkpoint_verifies_with_only_the_public_key(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
    ) -> None:
        await append(sessions, ledger, 37)
        await settle(engine)
        checkpoint, created = await tree.sign_checkpoint()
        again, created_again = await tree.sign_checkpoint()
        origin, size, root = rfc9162.verify_checkpoint(checkpoint.note, vkey(tree))
        assert created
        assert (origin, size, root) == (ORIGIN, 37, rfc9162.mth(await leaves(engine)))
        assert not created_again
        assert again == checkpoint
        assert (await tree.latest_checkpoint()).note == checkpoint.note
        assert (await tree.checkpoint_at(37)).note == checkpoint.note

    @pytest.mark.spec("AUD-2", "AUD-3")
    async def test_each_new_checkpoint_is_provably_consistent_with_the_one_before(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
    ) -> None:
        sizes = []
        for batch in (5, 1, 30, 200):
            await append(sessions, ledger, batch, sum(sizes[-1:]))
            await settle(engine)
            sizes.append((await tree.sign_checkpoint())[0].size)
        for first, second in itertools.pairwise(sizes):
            old = rfc9162.verify_checkpoint((await tree.checkpoint_at(first)).note, vkey(tree))
            new = rfc9162.verify_checkpoint((await tree.checkpoint_at(second)).note, vkey(tree))
            proof = await tree.consistency(first, second)
            assert rfc9162.verify_consistency(first, second, old[2], new[2], proof.proof)

    @pytest.mark.spec("AUD-3")
    async def test_a_rotated_out_key_still_verifies_the_checkpoints_it_signed(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
        tmp_path: Path,
    ) -> None:
        await append(sessions, ledger, 10)
        await settle(engine)
        old, _ = await tree.sign_checkpoint()
        old_vkey = vkey(tree)
        _, retired = rotate_log_key(tmp_path / "keys", ORIGIN)
        resigned, created = await tree.sign_checkpoint()
        await append(sessions, ledger, 5, 10)
        await settle(engine)
        new, _ = await tree.sign_checkpoint()
        published = [k.vkey for k in tree.keys().verifiers]
        assert retired.vkey == old_vkey
        assert published == [vkey(tree), old_vkey]
        assert rfc9162.verify_checkpoint(old.note, old_vkey)[1] == 10
        assert rfc9162.verify_checkpoint(new.note, vkey(tree))[1] == 15
        with pytest.raises(ValueError, match="no signature of the known key"):
            rfc9162.verify_checkpoint(new.note, old_vkey)
        # The same tree head re-signed with the new key: a new row, same root.
        assert created
        assert (resigned.size, resigned.root) == (old.size, old.root)
        assert resigned.key_id != old.key_id
        # Only the active private key is on disk; the retired one is a public vkey file, and
        # the last signed checkpoint is remembered beside them.
        assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == [
            ACTIVE_KEY_FILE,
            f"retired-{retired.id_hex}.vkey",
            SIGNED_STATE_FILE,
        ]
        assert ((tmp_path / "keys" / ACTIVE_KEY_FILE).stat().st_mode & 0o777) == 0o600
        assert ((tmp_path / "keys" / SIGNED_STATE_FILE).stat().st_mode & 0o777) == 0o600
        assert (tmp_path / "keys" / SIGNED_STATE_FILE).read_text() == new.note

    @pytest.mark.spec("AUD-2")
    async def test_a_tree_rewritten_behind_the_triggers_is_never_signed(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
    ) -> None:
        await append(sessions, ledger, 20)
        await settle(engine)
        await tree.sign_checkpoint()
        await rewrite_behind_triggers(
            engine,
            "audit_tree_node",
            "UPDATE audit_tree_node SET hash = :forged WHERE level = 4 AND idx = 0",
            {"forged": bytes(32)},
        )
        await append(sessions, ledger, 20, 20)
        await settle(engine)
        with pytest.raises(InconsistentTree, match="does not extend the checkpoint"):
            await tree.sign_checkpoint()
        assert (await tree.latest_checkpoint()).size == 20

    @pytest.mark.spec("AUD-2")
    async def test_a_ledger_cut_short_below_a_signed_size_is_never_signed(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
    ) -> None:
        await append(sessions, ledger, 12)
        await settle(engine)
        await tree.sign_checkpoint()
        async with engine.begin() as conn:
            await conn.execute(update(SequencerStateRow).values(last_seq=9))
        with pytest.raises(InconsistentTree, match="were removed"):
            await tree.sign_checkpoint()


class TestSignerState:
    """The signer remembers its last checkpoint beside its key, where a database rewrite
    cannot reach (REVIEW9 finding 1)."""

    @pytest.mark.spec("AUD-2", "AUD-3")
    async def test_a_forged_history_with_its_checkpoints_deleted_is_never_signed(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
        tmp_path: Path,
    ) -> None:
        await append(sessions, ledger, 40)
        await settle(engine)
        signed, _ = await tree.sign_checkpoint()
        await append(sessions, ledger, 8, 40)
        await settle(engine)
        forged_root = await forge_history(engine, 5)
        async with engine.connect() as conn:
            # The forgery is self-consistent: the database's own tree has the forged root.
            assert await TreeReader(conn).root(48) == forged_root
        assert await checkpoint_count(engine) == 0
        with pytest.raises(InconsistentTree, match="remembered beside the signing key"):
            await tree.sign_checkpoint()
        # A restart (a new signer over the same key directory) refuses too.
        restarted = LedgerTree(
            engine, keys=LogKeySource(tmp_path / "keys", ORIGIN), origin=ORIGIN, clock=tree.clock
        )
        with pytest.raises(InconsistentTree, match="does not extend the checkpoint signed at"):
            await restarted.sign_checkpoint()
        assert await checkpoint_count(engine) == 0
        note = (tmp_path / "keys" / SIGNED_STATE_FILE).read_text()
        assert note == signed.note

    async def test_a_tree_cut_below_the_remembered_checkpoint_is_never_signed(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
    ) -> None:
        await append(sessions, ledger, 12)
        await settle(engine)
        await tree.sign_checkpoint()
        await rewrite_behind_triggers(engine, "audit_checkpoint", "DELETE FROM audit_checkpoint")
        async with engine.begin() as conn:
            await conn.execute(update(SequencerStateRow).values(last_seq=9))
        with pytest.raises(InconsistentTree, match="has 9 leaves but the last checkpoint signed"):
            await tree.sign_checkpoint()
        assert await checkpoint_count(engine) == 0

    @pytest.mark.spec("AUD-3")
    async def test_signing_carries_across_restarts_and_rotation_and_still_refuses_a_forgery(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
        tmp_path: Path,
        clock: FrozenClock,
    ) -> None:
        state = tmp_path / "keys" / SIGNED_STATE_FILE
        await append(sessions, ledger, 10)
        await settle(engine)
        first, _ = await tree.sign_checkpoint()
        restarted = LedgerTree(
            engine, keys=LogKeySource(tmp_path / "keys", ORIGIN), origin=ORIGIN, clock=clock
        )
        await append(sessions, ledger, 5, 10)
        await settle(engine)
        second, created = await restarted.sign_checkpoint()
        assert created
        assert second.size == 15
        assert state.read_text() == second.note
        rotate_log_key(tmp_path / "keys", ORIGIN)
        resigned, created = await restarted.sign_checkpoint()
        assert created
        assert (resigned.size, resigned.root) == (15, second.root)
        assert state.read_text() == resigned.note
        assert rfc9162.verify_checkpoint(state.read_text(), vkey(restarted))[1] == 15
        await append(sessions, ledger, 3, 15)
        await settle(engine)
        third, _ = await tree.sign_checkpoint()
        assert third.size == 18
        proof = await tree.consistency(10, 18)
        assert rfc9162.verify_consistency(10, 18, first.root, third.root, proof.proof)
        # A rotation after a forgery does not make the signer forget.
        await forge_history(engine, 2)
        rotate_log_key(tmp_path / "keys", ORIGIN)
        with pytest.raises(InconsistentTree, match="remembered beside the signing key"):
            await tree.sign_checkpoint()
        assert await checkpoint_count(engine) == 0
        assert state.read_text() == third.note

    async def test_without_the_file_the_database_checkpoint_is_the_reference_as_before(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
        tmp_path: Path,
    ) -> None:
        state = tmp_path / "keys" / SIGNED_STATE_FILE
        await append(sessions, ledger, 20)
        await settle(engine)
        await tree.sign_checkpoint()
        state.unlink()  # as after an upgrade from a version without the file
        await append(sessions, ledger, 4, 20)
        await settle(engine)
        signed, created = await tree.sign_checkpoint()
        assert created
        assert state.read_text() == signed.note
        state.unlink()
        await rewrite_behind_triggers(
            engine,
            "audit_tree_node",
            "UPDATE audit_tree_node SET hash = :forged WHERE level = 4 AND idx = 0",
            {"forged": bytes(32)},
        )
        await append(sessions, ledger, 4, 24)
        await settle(engine)
        with pytest.raises(InconsistentTree, match="latest checkpoint in the database"):
            await tree.sign_checkpoint()
        assert not state.exists()

    @pytest.mark.parametrize(
        "content",
        [
            b"not a note\n",
            b"\xff\xfe",
            "tradeguard.test/audit-ledger\n5\nAAAA\n\n\u2014 x AAAAAAAA\n".encode(),
        ],
    )
    async def test_an_unusable_or_foreign_state_file_stops_signing(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
        tmp_path: Path,
        content: bytes,
    ) -> None:
        await append(sessions, ledger, 6)
        await settle(engine)
        await tree.sign_checkpoint()
        (tmp_path / "keys" / SIGNED_STATE_FILE).write_bytes(content)
        await append(sessions, ledger, 2, 6)
        await settle(engine)
        with pytest.raises(SignerStateUnreadable, match="nothing is signed"):
            await tree.sign_checkpoint()
        assert await checkpoint_count(engine) == 1

    async def test_a_note_signed_by_a_key_the_log_never_had_stops_signing(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
        tmp_path: Path,
    ) -> None:
        await append(sessions, ledger, 6)
        await settle(engine)
        await tree.sign_checkpoint()
        stranger = LogKeySource(tmp_path / "other-keys", ORIGIN).current().active
        async with engine.connect() as conn:
            root = await TreeReader(conn).root(3)
        (tmp_path / "keys" / SIGNED_STATE_FILE).write_text(
            sign_note(Checkpoint(ORIGIN, 3, root).text, stranger)
        )
        with pytest.raises(SignerStateUnreadable, match="not a checkpoint of this log"):
            await tree.sign_checkpoint()
        assert await checkpoint_count(engine) == 1


class TestProofsOfTheService:
    async def test_an_inclusion_proof_by_id_or_seq_verifies_against_the_checkpoint(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
    ) -> None:
        ids = await append(sessions, ledger, 50)
        await settle(engine)
        checkpoint, _ = await tree.sign_checkpoint()
        by_id = await tree.inclusion(event_id=ids[17])
        by_seq = await tree.inclusion(seq=18, tree_size=30)
        _, size, root = rfc9162.verify_checkpoint(checkpoint.note, vkey(tree))
        assert by_id.seq == 18
        assert by_id.checkpoint == checkpoint
        assert by_id.leaf_hash == rfc9162.leaf(by_id.event_body)
        assert rfc9162.verify_inclusion(17, size, by_id.leaf_hash, by_id.proof, root)
        assert by_seq.tree_size == 30
        assert by_seq.checkpoint is None
        assert rfc9162.verify_inclusion(17, 30, by_seq.leaf_hash, by_seq.proof, by_seq.root)

    async def test_an_event_whose_body_was_altered_gets_no_proof(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
    ) -> None:
        ids = await append(sessions, ledger, 12)
        await settle(engine)
        await tree.sign_checkpoint()
        await alter_body(engine, 4)
        with pytest.raises(LeafMismatch, match="seq 4 does not hash to its leaf"):
            await tree.inclusion(seq=4)
        with pytest.raises(LeafMismatch):
            await tree.inclusion(event_id=ids[3], tree_size=6)
        untouched = await tree.inclusion(seq=5)
        assert untouched.leaf_hash == rfc9162.leaf(untouched.event_body)

    async def test_bad_requests_are_refused_with_their_reason(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
    ) -> None:
        await append(sessions, ledger, 10)
        await settle(engine)
        with pytest.raises(NoCheckpoint):
            await tree.latest_checkpoint()
        with pytest.raises(EventNotCheckpointed):
            await tree.inclusion(seq=3)
        await tree.sign_checkpoint()
        await append(sessions, ledger, 1, 10)
        await settle(engine)
        with pytest.raises(EventNotCheckpointed):
            await tree.inclusion(seq=11)
        with pytest.raises(UnknownEvent):
            await tree.inclusion(seq=12)
        with pytest.raises(UnknownEvent):
            await tree.inclusion(event_id="0190c5a0-0000-7000-8000-000000000000")
        with pytest.raises(TreeSizeOutOfRange, match="not in the tree of size 5"):
            await tree.inclusion(seq=9, tree_size=5)
        with pytest.raises(TreeSizeOutOfRange, match="beyond the tree"):
            await tree.inclusion(seq=9, tree_size=12)
        with pytest.raises(TreeSizeOutOfRange, match="must not be larger"):
            await tree.consistency(8, 4)
        with pytest.raises(TreeSizeOutOfRange, match="beyond the tree"):
            await tree.consistency(4, 12)
        with pytest.raises(NoCheckpoint):
            await tree.checkpoint_at(11)
        empty = await tree.consistency(0, 0)
        assert empty.proof == []


class TestCheckpointer:
    async def test_signs_every_n_events_or_after_the_interval_and_never_without_growth(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
        clock: FrozenClock,
    ) -> None:
        checkpointer = Checkpointer(tree, every_events=10, interval_ms=5000)
        assert await checkpointer.run_once() is None  # empty tree
        await append(sessions, ledger, 3)
        await settle(engine)
        first = await checkpointer.run_once()  # the first checkpoint comes at once
        await append(sessions, ledger, 4, 3)
        await settle(engine)
        too_soon = await checkpointer.run_once()
        clock.advance(seconds=5)
        by_time = await checkpointer.run_once()
        clock.advance(seconds=60)
        unchanged = await checkpointer.run_once()
        await append(sessions, ledger, 10, 7)
        await settle(engine)
        by_count = await checkpointer.run_once()
        assert first is not None
        assert first.size == 3
        assert too_soon is None
        assert by_time is not None
        assert by_time.size == 7
        assert unchanged is None
        assert by_count is not None
        assert by_count.size == 17

    @pytest.mark.spec("AUD-2")
    async def test_the_worker_signs_nothing_over_a_body_altered_since_the_last_checkpoint(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
    ) -> None:
        checkpointer = Checkpointer(tree, every_events=1, interval_ms=5000)
        await append(sessions, ledger, 3)
        await settle(engine)
        assert await checkpointer.run_once() is not None
        await append(sessions, ledger, 6, 3)
        await settle(engine)
        await alter_body(engine, 7)
        with pytest.raises(UnverifiedChain, match=r"at seq 7 \(event_altered\)"):
            await checkpointer.run_once()
        assert await checkpoint_count(engine) == 1

    async def test_a_checkpoint_row_whose_note_does_not_verify_covers_nothing(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
    ) -> None:
        """Without the checkpoint remembered beside the key (a first run, an upgrade), a
        database row counts as signed only if its note verifies: anyone who can write the
        database can insert one, to spare a rewritten range the check before signing."""
        await append(sessions, ledger, 3)
        await settle(engine)
        root = (await tree.consistency(3, 3)).second_root
        async with engine.begin() as conn:
            await repository.insert_checkpoint(
                conn,
                {
                    "tree_size": 3,
                    "root_hash": root,
                    "origin": ORIGIN,
                    "key_name": ORIGIN,
                    "key_id": "00000000",
                    "note": "not a signed note",
                    "signed_ns": 0,
                },
            )
        await alter_body(engine, 2)
        await append(sessions, ledger, 4, 3)
        await settle(engine)
        with pytest.raises(UnverifiedChain, match=r"at seq 2 \(event_altered\)"):
            await tree.sign_checkpoint()
        assert await checkpoint_count(engine) == 1

    async def test_an_unreachable_database_is_one_warning_without_a_traceback(
        self, tmp_path: Path, clock: FrozenClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        path = tmp_path / "down.db"
        path.mkdir()  # a directory where the database should be: it cannot be opened
        engine = create_engine(f"sqlite:///{path}")
        tree = LedgerTree(
            engine, keys=LogKeySource(tmp_path / "keys", ORIGIN), origin=ORIGIN, clock=clock
        )
        checkpointer = Checkpointer(tree, every_events=1, interval_ms=100)
        observer = SignallingObserver()
        stop = asyncio.Event()
        task = asyncio.create_task(
            checkpointer.run_forever(stop, tracker=checkpointer.failure_tracker(observer))
        )
        try:
            await observer.wait_for(lambda: observer.failing)
        finally:
            stop.set()
            await task
            await engine.dispose()
        [record] = [r for r in caplog.records if r.name == "tradeguard.ledger.tree.tasks"]
        assert record.levelno == logging.WARNING
        assert record.getMessage().startswith("ledger-checkpointer failing: database ")
        assert record.exc_info is None


class TestWitnesses:
    @pytest.mark.spec("AUD-2")
    async def test_every_checkpoint_lands_once_in_the_witness_directory(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
        tmp_path: Path,
    ) -> None:
        witness = DirectoryWitness(tmp_path / "witness")
        checkpointer = Checkpointer(tree, every_events=1, interval_ms=1000, witness=witness)
        for batch in (3, 4, 5):
            await append(sessions, ledger, batch)
            await settle(engine)
            await checkpointer.run_once()
        published_again = await publish_pending(tree, witness)
        files = sorted((tmp_path / "witness").iterdir())
        assert [f.name for f in files] == ["12.checkpoint", "3.checkpoint", "7.checkpoint"]
        for path in files:
            assert rfc9162.verify_checkpoint(path.read_text(), vkey(tree))[1] == int(
                path.name.split(".")[0]
            )
        assert published_again == 0

    @pytest.mark.spec("AUD-2")
    async def test_a_different_tree_head_at_a_published_size_is_refused_as_a_fork(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
        tmp_path: Path,
    ) -> None:
        directory = tmp_path / "witness"
        directory.mkdir()
        await append(sessions, ledger, 4)
        await settle(engine)
        checkpoint, _ = await tree.sign_checkpoint()
        other = checkpoint.note.replace(
            base64.b64encode(checkpoint.root).decode(), base64.b64encode(bytes(32)).decode()
        )
        (directory / "4.checkpoint").write_text(other)
        witness = DirectoryWitness(directory)
        with pytest.raises(WitnessConflict, match="different tree head at size 4"):
            await publish_pending(tree, witness)
        assert (directory / "4.checkpoint").read_text() == other
        assert await tree.witness_cursor(witness.identity) is None

    @pytest.mark.spec("AUD-2")
    async def test_an_http_witness_cosigns_each_checkpoint_with_a_consistency_proof(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
    ) -> None:
        state = WitnessState(origin=ORIGIN, vkeys=[vkey(tree)])
        with running_witness(state) as prefix:
            witness = HttpWitness(prefix)
            checkpointer = Checkpointer(tree, every_events=1, interval_ms=1000, witness=witness)
            for batch in (3, 14, 40):
                await append(sessions, ledger, batch)
                await settle(engine)
                await checkpointer.run_once()
        assert state.cosigned == [3, 17, 57]
        assert state.requests[0].startswith("old 0\n\n")
        assert state.requests[1].startswith("old 3\n")
        assert state.root == rfc9162.mth(await leaves(engine))

    async def test_an_http_witness_that_knows_a_newer_size_is_followed(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
    ) -> None:
        await append(sessions, ledger, 9)
        await settle(engine)
        first, _ = await tree.sign_checkpoint()
        # The witness cosigned size 9 through another route; we have no cursor for it.
        state = WitnessState(origin=ORIGIN, vkeys=[vkey(tree)], size=9, root=first.root)
        await append(sessions, ledger, 9, 9)
        await settle(engine)
        await tree.sign_checkpoint()
        with running_witness(state) as prefix:
            await publish_pending(tree, HttpWitness(prefix))
        assert [r.split("\n", 1)[0] for r in state.requests] == ["old 0", "old 9"]
        assert state.cosigned == [18]

    @pytest.mark.spec("AUD-2")
    async def test_an_http_witness_refusing_our_proof_is_reported_as_a_fork(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
    ) -> None:
        await append(sessions, ledger, 6)
        await settle(engine)
        await tree.sign_checkpoint()
        # The witness holds a size-4 tree head that is not ours (a fork it saw earlier).
        state = WitnessState(origin=ORIGIN, vkeys=[vkey(tree)], size=4, root=bytes(32))
        with running_witness(state) as prefix, pytest.raises(WitnessConflict, match="refused"):
            await publish_pending(tree, HttpWitness(prefix))
        assert state.cosigned == []

    async def test_a_witness_that_does_not_know_our_key_is_a_configuration_error(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
        tmp_path: Path,
    ) -> None:
        await append(sessions, ledger, 2)
        await settle(engine)
        await tree.sign_checkpoint()
        stranger = LogKeySource(tmp_path / "other-keys", ORIGIN).current().active.key.vkey
        state = WitnessState(origin=ORIGIN, vkeys=[stranger])
        with running_witness(state) as prefix, pytest.raises(WitnessRefused, match="HTTP 403"):
            await publish_pending(tree, HttpWitness(prefix))


class TestVerifyTree:
    """ledger/tree/integrity.py on both databases: the stored subtrees and checkpoints are
    recomputed from the chained leaves."""

    @pytest.mark.spec("AUD-2")
    async def test_every_stored_level_and_checkpoint_is_checked(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
    ) -> None:
        for start in (0, 100, 200):
            await append(sessions, ledger, 100, start)
            await settle(engine)
            await tree.sign_checkpoint()
        async with engine.connect() as conn:
            report = await verify_tree(conn, 300, keys=tree.keys().verifiers, origin=ORIGIN)
            without_keys = await verify_tree(conn, 300, keys=[], origin=ORIGIN)
        assert report == TreeReport(True, 300, 300 // 16 + 300 // 256, 3)
        assert without_keys.failure is TreeFailure.NO_KEYS

    @pytest.mark.spec("AUD-2")
    async def test_a_deleted_stored_subtree_is_named(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
    ) -> None:
        await append(sessions, ledger, 300)
        await settle(engine)
        await rewrite_behind_triggers(
            engine, "audit_tree_node", "DELETE FROM audit_tree_node WHERE level = 8"
        )
        async with engine.connect() as conn:
            report = await verify_tree(conn, 300, keys=tree.keys().verifiers, origin=ORIGIN)
        assert not report.ok
        assert report.failure is TreeFailure.MISSING_NODE
        assert report.detail == "stored subtree level 8 index 0 is missing"


class TestVerifyTreeRollback:
    """Review finding (issue #9): a ledger cut back at the end, with its chain, head and
    sequencer state cut back to match, verified as sound; and a consistent rewrite with
    every checkpoint row deleted did too. Both databases."""

    @pytest.mark.spec("AUD-2")
    async def test_checkpoints_and_subtrees_beyond_the_chain_are_a_rollback(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
    ) -> None:
        await append(sessions, ledger, 40)
        await settle(engine)
        await tree.sign_checkpoint()
        await cut_chain_after(engine, seq=20)
        async with engine.begin() as conn:
            await conn.execute(update(SequencerStateRow).values(last_seq=20))
        keys = tree.keys().verifiers
        async with engine.connect() as conn:
            stored_checkpoint = await verify_tree(conn, 20, keys=keys, origin=ORIGIN)
        await rewrite_behind_triggers(engine, "audit_checkpoint", "DELETE FROM audit_checkpoint")
        async with engine.connect() as conn:
            stored_subtree = await verify_tree(conn, 20, keys=keys, origin=ORIGIN)
        await rewrite_behind_triggers(
            engine, "audit_tree_node", "DELETE FROM audit_tree_node WHERE level = 4 AND idx = 1"
        )
        remembered = Checkpoint(ORIGIN, 40, bytes(32))
        async with engine.connect() as conn:
            clean = await verify_tree(conn, 20, keys=keys, origin=ORIGIN)
            signer_said = await verify_tree(
                conn, 20, keys=keys, origin=ORIGIN, remembered=remembered
            )
        assert stored_checkpoint.failure is TreeFailure.ROLLBACK
        assert "a signed checkpoint of size 40 is stored but the chain holds 20" in (
            stored_checkpoint.detail
        )
        assert stored_subtree.failure is TreeFailure.ROLLBACK
        assert stored_subtree.detail.startswith("stored subtree level 4 index 1 covers leaves")
        assert clean.ok, clean
        assert signer_said.failure is TreeFailure.ROLLBACK

    @pytest.mark.spec("AUD-2")
    async def test_a_consistent_rewrite_differs_from_the_remembered_checkpoint(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        ledger: Ledger,
        tree: LedgerTree,
    ) -> None:
        await append(sessions, ledger, 40)
        await settle(engine)
        await tree.sign_checkpoint()
        async with engine.connect() as conn:
            [note] = (await conn.execute(text("SELECT note FROM audit_checkpoint"))).scalars()
        remembered, _ = open_checkpoint(note, tree.keys().verifiers, origin=ORIGIN)
        await forge_history(engine, 7)  # every hash recomputed, checkpoint rows deleted
        async with engine.connect() as conn:
            unaware = await verify_tree(conn, 40, keys=tree.keys().verifiers, origin=ORIGIN)
            aware = await verify_tree(
                conn, 40, keys=tree.keys().verifiers, origin=ORIGIN, remembered=remembered
            )
        assert unaware.ok  # what the database alone can show: that is what witnesses are for
        assert aware.failure is TreeFailure.REMEMBERED_CHECKPOINT
