"""What a night publishes for the workbench, and how the workbench finds it.

The night holds the warehouse's write lock from its start to its end, so the workbench
never reads the warehouse: the review step writes a snapshot, a DuckDB file of its own
holding the night's queue, call list, figures and what each flagged account shows
(:func:`build`), and once the night has completed the flow points the workbench at it
(:func:`switch`, one atomic rename of the pointer file). A failed night publishes
nothing; the workbench goes on reading the last completed one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from lienwatch.files import write_atomic
from lienwatch.night import Night
from lienwatch.review.page import Histories, payment_histories
from lienwatch.settings import Settings
from lienwatch.workbench.snapshot import POINTER, snapshot_dir

KEPT = 3  # snapshots kept: the current one, and those a running server may still read


def _name(night: Night) -> str:
    return f"night-{night.run_id}.duckdb"


def build(
    con: duckdb.DuckDBPyConnection,
    night: Night,
    settings: Settings,
    queue: pl.DataFrame,
    call: pl.DataFrame,
    promises: pl.DataFrame,
    figures: Callable[[], dict[str, Any]],
    histories: Callable[[], Histories] | None = None,
) -> Path:
    """Write the night's snapshot (not yet published: :func:`switch` does that); the
    night's figures (``figures()``, which may wait for the review page's) go in last.

    Each account's rows are stored in loan order, so that reading one account touches only
    the few row groups that hold it. The queued loans' payment histories are ``histories()``
    (:func:`~lienwatch.review.page.payment_histories`, which may wait for them to be
    drawn on ``con``), drawn here when not given.
    """
    folder = snapshot_dir(settings, night.db)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / _name(night)
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)
    as_of = night.as_of
    con.execute(f"ATTACH '{_quoted(path)}' AS snap")
    try:
        con.register("_queue", queue)
        con.register("_call", call)
        con.register("_promises", promises)
        statements = {
            "queue": "SELECT * FROM _queue ORDER BY queue_rank",
            "flagged": "SELECT loan_id FROM _queue ORDER BY loan_id",
            "call_list": "SELECT * FROM _call",
            "review_promises": "SELECT * FROM _promises ORDER BY loan_id",
            "loans": "SELECT loan_id FROM loans ORDER BY loan_id",
            "letters": """SELECT loan_id, letter_id, as_of_date, template, status,
                suppression_reason, pdf_path FROM letters WHERE as_of_date <= $d ORDER BY loan_id""",
            # The options of the night's flagged loans: the queue's loans, written in loan order.
            "hardship_options": "SELECT * FROM hardship_options WHERE as_of_date = $d",
            "review_case_events": """SELECT * FROM review_case_events WHERE as_of_date <= $d
                AND loan_id IN (SELECT loan_id FROM _queue) ORDER BY loan_id""",
            "review_decisions": "SELECT * FROM review_decisions ORDER BY loan_id",
        }
        for table, query in statements.items():
            params: dict[str, Any] = {"d": as_of} if "$d" in query else {}
            con.execute(f"CREATE TABLE snap.{table} AS {query}", params)
        # last of the tables: the histories may still be being drawn meanwhile
        labels, paid = (
            histories() if histories else payment_histories(con, as_of, queue["loan_id"].to_list())
        )
        con.register("_history", paid)
        con.execute("CREATE TABLE snap.payment_history AS SELECT * FROM _history ORDER BY loan_id")
        meta = json.dumps(figures(), default=str)
        con.execute(
            """CREATE TABLE snap.meta AS SELECT $as_of::DATE AS as_of_date, $run AS run_id,
            $out AS night_dir, $figures AS figures, $labels AS history_months""",
            {
                "as_of": as_of,
                "run": night.run_id,
                "out": str(night.night_dir),
                "figures": meta,
                "labels": labels,
            },
        )
    finally:
        for name in ("_queue", "_call", "_promises", "_history"):
            con.unregister(name)
        con.execute("DETACH snap")
    os.chmod(path, 0o600)
    return path


def switch(night: Night, settings: Settings) -> Path | None:
    """Point the workbench at the completed night's snapshot (an atomic rename), and drop
    snapshots older than the last few. Returns the snapshot, or None if the night built
    none."""
    folder = snapshot_dir(settings, night.db)
    path = folder / _name(night)
    if not path.exists():
        return None
    write_atomic(folder / POINTER, path.name.encode("utf-8"))
    older = sorted(
        (p for p in folder.glob("night-*.duckdb") if p != path), key=lambda p: p.stat().st_mtime
    )
    for stale in older[: max(len(older) - (KEPT - 1), 0)]:
        stale.unlink(missing_ok=True)
    return path


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")
