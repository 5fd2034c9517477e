"""The review's files for the team's other tools: ``call_list.csv`` and ``queue.csv``
(every row) and ``queue.xlsx`` (the rows on the page), each owner-only and written
atomically."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import polars as pl

from lienwatch import spreadsheet
from lienwatch.files import write_atomic
from transforms.review import call_export, queue_export


def write_exports(
    folder: Path, queue: pl.DataFrame, call: pl.DataFrame, shown: pl.DataFrame, as_of: date
) -> None:
    """call_list.csv and queue.csv (every row), and queue.xlsx (the rows on the page)."""
    write_atomic(folder / "call_list.csv", _csv(call_export(call)))
    write_atomic(folder / "queue.csv", _csv(queue_export(queue)))
    sheet = spreadsheet.workbook(queue_export(shown), f"Queue {as_of.isoformat()}", as_of)
    write_atomic(folder / "queue.xlsx", sheet)


def _csv(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_csv(buffer)
    return buffer.getvalue()
