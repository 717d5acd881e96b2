"""`tradeguard dev mailbox`: the offline mailbox of the development email sender."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradeguard.cli.dev import app
from tradeguard.core.clock import NS_PER_SECOND
from tradeguard.notify.domain import EmailMessage
from tradeguard.notify.senders import FileEmailSender

runner = CliRunner()
START_NS = 1_767_225_600 * NS_PER_SECOND  # 2026-01-01T00:00:00Z


def deliver(data_dir: Path, *messages: EmailMessage) -> None:
    sender = FileEmailSender(data_dir / "mailbox")

    async def send_all() -> None:
        for message in messages:
            await sender.send(message)

    asyncio.run(send_all())


def email(index: int, *, subject: str | None = None, body: str | None = None) -> EmailMessage:
    return EmailMessage(
        message_id=f"019b7cc0-0000-7000-8000-{index:012x}",
        to=f"user{index}@example.com",
        subject=subject or f"Code for login {index}",
        body=body or f"Your code is {index:06d}.",
        created_ns=START_NS + index * 60 * NS_PER_SECOND,
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "var"
    directory.mkdir()
    return directory


@pytest.mark.spec("AUTH-5")
class TestDevMailbox:
    def test_messages_are_listed_oldest_first(self, data_dir: Path) -> None:
        deliver(data_dir, email(2), email(1))

        result = runner.invoke(app, ["mailbox", "--data-dir", str(data_dir)])

        assert result.exit_code == 0, result.output
        assert result.output.index("Code for login 1") < result.output.index("Code for login 2")
        assert "user1@example.com" in result.output
        assert "2026-01-01 00:01:00" in result.output
        assert "000000000001" in result.output  # the short ID to pass to --show

    def test_last_limits_the_listing_to_the_newest(self, data_dir: Path) -> None:
        deliver(data_dir, email(1), email(2), email(3))

        result = runner.invoke(app, ["mailbox", "--data-dir", str(data_dir), "--last", "1"])

        assert result.exit_code == 0, result.output
        assert "Code for login 3" in result.output
        assert "Code for login 1" not in result.output
        assert "2 older message(s) not shown" in result.output

    def test_show_prints_one_message_body(self, data_dir: Path) -> None:
        deliver(
            data_dir, email(1), email(2, body="Your withdrawal code is 771204.\nIgnore if not you.")
        )

        result = runner.invoke(
            app, ["mailbox", "--data-dir", str(data_dir), "--show", "000000000002"]
        )

        assert result.exit_code == 0, result.output
        assert "To: user2@example.com" in result.output
        assert "Your withdrawal code is 771204.\nIgnore if not you." in result.output
        assert "000001" not in result.output

    def test_show_with_an_unknown_id_fails(self, data_dir: Path) -> None:
        deliver(data_dir, email(1))

        result = runner.invoke(app, ["mailbox", "--data-dir", str(data_dir), "--show", "ffff"])

        assert result.exit_code == 1
        assert "no message with ID 'ffff'" in result.output

    def test_show_with_an_ambiguous_id_asks_for_more(self, data_dir: Path) -> None:
        deliver(data_dir, email(0x11), email(0x21))

        result = runner.invoke(app, ["mailbox", "--data-dir", str(data_dir), "--show", "1"])

        assert result.exit_code == 1
        assert "matches 2 messages" in result.output

    def test_terminal_escape_sequences_in_mail_are_shown_inert(self, data_dir: Path) -> None:
        deliver(data_dir, email(1, body="before\x1b]0;pwned\x07after [bold]x[/bold]"))

        result = runner.invoke(
            app, ["mailbox", "--data-dir", str(data_dir), "--show", "000000000001"]
        )

        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output
        assert "before\\x1b]0;pwned\\x07after [bold]x[/bold]" in result.output

    def test_empty_mailbox_says_so_and_succeeds(self, data_dir: Path) -> None:
        result = runner.invoke(app, ["mailbox", "--data-dir", str(data_dir)])

        assert result.exit_code == 0
        assert "mailbox is empty" in result.output

    def test_missing_data_directory_exits_2_with_a_hint(self, tmp_path: Path) -> None:
        result = runner.invoke(app, ["mailbox", "--data-dir", str(tmp_path / "nope")])

        assert result.exit_code == 2
        assert "no data directory" in result.output
        assert "tradeguard init" in result.output

    def test_help_describes_the_command(self) -> None:
        result = runner.invoke(app, ["mailbox", "--help"])

        assert result.exit_code == 0
        assert "--show" in result.output
        assert "--last" in result.output

    def test_show_handles_a_message_without_a_date(self, data_dir: Path) -> None:
        mailbox = data_dir / "mailbox"
        mailbox.mkdir()
        (mailbox / "20260101T000000.000000000Z-abc123.eml").write_bytes(
            b"To: a@example.com\r\nSubject: hand-made\r\n\r\nno date here\r\n"
        )

        result = runner.invoke(app, ["mailbox", "--data-dir", str(data_dir), "--show", "abc123"])

        assert result.exit_code == 0, result.output
        assert "Date:" not in result.output
        assert "no date here" in result.output
