"""The review workbench: cases, analysts' decisions, and the night's review outputs.

Every morning the loss-mitigation team works the night's flagged second liens. This
module is the I/O around :mod:`transforms.cases`:

- the warehouse tables ``review_decisions`` (what analysts did, written by
  ``lienwatch review ...``), ``review_cases`` and ``review_case_events`` (one case per
  flagged loan and its log), and ``review_promises`` (each promise to pay, checked
  against the ledger each night);
- the functions other steps of a night call so that decisions act on the next night:
  :func:`holds_as_of` (held letters are not mailed) and :func:`application_cases`
  (a hardship application taken opens loss mitigation);
- :func:`step_review`, the night's last step: the cases, then ``review.html`` (one
  self-contained page: no server, no network), ``call_list.csv``, ``queue.csv`` and
  ``queue.xlsx`` in the night's folder, each owner-only and written atomically. The
  CSV files hold every flagged loan and every call due; the page and the workbook hold
  at most ``risk.review_page_rows`` loans (:func:`transforms.cases.on_page`) and say
  how many they leave out.
"""

from __future__ import annotations

import io
import os
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import jinja2
import polars as pl
from markupsafe import Markup

from lienwatch import spreadsheet, warehouse
from lienwatch.errors import LienwatchError
from lienwatch.letters import TEMPLATES
from lienwatch.settings import Settings
from transforms import cases
from transforms.contract import BUCKETS, CARE_FLAGS, SIGNALS, TIERS
from transforms.letters import night_of

REVIEW_TEMPLATES = TEMPLATES / "review"
PAGE = "review.html"
HISTORY_MONTHS = 24  # month ends in an account's payment history
LETTERS_SHOWN = 6  # most recent letters listed for an account
QUARANTINE_SHOWN = 25  # (feed, error) lines listed; the rest are counted
HELD_PREFIX = "held by analyst"
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


def _exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = $t", {"t": table}
    ).fetchall()[0][0])


def _frame(con: duckdb.DuckDBPyConnection, query: str, params: dict | None = None) -> pl.DataFrame:
    return con.sql(query, params=params or {}).pl()


# --------------------------------------------------------------------------- decisions


def decisions(con: duckdb.DuckDBPyConnection, as_of: date) -> pl.DataFrame:
    """Analysts' decisions made on or before ``as_of``, with the template of a held or
    released letter (null when the decision names no letter)."""
    schema = cases.DECISION_SCHEMA | {"template": pl.String()}
    if not _exists(con, "review_decisions"):
        return pl.DataFrame(schema=schema)
    found = _frame(
        con,
        """SELECT * FROM review_decisions WHERE made_at < $as_of::DATE + 1 ORDER BY made_at, decision_id""",
        {"as_of": as_of},
    )
    named = found["letter_id"].drop_nulls().unique().to_list()
    templates = _letter_templates(con, named)
    return (found.join(templates, on="letter_id", how="left", maintain_order="left")
            .select([pl.col(name).cast(dtype) for name, dtype in schema.items()]))


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
    return _frame(con, query, params).select([pl.col(n).cast(t) for n, t in schema.items()])


def record_decision(
    db: Path,
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
    """Check one decision against the warehouse and write it as a ``review_decisions`` row.

    Refuses (with the reason) an unknown loan or letter, a letter of another loan, a
    promise without a date on or after the day it was made or without a positive
    amount, and a note without text. Returns the row written.
    """
    if kind not in cases.DECISION_KINDS:
        raise LienwatchError(f"unknown decision {kind!r}; one of {', '.join(cases.DECISION_KINDS)}")
    if not made_by.strip():
        raise LienwatchError("--by: who made the decision is required")
    if kind == "promise":
        if promise_date is None or promise_amount is None:
            raise LienwatchError("a promise to pay needs --date and --amount")
        if not (0 < promise_amount < MAX_AMOUNT) or promise_amount != promise_amount.quantize(Decimal("0.01")):
            raise LienwatchError(f"--amount {promise_amount}: a positive amount in dollars and cents")
        if promise_date < made_at.date():
            raise LienwatchError(f"--date {promise_date} is before the promise was made ({made_at.date()})")
    if kind == "note" and not (note or "").strip():
        raise LienwatchError("a note needs --note text")
    if not db.exists():
        raise LienwatchError(f"{db}: no warehouse at this path")
    row = {
        "decision_id": f"D{made_at:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}",
        "loan_id": loan_id, "kind": kind, "made_at": made_at, "made_by": made_by.strip(),
        "promise_date": promise_date, "promise_amount": promise_amount,
        "letter_id": letter_id, "note": note,
    }
    con = warehouse.connect(db)
    try:
        if not con.execute("SELECT count(*) FROM loans WHERE loan_id = $l", {"l": loan_id}).fetchall()[0][0]:
            raise LienwatchError(f"--loan {loan_id}: no such loan in {db}")
        if letter_id is not None:
            owners = {r[0] for r in con.execute(
                "SELECT DISTINCT loan_id FROM letters WHERE letter_id = $id", {"id": letter_id}).fetchall()}
            if not owners:
                raise LienwatchError(f"--letter {letter_id}: no such letter in {db}")
            if loan_id not in owners:
                raise LienwatchError(f"--letter {letter_id} is a letter of loan {sorted(owners)[0]}, not {loan_id}")
        ensure_tables(con)
        frame = pl.DataFrame([row], schema=cases.DECISION_SCHEMA)
        with warehouse.transaction(con):
            con.register("_decision", frame)
            try:
                con.execute("INSERT INTO review_decisions BY NAME SELECT * FROM _decision")
            finally:
                con.unregister("_decision")
    finally:
        con.close()
    return row


def holds_as_of(con: duckdb.DuckDBPyConnection, as_of: date) -> pl.DataFrame:
    """The letter holds in force on the night ``as_of`` (``transforms.cases.HOLD_SCHEMA``):
    the letters step passes them with its decisions to ``transforms.cases.apply_holds``."""
    return cases.active_holds(decisions(con, as_of), as_of)


def application_cases(con: duckdb.DuckDBPyConnection, as_of: date) -> pl.DataFrame:
    """Hardship applications taken by analysts that stand as open loss-mitigation cases on
    the night, as ``loss_mit`` rows (loan_id, case_type, status, opened_date,
    closed_date): the flags step adds them to the feed's rows, so these loans get the
    ``open_loss_mitigation`` care flag."""
    feed = _frame(con, "SELECT loan_id, opened_date FROM loss_mit")
    return cases.open_applications(decisions(con, as_of), feed, as_of)


def promises_as_of(con: duckdb.DuckDBPyConnection, as_of: date) -> pl.DataFrame:
    """Every promise to pay made by the night, kept, broken or pending as of the night."""
    made = decisions(con, as_of)
    loans = made.filter(pl.col("kind") == "promise")["loan_id"].unique().to_list()
    ledger = _frame(
        con,
        """SELECT txn_id, loan_id, posted_date, amount, txn_type, reverses_txn_id FROM payments
        WHERE loan_id IN (SELECT unnest($loans::VARCHAR[])) AND posted_date <= $as_of""",
        {"loans": loans, "as_of": as_of},
    )
    return cases.promise_status(made, ledger, as_of)


# --------------------------------------------------------------------------- the night's step


def step_review(night, settings: Settings) -> dict[str, Any]:
    """The night's cases, promises, review page, call list and queue exports.

    Cases are recomputed from the log as it stood before the night, and the night's
    events replace any from an earlier run of the same night, so a rerun never
    duplicates them.
    """
    as_of = night.as_of
    con = warehouse.connect(night.db)
    try:
        if not con.execute("SELECT count(*) FROM loan_status WHERE as_of_date = $d", {"d": as_of}).fetchall()[0][0]:
            # Without the night's status and flags every open case would look resolved.
            raise LienwatchError(f"no loan_status for {as_of}: the night's earlier steps have not run")
        ensure_tables(con)
        flags = _frame(con, "SELECT loan_id, tier, days_past_due FROM risk_flags WHERE as_of_date = $d",
                       {"d": as_of})
        before = _frame(con, "SELECT * FROM review_case_events WHERE as_of_date < $d", {"d": as_of})
        open_before = cases.case_state(before).filter(pl.col("status") == "open")
        after, events = cases.case_events(open_before, flags, as_of)
        promises = promises_as_of(con, as_of)
        with warehouse.transaction(con):
            warehouse.replace_rows(con, "review_case_events", events, "as_of_date = $d", {"d": as_of})
            log = _frame(con, "SELECT * FROM review_case_events")
            warehouse.replace_rows(con, "review_cases", cases.case_state(log), "TRUE", {})
            warehouse.replace_rows(con, "review_promises", promises, "as_of_date = $d", {"d": as_of})
        queue = queue_frame(con, as_of)
        call = cases.call_list(queue, decisions(con, as_of), as_of)
        shown = cases.on_page(queue, call, settings.risk.review_page_rows)
        folder = night.night_dir
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        # The exports need nothing more from the warehouse: they are written (the workbook
        # is seconds of Python) while the page's figures are read (queries that leave the
        # interpreter free).
        with ThreadPoolExecutor(1, thread_name_prefix="review-exports") as pool:
            exports = pool.submit(_write_exports, folder, queue, call, shown, as_of)
            model = page_model(con, night, settings, queue, call, promises, shown)
            exports.result()
    finally:
        con.close()

    page = render_page(model)
    write_atomic(folder / PAGE, page.encode("utf-8"))
    counted = events.group_by("event").len()
    kept = promises.group_by("status").len()
    return {
        "flagged": queue.height,
        "cases_open": int((after["status"] == "open").sum()),
        "events": dict(zip(counted["event"].to_list(), counted["len"].to_list(), strict=True)),
        "call_list": call.height,
        "promises": dict(zip(kept["status"].to_list(), kept["len"].to_list(), strict=True)),
        "letters_held": int((queue["letter_status"] == "held").sum()),
        "on_page": shown.height,
        "page_kb": round(len(page.encode("utf-8")) / 1024),
        "page": str(folder / PAGE),
    }


def _write_exports(folder: Path, queue: pl.DataFrame, call: pl.DataFrame, shown: pl.DataFrame,
                   as_of: date) -> None:
    """call_list.csv and queue.csv (every row), and queue.xlsx (the rows on the page)."""
    write_atomic(folder / "call_list.csv", _csv(call_export(call)))
    write_atomic(folder / "queue.csv", _csv(queue_export(queue)))
    sheet = spreadsheet.workbook(queue_export(shown), f"Queue {as_of.isoformat()}", as_of)
    write_atomic(folder / "queue.xlsx", sheet)


# --------------------------------------------------------------------------- reading the night

QUEUE_SQL = """
WITH flagged AS (SELECT * FROM risk_flags WHERE as_of_date = $as_of),
letter AS (
    SELECT loan_id, letter_id, template, status, suppression_reason, pdf_path FROM letters
    WHERE as_of_date = $as_of
    QUALIFY row_number() OVER (PARTITION BY loan_id ORDER BY status = 'generated' DESC, letter_id) = 1
),
senior AS (
    SELECT loan_id, reported_date, senior_days_past_due FROM senior_liens
    WHERE reported_date <= $as_of AND loan_id IN (SELECT loan_id FROM flagged)
    QUALIFY row_number() OVER (PARTITION BY loan_id ORDER BY reported_date DESC) = 1
),
started AS (SELECT loan_id, delinquency_start_date FROM delinquency_starts WHERE as_of_date = $as_of),
open_case AS (
    SELECT loan_id, case_id, opened_date FROM review_cases WHERE status = 'open'
    QUALIFY row_number() OVER (PARTITION BY loan_id ORDER BY opened_date DESC) = 1
),
tonight AS (SELECT loan_id, event FROM review_case_events WHERE as_of_date = $as_of)
SELECT f.queue_rank, f.in_queue, f.loan_id, f.borrower_id,
       trim(concat_ws(' ', b.first_name, b.last_name)) AS borrower_name, b.phone,
       b.preferred_language AS language, f.tier, f.score, f.days_past_due, f.reasons, f.reason_details,
       f.care, l.product, l.property_state, l.current_balance, s.amount_past_due, s.installment_amount,
       s.oldest_unpaid_due_date, s.next_due_date, s.live_contact_due_date, s.written_notice_due_date,
       coalesce(st.delinquency_start_date, s.oldest_unpaid_due_date) AS delinquency_start_date,
       sn.reported_date AS senior_reported_date, sn.senior_days_past_due,
       lt.letter_id, lt.template AS letter_template,
       CASE WHEN lt.letter_id IS NULL THEN 'none'
            WHEN starts_with(lt.suppression_reason, $held) THEN 'held' ELSE lt.status END AS letter_status,
       lt.suppression_reason, lt.pdf_path,
       c.case_id, c.opened_date AS case_opened_date, e.event AS case_event
FROM flagged AS f
LEFT JOIN loan_status AS s ON s.as_of_date = $as_of AND s.loan_id = f.loan_id
LEFT JOIN loans AS l ON l.loan_id = f.loan_id
LEFT JOIN borrowers AS b ON b.borrower_id = f.borrower_id
LEFT JOIN letter AS lt ON lt.loan_id = f.loan_id
LEFT JOIN senior AS sn ON sn.loan_id = f.loan_id
LEFT JOIN started AS st ON st.loan_id = f.loan_id
LEFT JOIN open_case AS c ON c.loan_id = f.loan_id
LEFT JOIN tonight AS e ON e.loan_id = f.loan_id
"""


def queue_frame(con: duckdb.DuckDBPyConnection, as_of: date) -> pl.DataFrame:
    """The night's flagged loans in queue order, with all the page, call list and exports show.

    Each dated table joined is filtered on the night's date by name: an outer join does not
    pass the flagged rows' date on to its other side, which would then be read whole (every
    night the warehouse holds)."""
    # Sorted here: cheaper than in the query at hundreds of thousands of wide rows.
    return _frame(con, QUEUE_SQL, {"as_of": as_of, "held": HELD_PREFIX}).sort("queue_rank")


def _previous(con: duckdb.DuckDBPyConnection, table: str, as_of: date) -> date | None:
    return con.execute(f"SELECT max(as_of_date) FROM {table} WHERE as_of_date < $d", {"d": as_of}).fetchall()[0][0]


def _by_group(con, table: str, column: str, as_of: date, previous: date | None, order: tuple[str, ...]) -> list[dict]:
    """Loans and balance per ``column`` of ``table`` tonight and on the previous night."""
    found = _frame(
        con,
        f"""SELECT t.as_of_date = $d AS tonight, t.{column} AS grp, count(*) AS loans,
               coalesce(sum(l.current_balance), 0) AS balance
        FROM {table} AS t LEFT JOIN loans AS l USING (loan_id)
        WHERE t.as_of_date = $d OR t.as_of_date = $p GROUP BY ALL""",
        {"d": as_of, "p": previous},
    )
    figures = {(r["tonight"], r["grp"]): r for r in found.iter_rows(named=True)}
    empty = {"loans": 0, "balance": Decimal(0)}
    rows = []
    for group in order:
        now = figures.get((True, group), empty)
        then = figures.get((False, group), empty) if previous else None
        rows.append({
            "group": group, "loans": now["loans"], "balance": float(now["balance"]),
            "loans_change": None if then is None else now["loans"] - then["loans"],
            "balance_change": None if then is None else float(now["balance"] - then["balance"]),
            "previous_loans": None if then is None else then["loans"],
        })
    return rows


def _roll_rates(con, as_of: date) -> dict[str, Any]:
    """The latest month's roll-rate matrix on or before the night: share of loans by
    from-bucket (rows) and to-bucket (columns), with counts and balances."""
    if not _exists(con, "roll_rates"):
        return {"month": None, "rows": [], "columns": []}
    month = con.execute("SELECT max(month_end_date) FROM roll_rates WHERE month_end_date <= $d",
                        {"d": as_of}).fetchall()[0][0]
    found = _frame(con, "SELECT * FROM roll_rates WHERE month_end_date = $m", {"m": month})
    cells = {(r["from_bucket"], r["to_bucket"]): r for r in found.iter_rows(named=True)}
    origins = [b for b in ("new", *BUCKETS) if any(k[0] == b for k in cells)]
    targets = [b for b in (*BUCKETS, "exited") if any(k[1] == b for k in cells)]
    rows = []
    for origin in origins:
        line = []
        for target in targets:
            cell = cells.get((origin, target))
            line.append(None if cell is None else {
                "share": cell["share"], "loans": cell["loan_count"], "balance": float(cell["balance"] or 0),
                "move": _direction(origin, target)})
        rows.append({"from": origin, "cells": line,
                     "loans": sum(c["loans"] for c in line if c)})
    return {"month": month, "rows": rows, "columns": targets}


def _direction(origin: str, target: str) -> str:
    """Whether a roll from ``origin`` to ``target`` is a cure, a stay or a roll forward."""
    if origin not in BUCKETS or target not in BUCKETS:
        return "other"
    step = BUCKETS.index(target) - BUCKETS.index(origin)
    return "worse" if step > 0 else "better" if step < 0 else "same"


IDENTIFIER = re.compile(r"\b(?:\d{4}-\d{2}-\d{2}|(?=[\w-]*[A-Za-z])(?=[\w-]*\d)[\w-]+)\b")


def _reason_kind(reason: str) -> str:
    """A suppression reason as a kind: the part before any colon, with the ids and dates
    that make it one letter's replaced by "…" (counts such as "14 days" are kept)."""
    return IDENTIFIER.sub("…", reason.split(":", 1)[0]).strip()


def _letters_summary(con, as_of: date) -> dict[str, Any]:
    """The night's letters: generated by template, suppressed by kind of reason."""
    found = _frame(con, "SELECT template, status, suppression_reason FROM letters WHERE as_of_date = $d",
                   {"d": as_of})
    generated = found.filter(pl.col("status") == "generated").group_by("template").len().sort("template")
    reasons = found.filter(pl.col("status") == "suppressed")["suppression_reason"].fill_null("")
    # Each distinct reason's kind once (hundreds of thousands of letters, few reasons).
    kinds = reasons.unique()
    suppressed = (reasons.replace_strict(kinds, [_reason_kind(r) for r in kinds], return_dtype=pl.String)
                  .alias("why").to_frame()
                  .group_by("why").len().sort(["len", "why"], descending=[True, False]))
    return {
        "generated": int((found["status"] == "generated").sum()),
        "suppressed": int((found["status"] == "suppressed").sum()),
        "by_template": generated.rows(),
        "by_reason": suppressed.rows(),
    }


def _quarantine(con, as_of: date) -> dict[str, Any]:
    """Rows quarantined by the night's loads, by feed and error (the most frequent first)."""
    found = _frame(
        con,
        """SELECT q.feed, q.error, count(*) AS rows FROM quarantine AS q
        JOIN ingested_files AS f USING (load_id) WHERE f.as_of_date = $d
        GROUP BY ALL ORDER BY rows DESC, q.feed, q.error""",
        {"d": as_of},
    )
    return {"total": int(found["rows"].sum() or 0), "lines": found.head(QUARANTINE_SHOWN).rows(),
            "more": max(found.height - QUARANTINE_SHOWN, 0)}


def _history(con, as_of: date, loans: list[str]) -> tuple[list[str], dict[str, list[list]]]:
    """Each of ``loans``' last months: due and paid in the month (whole dollars) and days
    past due, at each of the last month ends and tonight (labels, arrays per loan)."""
    months = [r[0] for r in con.execute(
        """SELECT DISTINCT as_of_date FROM loan_status_month_end WHERE as_of_date < $d
        ORDER BY as_of_date DESC LIMIT $n""", {"d": as_of, "n": HISTORY_MONTHS + 1}).fetchall()]
    found = _frame(
        con,
        """WITH wanted AS (SELECT unnest($loans::VARCHAR[]) AS loan_id)
        SELECT as_of_date, loan_id, total_due, net_paid, days_past_due FROM loan_status_month_end
        WHERE as_of_date IN (SELECT unnest($months::DATE[])) AND loan_id IN (SELECT loan_id FROM wanted)
        UNION ALL
        SELECT as_of_date, loan_id, total_due, net_paid, days_past_due FROM loan_status
        WHERE as_of_date = $d AND loan_id IN (SELECT loan_id FROM wanted)""",
        {"d": as_of, "months": months, "loans": loans},
    )
    points = [*sorted(months)[1:], as_of]  # the oldest month end is only the base of the first month
    grid = pl.DataFrame({"as_of_date": points}, schema={"as_of_date": pl.Date})
    step = (
        found.sort("loan_id", "as_of_date")
        .with_columns(
            (pl.col("total_due") - pl.col("total_due").shift(1).over("loan_id")).fill_null(pl.col("total_due"))
            .alias("due"),
            (pl.col("net_paid") - pl.col("net_paid").shift(1).over("loan_id")).fill_null(pl.col("net_paid"))
            .alias("paid"),
        )
        .filter(pl.col("as_of_date").is_in(points))
    )
    loans = step.select("loan_id").unique()
    full = (
        loans.join(grid, how="cross")
        .join(step, on=["loan_id", "as_of_date"], how="left")
        .sort("loan_id", "as_of_date")
        .group_by("loan_id", maintain_order=True)
        .agg(pl.col("due").cast(pl.Float64).round(0).cast(pl.Int64),
             pl.col("paid").cast(pl.Float64).round(0).cast(pl.Int64),
             pl.col("days_past_due"))
    )
    labels = [d.isoformat()[:7] for d in points[:-1]] + [as_of.isoformat()]
    return labels, {r[0]: [r[1], r[2], r[3]] for r in full.iter_rows()}


class _Strings:
    """Repeated texts (option rationales, terms, reasons) stored once and referred to by index."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, text: str | None) -> int | None:
        if text is None:
            return None
        if text not in self._index:
            self._index[text] = len(self.items)
            self.items.append(text)
        return self._index[text]


def _trimmed(values: list) -> list:
    while values and values[-1] is None:
        values.pop()
    return values


def _money(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _day(value: date | datetime | None) -> str | None:
    return None if value is None else value.isoformat()[:10]


def _relative(path: str | None, folder: Path) -> str | None:
    """A letter's PDF as a link relative to the page, so the folder can be moved whole."""
    if not path:
        return None
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(folder))).as_posix()


def _detail(con, night, queue: pl.DataFrame, promises: pl.DataFrame) -> dict[str, Any]:
    """Per flagged loan, what its detail panel shows (read only when a row is opened)."""
    as_of, text = night.as_of, _Strings()
    loans = queue["loan_id"].to_list()
    params = {"d": as_of, "loans": loans}
    options = _frame(
        con,
        """SELECT loan_id, option_code, eligible, rank, rationale, terms, plan_months, plan_payment,
               plan_last_payment, amount FROM hardship_options
        WHERE as_of_date = $d AND loan_id IN (SELECT unnest($loans::VARCHAR[]))
        ORDER BY loan_id, eligible DESC, rank, option_code""",
        params,
    )
    letters = _frame(
        con,
        f"""SELECT loan_id, letter_id, as_of_date, template, status, suppression_reason, pdf_path FROM letters
        WHERE as_of_date <= $d AND loan_id IN (SELECT unnest($loans::VARCHAR[]))
        QUALIFY row_number() OVER (PARTITION BY loan_id ORDER BY as_of_date DESC, letter_id) <= {LETTERS_SHOWN}
        ORDER BY loan_id, as_of_date DESC, letter_id""",
        params,
    )
    events = _frame(
        con,
        """SELECT loan_id, case_id, as_of_date, event, note FROM review_case_events
        WHERE as_of_date <= $d AND loan_id IN (SELECT unnest($loans::VARCHAR[]))
        ORDER BY loan_id, as_of_date DESC""",
        params,
    )
    made = decisions(con, as_of).filter(pl.col("loan_id").is_in(loans))
    holds = cases.active_holds(made, as_of)
    made = made.sort("made_at", "decision_id", descending=True)
    promised = {r["decision_id"]: r for r in promises.iter_rows(named=True)}
    labels, history = _history(con, as_of, loans)

    detail: dict[str, dict[str, Any]] = {}
    for row in queue.iter_rows(named=True):
        entry: dict[str, Any] = {
            "r": [text(d) for d in row["reason_details"] or []],
            "x": [_day(row["oldest_unpaid_due_date"]), _day(row["next_due_date"]),
                  _money(row["installment_amount"]), _day(row["live_contact_due_date"]),
                  _day(row["written_notice_due_date"]), _day(row["delinquency_start_date"])],
        }
        if row["phone"]:
            entry["p"] = row["phone"]
        if row["senior_reported_date"] is not None:
            entry["sn"] = [_day(row["senior_reported_date"]), row["senior_days_past_due"]]
        if row["loan_id"] in history:
            entry["h"] = history[row["loan_id"]]
        detail[row["loan_id"]] = entry
    for r in options.iter_rows(named=True):
        if r["loan_id"] in detail:
            detail[r["loan_id"]].setdefault("o", []).append(_trimmed([
                text(r["option_code"]), int(bool(r["eligible"])), r["rank"], text(r["rationale"]),
                text(r["terms"]), r["plan_months"], _money(r["plan_payment"]),
                _money(r["plan_last_payment"]), _money(r["amount"])]))
    for r in letters.iter_rows(named=True):
        detail[r["loan_id"]].setdefault("l", []).append(_trimmed([
            r["letter_id"], _day(r["as_of_date"]), text(r["template"]), r["status"],
            text(r["suppression_reason"]), _relative(r["pdf_path"], night.night_dir)]))
    for r in events.iter_rows(named=True):
        detail[r["loan_id"]].setdefault("c", []).append([_day(r["as_of_date"]), r["event"], text(r["note"]),
                                                         r["case_id"]])
    for r in holds.iter_rows(named=True):
        detail[r["loan_id"]].setdefault("hd", []).append(_trimmed(
            [r["held_by"], _day(r["held_on"]), text(r["template"]), r["letter_id"]]))
    for r in made.iter_rows(named=True):
        detail[r["loan_id"]].setdefault("k", []).append(
            [r["made_at"].isoformat(sep=" ", timespec="minutes"), r["kind"], r["made_by"],
             text(_decision_text(r, promised.get(r["decision_id"])))])
    return {"s": text.items, "m": labels, "loans": detail}


def _decision_text(decision: dict[str, Any], promise: dict[str, Any] | None) -> str | None:
    """What a decision says, in words, for the case history."""
    parts = []
    if decision["kind"] == "promise":
        parts.append(f"${decision['promise_amount']:,.2f} by {decision['promise_date']}")
        if promise is not None:
            parts.append(f"{promise['status']} (${promise['paid_toward']:,.2f} paid toward it)")
    if decision["letter_id"]:
        parts.append(f"letter {decision['letter_id']}")
    if decision["note"]:
        parts.append(decision["note"])
    return "; ".join(parts) or None


def _queue_json(queue: pl.DataFrame, call: pl.DataFrame) -> dict[str, Any]:
    """The queue rows, compact: categories as indexes into the lists sent alongside; and the
    call list, in its order, as the loan and what only the call list shows."""
    products = sorted(set(queue["product"].drop_nulls().to_list()))
    languages = sorted(set(queue["language"].drop_nulls().to_list()))
    letters = ["generated", "held", "suppressed", "none"]
    tiers, reasons, care, events = list(TIERS), list(SIGNALS), list(CARE_FLAGS), list(cases.EVENTS)

    def at(values: list[str], value: str | None) -> int | None:
        return values.index(value) if value in values else None

    rows = [
        [r["loan_id"], r["borrower_name"] or "", at(tiers, r["tier"]), _money(r["score"]), r["days_past_due"],
         r["queue_rank"], int(bool(r["in_queue"])), [at(reasons, x) for x in r["reasons"] or []],
         [at(care, x) for x in r["care"] or []], at(products, r["product"]), r["property_state"],
         at(languages, r["language"]), at(letters, r["letter_status"]), _money(r["amount_past_due"]),
         _money(r["current_balance"]), at(events, r["case_event"]), _day(r["case_opened_date"]),
         _day(r["live_contact_due_date"]), r["borrower_id"], r["letter_template"]]
        for r in queue.iter_rows(named=True)
    ]
    calls = [
        [r["loan_id"], cases.CALL_STATUSES.index(r["call_status"]), r["phone"], _day(r["last_contact_date"]),
         _day(r["delinquency_start_date"]), _day(r["written_notice_due_date"])]
        for r in call.iter_rows(named=True)
    ]
    return {"tiers": tiers, "reasons": reasons, "care": care, "products": products,
            "languages": languages, "letters": letters, "events": events, "rows": rows,
            "callStatuses": list(cases.CALL_STATUSES), "calls": calls}


def page_model(con, night, settings: Settings, queue: pl.DataFrame, call: pl.DataFrame,
               promises: pl.DataFrame, shown: pl.DataFrame) -> dict[str, Any]:
    """Everything the review page shows: the summary (rendered as HTML) and the queue and
    account details (as JSON data the page's script renders). The counts are the whole
    night's; the rows and details are those of ``shown`` (:func:`transforms.cases.on_page`)
    and the calls due among them."""
    call_shown = call.filter(pl.col("loan_id").is_in(shown["loan_id"].implode()))
    # The account details are read on a second connection while the summary is read here.
    reader = con.cursor()
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="review-detail") as pool:
            detail = pool.submit(_detail, reader, night, shown, promises)
            try:
                model = _summary(con, night, settings, queue, call, promises, shown, call_shown)
            except BaseException:
                reader.interrupt()
                raise
            model["detail"] = detail.result()
    finally:
        reader.close()
    return model


def _summary(con, night, settings: Settings, queue: pl.DataFrame, call: pl.DataFrame, promises: pl.DataFrame,
             shown: pl.DataFrame, call_shown: pl.DataFrame) -> dict[str, Any]:
    """The page's figures for the whole night, and the queue rows of ``shown``."""
    as_of = night.as_of
    previous_status = _previous(con, "loan_status", as_of)
    previous_flags = _previous(con, "risk_flags", as_of)
    tonight = _frame(con, "SELECT event FROM review_case_events WHERE as_of_date = $d", {"d": as_of})
    return {
        "as_of": as_of.isoformat(),
        "previous": _day(previous_status),
        "previous_flags": _day(previous_flags),
        "servicer": settings.servicer.name,
        "team": settings.servicer.team_name,
        "by_bucket": _by_group(con, "loan_status", "bucket", as_of, previous_status, BUCKETS),
        "by_tier": _by_group(con, "risk_flags", "tier", as_of, previous_flags, TIERS),
        "roll": _roll_rates(con, as_of),
        "letters": _letters_summary(con, as_of),
        "quarantine": _quarantine(con, as_of),
        "events": {e: int((tonight["event"] == e).sum()) for e in cases.EVENTS},
        "promises": {s: int((promises["status"] == s).sum()) for s in cases.PROMISE_STATUSES},
        "flagged": queue.height,
        "in_queue": int(queue["in_queue"].sum() or 0),
        "calls": call.height,
        "on_page": shown.height,
        "calls_on_page": call_shown.height,
        "queue": _queue_json(shown, call_shown),
    }


# --------------------------------------------------------------------------- writing


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(REVIEW_TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    # tojson escapes <, >, & and ' as \u escapes, so no text in the data can end the script
    # element it sits in; compact separators keep a 20,000-row page small.
    env.policies["json.dumps_kwargs"] = {"separators": (",", ":"), "ensure_ascii": False}
    env.filters["dollars"] = _dollars
    env.filters["cents"] = _cents
    env.filters["change"] = _change
    return env


def _dollars(value: float | Decimal | None) -> str:
    return "" if value is None else f"${value:,.0f}"


def _cents(value: float | Decimal | None) -> str:
    return "" if value is None else f"${value:,.2f}"


def _change(value: float | int | None, money: bool = False) -> str:
    """A change since the previous night, signed ("+12", "−$3,400", "±0")."""
    if value is None:
        return ""
    sign = "+" if value > 0 else "−" if value < 0 else "±"
    return sign + (_dollars(abs(value)) if money else f"{abs(value):,}")


def _asset(name: str, closing: str) -> Markup:
    """The page's script or style sheet, inlined as is (checked not to end its element)."""
    text = (REVIEW_TEMPLATES / name).read_text(encoding="utf-8")
    if closing in text.lower():
        raise LienwatchError(f"{REVIEW_TEMPLATES / name}: must not contain {closing}")
    return Markup(text)


def render_page(model: dict[str, Any]) -> str:
    """The review page: one HTML file with its data, script and styles inline."""
    template = _environment().get_template("review.html.j2")
    return template.render(**model, script=_asset("review.js", "</script"), style=_asset("review.css", "</style"))


def write_atomic(path: Path, data: bytes) -> None:
    """Owner-only, and never half-written: written under a temporary name, then renamed."""
    tmp = path.with_name(f".{path.name}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# A text starting with one of = + - @ tab or carriage return is a formula to a spreadsheet.
FORMULA_START = r"^[=+\-@\t\r]"


def _safe_text(column: pl.Expr) -> pl.Expr:
    """Text cells a spreadsheet will not run as formulas (a leading quote when needed)."""
    return pl.when(column.str.contains(FORMULA_START)).then(pl.lit("'") + column).otherwise(column)


QUEUE_EXPORT = {
    "queue_rank": "queue_rank", "in_queue": "in_queue", "loan_id": "loan_id", "borrower_id": "borrower_id",
    "borrower_name": "borrower_name", "tier": "tier", "score": "score", "days_past_due": "days_past_due",
    "amount_past_due": "amount_past_due", "current_balance": "current_balance", "reasons": "reasons",
    "care": "care", "product": "product", "property_state": "state", "language": "language",
    "letter_template": "letter_template", "letter_status": "letter_status",
    "suppression_reason": "suppression_reason", "case_id": "case_id", "case_opened_date": "case_opened_date",
    "case_event": "case_event_tonight", "live_contact_due_date": "live_contact_due_date",
    "written_notice_due_date": "written_notice_due_date", "senior_days_past_due": "senior_days_past_due",
}
CALL_EXPORT = {
    "call_status": "call_status", "live_contact_due_date": "live_contact_due_date", "queue_rank": "queue_rank",
    "loan_id": "loan_id", "borrower_id": "borrower_id", "borrower_name": "borrower_name", "phone": "phone",
    "language": "language", "tier": "tier", "days_past_due": "days_past_due",
    "amount_past_due": "amount_past_due", "delinquency_start_date": "delinquency_start_date",
    "last_contact_date": "last_contact_date", "written_notice_due_date": "written_notice_due_date",
}


def _export(frame: pl.DataFrame, columns: dict[str, str]) -> pl.DataFrame:
    out = frame.select([pl.col(k).alias(v) for k, v in columns.items()])
    lists = [n for n, t in out.schema.items() if isinstance(t, pl.List)]
    out = out.with_columns([pl.col(n).list.join("; ") for n in lists])
    texts = [n for n, t in out.schema.items() if t == pl.String]
    return out.with_columns([_safe_text(pl.col(n)).alias(n) for n in texts])


def queue_export(queue: pl.DataFrame) -> pl.DataFrame:
    """The queue as the analysts' spreadsheet: one row per flagged loan, lists joined by "; "."""
    return _export(queue, QUEUE_EXPORT)


def call_export(call: pl.DataFrame) -> pl.DataFrame:
    """The call list as the team's dialling sheet, in its order."""
    return _export(call, CALL_EXPORT)


def _csv(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_csv(buffer)
    return buffer.getvalue()
