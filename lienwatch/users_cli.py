"""``lienwatch users``: the workbench's accounts (docs/workbench.md#users-and-roles).

Passwords are asked for at the prompt (never on the command line, where the shell's
history and the process list would keep them), or read from ``--password-stdin``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from lienwatch.cli_support import ConfigOption as Config
from lienwatch.cli_support import fail as _fail
from lienwatch.cli_support import settings_or_exit as _settings
from lienwatch.errors import LienwatchError
from lienwatch.workbench import auth
from lienwatch.workbench import store as stored
from lienwatch.workbench.store import ROLES, Store, open_store, store_url

users_app = typer.Typer(
    name="users",
    help="The workbench's users: add, disable, set a role, reset a password.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Name = Annotated[str, typer.Argument(help="The user name (the one they sign in with).")]
Role = Annotated[str, typer.Option("--role", help=f"One of {', '.join(ROLES)}.")]
Stdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]
Db = Annotated[
    Path | None,
    typer.Option("--db", help="Warehouse file the store sits beside (default: paths.db)."),
]


def _store(config: Path | None, db: Path | None) -> Store:
    settings = _settings(config)
    return open_store(store_url(settings, db or settings.paths.db))


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


def _audit(store: Store, action: str, detail: str) -> None:
    stored.audit_event(store, username=None, address="command line", action=action, detail=detail)


@users_app.command()
def add(
    username: Name,
    role: Role = "analyst",
    password_stdin: Stdin = False,
    config: Config = None,
    db: Db = None,
) -> None:
    """Add a user with a role and a password (at least 12 characters)."""
    store = _store(config, db)
    try:
        stored.check_role(role)
        stored.add_user(store, username, role, auth.hash_password(_password(password_stdin)))
    except LienwatchError as exc:
        _fail(str(exc))
    _audit(store, "user added", f"{username} as {role}")
    typer.echo(f"{username}: added as {role}")


@users_app.command()
def disable(username: Name, config: Config = None, db: Db = None) -> None:
    """Disable a user: their sessions end and they cannot sign in."""
    store = _store(config, db)
    try:
        stored.change_user(store, username, active=False)
    except LienwatchError as exc:
        _fail(str(exc))
    _audit(store, "user disabled", username)
    typer.echo(f"{username}: disabled")


@users_app.command("set-role")
def set_role(username: Name, role: Role, config: Config = None, db: Db = None) -> None:
    """Change a user's role (their sessions end)."""
    store = _store(config, db)
    try:
        stored.check_role(role)
        stored.change_user(store, username, role=role)
    except LienwatchError as exc:
        _fail(str(exc))
    _audit(store, "role set", f"{username} to {role}")
    typer.echo(f"{username}: now {role}")


@users_app.command("reset-password")
def reset_password(
    username: Name, password_stdin: Stdin = False, config: Config = None, db: Db = None
) -> None:
    """Set a new password; also enables the user and lifts a lockout."""
    store = _store(config, db)
    try:
        hashed = auth.hash_password(_password(password_stdin))
        stored.change_user(
            store,
            username,
            password_hash=hashed,
            active=True,
            failed_logins=0,
            locked_until=None,
        )
    except LienwatchError as exc:
        _fail(str(exc))
    _audit(store, "password reset", username)
    typer.echo(f"{username}: password reset")


@users_app.command("list")
def list_users(config: Config = None, db: Db = None) -> None:
    """The users, their roles and whether they may sign in."""
    for found in stored.all_users(_store(config, db)):
        state = "active" if found["active"] else "disabled"
        typer.echo(f"{found['username']}\t{found['role']}\t{state}")
