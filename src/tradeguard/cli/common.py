"""What every command shares: settings from the environment and options, and error exits."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from tradeguard.config import Settings, load_settings
from tradeguard.core.errors import TradeguardError

T = TypeVar("T")

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_FAILURE = 1
EXIT_USAGE = 2


def fail(message: str, *, hint: str | None = None, code: int = EXIT_FAILURE) -> NoReturn:
    """Print one clear line (and what to do next) to stderr and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}")
    if hint:
        err_console.print(f"[dim]hint:[/] {hint}")
    raise typer.Exit(code)


def settings_from(data_dir: Path | None = None, **overrides: Any) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    try:
        return load_settings(**values)
    except TradeguardError as exc:
        fail(exc.detail, hint="see README.md, section Configuration", code=EXIT_USAGE)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; domain errors become a one-line message and a non-zero exit."""
    try:
        return asyncio.run(coro)
    except TradeguardError as exc:
        fail(exc.detail)


DataDirOption = typer.Option(
    "--data-dir",
    help="Directory for the database, keys and certificates (env TRADEGUARD_DATA_DIR).",
    file_okay=False,
)
