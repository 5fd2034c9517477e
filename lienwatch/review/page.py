"""The night's queue and everything the review page shows, read from the warehouse.

:func:`queue_frame` is the night's flagged loans in queue order with what the page, the
call list and the exports show; :func:`page_model` is the page's summary figures and its
queue and account details (rendered by :mod:`lienwatch.review.render`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from lienwatch import warehouse
from lienwatch.night import Night
from lienwatch.review.decisions import HELD_PREFIX, decisions
from lienwatch.settings import Settings
from transforms import cases
from transforms.contract import BUCKETS, TIERS
from transforms.letters import MAILING_HOLD
from transforms.review import (
    Strings,
    day,
    decision_text,
    direction,
    money,
    queue_json,
    reason_kind,
    trimmed,
)

HISTORY_MONTHS = 24  # month ends in an account's payment history
LETTERS_SHOWN = 6  # most recent letters listed for an account
QUARANTINE_SHOWN = 25  # (feed, error) lines listed; the rest are counted


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
SELECT f.queue_rank, f.in_queue, f.queue, f.risk, f.risk_model, f.expected_loss, f.loan_id, f.borrower_id,
       trim(concat_ws(' ', b.first_name, b.last_name)) AS borrower_name, b.phone,
       b.preferred_language AS language, f.tier, f.score, f.days_past_due, f.reasons, f.reason_details,
       f.care, l.product, l.property_state, l.current_balance, s.amount_past_due, s.installment_amount,
       s.oldest_unpaid_due_date, s.next_due_date, s.live_contact_due_date, s.written_notice_due_date,
       coalesce(st.delinquency_start_date, s.oldest_unpaid_due_date) AS delinquency_start_date,
       sn.reported_date AS senior_reported_date, sn.senior_days_past_due,
       lt.letter_id, lt.template AS letter_template,
       CASE WHEN lt.letter_id IS NULL THEN 'none'
            WHEN starts_with(lt.suppression_reason, $held) OR starts_with(lt.suppression_reason, $mailing_held)
            THEN 'held' ELSE lt.status END AS letter_status,
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
    # held: by an analyst, or for a name or address the review team must look at first
    params = {"as_of": as_of, "held": HELD_PREFIX, "mailing_held": MAILING_HOLD}
    return warehouse.frame(con, QUEUE_SQL, params).sort("queue_rank")


def _previous(con: duckdb.DuckDBPyConnection, table: str, as_of: date) -> date | None:
    return con.execute(
        f"SELECT max(as_of_date) FROM {table} WHERE as_of_date < $d", {"d": as_of}
    ).fetchall()[0][0]


def _by_group(
    con: duckdb.DuckDBPyConnection,
    table: str,
    column: str,
    as_of: date,
    previous: date | None,
    order: tuple[str, ...],
) -> list[dict]:
    """Loans and balance per ``column`` of ``table`` tonight and on the previous night."""
    found = warehouse.frame(
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
        rows.append(
            {
                "group": group,
                "loans": now["loans"],
                "balance": float(now["balance"]),
                "loans_change": None if then is None else now["loans"] - then["loans"],
                "balance_change": None if then is None else float(now["balance"] - then["balance"]),
                "previous_loans": None if then is None else then["loans"],
            }
        )
    return rows


def _roll_rates(con: duckdb.DuckDBPyConnection, as_of: date) -> dict[str, Any]:
    """The latest month's roll-rate matrix on or before the night: share of loans by
    from-bucket (rows) and to-bucket (columns), with counts and balances."""
    if not warehouse.table_exists(con, "roll_rates"):
        return {"month": None, "rows": [], "columns": []}
    month = con.execute(
        "SELECT max(month_end_date) FROM roll_rates WHERE month_end_date <= $d", {"d": as_of}
    ).fetchall()[0][0]
    found = warehouse.frame(con, "SELECT * FROM roll_rates WHERE month_end_date = $m", {"m": month})
    cells = {(r["from_bucket"], r["to_bucket"]): r for r in found.iter_rows(named=True)}
    origins = [b for b in ("new", *BUCKETS) if any(k[0] == b for k in cells)]
    targets = [b for b in (*BUCKETS, "exited") if any(k[1] == b for k in cells)]
    rows = []
    for origin in origins:
        line = []
        for target in targets:
            cell = cells.get((origin, target))
            line.append(
                None
                if cell is None
                else {
                    "share": cell["share"],
                    "loans": cell["loan_count"],
                    "balance": float(cell["balance"] or 0),
                    "move": direction(origin, target),
                }
            )
        rows.append({"from": origin, "cells": line, "loans": sum(c["loans"] for c in line if c)})
    return {"month": month, "rows": rows, "columns": targets}


def _letters_summary(con: duckdb.DuckDBPyConnection, as_of: date) -> dict[str, Any]:
    """The night's letters: generated by template, suppressed by kind of reason."""
    found = warehouse.frame(
        con,
        "SELECT template, status, suppression_reason FROM letters WHERE as_of_date = $d",
        {"d": as_of},
    )
    generated = (
        found.filter(pl.col("status") == "generated").group_by("template").len().sort("template")
    )
    reasons = found.filter(pl.col("status") == "suppressed")["suppression_reason"].fill_null("")
    # Each distinct reason's kind once (hundreds of thousands of letters, few reasons).
    kinds = reasons.unique()
    suppressed = (
        reasons.replace_strict(kinds, [reason_kind(r) for r in kinds], return_dtype=pl.String)
        .alias("why")
        .to_frame()
        .group_by("why")
        .len()
        .sort(["len", "why"], descending=[True, False])
    )
    return {
        "generated": int((found["status"] == "generated").sum()),
        "suppressed": int((found["status"] == "suppressed").sum()),
        "by_template": generated.rows(),
        "by_reason": suppressed.rows(),
    }


def _quarantine(con: duckdb.DuckDBPyConnection, as_of: date) -> dict[str, Any]:
    """Rows quarantined by the night's loads, by feed and error (the most frequent first)."""
    found = warehouse.frame(
        con,
        """SELECT q.feed, q.error, count(*) AS rows FROM quarantine AS q
        JOIN ingested_files AS f USING (load_id) WHERE f.as_of_date = $d
        GROUP BY ALL ORDER BY rows DESC, q.feed, q.error""",
        {"d": as_of},
    )
    return {
        "total": int(found["rows"].sum() or 0),
        "lines": found.head(QUARANTINE_SHOWN).rows(),
        "more": max(found.height - QUARANTINE_SHOWN, 0),
    }


def history_month_ends(con: duckdb.DuckDBPyConnection, as_of: date) -> list[date]:
    """The month ends an account's payment history shows (and the one before the first)."""
    return [
        r[0]
        for r in con.execute(
            """SELECT DISTINCT as_of_date FROM loan_status_month_end WHERE as_of_date < $d
        ORDER BY as_of_date DESC LIMIT $n""",
            {"d": as_of, "n": HISTORY_MONTHS + 1},
        ).fetchall()
    ]


Histories = tuple[list[str], pl.DataFrame]  # :func:`payment_histories`' labels and frame


def payment_history(
    histories: Histories, loans: list[str]
) -> tuple[list[str], dict[str, list[list]]]:
    """Each of ``loans``' last months out of ``histories`` (drawn for them or for more
    loans): due and paid in the month (whole dollars) and days past due, at each of the
    last month ends and tonight (labels, arrays per loan)."""
    labels, full = histories
    found = full.filter(pl.col("loan_id").is_in(pl.Series(loans, dtype=pl.String).implode()))
    return labels, {r[0]: [r[1], r[2], r[3]] for r in found.iter_rows()}


HISTORIES = "month_end_points"  # each loan's month-end figures the payment histories show


def kept_histories(con: duckdb.DuckDBPyConnection, months: list[date]) -> str:
    """The table holding each loan's figures at ``months`` (:func:`history_month_ends`),
    one row per loan (``points``: a list of as_of_date, total_due, net_paid and
    days_past_due), computed by the first night that needs it.

    The nights of a month show the same month ends, so they share it: the table is stamped
    with the month ends and the history's row count, and the delinquency step drops it
    whenever it adds month-end rows. Looking up the queue's loans in it reads one row a
    loan rather than every month end's.
    """
    rows = con.execute("SELECT count(*) FROM loan_status_month_end").fetchall()[0][0]
    warehouse.kept_table(
        con,
        HISTORIES,
        "points_stamp",
        f"{','.join(str(m) for m in months)}:{rows}",
        f"""SELECT loan_id, list({{'as_of_date': as_of_date, 'total_due': total_due,
                'net_paid': net_paid, 'days_past_due': days_past_due}} ORDER BY as_of_date) AS points
        FROM ({_MONTH_END_FIGURES}) GROUP BY loan_id""",
        {"months": months},
    )
    return HISTORIES


_MONTH_END_FIGURES = """SELECT as_of_date, loan_id, total_due, net_paid, days_past_due
    FROM loan_status_month_end WHERE as_of_date IN (SELECT unnest($months::DATE[]))"""


def payment_histories(
    con: duckdb.DuckDBPyConnection, as_of: date, loans: list[str], *, kept: bool = False
) -> Histories:
    """:func:`payment_history` as a frame, one row per loan: loan_id, due, paid,
    days_past_due (lists, one value per label).

    With ``kept`` (a connection that may write) the month ends' figures come from
    :func:`kept_histories`, building it if the month ends have changed."""
    months = history_month_ends(con, as_of)
    month_ends = (
        f"""SELECT p.as_of_date, loan_id, p.total_due, p.net_paid, p.days_past_due
        FROM (SELECT loan_id, unnest(points) AS p FROM {kept_histories(con, months)}
              WHERE loan_id IN (SELECT loan_id FROM wanted))"""
        if kept
        else f"SELECT * FROM ({_MONTH_END_FIGURES}) WHERE loan_id IN (SELECT loan_id FROM wanted)"
    )
    found = warehouse.frame(
        con,
        f"""WITH wanted AS (SELECT unnest($loans::VARCHAR[]) AS loan_id)
        {month_ends}
        UNION ALL
        SELECT as_of_date, loan_id, total_due, net_paid, days_past_due FROM loan_status
        WHERE as_of_date = $d AND loan_id IN (SELECT loan_id FROM wanted)""",
        {"d": as_of, "loans": loans} | ({} if kept else {"months": months}),
    )
    points = [
        *sorted(months)[1:],
        as_of,
    ]  # the oldest month end is only the base of the first month
    grid = pl.DataFrame({"as_of_date": points}, schema={"as_of_date": pl.Date})
    step = (
        found.sort("loan_id", "as_of_date")
        .with_columns(
            (pl.col("total_due") - pl.col("total_due").shift(1).over("loan_id"))
            .fill_null(pl.col("total_due"))
            .alias("due"),
            (pl.col("net_paid") - pl.col("net_paid").shift(1).over("loan_id"))
            .fill_null(pl.col("net_paid"))
            .alias("paid"),
        )
        .filter(pl.col("as_of_date").is_in(points))
    )
    found_loans = step.select("loan_id").unique()
    full = (
        found_loans.join(grid, how="cross")
        .join(step, on=["loan_id", "as_of_date"], how="left")
        .sort("loan_id", "as_of_date")
        .group_by("loan_id", maintain_order=True)
        .agg(
            pl.col("due").cast(pl.Float64).round(0).cast(pl.Int64),
            pl.col("paid").cast(pl.Float64).round(0).cast(pl.Int64),
            pl.col("days_past_due"),
        )
    )
    labels = [d.isoformat()[:7] for d in points[:-1]] + [as_of.isoformat()]
    return labels, full


def _relative(path: str | None, folder: Path) -> str | None:
    """A letter's PDF as a link relative to the page, so the folder can be moved whole."""
    if not path:
        return None
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(folder))).as_posix()


def _detail(
    con: duckdb.DuckDBPyConnection,
    night: Night,
    queue: pl.DataFrame,
    promises: pl.DataFrame,
    histories: Callable[[], Histories] | None,
) -> dict[str, Any]:
    """Per flagged loan, what its detail panel shows (read only when a row is opened); the
    payment histories out of ``histories()`` when given (drawn for these loans or more)."""
    as_of, text = night.as_of, Strings()
    loans = queue["loan_id"].to_list()
    params = {"d": as_of, "loans": loans}
    options = warehouse.frame(
        con,
        """SELECT loan_id, option_code, eligible, rank, rationale, terms, plan_months, plan_payment,
               plan_last_payment, amount FROM hardship_options
        WHERE as_of_date = $d AND loan_id IN (SELECT unnest($loans::VARCHAR[]))
        ORDER BY loan_id, eligible DESC, rank, option_code""",
        params,
    )
    letters = warehouse.frame(
        con,
        f"""SELECT loan_id, letter_id, as_of_date, template, status, suppression_reason, pdf_path FROM letters
        WHERE as_of_date <= $d AND loan_id IN (SELECT unnest($loans::VARCHAR[]))
        QUALIFY row_number() OVER (PARTITION BY loan_id ORDER BY as_of_date DESC, letter_id) <= {LETTERS_SHOWN}
        ORDER BY loan_id, as_of_date DESC, letter_id""",
        params,
    )
    events = warehouse.frame(
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
    labels, history = payment_history(
        histories() if histories else payment_histories(con, as_of, loans), loans
    )

    detail: dict[str, dict[str, Any]] = {}
    for row in queue.iter_rows(named=True):
        entry: dict[str, Any] = {
            "r": [text(d) for d in row["reason_details"] or []],
            "x": [
                day(row["oldest_unpaid_due_date"]),
                day(row["next_due_date"]),
                money(row["installment_amount"]),
                day(row["live_contact_due_date"]),
                day(row["written_notice_due_date"]),
                day(row["delinquency_start_date"]),
            ],
        }
        if row["phone"]:
            entry["p"] = row["phone"]
        if row["senior_reported_date"] is not None:
            entry["sn"] = [day(row["senior_reported_date"]), row["senior_days_past_due"]]
        if row["loan_id"] in history:
            entry["h"] = history[row["loan_id"]]
        detail[row["loan_id"]] = entry
    for r in options.iter_rows(named=True):
        if r["loan_id"] in detail:
            detail[r["loan_id"]].setdefault("o", []).append(
                trimmed(
                    [
                        text(r["option_code"]),
                        int(bool(r["eligible"])),
                        r["rank"],
                        text(r["rationale"]),
                        text(r["terms"]),
                        r["plan_months"],
                        money(r["plan_payment"]),
                        money(r["plan_last_payment"]),
                        money(r["amount"]),
                    ]
                )
            )
    for r in letters.iter_rows(named=True):
        detail[r["loan_id"]].setdefault("l", []).append(
            trimmed(
                [
                    r["letter_id"],
                    day(r["as_of_date"]),
                    text(r["template"]),
                    r["status"],
                    text(r["suppression_reason"]),
                    _relative(r["pdf_path"], night.night_dir),
                ]
            )
        )
    for r in events.iter_rows(named=True):
        detail[r["loan_id"]].setdefault("c", []).append(
            [day(r["as_of_date"]), r["event"], text(r["note"]), r["case_id"]]
        )
    for r in holds.iter_rows(named=True):
        detail[r["loan_id"]].setdefault("hd", []).append(
            trimmed([r["held_by"], day(r["held_on"]), text(r["template"]), r["letter_id"]])
        )
    for r in made.iter_rows(named=True):
        detail[r["loan_id"]].setdefault("k", []).append(
            [
                r["made_at"].isoformat(sep=" ", timespec="minutes"),
                r["kind"],
                r["made_by"],
                text(decision_text(r, promised.get(r["decision_id"]))),
            ]
        )
    return {"s": text.items, "m": labels, "loans": detail}


def page_model(
    con: duckdb.DuckDBPyConnection,
    night: Night,
    settings: Settings,
    queue: pl.DataFrame,
    call: pl.DataFrame,
    promises: pl.DataFrame,
    shown: pl.DataFrame,
    histories: Callable[[], Histories] | None = None,
) -> dict[str, Any]:
    """Everything the review page shows: the summary (rendered as HTML) and the queue and
    account details (as JSON data the page's script renders). The counts are the whole
    night's; the rows and details are those of ``shown`` (:func:`transforms.cases.on_page`)
    and the calls due among them. ``histories()`` gives the payment histories of at least
    the loans shown, when they are drawn elsewhere already."""
    call_shown = call.filter(pl.col("loan_id").is_in(shown["loan_id"].implode()))
    # The account details are read on a second connection while the summary is read here.
    reader = con.cursor()
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="review-detail") as pool:
            detail = pool.submit(_detail, reader, night, shown, promises, histories)
            try:
                model = _summary(con, night, settings, queue, call, promises, shown, call_shown)
            except BaseException:
                reader.interrupt()
                raise
            model["detail"] = detail.result()
    finally:
        reader.close()
    return model


def _summary(
    con: duckdb.DuckDBPyConnection,
    night: Night,
    settings: Settings,
    queue: pl.DataFrame,
    call: pl.DataFrame,
    promises: pl.DataFrame,
    shown: pl.DataFrame,
    call_shown: pl.DataFrame,
) -> dict[str, Any]:
    """The page's figures for the whole night, and the queue rows of ``shown``."""
    as_of = night.as_of
    previous_status = _previous(con, "loan_status", as_of)
    previous_flags = _previous(con, "risk_flags", as_of)
    tonight = warehouse.frame(
        con, "SELECT event FROM review_case_events WHERE as_of_date = $d", {"d": as_of}
    )
    return {
        "as_of": as_of.isoformat(),
        "previous": day(previous_status),
        "previous_flags": day(previous_flags),
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
        "default_list": int((queue["queue"] == "default").sum()),
        "cut": int(((queue["queue"] != "default") & ~queue["in_queue"].fill_null(False)).sum()),
        "risk_model": (queue["risk_model"].drop_nulls().first() if queue.height else None)
        or "rules",
        "calls": call.height,
        "on_page": shown.height,
        "calls_on_page": call_shown.height,
        "queue": queue_json(shown, call_shown),
    }
