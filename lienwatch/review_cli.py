"""``lienwatch review``: record what an analyst did about a flagged loan.

Each subcommand checks its input (against the last night's published snapshot, or the
warehouse before the first) and writes one decision to the workbench store, where the
next night takes it in; it never waits for a running night. A decision acts on the nights from the day it was made on
(see ``transforms/cases.py``): a hold keeps the loan's letters from being mailed until
a release, an application opens loss mitigation, a promise to pay is checked against
the ledger each night, a contact takes the loan off the call list. The time recorded is
the schedule's local time (``schedule.timezone``), so "the day it was made" is the
servicer's business day.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from lienwatch.cli_support import ConfigOption as Config
from lienwatch.cli_support import fail as _fail
from lienwatch.cli_support import settings_or_exit as _settings
from lienwatch.errors import LienwatchError
from lienwatch.review import decisions
from lienwatch.settings import Settings
from lienwatch.workbench.snapshot import snapshot_dir
from lienwatch.workbench.store import open_store, store_url

review_app = typer.Typer(
    name="review",
    help="Record what the loss-mitigation team did about a flagged loan (acts on the next night).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Loan = Annotated[str, typer.Option("--loan", help="The loan's id.")]
Db = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="DuckDB warehouse file (default: the settings' paths.db); the store and the "
        "snapshots are found beside it unless the settings say where.",
    ),
]
By = Annotated[str | None, typer.Option("--by", help="The analyst (default: $USER).")]
Note = Annotated[str | None, typer.Option("--note", help="Free text kept with the decision.")]
At = Annotated[
    str | None,
    typer.Option("--at", help="When it happened, YYYY-MM-DD or YYYY-MM-DDTHH:MM (default: now)."),
]
Letter = Annotated[
    str | None,
    typer.Option("--letter", help="One letter (its letter_id) instead of all the loan's letters."),
]


def _when(at: str | None, settings: Settings) -> datetime:
    """The time of the decision on the schedule's clock (naive local time)."""
    if at is None:
        return datetime.now(ZoneInfo(settings.schedule.timezone)).replace(
            tzinfo=None, microsecond=0
        )
    try:
        return datetime.fromisoformat(at).replace(tzinfo=None)
    except ValueError:
        _fail(f"--at: not a date or time in YYYY-MM-DD[THH:MM] form: {at!r}")


def _record(
    kind: str,
    loan: str,
    db: Path | None,
    by: str | None,
    at: str | None,
    config: Path | None,
    **fields,
) -> None:
    settings = _settings(config)
    analyst = by if by is not None else os.environ.get("USER", "")
    warehouse = db or settings.paths.db
    try:
        row = decisions.record_decision(
            warehouse,
            open_store(store_url(settings, warehouse)),
            snapshot_dir(settings, warehouse),
            kind=kind,
            loan_id=loan,
            made_by=analyst,
            made_at=_when(at, settings),
            **fields,
        )
    except LienwatchError as exc:
        _fail(str(exc))
    typer.echo(
        f"{row['decision_id']}: {kind} on {loan} by {row['made_by']} at "
        f"{row['made_at']:%Y-%m-%d %H:%M}"
    )


@review_app.command()
def contact(
    loan: Loan,
    note: Note = None,
    db: Db = None,
    by: By = None,
    at: At = None,
    config: Config = None,
) -> None:
    """Live contact made with the borrower: the loan leaves the call list."""
    _record("contact", loan, db, by, at, config, note=note)


@review_app.command()
def promise(
    loan: Loan,
    when: Annotated[
        str, typer.Option("--date", help="The date the borrower promised to pay by, YYYY-MM-DD.")
    ],
    amount: Annotated[
        str, typer.Option("--amount", help="The amount promised, in dollars (e.g. 450.00).")
    ],
    note: Note = None,
    db: Db = None,
    by: By = None,
    at: At = None,
    config: Config = None,
) -> None:
    """A promise to pay: checked against the ledger each night (kept, broken or pending)."""
    try:
        promised = date.fromisoformat(when)
    except ValueError:
        _fail(f"--date: not a date in YYYY-MM-DD form: {when!r}")
    try:
        dollars = Decimal(amount.replace(",", "").lstrip("$"))
    except InvalidOperation:
        dollars = Decimal("NaN")
    if not dollars.is_finite():
        _fail(f"--amount: not an amount in dollars: {amount!r}")
    _record(
        "promise",
        loan,
        db,
        by,
        at,
        config,
        promise_date=promised,
        promise_amount=dollars,
        note=note,
    )


@review_app.command()
def application(
    loan: Loan,
    note: Note = None,
    db: Db = None,
    by: By = None,
    at: At = None,
    config: Config = None,
) -> None:
    """A hardship application received: the loan counts as in loss mitigation from the next night."""
    _record("application", loan, db, by, at, config, note=note)


@review_app.command()
def hold(
    loan: Loan,
    letter: Letter = None,
    note: Note = None,
    db: Db = None,
    by: By = None,
    at: At = None,
    config: Config = None,
) -> None:
    """Hold the loan's letters (or one letter and its later ones of the same template) until released."""
    _record("hold", loan, db, by, at, config, letter_id=letter, note=note)


@review_app.command()
def release(
    loan: Loan,
    letter: Letter = None,
    note: Note = None,
    db: Db = None,
    by: By = None,
    at: At = None,
    config: Config = None,
) -> None:
    """Lift the loan's holds (or only the hold on one letter)."""
    _record("release", loan, db, by, at, config, letter_id=letter, note=note)


@review_app.command("note")
def add_note(
    loan: Loan,
    text: Annotated[str, typer.Option("--note", help="The note.")],
    db: Db = None,
    by: By = None,
    at: At = None,
    config: Config = None,
) -> None:
    """A note on the account, shown in its case history."""
    _record("note", loan, db, by, at, config, note=text)
