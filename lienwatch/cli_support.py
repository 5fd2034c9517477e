"""What every lienwatch command shares: the one-line failure and reading the settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from lienwatch.settings import Settings, SettingsError, load_settings

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="Settings file (default: ./lienwatch.toml when present)."),
]


def fail(message: str) -> NoReturn:
    """Stop the command with its one-line reason on stderr (exit code 2)."""
    typer.echo(f"lienwatch: {message}", err=True)
    raise typer.Exit(code=2)


def settings_or_exit(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except SettingsError as exc:
        fail(str(exc))
