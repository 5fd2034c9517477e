"""Ingest: the landing folder into the warehouse, every row loaded or quarantined.

Order of a night's ingest:

1. Every file is checked at file level first (readable, UTF-8, header with the required
   columns). One failure stops the night before anything is written.
2. Snapshot feeds, borrowers first then loans (loans refer to borrowers) then the
   feeds that refer to loans. A snapshot whose content hash equals the current one is
   unchanged and skipped; otherwise it replaces the current snapshot and is kept in
   ``<feed>_history`` under its load id.
3. Ledger files not seen before (by content hash), in name order, in batches: a batch
   is read, typed, checked and validated together (so a reversal may name a payment in
   another new file) and loaded in one transaction, each file under its own load id. A
   row whose txn_id is already loaded goes to quarantine as a duplicate.

Each file: rows read = rows loaded + rows quarantined, checked before its commit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pandas as pd

from lienwatch import expectations
from lienwatch.errors import LienwatchError
from lienwatch.feeds import (
    FileStat,
    Inspected,
    StagedFile,
    discover,
    inspect,
    raw_select,
    stage_files,
    stage_raw,
    typed_select,
)
from lienwatch.warehouse import next_load_id, transaction
from transforms.contract import FEEDS, Feed

SNAPSHOT_ORDER = (
    "borrowers",
    "loans",
    "payment_changes",
    "senior_liens",
    "loss_mit",
    "letter_history",
)
BATCH_BYTES = 48 << 20  # ledger files validated together, at most this much CSV at once
KEY_SCALE = 10_000_000_000
QUARANTINE_COLUMNS = (
    "feed",
    "source_file",
    "row_number",
    "error",
    "raw",
    "column_name",
    "rule",
    "severity",
    "load_id",
    "quarantined_at",
)  # row key = file position * KEY_SCALE + row number
# one quarantine row, in QUARANTINE_COLUMNS' order (raw and column_name are unknown for some)
QuarantineRow = tuple[str, str, int, str, str | None, str | None, str, str, int, datetime]


@dataclass
class FileResult:
    """What became of one landing file this night."""

    source_file: str
    feed: str
    status: str  # loaded, unchanged (same content as the current snapshot) or seen_before
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    load_id: int | None = None
    validation_result: str | None = None


@dataclass
class IngestSummary:
    files: list[FileResult] = field(default_factory=list)

    def totals(self) -> dict[str, int]:
        loaded = [f for f in self.files if f.status == "loaded"]
        return {
            "files_loaded": len(loaded),
            "files_skipped": len(self.files) - len(loaded),
            "rows_read": sum(f.rows_read for f in loaded),
            "rows_loaded": sum(f.rows_loaded for f in loaded),
            "rows_quarantined": sum(f.rows_quarantined for f in loaded),
        }


def ingest(
    con: duckdb.DuckDBPyConnection,
    data: Path,
    *,
    run_id: str | None = None,
    as_of: date | None = None,
    results_dir: Path | None = None,
) -> IngestSummary:
    """Take the landing folder ``data`` into the warehouse behind ``con``."""
    known = {
        path: (FileStat(*stat), sha)
        for path, *stat, sha in con.execute(
            "SELECT path, size, mtime_ns, ctime_ns, inode, sha256 FROM landing_files_read"
        ).fetchall()
    }
    checked = [inspect(f, known) for f in discover(data)]
    _remember_reads(con, checked, known)
    summary = IngestSummary()
    by_feed = {i.file.feed.name: i for i in checked if i.file.feed.snapshot}
    for name in SNAPSHOT_ORDER:
        if name in by_feed:
            summary.files.append(_snapshot(con, by_feed[name], run_id, as_of, results_dir))
    ledger = [i for i in checked if not i.file.feed.snapshot]
    summary.files.extend(_ledger(con, ledger, run_id, as_of, results_dir))
    return summary


def _remember_reads(
    con: duckdb.DuckDBPyConnection, checked: list[Inspected], known: dict[str, tuple[FileStat, str]]
) -> None:
    """Record the stat and hash of each file read whole tonight (see ``feeds.inspect``)."""
    read = [(str(i.file.path.resolve()), i.stat, i.sha256) for i in checked if i.stat is not None]
    fresh = [(path, stat, sha) for path, stat, sha in read if known.get(path) != (stat, sha)]
    if not fresh:
        return
    rows = pd.DataFrame(
        [
            (path, stat.size, stat.mtime_ns, stat.ctime_ns, stat.inode, sha)
            for path, stat, sha in fresh
        ],
        columns=["path", "size", "mtime_ns", "ctime_ns", "inode", "sha256"],
    )
    con.register("_read", rows)
    try:
        with transaction(con):
            con.execute("""INSERT OR REPLACE INTO landing_files_read
                           SELECT *, now()::TIMESTAMP FROM _read""")
    finally:
        con.unregister("_read")


# --------------------------------------------------------------------------- snapshots


def _snapshot(con, inspected: Inspected, run_id, as_of, results_dir) -> FileResult:
    feed = inspected.file.feed
    current = con.execute(
        "SELECT sha256 FROM ingested_files WHERE feed = $feed ORDER BY load_id DESC LIMIT 1",
        {"feed": feed.name},
    ).fetchall()
    if current and current[0][0] == inspected.sha256:
        return FileResult(inspected.file.name, feed.name, "unchanged")
    staged = stage_raw(con, inspected, f"stg_{feed.name}_raw")
    batch = _Batch(feed, [staged])
    batch.type_and_check(con, _snapshot_checks(feed))
    result = batch.validate(con)
    with transaction(con):
        load_id = next_load_id(con)
        path = _save_result(results_dir, feed.name, load_id, result)
        cols = ", ".join(feed.column_names)
        con.execute(f"DELETE FROM {feed.name}")
        for target in (feed.name, f"{feed.name}_history"):
            con.execute(
                f"""INSERT INTO {target} ({cols}, load_id)
                SELECT {cols}, $load_id FROM stg_typed
                WHERE _key NOT IN (SELECT key FROM stg_failed)""",
                {"load_id": load_id},
            )
        if feed.name == "loans":
            con.execute(
                """INSERT INTO known_loans SELECT DISTINCT loan_id, $load_id FROM loans
                WHERE loan_id NOT IN (SELECT loan_id FROM known_loans)""",
                {"load_id": load_id},
            )
        file_result = batch.record(con, 0, load_id, run_id, as_of, path)
    return file_result


def _snapshot_checks(feed: Feed) -> str:
    """Check columns for a snapshot's clean rows (``t``): in-batch duplicates, references."""
    key = ", ".join(feed.key)
    checks = [f"row_number() OVER (PARTITION BY {key} ORDER BY _key) > 1 AS _dup"]
    if feed.name == "loans":
        checks += [
            "borrower_id NOT IN (SELECT borrower_id FROM borrowers) AS _borrower_unknown",
            "(draw_period_end IS NOT NULL AND product <> 'heloc') AS _draw_end_not_heloc",
        ]
    elif feed.name == "borrowers":
        checks += [
            "(bankruptcy_filed_date IS NOT NULL AND NOT bankruptcy) AS _bankruptcy_date_without_flag",
        ]
    else:
        checks.append("loan_id NOT IN (SELECT loan_id FROM known_loans) AS _loan_unknown")
    if feed.name == "loss_mit":
        checks.append("(status = 'closed' AND closed_date IS NULL) AS _closed_without_date")
    return ", ".join(checks)


# --------------------------------------------------------------------------- the ledger

# The warehouse's ledger is large: every look-up into it is a join from this batch's
# (small) set of ids, never a scan that hashes the whole ledger. Reading its txn_id (a text
# per row, tens of millions of them) is still the costly part: it is read once a batch,
# for the loaded rows that this batch's rows and reversals name (stg_ledger_named).
_LEDGER_NAMED = """
CREATE OR REPLACE TEMP TABLE stg_ledger_named AS
SELECT txn_id, loan_id, posted_date, amount, txn_type FROM payments
WHERE txn_id IN (SELECT txn_id FROM stg_typed UNION SELECT reverses_txn_id FROM stg_typed)"""
_PAYMENT_CHECKS = f"""
    row_number() OVER (PARTITION BY txn_id, _key // {KEY_SCALE} ORDER BY _key) > 1 AS _dup,
    (txn_id IN (SELECT txn_id FROM stg_ledger_named)
     OR min(_key // {KEY_SCALE}) OVER (PARTITION BY txn_id) < _key // {KEY_SCALE}) AS _loaded_before,
    loan_id NOT IN (SELECT loan_id FROM known_loans) AS _loan_unknown
"""

_REVERSAL_PROBLEM = """
CREATE OR REPLACE TEMP TABLE stg_reversal AS
WITH named AS (
    SELECT DISTINCT reverses_txn_id AS txn_id FROM stg_checked WHERE reverses_txn_id IS NOT NULL
),
candidates AS (  -- payments a reversal may name: loaded ones and this batch's clean rows
    SELECT txn_id, loan_id, posted_date, amount, txn_type, -1 AS _key FROM stg_ledger_named SEMI JOIN named USING (txn_id)
    UNION ALL
    SELECT txn_id, loan_id, posted_date, amount, txn_type, _key FROM stg_checked
    SEMI JOIN named USING (txn_id)
    WHERE NOT _dup AND NOT _loaded_before
),
target AS (
    SELECT * FROM candidates QUALIFY row_number() OVER (PARTITION BY txn_id ORDER BY _key) = 1
),
reversed_before AS (
    SELECT DISTINCT p.reverses_txn_id FROM payments p
    JOIN named ON p.reverses_txn_id = named.txn_id
    WHERE p.txn_type = 'reversal'
),
reversals AS (
    SELECT r._key, r.loan_id, r.posted_date, r.amount, r.reverses_txn_id,
           row_number() OVER (PARTITION BY r.reverses_txn_id ORDER BY r._key) AS nth
    FROM stg_checked r
    WHERE r.txn_type = 'reversal' AND NOT r._dup AND NOT r._loaded_before
),
problems AS (
SELECT c._key,
    CASE
        WHEN c.txn_type = 'payment' AND c.reverses_txn_id IS NOT NULL
            THEN 'a payment must not name reverses_txn_id'
        WHEN c.txn_type = 'reversal' AND c.reverses_txn_id IS NULL
            THEN 'reverses_txn_id is empty'
        WHEN c.txn_type <> 'reversal' OR c._dup OR c._loaded_before THEN NULL
        WHEN t.txn_id IS NULL THEN 'no payment has that txn_id'
        WHEN t.txn_type <> 'payment' THEN 'the transaction it names is itself a reversal'
        WHEN t.loan_id <> c.loan_id THEN 'the payment it names belongs to another loan'
        WHEN t.posted_date > c.posted_date THEN 'it is dated before the payment it reverses'
        WHEN t.amount <> c.amount THEN 'its amount differs from the payment it reverses'
        WHEN rb.reverses_txn_id IS NOT NULL OR r.nth > 1 THEN 'the payment was already reversed'
    END AS _reversal_problem
FROM stg_checked c
LEFT JOIN target t ON t.txn_id = c.reverses_txn_id
LEFT JOIN reversed_before rb ON rb.reverses_txn_id = c.reverses_txn_id
LEFT JOIN reversals r ON r._key = c._key
WHERE c.txn_type = 'reversal' OR c.reverses_txn_id IS NOT NULL  -- a plain payment has none
)
SELECT * FROM problems WHERE _reversal_problem IS NOT NULL  -- the rest: NULL, joined
"""


def _ledger(con, files: list[Inspected], run_id, as_of, results_dir) -> list[FileResult]:
    seen = {
        sha: name
        for sha, name in con.execute(
            "SELECT sha256, source_file FROM ingested_files WHERE feed = 'payments'"
        ).fetchall()
    }
    results, new = [], []
    for inspected in files:
        if inspected.sha256 in seen:
            results.append(FileResult(inspected.file.name, "payments", "seen_before"))
            continue
        seen[inspected.sha256] = inspected.file.name
        new.append(inspected)
    for group in _batches(new):
        staged = stage_files(con, group, "stg_pay")
        batch = _Batch(FEEDS["payments"], staged)
        batch.type_and_check(con, _PAYMENT_CHECKS, _LEDGER_NAMED)
        con.execute(_REVERSAL_PROBLEM)
        result = batch.validate(con, "stg_checked LEFT JOIN stg_reversal USING (_key)")
        # The batch's files in one transaction, each with its load id and registry row.
        with transaction(con):
            load_ids = [next_load_id(con) for _ in staged]
            path = _save_result(results_dir, "payments", load_ids[0], result)
            cols = ", ".join(FEEDS["payments"].column_names)
            con.execute(
                f"""INSERT INTO payments ({cols}, source_file, row_number, load_id)
                SELECT {cols}, $sources[_file + 1], row_number, $load_ids[_file + 1]
                FROM stg_typed ANTI JOIN stg_failed ON _key = key
                ORDER BY _key""",
                {"sources": [s.inspected.file.name for s in staged], "load_ids": load_ids},
            )
            for position, load_id in enumerate(load_ids):
                results.append(
                    batch.record(
                        con, position, load_id, run_id, as_of, path if position == 0 else None
                    )
                )
        for table in {s.table for s in staged}:
            con.execute(f"DROP TABLE IF EXISTS {table}")
    return results


def _batches(files: list[Inspected]) -> Iterable[list[Inspected]]:
    group: list[Inspected] = []
    size = 0
    for f in files:
        if group and size + f.bytes > BATCH_BYTES:
            yield group
            group, size = [], 0
        group.append(f)
        size += f.bytes
    if group:
        yield group


# --------------------------------------------------------------------------- one batch


class _Batch:
    """Files of one feed staged together: typed, checked, validated, then recorded."""

    def __init__(self, feed: Feed, staged: list[StagedFile]) -> None:
        self.feed = feed
        self.staged = staged
        self.failed: dict[int, list[expectations.Failure]] = {}

    def type_and_check(
        self, con: duckdb.DuckDBPyConnection, checks: str, lookup: str | None = None
    ) -> None:
        """The rows typed (``stg_typed``), then checked (``stg_checked``): ``checks`` are
        columns computed on the typed rows, which may read the table ``lookup`` (a
        statement run on the typed rows) makes."""
        tables = list(dict.fromkeys(s.table for s in self.staged))  # in file order
        headers = {s.table: list(s.inspected.header) for s in self.staged}
        parts = [
            f"SELECT _file * {KEY_SCALE} + row_number AS _key, * FROM ("
            f"{typed_select(self.feed, headers[table], table)})"
            for table in tables
        ]
        con.execute(f"CREATE OR REPLACE TEMP TABLE stg_typed AS {parts[0]}")
        for part in parts[1:]:
            con.execute(f"INSERT INTO stg_typed BY NAME {part}")
        if lookup is not None:
            con.execute(lookup)
        # Only what the checks and the suite read: the cell errors stay in stg_typed (the
        # window functions of the checks carry every column they get).
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE stg_checked AS
            SELECT * EXCLUDE (errors, row_number, _file), {checks}
            FROM stg_typed WHERE len(errors) = 0"""
        )

    def validate(self, con: duckdb.DuckDBPyConnection, rows: str = "stg_checked") -> dict:
        """Run the feed's suite on ``rows`` (the checked rows, or a relation made of them);
        remember the failed rows; return the validation result."""
        view = con.execute(f"SELECT * FROM {rows} ORDER BY _key").df().set_index("_key")
        for column in self.feed.columns:
            if column.kind in ("money", "rate"):
                view[column.name] = view[column.name].astype("float64")
            elif column.kind == "date":
                # nanoseconds: Great Expectations compares only those columns vectorised
                # (other datetime units go through a Python call per value)
                view[column.name] = pd.to_datetime(view[column.name]).astype("datetime64[ns]")
        failures, result = expectations.validate(self.feed.name, view)
        cell = con.execute("SELECT _key, errors FROM stg_typed WHERE len(errors) > 0").fetchall()
        for key, errors in cell:
            first = errors[0]
            failures.append(
                expectations.Failure(
                    key,
                    first["column_name"],
                    first["rule"],
                    "; ".join(e["message"] for e in errors),
                    "error",
                )
            )
        blocking = [f for f in failures if f.severity != "warning"]
        for f in blocking:
            self.failed.setdefault(f.key, []).append(f)
        keys = pd.DataFrame({"key": sorted(self.failed)}, dtype="int64")
        con.register("stg_failed_view", keys)
        con.execute("CREATE OR REPLACE TEMP TABLE stg_failed AS SELECT key FROM stg_failed_view")
        con.unregister("stg_failed_view")
        result["lienwatch"] = {
            "feed": self.feed.name,
            "files": [s.inspected.file.name for s in self.staged],
            "warnings": sum(1 for f in failures if f.severity == "warning"),
        }
        return result

    def record(self, con, position: int, load_id: int, run_id, as_of, result_path) -> FileResult:
        """Quarantine the file's failed rows, write its registry row, check conservation."""
        staged = self.staged[position]
        name = staged.inspected.file.name
        now = datetime.now(UTC).replace(tzinfo=None)
        rows: list[QuarantineRow] = []
        for row_number, reason, line in staged.rejects:
            rows.append(
                (
                    self.feed.name,
                    name,
                    row_number,
                    reason,
                    line,
                    None,
                    "structure",
                    "error",
                    load_id,
                    now,
                )
            )
        lo, hi = position * KEY_SCALE, (position + 1) * KEY_SCALE
        failed = sorted(k for k in self.failed if lo <= k < hi)
        raw = (
            dict(
                con.execute(
                    f"""SELECT $lo + row_number, raw
                    FROM ({raw_select(list(staged.inspected.header), staged.table)})
                    WHERE _file = $position AND list_contains($rows, row_number)""",
                    {"lo": lo, "position": position, "rows": [k - lo for k in failed]},
                ).fetchall()
            )
            if failed
            else {}
        )
        for key in failed:
            found = sorted(self.failed[key], key=_precedence)
            first = found[0]
            rows.append(
                (
                    self.feed.name,
                    name,
                    key - lo,
                    "; ".join(f.message for f in found),
                    raw.get(key),
                    first.column_name,
                    first.rule,
                    first.severity,
                    load_id,
                    now,
                )
            )
        if rows:
            frame = pd.DataFrame(rows, columns=QUARANTINE_COLUMNS)
            con.register("stg_quarantine", frame)
            con.execute("INSERT INTO quarantine BY NAME SELECT * FROM stg_quarantine")
            con.unregister("stg_quarantine")
        loaded = con.execute(
            "SELECT count(*) FROM "
            + (self.feed.name if self.feed.snapshot else "payments")
            + " WHERE load_id = $load_id",
            {"load_id": load_id},
        ).fetchall()[0][0]
        if staged.rows_read != loaded + len(rows):
            raise LienwatchError(
                f"{name}: {staged.rows_read} rows read but {loaded} loaded and {len(rows)} "
                "quarantined; nothing was loaded from it"
            )
        con.execute(
            """INSERT INTO ingested_files VALUES ($load_id, $name, $sha, $feed, $read, $loaded,
               $quarantined, $now, $run_id, $as_of, $bytes, $extra, $result)""",
            {
                "load_id": load_id,
                "name": name,
                "sha": staged.inspected.sha256,
                "feed": self.feed.name,
                "read": staged.rows_read,
                "loaded": loaded,
                "quarantined": len(rows),
                "now": now,
                "run_id": run_id,
                "as_of": as_of,
                "bytes": staged.inspected.bytes,
                "extra": list(staged.inspected.extra_columns),
                "result": str(result_path) if result_path else None,
            },
        )
        return FileResult(
            name,
            self.feed.name,
            "loaded",
            staged.rows_read,
            loaded,
            len(rows),
            load_id,
            str(result_path) if result_path else None,
        )


def _precedence(failure: expectations.Failure) -> tuple[int, str]:
    order = {"duplicate": 0, "error": 1}
    return order.get(failure.severity, 2), failure.rule


def _save_result(results_dir: Path | None, feed: str, load_id: int, result: dict) -> Path | None:
    if results_dir is None:
        return None
    results_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = results_dir / f"{feed}-{load_id}.json"
    path.write_text(json.dumps(result, indent=1, default=str))
    return path
