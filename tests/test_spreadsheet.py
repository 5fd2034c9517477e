"""The analysts' workbook: every row, no formula, the same bytes for the same night."""

from __future__ import annotations

import io
import zipfile
from datetime import date
from decimal import Decimal

import polars as pl

from lienwatch.spreadsheet import workbook

AS_OF = date(2026, 11, 20)


def queue() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "loan_id": ["L1", "L2", "L3"],
            "borrower_name": ["Ana Ruiz", '\'=HYPERLINK("x")', "Bo Li"],
            "days_past_due": [12, 45, 0],
            "amount_past_due": [Decimal("641.71"), Decimal("1200.00"), Decimal("0.00")],
            "oldest_unpaid_due_date": [date(2026, 11, 1), date(2026, 10, 1), None],
        },
        schema_overrides={"amount_past_due": pl.Decimal(14, 2)},
    )


def test_the_same_night_gives_the_same_bytes():
    """Dated by the night, not the clock: a rerun writes an identical file."""
    assert workbook(queue(), "Queue", AS_OF) == workbook(queue(), "Queue", AS_OF)


def test_the_sheet_holds_every_row_and_no_formula():
    book = zipfile.ZipFile(io.BytesIO(workbook(queue(), "Queue", AS_OF)))
    sheet = book.read("xl/worksheets/sheet1.xml").decode()
    strings = book.read("xl/sharedStrings.xml").decode()
    assert sheet.count("<row ") == 4  # the header and three loans
    assert "<f>" not in sheet
    assert "HYPERLINK" in strings
