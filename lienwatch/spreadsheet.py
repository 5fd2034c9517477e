"""The analysts' workbook (queue.xlsx), written beside the review page.

Writing a sheet is pure Python (xlsxwriter) at about 25,000 cells a second here, so a
long sheet is written by a worker process on the other core while the night builds the
review page (:func:`workbook_later`); a short one is written at once. Same bytes either
way. This module imports only what the worker needs.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from datetime import date, datetime
from multiprocessing import get_context

import polars as pl
import xlsxwriter

WORKER_ROWS = 1_000  # a sheet this long or longer is written by a worker process


def workbook(frame: pl.DataFrame, sheet: str, as_of: date) -> bytes:
    """The spreadsheet, the same bytes for the same night (dated by the night, not the clock)."""
    buffer = io.BytesIO()
    # Texts stay texts: no formulas or links made from a borrower's name.
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_formulas": False,
                                        "strings_to_urls": False, "strings_to_numbers": False})
    book.set_properties({"created": datetime(as_of.year, as_of.month, as_of.day)})
    frame.write_excel(book, worksheet=sheet, autofit=True, freeze_panes=(1, 0),
                      float_precision=2, table_style="Table Style Light 9")
    book.close()
    return buffer.getvalue()


@contextmanager
def workbook_later(frame: pl.DataFrame, sheet: str, as_of: date,
                   worker_rows: int = WORKER_ROWS) -> Iterator[Callable[[], bytes]]:
    """Start writing the workbook; the function it yields waits for the bytes. A long
    sheet is written by a worker process, which the block's end stops."""
    if frame.height < worker_rows:
        data = workbook(frame, sheet, as_of)
        yield lambda: data
        return
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        yield pool.submit(workbook, frame, sheet, as_of).result
