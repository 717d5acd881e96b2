"""`tradeguard dev`: development tools (the offline mailbox)."""

from __future__ import annotations

import re
from datetime import UTC
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from tradeguard.cli.common import EXIT_USAGE, DataDirOption, console, fail, settings_from
from tradeguard.notify.senders import (
    MAILBOX_DIRNAME,
    MailboxEntry,
    read_dev_mailbox,
    read_text_body,
)

app = typer.Typer(help="Development tools.", no_args_is_help=True)


@app.callback()
def dev() -> None:
    """Development tools."""


# The random tail of a UUIDv7 outbox id: unique enough to pick a message, short enough to type.
# (Its first characters are the timestamp, shared by every message sent in the same minute.)
SHORT_ID_CHARS = 12

# C0 controls other than tab and newline, DEL and C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _printable(value: str) -> Text:
    """Mail content as inert text.

    Rich markup in a subject is not interpreted (Text, not a markup string), and control
    characters are made visible: an escape sequence in a message could otherwise rewrite the
    terminal's title or contents, or hide text from the developer reading it.
    """
    return Text(_CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", value))


def _find(entries: list[MailboxEntry], wanted: str) -> MailboxEntry:
    matches = [entry for entry in entries if entry.message_id.endswith(wanted.lower())]
    if not wanted or not matches:
        fail(f"no message with ID {wanted!r} in the mailbox", hint="list them with `dev mailbox`")
    if len(matches) > 1:
        fail(f"ID {wanted!r} matches {len(matches)} messages", hint="give more characters")
    return matches[0]


@app.command("mailbox")
def mailbox_command(
    data_dir: Annotated[Path | None, DataDirOption] = None,
    last: Annotated[
        int, typer.Option("--last", min=1, help="How many of the newest messages to list.")
    ] = 20,
    show: Annotated[
        str | None,
        typer.Option("--show", metavar="ID", help="Print one message's text body (ID as listed)."),
    ] = None,
) -> None:
    """List the emails the development sender wrote to <data-dir>/mailbox, newest last."""
    settings = settings_from(data_dir)
    if not settings.data_dir.is_dir():
        fail(
            f"no data directory at {settings.data_dir}",
            hint="run `tradeguard init` (or pass --data-dir)",
            code=EXIT_USAGE,
        )
    mailbox = settings.data_dir / MAILBOX_DIRNAME
    entries = read_dev_mailbox(mailbox)
    if show is not None:
        entry = _find(entries, show)
        console.print(_printable(f"File: {entry.path.name}"), style="dim")
        if entry.date is not None:
            console.print(f"Date: {entry.date.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC")
        console.print(_printable(f"To: {entry.to}"))
        console.print(_printable(f"Subject: {entry.subject}"))
        console.print()
        console.print(_printable(read_text_body(entry.path)))
        return
    if not entries:
        console.print(_printable(f"The development mailbox is empty ({mailbox})."))
        return
    table = Table("ID", "Date (UTC)", "To", "Subject", title=_printable(str(mailbox)))
    shown = entries[-last:]
    for entry in shown:
        table.add_row(
            entry.message_id[-SHORT_ID_CHARS:],
            entry.date.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if entry.date else "",
            _printable(entry.to),
            _printable(entry.subject),
        )
    console.print(table)
    if len(shown) < len(entries):
        console.print(f"[dim]{len(entries) - len(shown)} older message(s) not shown (--last)[/]")
