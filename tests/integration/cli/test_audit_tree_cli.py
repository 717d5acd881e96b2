"""`tradeguard audit checkpoint | prove | keys | monitor` against a real data directory: what
they print verifies with the independent verifier and the published key; the monitor alarms
on a fork, a rollback, a rewritten history and a bad signature; bad input exits 2."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from tests.support import rfc9162
from tests.support.ledger import cut_chain_after, rewrite_behind_triggers
from tradeguard.cli.main import app
from tradeguard.config import Settings
from tradeguard.core.clock import SystemClock
from tradeguard.core.ids import IdGenerator
from tradeguard.db.engine import create_engine, session_factory, unit_of_work
from tradeguard.ledger.domain import LedgerEvent
from tradeguard.ledger.models import AuditEventRow
from tradeguard.ledger.sequencer import LedgerSequencer
from tradeguard.ledger.service import Ledger
from tradeguard.ledger.tree import repository as tree_repository
from tradeguard.ledger.tree.keys import load_or_create_log_keys
from tradeguard.ledger.tree.monitor import MONITOR_ALARM
from tradeguard.ledger.tree.note import Checkpoint, sign_note

runner = CliRunner()


def run(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--data-dir", str(data_dir)], env=env)
    return result.exit_code, result.output


def settings_of(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, _env_file=None)  # type: ignore[call-arg]


def add_events(data_dir: Path, count: int) -> None:
    async def append() -> None:
        engine = create_engine(settings_of(data_dir).main_database_url)
        clock = SystemClock()
        ledger = Ledger(clock=clock, ids=IdGenerator(clock))
        try:
            async with unit_of_work(session_factory(engine)) as session:
                for n in range(count):
                    await ledger.append(session, LedgerEvent("test:cli:event", {"n": n}))
        finally:
            await engine.dispose()

    asyncio.run(append())


def alarm_events(data_dir: Path) -> list[dict[str, object]]:
    async def read() -> list[dict[str, object]]:
        engine = create_engine(settings_of(data_dir).main_database_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(AuditEventRow.body).where(AuditEventRow.event_type == MONITOR_ALARM)
                )
                return [json.loads(body) for body in rows.scalars()]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def forged(data_dir: Path, size: int, root: bytes) -> str:
    """A checkpoint signed with the log's own key over a tree it never had (a stolen key,
    or the log equivocating)."""
    settings = settings_of(data_dir)
    signer = load_or_create_log_keys(settings.ledger_keys_dir, settings.ledger_origin).active
    return sign_note(Checkpoint(settings.ledger_origin, size, root).text, signer)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "var"
    assert runner.invoke(app, ["init", "--data-dir", str(directory)]).exit_code == 0
    add_events(directory, 20)
    return directory


@pytest.fixture
def witness(tmp_path: Path) -> dict[str, str]:
    return {"TRADEGUARD_LEDGER_WITNESS": str(tmp_path / "witness")}


@pytest.fixture
def vkeys(data_dir: Path, tmp_path: Path) -> Path:
    code, out = run(data_dir, "audit", "keys", "list")
    assert code == 0, out
    path = tmp_path / "ledger.vkeys"
    path.write_text(out)
    return path


class TestCheckpoint:
    @pytest.mark.spec("AUD-3")
    def test_the_printed_checkpoint_verifies_with_the_listed_public_key(
        self, data_dir: Path, vkeys: Path
    ) -> None:
        code, note = run(data_dir, "audit", "checkpoint")
        again_code, again = run(data_dir, "audit", "checkpoint", "--json")
        shown_code, shown = run(data_dir, "audit", "checkpoint", "--size", "21")
        origin, size, _ = rfc9162.verify_checkpoint(note.split("\n", 1)[1], vkeys.read_text())
        assert code == 0
        assert note.startswith("tree size 21: signed\n")
        assert (origin, size) == ("tradeguard.local/audit-ledger", 21)
        assert again_code == 0
        assert json.loads(again)["created"] is False
        assert shown_code == 0
        assert shown == note.split("\n", 1)[1]

    @pytest.mark.parametrize(
        ("args", "code", "message"),
        [
            (["--size", "999"], 1, "no checkpoint was signed at tree size 999"),
            (["--size", "-1"], 2, ""),
            (["--size", "abc"], 2, ""),
        ],
    )
    def test_bad_input(self, data_dir: Path, args: list[str], code: int, message: str) -> None:
        got, out = run(data_dir, "audit", "checkpoint", *args)
        assert got == code
        assert message in out

    def test_without_a_database_nothing_is_created(self, tmp_path: Path) -> None:
        code, out = run(tmp_path / "none", "audit", "checkpoint")
        assert code == 2
        assert "no tradeguard database here" in out
        assert not (tmp_path / "none").exists()


class TestProve:
    @pytest.mark.spec("AUD-2")
    def test_inclusion_and_consistency_proofs_verify_independently(self, data_dir: Path) -> None:
        run(data_dir, "audit", "checkpoint")
        add_events(data_dir, 5)
        run(data_dir, "audit", "checkpoint")
        code, out = run(data_dir, "audit", "prove", "inclusion", "--seq", "7", "--json")
        link_code, link = run(data_dir, "audit", "prove", "consistency", "21", "26", "--json")
        text_code, text = run(data_dir, "audit", "prove", "inclusion", "--seq", "7")
        proof, consistency = json.loads(out), json.loads(link)
        body = base64.b64decode(proof["event_body"])
        hashes = [base64.b64decode(h) for h in proof["proof"]]
        root = base64.b64decode(proof["root_hash"])
        assert code == 0
        assert proof["tree_size"] == 26
        assert rfc9162.verify_inclusion(6, 26, rfc9162.leaf(body), hashes, root)
        assert link_code == 0
        assert consistency["verified"] is True
        assert rfc9162.verify_consistency(
            21,
            26,
            base64.b64decode(consistency["first_root"]),
            root,
            [base64.b64decode(h) for h in consistency["proof"]],
        )
        assert text_code == 0
        assert "is leaf 6 of the tree of 26" in text
        assert text.rstrip().endswith("verified")

    def test_an_event_whose_body_was_altered_is_refused_not_verified(self, data_dir: Path) -> None:
        assert run(data_dir, "audit", "checkpoint")[0] == 0
        alter_event_body(data_dir, 7)
        code, out = run(data_dir, "audit", "prove", "inclusion", "--seq", "7")
        json_code, json_out = run(data_dir, "audit", "prove", "inclusion", "--seq", "7", "--json")
        other_code, _ = run(data_dir, "audit", "prove", "inclusion", "--seq", "8")
        assert code == 1
        assert "seq 7 does not hash to its leaf" in out
        assert "verified" not in out.replace("\n", " ").split("does not hash")[0]
        assert "NOT VERIFIED" not in out
        assert json_code == 1
        assert '"verified"' not in json_out
        assert other_code == 0

    @pytest.mark.parametrize(
        ("args", "code", "message"),
        [
            (["inclusion"], 2, "--event-id or --seq"),
            (["inclusion", "--seq", "1", "--event-id", "x"], 2, "--event-id or --seq"),
            (["inclusion", "--event-id", "not-a-uuid"], 2, "is a UUID"),
            (["inclusion", "--seq", "0"], 2, ""),
            (["inclusion", "--seq", "abc"], 2, ""),
            (["inclusion", "--seq", "999"], 1, "no chained event has seq 999"),
            (["inclusion", "--seq", "2", "--tree-size", "999"], 2, "beyond the tree"),
            (["inclusion", "--seq", "9", "--tree-size", "3"], 2, "not in the tree of size 3"),
            (["consistency", "5", "3"], 2, "must not be larger"),
            (["consistency", "3", "999"], 2, "beyond the tree"),
            (["consistency", "a", "3"], 2, ""),
            (["consistency", "3"], 2, ""),
        ],
    )
    def test_bad_input(self, data_dir: Path, args: list[str], code: int, message: str) -> None:
        run(data_dir, "audit", "checkpoint")
        got, out = run(data_dir, "audit", "prove", *args)
        assert got == code, out
        assert message in " ".join(out.split())


class TestKeys:
    @pytest.mark.spec("AUD-3")
    def test_rotation_keeps_the_old_public_key_listed_and_verifying(
        self, data_dir: Path, vkeys: Path
    ) -> None:
        _, old_note = run(data_dir, "audit", "checkpoint")
        code, out = run(data_dir, "audit", "keys", "rotate")
        add_events(data_dir, 1)
        _, new_note = run(data_dir, "audit", "checkpoint")
        _, listed = run(data_dir, "audit", "keys", "list")
        new_vkey, old_vkey = listed.splitlines()
        assert code == 0
        assert old_vkey == vkeys.read_text().strip()
        assert f"retired key  {old_vkey}" in " ".join(out.split("\n"))
        assert rfc9162.verify_checkpoint(old_note.split("\n", 1)[1], old_vkey)[1] == 21
        assert rfc9162.verify_checkpoint(new_note.split("\n", 1)[1], new_vkey)[1] == 22

    def test_keys_need_a_data_directory(self, tmp_path: Path) -> None:
        assert run(tmp_path / "none", "audit", "keys", "rotate")[0] == 2
        assert run(tmp_path / "none", "audit", "keys", "list")[0] == 2


class TestMonitor:
    def monitor(
        self, data_dir: Path, vkeys: Path, witness: dict[str, str], *args: str
    ) -> tuple[int, str]:
        return run(data_dir, "audit", "monitor", "--public-key", str(vkeys), *args, env=witness)

    @pytest.mark.spec("AUD-2")
    def test_a_growing_consistent_log_passes_and_the_state_follows_it(
        self, data_dir: Path, vkeys: Path, witness: dict[str, str]
    ) -> None:
        run(data_dir, "audit", "checkpoint", env=witness)
        first_code, first = self.monitor(data_dir, vkeys, witness, "--json")
        add_events(data_dir, 3)
        run(data_dir, "audit", "checkpoint", env=witness)
        add_events(data_dir, 40)
        run(data_dir, "audit", "checkpoint", env=witness)
        code, out = self.monitor(data_dir, vkeys, witness, "--json")
        state = json.loads((data_dir / "audit-monitor.json").read_text())
        assert first_code == 0
        assert json.loads(first)["size"] == 21
        assert code == 0, out
        assert json.loads(out)["accepted"] == [24, 64]
        assert state["size"] == 64

    def test_a_database_whose_tree_differs_from_the_witnessed_one_is_an_alarm(
        self, data_dir: Path, vkeys: Path, witness: dict[str, str]
    ) -> None:
        assert run(data_dir, "audit", "checkpoint", env=witness)[0] == 0
        assert self.monitor(data_dir, vkeys, witness)[0] == 0
        forge_stored_subtree(data_dir)
        code, out = self.monitor(data_dir, vkeys, witness, "--json")
        report = json.loads(out[out.index("{") :])
        assert code == 1, out
        assert [a["kind"] for a in report["alarms"]] == ["fork"]
        assert "the log's database was rewritten" in report["alarms"][0]["detail"]
        assert json.loads((data_dir / "audit-monitor.json").read_text())["size"] == 21

    @pytest.mark.spec("AUD-2", "ENC-3")
    def test_a_fork_at_the_seen_size_is_an_alarm_recorded_in_the_ledger(
        self, data_dir: Path, vkeys: Path, witness: dict[str, str]
    ) -> None:
        run(data_dir, "audit", "checkpoint", env=witness)
        assert self.monitor(data_dir, vkeys, witness)[0] == 0
        # Someone with the key and the witness directory swaps in another tree of size 21.
        (Path(witness["TRADEGUARD_LEDGER_WITNESS"]) / "21.checkpoint").write_text(
            forged(data_dir, 21, bytes(32))
        )
        code, out = self.monitor(data_dir, vkeys, witness)
        again, _ = self.monitor(data_dir, vkeys, witness, "--json")
        [recorded, _second] = alarm_events(data_dir)
        assert code == 1
        assert "ALARM fork" in out
        assert "two different trees at size 21" in " ".join(out.split())
        assert again == 1  # the state did not move past the fork
        assert recorded["data"]["kind"] == "fork"  # type: ignore[index]
        assert recorded["data"]["seen_size"] == 21  # type: ignore[index]

    @pytest.mark.spec("AUD-2")
    def test_a_rollback_below_the_seen_size_is_an_alarm(
        self, data_dir: Path, vkeys: Path, witness: dict[str, str]
    ) -> None:
        run(data_dir, "audit", "checkpoint", env=witness)
        add_events(data_dir, 4)
        run(data_dir, "audit", "checkpoint", env=witness)
        assert self.monitor(data_dir, vkeys, witness)[0] == 0
        (Path(witness["TRADEGUARD_LEDGER_WITNESS"]) / "25.checkpoint").unlink()
        code, out = self.monitor(data_dir, vkeys, witness, "--json")
        report = json.loads(out)
        assert code == 1
        assert [a["kind"] for a in report["alarms"]] == ["rollback"]
        assert report["alarms"][0]["observed_size"] == 21
        assert report["size"] == 25

    @pytest.mark.spec("AUD-2")
    def test_a_larger_tree_that_does_not_extend_the_seen_one_is_an_alarm(
        self, data_dir: Path, vkeys: Path, witness: dict[str, str]
    ) -> None:
        run(data_dir, "audit", "checkpoint", env=witness)
        assert self.monitor(data_dir, vkeys, witness)[0] == 0
        add_events(data_dir, 4)
        run(data_dir, "audit", "checkpoint", env=witness)
        (Path(witness["TRADEGUARD_LEDGER_WITNESS"]) / "25.checkpoint").unlink()
        (Path(witness["TRADEGUARD_LEDGER_WITNESS"]) / "25.checkpoint").write_text(
            forged(data_dir, 25, bytes(range(32)))
        )
        code, out = self.monitor(data_dir, vkeys, witness)
        assert code == 1
        assert "ALARM inconsistent" in out
        assert "history was rewritten" in " ".join(out.split())

    def test_a_checkpoint_signed_by_another_key_is_an_alarm(
        self, data_dir: Path, vkeys: Path, witness: dict[str, str], tmp_path: Path
    ) -> None:
        run(data_dir, "audit", "checkpoint", env=witness)
        stranger = tmp_path / "stranger"
        assert runner.invoke(app, ["init", "--data-dir", str(stranger)]).exit_code == 0
        (Path(witness["TRADEGUARD_LEDGER_WITNESS"]) / "30.checkpoint").write_text(
            forged(stranger, 30, bytes(32))
        )
        code, out = self.monitor(data_dir, vkeys, witness)
        assert code == 1
        assert "ALARM bad_signature" in out

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--public-key", "/nonexistent/keys"], "does not exist"),
            (["--api", "http://example.com"], "https://"),
            (["--api", "https://example.com"], "access token"),
        ],
    )
    def test_bad_input_exits_2(
        self, data_dir: Path, vkeys: Path, args: list[str], message: str
    ) -> None:
        code, out = run(data_dir, "audit", "monitor", "--public-key", str(vkeys), *args)
        assert code == 2
        assert message in " ".join(out.split())

    def test_a_malformed_key_file_or_state_file_is_refused(
        self, data_dir: Path, vkeys: Path, witness: dict[str, str], tmp_path: Path
    ) -> None:
        bad_keys = tmp_path / "bad.vkeys"
        bad_keys.write_text("not a key\n")
        state = tmp_path / "state.json"
        state.write_text("{broken")
        bad_key_code, bad_key_out = run(
            data_dir, "audit", "monitor", "--public-key", str(bad_keys), env=witness
        )
        state_code, state_out = self.monitor(data_dir, vkeys, witness, "--state", str(state))
        nothing_code, nothing_out = run(data_dir, "audit", "monitor", "--public-key", str(vkeys))
        assert bad_key_code == 2
        assert "verifier key reads" in bad_key_out
        assert state_code == 2
        assert "not a monitor state file" in state_out
        assert state.read_text() == "{broken"
        assert nothing_code == 2
        assert "nothing to monitor" in nothing_out


class TestAMonitorStateFileEditedByHand:
    """Only the state file's signed note is evidence: its plain size and root must be the
    note's, else the file is damaged (exit 2), never a fork or rollback alarm."""

    def edited(
        self, data_dir: Path, vkeys: Path, witness: dict[str, str], edit: dict[str, object]
    ) -> tuple[int, str, str]:
        assert run(data_dir, "audit", "checkpoint", env=witness)[0] == 0
        assert TestMonitor().monitor(data_dir, vkeys, witness)[0] == 0
        path = data_dir / "audit-monitor.json"
        state = json.loads(path.read_text())
        state.update(edit)
        path.write_text(json.dumps(state))
        before = path.read_text()
        code, out = TestMonitor().monitor(data_dir, vkeys, witness)
        assert path.read_text() == before
        return code, " ".join(out.split()), before

    @pytest.mark.spec("AUD-2")
    @pytest.mark.parametrize(
        "edit",
        [
            {"size": 20},
            {"size": 22},
            {"size": 10**30},
            {"size": -1},
            {"size": "21"},
            {"size": 21.0},
            {"size": True},
            {"root": base64.b64encode(bytes(32)).decode()},
            {"root": "AAAA"},
            {"origin": "another.example/log"},
        ],
    )
    def test_an_unsigned_field_that_differs_from_the_note_is_a_damaged_file_not_an_alarm(
        self, data_dir: Path, vkeys: Path, witness: dict[str, str], edit: dict[str, object]
    ) -> None:
        code, out, _ = self.edited(data_dir, vkeys, witness, edit)
        assert code == 2, out
        assert "damaged state file" in out
        assert "ALARM" not in out
        assert alarm_events(data_dir) == []

    def test_a_note_that_does_not_verify_is_a_damaged_file(
        self, data_dir: Path, vkeys: Path, witness: dict[str, str], tmp_path: Path
    ) -> None:
        stranger = tmp_path / "stranger"
        assert runner.invoke(app, ["init", "--data-dir", str(stranger)]).exit_code == 0
        # The stranger's note for the same size and root the file names: only the key differs.
        stolen = forged(stranger, 21, bytes(32))
        code, out, _ = self.edited(
            data_dir, vkeys, witness, {"note": stolen, "root": base64.b64encode(bytes(32)).decode()}
        )
        assert code == 2, out
        assert "damaged state file" in out
        assert "does not verify" in out
        assert alarm_events(data_dir) == []

    def test_an_untouched_state_file_still_passes(
        self, data_dir: Path, vkeys: Path, witness: dict[str, str]
    ) -> None:
        code, out, _ = self.edited(data_dir, vkeys, witness, {})
        assert code == 0, out


class TestCheckpointWitness:
    def test_a_witness_that_cannot_take_it_fails_the_command_after_the_note_is_printed(
        self, data_dir: Path, tmp_path: Path
    ) -> None:
        blocked = tmp_path / "witness"
        blocked.write_text("a file where the witness directory should be")
        code, out = run(
            data_dir, "audit", "checkpoint", env={"TRADEGUARD_LEDGER_WITNESS": str(blocked)}
        )
        shown_code, shown = run(data_dir, "audit", "checkpoint", "--size", "21")
        assert code == 1
        assert "signed but not published to the witness" in " ".join(out.split())
        assert shown_code == 0
        assert shown in out


def store_checkpoint(data_dir: Path, size: int, root: bytes, note: str) -> None:
    """Put a checkpoint row straight into the table (INSERT is all the triggers allow), as
    someone with database access could."""

    async def insert() -> None:
        engine = create_engine(settings_of(data_dir).main_database_url)
        try:
            async with engine.begin() as conn:
                await tree_repository.insert_checkpoint(
                    conn,
                    {
                        "tree_size": size,
                        "root_hash": root,
                        "origin": "tradeguard.local/audit-ledger",
                        "key_name": "tradeguard.local/audit-ledger",
                        "key_id": "00000000",
                        "note": note,
                        "signed_ns": 0,
                    },
                )
        finally:
            await engine.dispose()

    asyncio.run(insert())


def alter_event_body(data_dir: Path, seq: int) -> None:
    """Change the body of the event chained at `seq` behind the triggers (the chain and the
    tree are left as they were)."""

    async def rewrite() -> None:
        engine = create_engine(settings_of(data_dir).main_database_url)
        try:
            async with engine.connect() as conn:
                pk, body = (
                    await conn.execute(
                        text(
                            "SELECT e.pk, e.body FROM audit_event e JOIN audit_chain c "
                            "ON c.event_pk = e.pk WHERE c.seq = :s"
                        ),
                        {"s": seq},
                    )
                ).one()
            altered = bytes(body).replace(b'"n":', b'"n":9', 1)
            assert altered != bytes(body)
            await rewrite_behind_triggers(
                engine,
                "audit_event",
                "UPDATE audit_event SET body = :b WHERE pk = :pk",
                {"b": altered, "pk": pk},
            )
        finally:
            await engine.dispose()

    asyncio.run(rewrite())


def forge_stored_subtree(data_dir: Path) -> None:
    async def rewrite() -> None:
        engine = create_engine(settings_of(data_dir).main_database_url)
        try:
            await rewrite_behind_triggers(
                engine,
                "audit_tree_node",
                "UPDATE audit_tree_node SET hash = :forged WHERE level = 4 AND idx = 0",
                {"forged": bytes(32)},
            )
        finally:
            await engine.dispose()

    asyncio.run(rewrite())


class TestVerifyTheTree:
    """`audit verify` recomputes the stored subtrees and checks every signed checkpoint
    against the chained leaves, after walking the chain."""

    @pytest.mark.spec("AUD-2")
    def test_a_sound_ledger_reports_its_subtrees_and_checkpoints(self, data_dir: Path) -> None:
        assert run(data_dir, "audit", "checkpoint")[0] == 0
        code, out = run(data_dir, "audit", "verify", "--json")
        report = json.loads(out)
        assert code == 0, out
        assert report["ok"] is True
        assert report["tree"] == {
            "ok": True,
            "leaves": 21,
            "stored_subtrees": 1,
            "checkpoints": 1,
            "failure": None,
            "detail": "",
        }

    @pytest.mark.spec("AUD-2")
    def test_a_rewritten_stored_subtree_is_named(self, data_dir: Path) -> None:
        assert run(data_dir, "audit", "checkpoint")[0] == 0
        forge_stored_subtree(data_dir)
        code, out = run(data_dir, "audit", "verify")
        chain_only_code, chain_only = run(data_dir, "audit", "verify", "--chain-only")
        assert code == 1
        assert "TAMPERED" in out
        assert "stored subtree level 4 index 0 does not match the leaves beneath it" in out
        assert chain_only_code == 0, chain_only

    @pytest.mark.spec("AUD-2")
    def test_a_checkpoint_over_another_tree_is_named_even_when_signed_with_our_key(
        self, data_dir: Path
    ) -> None:
        assert run(data_dir, "audit", "checkpoint")[0] == 0
        add_events(data_dir, 3)
        assert run(data_dir, "audit", "checkpoint")[0] == 0
        fake_root = bytes(range(32))
        store_checkpoint(data_dir, 22, fake_root, forged(data_dir, 22, fake_root))
        code, out = run(data_dir, "audit", "verify", "--json")
        report = json.loads(out)
        assert code == 1
        assert report["ok"] is False
        assert report["tree"]["failure"] == "checkpoint-root-mismatch"
        assert report["tree"]["detail"].startswith("checkpoint at size 22")

    @pytest.mark.spec("AUD-2")
    def test_a_checkpoint_signed_by_a_key_the_log_never_had_fails(
        self, data_dir: Path, tmp_path: Path
    ) -> None:
        assert run(data_dir, "audit", "checkpoint")[0] == 0
        other = load_or_create_log_keys(tmp_path / "other", "tradeguard.local/audit-ledger")
        code, out = run(data_dir, "audit", "verify", "--json")
        assert code == 0, out
        leaves_root = bytes.fromhex(checkpoint_root(data_dir, 21))
        store_checkpoint(
            data_dir,
            21,
            leaves_root,
            sign_note(
                Checkpoint("tradeguard.local/audit-ledger", 21, leaves_root).text, other.active
            ),
        )
        code, out = run(data_dir, "audit", "verify", "--json")
        assert code == 1
        assert json.loads(out)["tree"]["failure"] == "checkpoint-signature"

    def test_checkpoints_are_checked_with_the_keys_given(
        self, data_dir: Path, tmp_path: Path
    ) -> None:
        assert run(data_dir, "audit", "checkpoint")[0] == 0
        other = load_or_create_log_keys(tmp_path / "other", "tradeguard.local/audit-ledger")
        stranger = tmp_path / "stranger.vkeys"
        stranger.write_text(other.published())
        garbage = tmp_path / "garbage.vkeys"
        garbage.write_text("not a key\n")
        mine_code, mine = run(
            data_dir, "audit", "verify", "--public-key", str(vkeys_of(data_dir, tmp_path))
        )
        theirs_code, theirs = run(data_dir, "audit", "verify", "--public-key", str(stranger))
        bad_code, bad = run(data_dir, "audit", "verify", "--public-key", str(garbage))
        assert mine_code == 0, mine
        assert "1 signed checkpoints match" in mine
        assert theirs_code == 1
        assert "checkpoint-signature" in theirs
        assert bad_code == 2
        assert "is not a file of public keys" in bad
        assert "Traceback" not in bad


def vkeys_of(data_dir: Path, tmp_path: Path) -> Path:
    code, out = run(data_dir, "audit", "keys", "list")
    assert code == 0, out
    path = tmp_path / "mine.vkeys"
    path.write_text(out)
    return path


def checkpoint_root(data_dir: Path, size: int) -> str:
    code, out = run(data_dir, "audit", "checkpoint", "--size", str(size))
    assert code == 0, out
    return base64.b64decode(out.split("\n")[2]).hex()


def roll_back(data_dir: Path, *, to: int, checkpoints: bool, subtrees: bool) -> None:
    """Cut the ledger back to its first `to` events as someone with full database access
    could, consistently: events and chain rows after `to` deleted, the sequencer's state set
    back to match (so the chain walk holds), and, if asked, the checkpoint rows and stored
    subtrees of the longer tree deleted too."""

    async def cut() -> None:
        engine = create_engine(settings_of(data_dir).main_database_url)
        try:
            async with engine.connect() as conn:
                pk, chain_hash, txid = (
                    await conn.execute(
                        text(
                            "SELECT c.event_pk, c.chain_hash, e.txid FROM audit_chain c "
                            "JOIN audit_event e ON e.pk = c.event_pk WHERE c.seq = :s"
                        ),
                        {"s": to},
                    )
                ).one()
            await rewrite_behind_triggers(
                engine,
                "audit_event_ref",
                "DELETE FROM audit_event_ref WHERE event_pk IN "
                "(SELECT event_pk FROM audit_chain WHERE seq > :to)",
                {"to": to},
            )
            await rewrite_behind_triggers(
                engine,
                "audit_event",
                "DELETE FROM audit_event WHERE pk IN "
                "(SELECT event_pk FROM audit_chain WHERE seq > :to)",
                {"to": to},
            )
            await cut_chain_after(engine, seq=to)
            await rewrite_behind_triggers(
                engine,
                "audit_sequencer_state",
                "UPDATE audit_sequencer_state SET last_seq = :to, last_chain_hash = :h, "
                "cursor_pk = :pk, cursor_txid = :txid",
                {"to": to, "h": chain_hash, "pk": pk, "txid": txid or 0},
            )
            if checkpoints:
                await rewrite_behind_triggers(
                    engine, "audit_checkpoint", "DELETE FROM audit_checkpoint"
                )
            if subtrees:
                await rewrite_behind_triggers(
                    engine,
                    "audit_tree_node",
                    "DELETE FROM audit_tree_node WHERE (idx + 1) * (1 << level) > :to",
                    {"to": to},
                )
        finally:
            await engine.dispose()

    asyncio.run(cut())


class TestRollback:
    """Review finding (issue #9): events cut off the end, with the chain, its head and the
    sequencer's state cut back to match, verified "ok" although the database still held
    checkpoints and subtrees of the longer tree, and the signer's own record of what it
    signed says more."""

    @pytest.mark.spec("AUD-2")
    def test_a_stored_checkpoint_beyond_the_chain_is_a_rollback(self, data_dir: Path) -> None:
        assert run(data_dir, "audit", "checkpoint")[0] == 0
        assert run(data_dir, "audit", "verify")[0] == 0
        roll_back(data_dir, to=10, checkpoints=False, subtrees=False)
        chain_code, chain = run(data_dir, "audit", "verify", "--chain-only")
        code, out = run(data_dir, "audit", "verify", "--json")
        assert chain_code == 0, chain  # the cut chain holds on its own
        report = json.loads(out)
        assert code == 1
        assert report["tree"]["failure"] == "rollback"
        assert report["tree"]["detail"].startswith(
            "a signed checkpoint of size 21 is stored but the chain holds 10 events"
        )

    @pytest.mark.spec("AUD-2")
    def test_a_stored_subtree_beyond_the_chain_is_a_rollback(self, data_dir: Path) -> None:
        assert run(data_dir, "audit", "checkpoint")[0] == 0
        (settings_of(data_dir).ledger_keys_dir / "signed.note").unlink()
        roll_back(data_dir, to=10, checkpoints=True, subtrees=False)
        code, out = run(data_dir, "audit", "verify")
        assert code == 1
        assert "TAMPERED" in out
        assert "stored subtree level 4 index 0 covers leaves beyond the chain's 10 events" in out

    @pytest.mark.spec("AUD-2")
    def test_the_signers_own_record_beyond_the_chain_is_a_rollback(self, data_dir: Path) -> None:
        assert run(data_dir, "audit", "checkpoint")[0] == 0
        roll_back(data_dir, to=10, checkpoints=True, subtrees=True)
        code, out = run(data_dir, "audit", "verify", "--json")
        report = json.loads(out)
        assert code == 1
        assert report["tree"]["failure"] == "rollback"
        assert (
            "signed a checkpoint of size 21 (keys/ledger/signed.note)" in report["tree"]["detail"]
        )
        # Without the signer's directory (a verifier on another host, given the public key),
        # nothing is left to compare with: that is what witnesses are for.
        settings = settings_of(data_dir)
        (settings.ledger_keys_dir / "signed.note").rename(data_dir / "moved.note")
        assert run(data_dir, "audit", "verify")[0] == 0

    @pytest.mark.spec("AUD-2")
    def test_a_consistent_rewrite_of_signed_history_is_named_against_the_signers_record(
        self, data_dir: Path
    ) -> None:
        assert run(data_dir, "audit", "checkpoint")[0] == 0
        # History after 16 rewritten: cut there (a whole stored group, so no subtree is left
        # over), other events appended and chained to the same size, checkpoints deleted.
        roll_back(data_dir, to=16, checkpoints=True, subtrees=True)
        add_events(data_dir, 5)

        async def chain() -> None:
            engine = create_engine(settings_of(data_dir).main_database_url)
            try:
                await LedgerSequencer(engine).drain()
            finally:
                await engine.dispose()

        asyncio.run(chain())
        code, out = run(data_dir, "audit", "verify", "--json")
        report = json.loads(out)
        assert code == 1
        assert report["verified"] == 21  # the rewritten chain holds on its own
        assert report["tree"]["failure"] == "remembered-checkpoint-mismatch"

    def test_a_replaced_signers_record_fails_verification(
        self, data_dir: Path, tmp_path: Path
    ) -> None:
        assert run(data_dir, "audit", "checkpoint")[0] == 0
        other = load_or_create_log_keys(tmp_path / "other", "tradeguard.local/audit-ledger")
        note = sign_note(
            Checkpoint("tradeguard.local/audit-ledger", 5, bytes(32)).text, other.active
        )
        (settings_of(data_dir).ledger_keys_dir / "signed.note").write_text(note)
        code, out = run(data_dir, "audit", "verify")
        assert code == 1
        assert "TAMPERED" in out
        assert "Traceback" not in out
