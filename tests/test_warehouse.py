"""The warehouse's one-transaction writes read back whole, in the connection that made them.

A night creates its derived tables (each month end of the history with its roll rates,
then the bucket spells) inside transactions on the first night, and reads them again
before it commits.
DuckDB 2.0.0 lost sight of the rows of a table created in the transaction when its first
insert held more than about 115,000 rows (a servicer's first night: no spells, no roll
rates, with no error). 2.0.1 fixed it; these tests keep it fixed at the sizes that broke.
"""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl

from lienwatch import warehouse

ROWS = 130_000  # above the size that broke


def statuses(day: date, rows: int = ROWS) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "as_of_date": [day] * rows,
            "loan_id": [f"L{i:07d}" for i in range(rows)],
            "days_past_due": [i % 200 for i in range(rows)],
        },
        schema={"as_of_date": pl.Date, "loan_id": pl.String, "days_past_due": pl.Int32},
    )


def read_back(con: duckdb.DuckDBPyConnection) -> tuple:
    return con.execute(
        """SELECT count(*), max(as_of_date), count(DISTINCT loan_id),
                  (SELECT count(*) FROM (SELECT * FROM history WHERE as_of_date < DATE '2026-12-01'))
           FROM history"""
    ).fetchall()[0]


def test_a_table_created_and_filled_in_one_transaction_reads_back_whole(tmp_path):
    con = warehouse.connect(tmp_path / "wh.duckdb")
    try:
        with warehouse.transaction(con):
            # an empty month first (the table is created from it), then two full ones
            warehouse.replace_night(
                con, "history", statuses(date(2026, 9, 30), 0), date(2026, 9, 30)
            )
            for day in (date(2026, 10, 31), date(2026, 11, 30)):
                warehouse.replace_night(con, "history", statuses(day), day)
            assert read_back(con) == (2 * ROWS, date(2026, 11, 30), ROWS, 2 * ROWS)
            assert con.execute(
                "SELECT max(as_of_date) FROM history WHERE as_of_date < $d",
                {"d": date(2026, 11, 20)},
            ).fetchall() == [(date(2026, 10, 31),)]
        assert read_back(con) == (2 * ROWS, date(2026, 11, 30), ROWS, 2 * ROWS)
    finally:
        con.close()
    con = warehouse.connect(tmp_path / "wh.duckdb", read_only=True)
    try:
        assert read_back(con) == (2 * ROWS, date(2026, 11, 30), ROWS, 2 * ROWS)
    finally:
        con.close()


def test_a_staging_table_created_in_a_transaction_reads_back_whole(tmp_path):
    con = warehouse.connect(tmp_path / "wh.duckdb")
    try:
        frame = statuses(date(2026, 10, 31))
        con.register("_rows", frame)
        with warehouse.transaction(con):
            con.execute("CREATE TEMP TABLE staged AS SELECT * FROM _rows WHERE false")
            con.execute("INSERT INTO staged SELECT * FROM _rows")
            assert con.execute("SELECT count(*) FROM (SELECT * FROM staged)").fetchall() == [
                (ROWS,)
            ]
            assert con.sql("SELECT * FROM staged ORDER BY loan_id").pl().equals(frame)
    finally:
        con.close()
