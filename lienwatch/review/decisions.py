"""Analysts' decisions, and what they do to a night.

The warehouse tables ``review_decisions`` (what analysts did, written by ``lienwatch
review ...``), ``review_cases`` and ``review_case_events`` (one case per flagged loan and
its log) and ``review_promises`` (each promise to pay, checked against the ledger each
night); and the look-ups other steps make so that decisions act on the next night:
:func:`holds_as_of` (held letters are not mailed), :func:`application_cases` (a
hardship application taken opens loss mitigation) and :func:`loss_mit_cases` (the feed's
cases with those applications).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from lienwatch import warehouse
from lienwatch.errors import LienwatchError
from lienwatch.workbench import snapshot
from lienwatch.workbench import store as store_module
from lienwatch.workbench.store import Store
from transforms import cases
from transforms.letters import night_of

HELD_PREFIX = "held by analyst"  # a letter suppression reason that starts so is an analyst's hold
MAX_AMOUNT = Decimal("1e12")  # DECIMAL(14,2)

SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS review_decisions (
  decision_id VARCHAR PRIMARY KEY,
  loan_id VARCHAR NOT NULL,
  kind VARCHAR NOT NULL CHECK (kind IN ({", ".join(f"'{k}'" for k in cases.DECISION_KINDS)})),
  made_at TIMESTAMP NOT NULL,
  made_by VARCHAR NOT NULL,
  promise_date DATE,
  promise_amount DECIMAL(14,2),
  letter_id VARCHAR,
  note VARCHAR
)""",
    """CREATE TABLE IF NOT EXISTS review_cases (
  case_id VARCHAR NOT NULL,
  loan_id VARCHAR NOT NULL,
  opened_date DATE NOT NULL,
  tier VARCHAR NOT NULL,
  status VARCHAR NOT NULL,
  resolved_date DATE
)""",
    """CREATE TABLE IF NOT EXISTS review_case_events (
  case_id VARCHAR NOT NULL,
  loan_id VARCHAR NOT NULL,
  as_of_date DATE NOT NULL,
  event VARCHAR NOT NULL,
  from_tier VARCHAR,
  to_tier VARCHAR,
  note VARCHAR
)""",
    """CREATE TABLE IF NOT EXISTS review_promises (
  as_of_date DATE NOT NULL,
  decision_id VARCHAR NOT NULL,
  loan_id VARCHAR NOT NULL,
  made_at TIMESTAMP NOT NULL,
  made_by VARCHAR NOT NULL,
  promise_date DATE NOT NULL,
  promise_amount DECIMAL(14,2) NOT NULL,
  paid_toward DECIMAL(14,2) NOT NULL,
  status VARCHAR NOT NULL
)""",
)


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the review tables if this warehouse has none yet."""
    for statement in SCHEMA:
        con.execute(statement)


# --------------------------------------------------------------------------- decisions


def decisions(con: duckdb.DuckDBPyConnection, as_of: date) -> pl.DataFrame:
    """Analysts' decisions made on or before ``as_of``, with the template of a held or
    released letter (null when the decision names no letter)."""
    schema = cases.DECISION_SCHEMA | {"template": pl.String()}
    if not warehouse.table_exists(con, "review_decisions"):
        return pl.DataFrame(schema=schema)
    found = warehouse.frame(
        con,
        """SELECT * FROM review_decisions WHERE made_at < $as_of::DATE + 1 ORDER BY made_at, decision_id""",
        {"as_of": as_of},
    )
    named = found["letter_id"].drop_nulls().unique().to_list()
    templates = _letter_templates(con, named)
    return found.join(templates, on="letter_id", how="left", maintain_order="left").select(
        [pl.col(name).cast(dtype) for name, dtype in schema.items()]
    )


def _letter_templates(con: duckdb.DuckDBPyConnection, letter_ids: list[str]) -> pl.DataFrame:
    """The template of each of ``letter_ids`` (letter_id, template).

    The letters table holds every night's letters: the look-up reads only the nights the
    ids name (:func:`transforms.letters.night_of`), so its cost does not grow with the
    warehouse's history."""
    schema = {"letter_id": pl.String(), "template": pl.String()}
    if not letter_ids:
        return pl.DataFrame(schema=schema)
    nights = {night_of(letter_id) for letter_id in letter_ids}
    if None in nights:  # an id of another form: look for it in every night
        query = """SELECT DISTINCT letter_id, template FROM letters
                   WHERE letter_id IN (SELECT unnest($ids::VARCHAR[]))"""
        params: dict[str, Any] = {"ids": letter_ids}
    else:
        query = """SELECT DISTINCT letter_id, template FROM letters
                   WHERE as_of_date IN (SELECT unnest($nights::DATE[]))
                     AND letter_id IN (SELECT unnest($ids::VARCHAR[]))"""
        params = {"ids": letter_ids, "nights": sorted(nights)}
    return warehouse.frame(con, query, params).select(
        [pl.col(n).cast(t) for n, t in schema.items()]
    )


def check_decision(
    kind: str,
    *,
    made_by: str,
    made_at: datetime,
    promise_date: date | None = None,
    promise_amount: Decimal | None = None,
    note: str | None = None,
) -> None:
    """Refuse (with the reason) an unknown kind, a decision by nobody, a promise without a
    date on or after the day it was made or without a positive amount, a note without
    text."""
    if kind not in cases.DECISION_KINDS:
        raise LienwatchError(f"unknown decision {kind!r}; one of {', '.join(cases.DECISION_KINDS)}")
    if not made_by.strip():
        raise LienwatchError("--by: who made the decision is required")
    if kind == "promise":
        if promise_date is None or promise_amount is None:
            raise LienwatchError("a promise to pay needs --date and --amount")
        if not (0 < promise_amount < MAX_AMOUNT) or promise_amount != promise_amount.quantize(
            Decimal("0.01")
        ):
            raise LienwatchError(
                f"--amount {promise_amount}: a positive amount in dollars and cents"
            )
        if promise_date < made_at.date():
            raise LienwatchError(
                f"--date {promise_date} is before the promise was made ({made_at.date()})"
            )
    if kind == "note" and not (note or "").strip():
        raise LienwatchError("a note needs --note text")


def check_loan(
    con: duckdb.DuckDBPyConnection, loan_id: str, letter_id: str | None, where: object
) -> None:
    """Refuse an unknown loan or letter, or a letter of another loan. ``con`` is the
    published snapshot or the warehouse: both have ``loans`` and ``letters``."""
    if not con.execute("SELECT count(*) FROM loans WHERE loan_id = $l", {"l": loan_id}).fetchall()[
        0
    ][0]:
        raise LienwatchError(f"--loan {loan_id}: no such loan in {where}")
    if letter_id is not None:
        owners = {
            r[0]
            for r in con.execute(
                "SELECT DISTINCT loan_id FROM letters WHERE letter_id = $id", {"id": letter_id}
            ).fetchall()
        }
        if not owners:
            raise LienwatchError(f"--letter {letter_id}: no such letter in {where}")
        if loan_id not in owners:
            raise LienwatchError(
                f"--letter {letter_id} is a letter of loan {sorted(owners)[0]}, not {loan_id}"
            )


def record_decision(
    db: Path,
    store: Store,
    snapshots: Path,
    *,
    kind: str,
    loan_id: str,
    made_by: str,
    made_at: datetime,
    promise_date: date | None = None,
    promise_amount: Decimal | None = None,
    letter_id: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Check one decision and write it to the workbench store, where the next night takes
    it in (:func:`take_in`). Never waits for a running night: the loan and letter are
    checked against the last published snapshot (``snapshots``), or, before any night
    has published one, the warehouse read-only. Returns the row written."""
    check_decision(
        kind,
        made_by=made_by,
        made_at=made_at,
        promise_date=promise_date,
        promise_amount=promise_amount,
        note=note,
    )
    published = snapshot.current(snapshots)
    if published is None and not db.exists():
        raise LienwatchError(f"{db}: no warehouse at this path")
    con = (
        duckdb.connect(str(published), read_only=True)
        if published is not None
        else warehouse.connect(db, read_only=True)
    )
    try:
        check_loan(con, loan_id, letter_id, db)
    finally:
        con.close()
    return store_module.record(
        store,
        kind=kind,
        loan_id=loan_id,
        made_by=made_by.strip(),
        made_at=made_at,
        promise_date=promise_date,
        promise_cents=None if promise_amount is None else int(promise_amount * 100),
        letter_id=letter_id,
        note=note,
    )


def take_in(con: duckdb.DuckDBPyConnection, store: Store) -> int:
    """Copy the store's decisions the warehouse does not hold yet into ``review_decisions``
    (at a night's start: the night's look-ups read them there). Returns how many."""
    ensure_tables(con)
    held = {r[0] for r in con.execute("SELECT decision_id FROM review_decisions").fetchall()}
    rows = [as_warehouse_row(r) for r in store_module.decision_rows(store)]
    new = [r for r in rows if r["decision_id"] not in held]
    if new:
        frame = pl.DataFrame(new, schema=cases.DECISION_SCHEMA)
        with warehouse.transaction(con):
            con.register("_decisions", frame)
            try:
                con.execute("INSERT INTO review_decisions BY NAME SELECT * FROM _decisions")
            finally:
                con.unregister("_decisions")
    return len(new)


def as_warehouse_row(row: dict[str, Any]) -> dict[str, Any]:
    """A store decision as a ``review_decisions`` row (a contact attempt's outcome leads
    its note)."""
    cents = row["promise_cents"]
    note = row["note"]
    if row["outcome"]:
        note = row["outcome"] + (f": {note}" if note else "")
    return {
        "decision_id": row["decision_id"],
        "loan_id": row["loan_id"],
        "kind": row["kind"],
        "made_at": row["made_at"],
        "made_by": row["made_by"],
        "promise_date": row["promise_date"],
        "promise_amount": None if cents is None else Decimal(cents) / 100,
        "letter_id": row["letter_id"],
        "note": note,
    }


def holds_as_of(con: duckdb.DuckDBPyConnection, as_of: date) -> pl.DataFrame:
    """The letter holds in force on the night ``as_of`` (``transforms.cases.HOLD_SCHEMA``):
    the letters step passes them with its decisions to ``transforms.cases.apply_holds``."""
    return cases.active_holds(decisions(con, as_of), as_of)


def application_cases(con: duckdb.DuckDBPyConnection, as_of: date) -> pl.DataFrame:
    """Hardship applications taken by analysts that stand as open loss-mitigation cases on
    the night, as ``loss_mit`` rows (loan_id, case_type, status, opened_date,
    closed_date): the flags step adds them to the feed's rows, so these loans get the
    ``open_loss_mitigation`` care flag."""
    feed = warehouse.frame(con, "SELECT loan_id, opened_date FROM loss_mit")
    return cases.open_applications(decisions(con, as_of), feed, as_of)


def loss_mit_cases(con: duckdb.DuckDBPyConnection, as_of: date) -> pl.DataFrame:
    """The feed's loss-mitigation cases and the applications analysts took that stand on the
    night (loan_id, case_type, status, opened_date, closed_date): what the flags step calls
    open loss mitigation is what the options step holds other offers back for."""
    return pl.concat(
        [
            warehouse.frame(
                con, "SELECT loan_id, case_type, status, opened_date, closed_date FROM loss_mit"
            ),
            application_cases(con, as_of),
        ]
    )


def promises_as_of(con: duckdb.DuckDBPyConnection, as_of: date) -> pl.DataFrame:
    """Every promise to pay made by the night, kept, broken or pending as of the night."""
    made = decisions(con, as_of)
    loans = made.filter(pl.col("kind") == "promise")["loan_id"].unique().to_list()
    ledger = warehouse.frame(
        con,
        """SELECT txn_id, loan_id, posted_date, amount, txn_type, reverses_txn_id FROM payments
        WHERE loan_id IN (SELECT unnest($loans::VARCHAR[])) AND posted_date <= $as_of""",
        {"loans": loans, "as_of": as_of},
    )
    return cases.promise_status(made, ledger, as_of)
