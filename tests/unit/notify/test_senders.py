"""Development senders (files), SMTP sender configuration, and the sender factory."""

from __future__ import annotations

import json
import stat
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from tradeguard.config import Environment, Settings
from tradeguard.core.clock import NS_PER_SECOND, FrozenClock
from tradeguard.core.errors import ConfigurationError
from tradeguard.notify.domain import EmailMessage
from tradeguard.notify.senders import (
    FileEmailSender,
    FileSmsProvider,
    SmtpEmailSender,
    SmtpSecurity,
    build_mime,
    mailbox_filename,
    read_dev_mailbox,
    read_text_body,
    senders_from_settings,
)

START_NS = 1_767_225_600 * NS_PER_SECOND  # 2026-01-01T00:00:00Z


def message(index: int = 0, *, body: str = "Your code is 482913.") -> EmailMessage:
    return EmailMessage(
        message_id=f"019b7cc0-0000-7000-8000-{index:012d}",
        to=f"user{index}@example.com",
        subject=f"Subject {index}",
        body=body,
        created_ns=START_NS + index * NS_PER_SECOND,
    )


def files_in(directory: Path) -> list[Path]:
    return sorted(directory.iterdir())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.spec("AUTH-5", "HALT-3")
class TestFileEmailSender:
    async def test_message_is_written_as_a_parseable_private_eml_file(self, tmp_path: Path) -> None:
        mailbox = tmp_path / "mailbox"
        sender = FileEmailSender(mailbox, from_address="alerts@tradeguard.example")

        await sender.send(message(1, body="Héllo — your code is 482913.\n"))

        [path] = files_in(mailbox)
        assert path.name == "20260101T000001.000000000Z-019b7cc0-0000-7000-8000-000000000001.eml"
        assert mode(path) == 0o600
        assert mode(mailbox) == 0o700
        parsed = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        assert parsed["From"] == "alerts@tradeguard.example"
        assert parsed["To"] == "user1@example.com"
        assert parsed["Subject"] == "Subject 1"
        assert parsed["Date"] == "Thu, 01 Jan 2026 00:00:01 +0000"
        assert parsed["Message-ID"] == "<019b7cc0-0000-7000-8000-000000000001@tradeguard.example>"
        # text/plain travels in canonical form, CRLF line ends (RFC 2046 section 4.1.1).
        assert parsed.get_content() == "Héllo — your code is 482913.\r\n"
        assert b"\r\n" in path.read_bytes()  # RFC 5322 line endings

    async def test_repeated_delivery_overwrites_instead_of_duplicating(
        self, tmp_path: Path
    ) -> None:
        sender = FileEmailSender(tmp_path)

        await sender.send(message(1))
        await sender.send(message(1))

        assert [path.suffix for path in files_in(tmp_path)] == [".eml"]  # no temporary left

    async def test_mailbox_lists_oldest_first_and_reads_bodies(self, tmp_path: Path) -> None:
        sender = FileEmailSender(tmp_path)
        for index in (3, 1, 2):
            await sender.send(message(index))

        entries = read_dev_mailbox(tmp_path)

        assert [entry.subject for entry in entries] == ["Subject 1", "Subject 2", "Subject 3"]
        assert entries[0].message_id == "019b7cc0-0000-7000-8000-000000000001"
        assert entries[0].to == "user1@example.com"
        assert entries[0].date is not None
        assert entries[0].date.isoformat() == "2026-01-01T00:00:01+00:00"
        assert read_text_body(entries[0].path).strip() == "Your code is 482913."

    def test_missing_mailbox_reads_as_empty(self, tmp_path: Path) -> None:
        assert read_dev_mailbox(tmp_path / "nowhere") == []

    def test_a_sender_address_with_a_line_break_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError, match="mail-from"):
            FileEmailSender(tmp_path, from_address="a@example.com\r\nBcc: m@example.com")


@pytest.mark.spec("AUTH-4")
class TestFileSmsProvider:
    async def test_each_message_is_one_json_line_in_a_private_file(self, tmp_path: Path) -> None:
        clock = FrozenClock(START_NS)
        provider = FileSmsProvider(tmp_path / "sms", clock=clock)

        await provider.send("+14155550123", "Code 482913", reference="m-1")
        clock.advance(seconds=2)
        await provider.send("+447700900123", "Code 000111\nsecond line", reference="m-2")

        path = tmp_path / "sms" / "outbox.jsonl"
        assert mode(path) == 0o600
        assert mode(tmp_path / "sms") == 0o700
        records = [json.loads(line) for line in path.read_text().splitlines()]
        assert records == [
            {
                "ts": "2026-01-01T00:00:00.000000000Z",
                "reference": "m-1",
                "to": "+14155550123",
                "body": "Code 482913",
            },
            {
                "ts": "2026-01-01T00:00:02.000000000Z",
                "reference": "m-2",
                "to": "+447700900123",
                "body": "Code 000111\nsecond line",
            },
        ]


class TestSmtpSenderConfiguration:
    @pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "LOCALHOST"])
    def test_plain_smtp_is_allowed_to_a_loopback_relay(self, host: str) -> None:
        SmtpEmailSender(host, 25, security="none", from_address="a@example.com")

    @pytest.mark.parametrize(
        "host",
        ["smtp.example.com", "10.0.0.5", "0.0.0.0", "localhost.evil"],  # noqa: S104 - not bound
    )
    def test_plain_smtp_to_anything_else_is_refused(self, host: str) -> None:
        with pytest.raises(ConfigurationError, match="loopback"):
            SmtpEmailSender(host, 25, security="none", from_address="a@example.com")

    def test_credentials_are_never_sent_without_tls(self) -> None:
        with pytest.raises(ConfigurationError, match="over TLS"):
            SmtpEmailSender(
                "127.0.0.1",
                25,
                security="none",
                from_address="a@example.com",
                username="mailer",
                password="s3cret",
            )

    def test_username_needs_a_password(self) -> None:
        with pytest.raises(ConfigurationError, match="go together"):
            SmtpEmailSender(
                "smtp.example.com",
                587,
                security="starttls",
                from_address="a@example.com",
                username="mailer",
            )

    @pytest.mark.parametrize(("security", "timeout"), [("ssl", 5.0), ("starttls", 0.0)])
    def test_unknown_security_or_timeout_is_refused(self, security: str, timeout: float) -> None:
        with pytest.raises(ConfigurationError):
            SmtpEmailSender(
                "smtp.example.com",
                587,
                security=security,  # type: ignore[arg-type]
                from_address="a@example.com",
                timeout=timeout,
            )

    def test_the_password_is_not_in_the_repr(self) -> None:
        sender = SmtpEmailSender(
            "smtp.example.com",
            587,
            security="starttls",
            from_address="a@example.com",
            username="mailer",
            password="s3cret-password",
        )
        assert "s3cret" not in repr(sender)
        assert "s3cret" not in repr(vars(sender).keys())

    def test_email_repr_hides_recipient_and_body(self) -> None:
        text = repr(message(7))
        assert "user7@example.com" not in text
        assert "482913" not in text


class TestBuildMime:
    def test_message_is_marked_automatic_and_identified_by_its_outbox_id(self) -> None:
        mime = build_mime(message(2), from_address="alerts@tradeguard.example")
        assert mime["Auto-Submitted"] == "auto-generated"
        assert mime["Message-ID"] == "<019b7cc0-0000-7000-8000-000000000002@tradeguard.example>"


class TestSendersFromSettings:
    def test_without_an_smtp_host_development_uses_the_file_senders(
        self, settings: Settings
    ) -> None:
        senders = senders_from_settings(settings)
        assert isinstance(senders.email, FileEmailSender)
        assert senders.email.directory == settings.data_dir / "mailbox"
        assert isinstance(senders.sms, FileSmsProvider)
        assert senders.sms.path == settings.data_dir / "sms" / "outbox.jsonl"

    def test_an_smtp_host_selects_the_smtp_sender(self, settings: Settings) -> None:
        security: SmtpSecurity = "tls"
        senders = senders_from_settings(
            settings, smtp_host="smtp.example.com", smtp_port=465, smtp_security=security
        )
        assert isinstance(senders.email, SmtpEmailSender)

    def test_production_refuses_the_file_mailbox(self, settings: Settings) -> None:
        production = settings.model_copy(update={"env": Environment.PRODUCTION})
        with pytest.raises(ConfigurationError, match="TRADEGUARD_SMTP_HOST"):
            senders_from_settings(production)

    def test_production_refuses_the_file_sms_provider(self, settings: Settings) -> None:
        production = settings.model_copy(update={"env": Environment.PRODUCTION})
        with pytest.raises(ConfigurationError, match="TRADEGUARD_SMS_PROVIDER"):
            senders_from_settings(production, smtp_host="smtp.example.com")


class TestFileHandlingEdges:
    async def test_a_failed_write_leaves_no_temporary_file(self, tmp_path: Path) -> None:
        sender = FileEmailSender(tmp_path)
        # A directory where the message file should go makes the final rename fail.
        (tmp_path / mailbox_filename(message(1))).mkdir()

        with pytest.raises(IsADirectoryError):
            await sender.send(message(1))

        assert [path.name for path in files_in(tmp_path)] == [mailbox_filename(message(1))]

    def test_message_without_a_text_part_reads_as_empty(self, tmp_path: Path) -> None:
        path = tmp_path / "html-only.eml"
        path.write_bytes(
            b"To: a@example.com\r\nSubject: s\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n"
        )
        assert read_text_body(path) == ""

    def test_reprs_name_the_destination_only(self, tmp_path: Path) -> None:
        assert repr(FileEmailSender(tmp_path)) == f"FileEmailSender({str(tmp_path)!r})"
        assert repr(FileSmsProvider(tmp_path)) == f"FileSmsProvider({str(tmp_path)!r})"
