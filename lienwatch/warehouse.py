"""The DuckDB warehouse: connecting, the schema, and one-transaction writes.

The contract fixes the tables ``loan_status``, ``risk_flags``, ``hardship_options``,
``letters``, ``payments``, ``ingested_files``, ``quarantine`` and ``runs`` (their named
columns keep their names and meanings; more columns are added here). The other tables
are this project's own: the current snapshot of each snapshot feed, its history by
load, and the registry of loans ever seen.

Only one process may write: DuckDB locks the file, and a second writer is refused at
once with :class:`WarehouseBusy`. Readers (reports, analysts) open it read-only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from lienwatch.errors import LienwatchError, WarehouseBusy
from lienwatch.faults import fault_point
from transforms.contract import FEEDS, Column, Feed

SQL_TYPES = {
    "text": "VARCHAR",
    "int": "INTEGER",
    "money": "DECIMAL(14,2)",
    "rate": "DECIMAL(9,6)",
    "date": "DATE",
    "bool": "BOOLEAN",
}


def sql_type(column: Column) -> str:
    return SQL_TYPES[column.kind]


def _feed_columns_ddl(feed: Feed) -> str:
    return ",\n  ".join(f"{c.name} {sql_type(c)}" for c in feed.columns)


def _schema() -> list[str]:
    statements = [
        """CREATE SEQUENCE IF NOT EXISTS load_seq START 1""",
        """CREATE TABLE IF NOT EXISTS ingested_files (
  load_id BIGINT PRIMARY KEY,
  source_file VARCHAR NOT NULL,
  sha256 VARCHAR NOT NULL,
  feed VARCHAR NOT NULL,
  rows_read BIGINT NOT NULL,
  rows_loaded BIGINT NOT NULL,
  rows_quarantined BIGINT NOT NULL,
  loaded_at TIMESTAMP NOT NULL,
  run_id VARCHAR,
  as_of_date DATE,
  bytes BIGINT,
  extra_columns VARCHAR[],
  validation_result VARCHAR,
  CHECK (rows_read = rows_loaded + rows_quarantined)
)""",
        """CREATE TABLE IF NOT EXISTS quarantine (
  feed VARCHAR NOT NULL,
  source_file VARCHAR NOT NULL,
  row_number BIGINT NOT NULL,
  error VARCHAR NOT NULL,
  raw VARCHAR,
  column_name VARCHAR,
  rule VARCHAR NOT NULL,
  severity VARCHAR NOT NULL,
  load_id BIGINT NOT NULL,
  quarantined_at TIMESTAMP NOT NULL
)""",
        f"""CREATE TABLE IF NOT EXISTS payments (
  {_feed_columns_ddl(FEEDS["payments"])},
  source_file VARCHAR NOT NULL,
  row_number BIGINT NOT NULL,
  load_id BIGINT NOT NULL
)""",
        # Each landing file's stat when its content was last read whole and passed the
        # file checks, with its hash (lienwatch.feeds.inspect): a hint that saves reading
        # unchanged files again, never a record of what was loaded (ingested_files is).
        """CREATE TABLE IF NOT EXISTS landing_files_read (
  path VARCHAR PRIMARY KEY,
  size BIGINT NOT NULL,
  mtime_ns BIGINT NOT NULL,
  ctime_ns BIGINT NOT NULL,
  inode UBIGINT NOT NULL,
  sha256 VARCHAR NOT NULL,
  read_at TIMESTAMP NOT NULL
)""",
        """CREATE TABLE IF NOT EXISTS known_loans (
  loan_id VARCHAR PRIMARY KEY,
  first_load_id BIGINT NOT NULL
)""",
        """CREATE TABLE IF NOT EXISTS letters (
  letter_id VARCHAR NOT NULL,
  as_of_date DATE NOT NULL,
  loan_id VARCHAR NOT NULL,
  borrower_id VARCHAR NOT NULL,
  template VARCHAR NOT NULL,
  language VARCHAR NOT NULL,
  status VARCHAR NOT NULL,
  suppression_reason VARCHAR,
  pdf_path VARCHAR,
  html_path VARCHAR,
  pages INTEGER
)""",
        # The contract's night tables, each night's rows replaced whole by its step.
        """CREATE TABLE IF NOT EXISTS loan_status (
  as_of_date DATE NOT NULL,
  loan_id VARCHAR NOT NULL,
  lien_position INTEGER,
  installments_due INTEGER,
  installments_paid INTEGER,
  oldest_unpaid_due_date DATE,
  days_past_due INTEGER,
  bucket VARCHAR,
  amount_past_due DECIMAL(14,2),
  next_due_date DATE,
  installment_amount DECIMAL(14,2),
  net_paid DECIMAL(14,2),
  suspense_amount DECIMAL(14,2),
  total_due DECIMAL(14,2),
  metro2_account_status VARCHAR,
  metro2_payment_rating VARCHAR,
  live_contact_due_date DATE,
  written_notice_due_date DATE,
  default_date DATE,
  past_120_date DATE
)""",
        """CREATE TABLE IF NOT EXISTS risk_flags (
  as_of_date DATE NOT NULL,
  loan_id VARCHAR NOT NULL,
  borrower_id VARCHAR,
  tier VARCHAR NOT NULL,
  risk DOUBLE,
  risk_model VARCHAR,
  expected_loss DOUBLE,
  score DECIMAL(10,2),
  reasons VARCHAR[],
  reason_details VARCHAR[],
  care VARCHAR[],
  days_past_due INTEGER,
  queue VARCHAR,
  queue_rank BIGINT,
  in_queue BOOLEAN
)""",
        # Warehouses made before the learned early warning: its columns, empty.
        *(
            f"ALTER TABLE risk_flags ADD COLUMN IF NOT EXISTS {column}"
            for column in (
                "risk DOUBLE",
                "risk_model VARCHAR",
                "expected_loss DOUBLE",
                "queue VARCHAR",
            )
        ),
        """CREATE TABLE IF NOT EXISTS loan_risk (
  as_of_date DATE NOT NULL,
  loan_id VARCHAR NOT NULL,
  days_past_due INTEGER,
  risk DOUBLE NOT NULL,
  risk_model VARCHAR NOT NULL,
  inputs_hash UBIGINT
)""",
        # Warehouses made before a night kept the scores of unchanged loans.
        "ALTER TABLE loan_risk ADD COLUMN IF NOT EXISTS inputs_hash UBIGINT",
        """CREATE TABLE IF NOT EXISTS risk_models (
  version VARCHAR PRIMARY KEY,
  trained_at TIMESTAMP NOT NULL,
  in_use BOOLEAN NOT NULL,
  horizon_months INTEGER NOT NULL,
  train_from DATE NOT NULL,
  train_to DATE NOT NULL,
  calibrate_from DATE NOT NULL,
  calibrate_to DATE NOT NULL,
  validate_from DATE NOT NULL,
  validate_to DATE NOT NULL,
  features VARCHAR[] NOT NULL,
  monotone INTEGER[] NOT NULL,
  flag_threshold DOUBLE NOT NULL,
  platt_a DOUBLE NOT NULL,
  platt_b DOUBLE NOT NULL,
  metrics JSON NOT NULL,
  calibration JSON NOT NULL,
  score_bins JSON NOT NULL,
  model_file VARCHAR NOT NULL,
  model_sha256 VARCHAR NOT NULL,
  model_text VARCHAR NOT NULL
)""",
        """CREATE TABLE IF NOT EXISTS hardship_options (
  as_of_date DATE NOT NULL,
  loan_id VARCHAR NOT NULL,
  borrower_id VARCHAR,
  option_code VARCHAR NOT NULL,
  eligible BOOLEAN NOT NULL,
  rank INTEGER,
  rationale VARCHAR,
  offer BOOLEAN,
  plan_months INTEGER,
  plan_payment DECIMAL(14,2),
  plan_last_payment DECIMAL(14,2),
  plan_installments DECIMAL(14,2)[],
  amount DECIMAL(14,2),
  terms VARCHAR,
  notes VARCHAR[],
  catalogue_version VARCHAR
)""",
        # Warehouses made before repayment plans followed scheduled payment changes.
        "ALTER TABLE hardship_options ADD COLUMN IF NOT EXISTS plan_installments DECIMAL(14,2)[]",
        """CREATE TABLE IF NOT EXISTS runs (
  run_id VARCHAR PRIMARY KEY,
  as_of_date DATE NOT NULL,
  started_at TIMESTAMP NOT NULL,
  finished_at TIMESTAMP,
  status VARCHAR NOT NULL,
  reason VARCHAR,
  counts JSON
)""",
    ]
    for feed in FEEDS.values():
        if not feed.snapshot:
            continue
        for table in (feed.name, f"{feed.name}_history"):
            statements.append(
                f"CREATE TABLE IF NOT EXISTS {table} (\n  {_feed_columns_ddl(feed)},\n"
                "  load_id BIGINT NOT NULL\n)"
            )
            # Warehouses made before an optional column joined the contract: it, empty.
            statements += [
                f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {c.name} {sql_type(c)}"
                for c in feed.columns
                if not c.required
            ]
    return statements


MEMORY_LIMIT = "3GB"  # DuckDB spills to disk beyond this instead of growing the process


def connect(
    db: Path, *, read_only: bool = False, threads: int | None = None
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse; create it (owner-only) and its schema when writing."""
    if read_only and not db.exists():
        raise LienwatchError(f"{db}: no warehouse at this path")
    if not read_only:
        fault_point("warehouse:write")
        db.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        new = not db.exists()
    try:
        con = duckdb.connect(str(db), read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise WarehouseBusy(
                f"{db}: the warehouse is in use by another lienwatch process; "
                "wait for it to finish (nothing was changed)"
            ) from None
        raise LienwatchError(f"{db}: cannot open the warehouse ({exc})") from None
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if not read_only:
        if new:
            os.chmod(db, 0o600)
        for statement in _schema():
            con.execute(statement)
    return con


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """One all-or-nothing write: commit on success, roll back on any error."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def next_load_id(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT nextval('load_seq')").fetchall()[0][0]


def as_arrow(rows: pl.DataFrame) -> pa.Table:
    """A polars frame as Arrow with its own string layout (string views), which DuckDB
    reads as it is: the default conversion rewrites every string column first (about
    1.4 s of a night's 3.9M option rows)."""
    return rows.to_arrow(compat_level=pl.CompatLevel.newest())


def frame(
    con: duckdb.DuckDBPyConnection, query: str, params: dict[str, Any] | None = None
) -> pl.DataFrame:
    """A query's rows as a polars frame."""
    return con.sql(query, params=params or {}).pl()


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = $t", {"t": table}
        ).fetchall()[0][0]
    )


def kept_table(
    con: duckdb.DuckDBPyConnection,
    table: str,
    stamp_column: str,
    stamp: str,
    query: str,
    params: dict[str, Any],
) -> None:
    """Make ``table`` hold ``query``'s rows stamped ``stamp`` (in ``stamp_column``), unless
    it holds them already: a figure the nights sharing an input compute once, kept while
    the stamp (what the figure was computed from) still matches."""
    if table_exists(con, table):
        kept = con.execute(f"SELECT any_value({stamp_column}) FROM {table}").fetchall()[0][0]
        if kept == stamp:
            return
    with transaction(con):
        con.execute(
            f"CREATE OR REPLACE TABLE {table} AS SELECT $_stamp AS {stamp_column}, * FROM ({query})",
            {**params, "_stamp": stamp},
        )


def replace_night(
    con: duckdb.DuckDBPyConnection,
    table: str,
    rows: pl.DataFrame,
    night: date,
    column: str = "as_of_date",
) -> None:
    """Replace ``table``'s rows of one night (those whose ``column`` is ``night``) by ``rows``.

    Run inside :func:`transaction`: a night's rows are swapped all at once, so a rerun
    replaces them and never duplicates. A table the schema does not declare is created
    from the frame's schema.
    """
    _write(con, table, rows, f"DELETE FROM {table} WHERE {column} = $night", {"night": night})


def replace_all(con: duckdb.DuckDBPyConnection, table: str, rows: pl.DataFrame) -> None:
    """Replace every row of ``table`` by ``rows`` (a table rebuilt whole), inside :func:`transaction`."""
    _write(con, table, rows, f"DELETE FROM {table}", {})


def append(con: duckdb.DuckDBPyConnection, table: str, rows: pl.DataFrame) -> None:
    """Add ``rows`` to ``table`` (the later parts of a table rebuilt a part at a time)."""
    _write(con, table, rows, None, {})


def _write(
    con: duckdb.DuckDBPyConnection,
    table: str,
    rows: pl.DataFrame,
    delete: str | None,
    params: dict[str, Any],
) -> None:
    con.register("_frame", as_arrow(rows))
    try:
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM _frame LIMIT 0")
        if delete is not None:
            con.execute(delete, params)
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _frame")
    finally:
        con.unregister("_frame")
