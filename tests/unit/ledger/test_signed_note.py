"""C2SP signed notes and checkpoints (ledger/tree/note.py): interoperable with the Go
reference implementation, and strict about what they accept."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.support import rfc9162
from tradeguard.ledger.tree.errors import MalformedNote, NoteNotVerified
from tradeguard.ledger.tree.note import (
    Checkpoint,
    NoteSigner,
    VerifierKey,
    open_checkpoint,
    open_note,
    parse_checkpoint,
    sign_note,
)

# The test key and note of golang.org/x/mod/sumdb/note (note_test.go): Ed25519 signatures are
# deterministic, so our signer must produce the very same signature line.
GO_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_SIGNATURE = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqf"
    "qdngotpRZb6KE6RyyBwJnAM=\n"
)


def signer(name: str = "tradeguard.test/log") -> NoteSigner:
    return NoteSigner(name, ed25519.Ed25519PrivateKey.generate())


class TestInteroperability:
    @pytest.mark.spec("AUD-3")
    def test_signs_exactly_as_the_go_reference_and_derives_its_key_id(self) -> None:
        go = NoteSigner("PeterNeumann", ed25519.Ed25519PrivateKey.from_private_bytes(GO_SEED))
        assert go.key.vkey == GO_VKEY
        assert sign_note(GO_TEXT, go) == GO_TEXT + "\n" + GO_SIGNATURE
        parsed, verified = open_note(GO_TEXT + "\n" + GO_SIGNATURE, [VerifierKey.parse(GO_VKEY)])
        assert parsed.text == GO_TEXT
        assert [k.vkey for k in verified] == [GO_VKEY]

    @pytest.mark.spec("AUD-3")
    def test_a_checkpoint_verifies_with_only_the_public_key_in_an_independent_verifier(
        self,
    ) -> None:
        key = signer()
        root = rfc9162.mth([rfc9162.leaf(b"a"), rfc9162.leaf(b"b")])
        note = sign_note(Checkpoint(key.name, 2, root).text, key)
        assert rfc9162.verify_checkpoint(note, key.key.vkey) == (key.name, 2, root)
        assert note.startswith(f"{key.name}\n2\n{base64.b64encode(root).decode()}\n\n\u2014 ")


class TestOpening:
    def test_a_tampered_note_is_rejected(self) -> None:
        key = signer()
        note = sign_note(Checkpoint(key.name, 7, bytes(32)).text, key)
        forged = note.replace("\n7\n", "\n8\n")
        with pytest.raises(NoteNotVerified, match="does not verify"):
            open_note(forged, [key.key])

    def test_a_note_signed_only_by_unknown_keys_is_rejected(self) -> None:
        note = sign_note("hello\n", signer())
        with pytest.raises(NoteNotVerified, match="no signature of a trusted key"):
            open_note(note, [signer().key])

    def test_an_unknown_signature_beside_a_good_one_is_ignored(self) -> None:
        ours, theirs = signer(), signer("witness.example/w1")
        note = sign_note("hello\n", ours) + theirs.signature_line("hello\n")
        _, verified = open_note(note, [ours.key])
        assert verified == [ours.key]

    def test_a_key_sharing_a_name_but_not_an_id_does_not_verify(self) -> None:
        note = sign_note("hello\n", signer("same/name"))
        with pytest.raises(NoteNotVerified):
            open_note(note, [signer("same/name").key])

    def test_a_checkpoint_for_another_log_is_rejected(self) -> None:
        key = signer("other.example/log")
        note = sign_note(Checkpoint("other.example/log", 1, bytes(32)).text, key)
        with pytest.raises(NoteNotVerified, match="for log"):
            open_checkpoint(note, [key.key], origin="tradeguard.test/log")

    @pytest.mark.parametrize(
        "note",
        [
            "no blank line\n\u2014 k AAAAAAA=\n",
            "text\n\n",
            "text\n\n- k AAAAAAAA\n",
            "text\n\n\u2014 k not-base64!\n",
            "text\n\n\u2014 k AAAA\n",
            "text\n\n\u2014 bad+name AAAAAAAA\n",
            "te\x01xt\n\n\u2014 k AAAAAAAA\n",
            "text\n\n\u2014 k AAAAAAAA",
        ],
    )
    def test_malformed_notes_are_refused(self, note: str) -> None:
        with pytest.raises(MalformedNote):
            open_note(note, [signer().key])


class TestCheckpointText:
    @pytest.mark.parametrize(
        "text",
        [
            "origin\n5\n",
            "origin\n05\n" + base64.b64encode(bytes(32)).decode() + "\n",
            "origin\n-1\n" + base64.b64encode(bytes(32)).decode() + "\n",
            "origin\nfive\n" + base64.b64encode(bytes(32)).decode() + "\n",
            "origin\n5\n" + base64.b64encode(bytes(31)).decode() + "\n",
            "\n5\n" + base64.b64encode(bytes(32)).decode() + "\n",
        ],
    )
    def test_malformed_checkpoint_bodies_are_refused(self, text: str) -> None:
        with pytest.raises(MalformedNote):
            parse_checkpoint(text)

    def test_round_trip(self) -> None:
        checkpoint = Checkpoint("example.com/log", 20852163, bytes(range(32)))
        assert parse_checkpoint(checkpoint.text) == checkpoint


class TestVerifierKeys:
    @pytest.mark.parametrize(
        "vkey",
        [
            "name+c74f20a3",
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3+Ahpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        ],
    )
    def test_malformed_or_mismatched_keys_are_refused(self, vkey: str) -> None:
        with pytest.raises(MalformedNote):
            VerifierKey.parse(vkey)

    def test_a_key_whose_base64_holds_a_plus_sign_round_trips(self) -> None:
        for seed in range(256):
            key = NoteSigner(
                "tradeguard.test/log",
                ed25519.Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32),
            ).key
            if "+" in key.vkey.split("+", 2)[2]:
                break
        assert VerifierKey.parse(key.vkey) == key
