"""The delinquency step: loan_status for the night, the month-end history, bucket spells
and roll rates."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import duckdb
import polars as pl

from lienwatch import sql, warehouse
from lienwatch.night import Night
from lienwatch.review.page import HISTORIES
from lienwatch.settings import Settings
from lienwatch.steps.flags import PATHS
from transforms import delinquency as engine

HISTORY_MONTHS = 24  # month ends kept in loan_status_month_end
MONTH_END_LEDGER = "month_end_ledger"  # net paid at the next month ends to add (temp)
MONTH_ENDS_A_PASS = 3  # month ends worked out from one read of the ledger: more hold more memory


def month_ends(first: date, last: date) -> list[date]:
    """Every month end from ``first`` to ``last`` inclusive."""
    out: list[date] = []
    year, month = first.year, first.month
    while True:
        end = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
        if end > last:
            return out
        if end >= first:
            out.append(end)
        year, month = year + month // 12, month % 12 + 1


def run(night: Night, settings: Settings) -> dict[str, Any]:
    """loan_status for the night, the month-end history, bucket spells and roll rates."""
    tolerance = settings.delinquency.shortfall_tolerance
    con = warehouse.connect(night.db)
    try:
        loans = warehouse.frame(con, "SELECT * EXCLUDE (load_id) FROM loans")
        changes = warehouse.frame(
            con, "SELECT loan_id, effective_due_date, scheduled_payment FROM payment_changes"
        )
        net_paid, net_paid_mode = net_paid_as_of(con, night.as_of)
        status = engine.loan_status(loans, changes, net_paid, night.as_of, tolerance)

        wanted = month_ends(
            night.as_of.replace(day=1) - timedelta(days=HISTORY_MONTHS * 31), night.as_of
        )
        have = set()
        if warehouse.table_exists(con, "loan_status_month_end"):
            have = {
                r[0]
                for r in con.execute(
                    "SELECT DISTINCT as_of_date FROM loan_status_month_end"
                ).fetchall()
            }
        missing = sorted(set(wanted) - have)

        # Each month end missing from the history is committed on its own, with its roll
        # rates: a transaction holds its new rows in memory until it commits (about 200 MB
        # a month end at 1M loans), and a night stopped midway leaves whole month ends,
        # which the next run keeps, and adds the rest.
        rolled = 0
        everyone = engine.as_if_active(loans)
        last_posted: pl.DataFrame | None = None  # a whole-ledger read, for month ends only
        added: pl.DataFrame | None = None  # the month end added last, as roll rates read it
        for n, month_end in enumerate(missing):
            if n % MONTH_ENDS_A_PASS == 0:  # the ledger read once for the next month ends
                upto = missing[min(n + MONTH_ENDS_A_PASS, len(missing)) - 1]
                con.execute(
                    f"CREATE OR REPLACE TEMP TABLE {MONTH_END_LEDGER} AS "
                    + sql.query("net_paid_month_ends"),
                    {"from_date": month_end, "to_date": upto},
                )
            if last_posted is None:
                last_posted = warehouse.frame(
                    con,
                    "SELECT loan_id, max(posted_date) AS posted_date FROM payments GROUP BY loan_id",
                )
            with warehouse.transaction(con):
                ledger = warehouse.frame(
                    con,
                    f"SELECT * FROM {MONTH_END_LEDGER} WHERE as_of_date = $d",
                    {"d": month_end},
                )
                history = engine.on_the_book(
                    engine.loan_status_history(everyone, changes, ledger, [month_end], tolerance),
                    loans,
                    last_posted,
                )
                del ledger
                warehouse.replace_night(con, "loan_status_month_end", history, month_end)
                for derived in (PATHS, HISTORIES):  # figures kept from the month ends
                    con.execute(f"DROP TABLE IF EXISTS {derived}")
                if history.height:  # a month end before any loan holds no rows
                    have.add(month_end)
                current = history.select(ROLL_COLUMNS)
                del history
                previous = month_end.replace(day=1) - timedelta(days=1)
                if {previous, month_end} <= have:  # roll rates need both month ends' rows
                    at_hand = pl.concat([f for f in (added, current) if f is not None])
                    _add_roll_rates(con, previous, month_end, loans, at_hand)
                    rolled += 1
                added = current

        con.execute(f"DROP TABLE IF EXISTS {MONTH_END_LEDGER}")
        with warehouse.transaction(con):
            warehouse.replace_night(con, "loan_status", status, night.as_of)
            spells_mode = _update_spells(con, status, night.as_of)
            keep_net_paid(con, net_paid, night.as_of)
    finally:
        con.close()
    buckets = status.group_by("bucket").len().sort("bucket")
    return {
        "loans_active": status.height,
        "delinquent_30_plus": int((status["days_past_due"] >= 30).sum()),
        "month_ends_added": len(missing),
        "net_paid": net_paid_mode,
        "bucket_spells": spells_mode,
        "roll_rate_months_added": rolled,
        "by_bucket": dict(zip(buckets["bucket"].to_list(), buckets["len"].to_list(), strict=True)),
    }


KEPT = "ledger_net_paid"  # each loan's net paid as of the night it was last worked out for
KEPT_AS_OF = "ledger_net_paid_as_of"  # that night, and the ledger it was worked out from


def net_paid_as_of(con: duckdb.DuckDBPyConnection, as_of: date) -> tuple[pl.DataFrame, str]:
    """Each loan's net paid as of ``as_of`` (loan_id, net_paid; a loan with none has paid
    nothing), and how it was worked out: ``"since <night>"`` from the net paid kept for an
    earlier (or the same) night and the ledger's moves after it (``net_paid_since.sql``),
    or ``"whole ledger"`` (``net_paid.sql``).

    The kept figures are used only when the ledger they were worked out from is still all
    there (its rows up to the load id kept, in number) and no row loaded since was posted
    on or before their night (a late-arriving row); otherwise, or for a night before the
    kept one, the whole ledger is summed. The two ways give the same figures.
    """
    kept = (
        con.execute(
            f"SELECT as_of_date, through_load_id, payment_rows FROM {KEPT_AS_OF}"
        ).fetchall()
        if warehouse.table_exists(con, KEPT_AS_OF)
        else []
    )
    if len(kept) == 1:
        night, through, rows = kept[0]
        still, late = con.execute(
            """SELECT count(*) FILTER (WHERE load_id <= $through),
                      count(*) FILTER (WHERE load_id > $through AND posted_date <= $night)
            FROM payments""",
            {"through": through, "night": night},
        ).fetchall()[0]
        if night <= as_of and still == rows and late == 0:
            since = warehouse.frame(
                con,
                f"""SELECT loan_id, CAST(coalesce(k.net_paid, 0) + coalesce(d.change, 0)
                                         AS DECIMAL(18, 2)) AS net_paid
                FROM {KEPT} AS k FULL JOIN ({sql.query("net_paid_since")}) AS d USING (loan_id)""",
                {"kept": night, "as_of": as_of},
            )
            return since, f"since {night.isoformat()}"
    return warehouse.frame(con, sql.query("net_paid"), {"as_of": as_of}), "whole ledger"


def keep_net_paid(con: duckdb.DuckDBPyConnection, net_paid: pl.DataFrame, as_of: date) -> None:
    """Keep ``net_paid`` (as of ``as_of``, from the ledger as it is now) for the next night
    (:func:`net_paid_as_of`); inside the night's transaction."""
    ledger = con.execute("SELECT max(load_id), count(*) FROM payments").fetchall()[0]
    warehouse.replace_all(con, KEPT, net_paid.select("loan_id", "net_paid"))
    warehouse.replace_all(
        con,
        KEPT_AS_OF,
        pl.DataFrame(
            {
                "as_of_date": [as_of],
                "through_load_id": [ledger[0] or 0],
                "payment_rows": [ledger[1]],
            },
            schema={"as_of_date": pl.Date, "through_load_id": pl.Int64, "payment_rows": pl.Int64},
        ),
    )


ROLL_COLUMNS = ("as_of_date", "loan_id", "bucket", "current_balance")  # what roll rates read


def _add_roll_rates(
    con: duckdb.DuckDBPyConnection,
    previous: date,
    month_end: date,
    loans: pl.DataFrame,
    at_hand: pl.DataFrame,
) -> None:
    """The roll rates into ``month_end`` from ``previous``, the month end before it, from
    the month-end rows the night holds (``at_hand``, :data:`ROLL_COLUMNS`), or from the
    warehouse when they lack one of the two month ends."""
    month_history = at_hand
    if not {previous, month_end} <= set(at_hand["as_of_date"].unique().to_list()):
        month_history = warehouse.frame(
            con,
            f"SELECT {', '.join(ROLL_COLUMNS)} FROM loan_status_month_end "
            "WHERE as_of_date IN ($a, $b)",
            {"a": previous, "b": month_end},
        )
    rates = engine.roll_rates(month_history, month_end, loans)
    warehouse.replace_night(con, "roll_rates", rates, month_end, column="month_end_date")


NO_MONTH_END = date(1900, 1, 1)
SPELL_PART_ROWS = 4_000_000  # month-end statuses taken at a time when the spells are rebuilt


def _update_spells(con: duckdb.DuckDBPyConnection, status: pl.DataFrame, as_of: date) -> str:
    """Bucket spells and tonight's delinquency starts, over the month ends plus tonight.

    The spells of the month-end history change only when a month end is added (or a
    night of another month is replayed): then they are rebuilt ("rebuilt"). On other
    nights the previous night's tail is undone and tonight's applied ("extended"), so a
    steady night touches only the loans whose bucket moved. Same result either way.
    """
    base = (
        con.execute(
            "SELECT max(as_of_date) FROM loan_status_month_end WHERE as_of_date < $d", {"d": as_of}
        ).fetchall()[0][0]
        or NO_MONTH_END
    )
    state = (
        con.execute("SELECT base_date FROM spell_state").fetchall()
        if warehouse.table_exists(con, "spell_state")
        else []
    )
    if state != [(base,)] or not warehouse.table_exists(con, "bucket_transitions"):
        # Rebuilt a range of loan ids at a time (a loan's spells are its own), so memory
        # holds a part of the history, not all of it; the night writes each month end in
        # loan_id order, so a range reads little more than its own row groups.
        d = {"d": as_of}
        dates = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT as_of_date FROM loan_status_month_end WHERE as_of_date < $d", d
            ).fetchall()
        ]
        rows = con.execute(
            "SELECT count(*) FROM loan_status_month_end WHERE as_of_date < $d", d
        ).fetchall()[0][0]
        parts = max(1, -(-rows // SPELL_PART_ROWS))
        bounds = (
            con.execute(
                "SELECT quantile_disc(loan_id, $q) FROM loan_status_month_end WHERE as_of_date = $last",
                {"q": [i / parts for i in range(1, parts)], "last": max(dates)},
            ).fetchall()[0][0]
            if parts > 1
            else []
        )
        for part, (low, high) in enumerate(zip([None, *bounds], [*bounds, None], strict=True)):
            observed = warehouse.frame(
                con,
                """SELECT as_of_date, loan_id, bucket, days_past_due, oldest_unpaid_due_date
                FROM loan_status_month_end WHERE as_of_date < $d
                  AND ($low IS NULL OR loan_id >= $low) AND ($high IS NULL OR loan_id < $high)""",
                {**d, "low": low, "high": high},
            )
            write = (
                warehouse.replace_all if part == 0 else warehouse.append
            )  # the first part replaces
            write(con, "bucket_transitions", engine.bucket_transitions(observed, dates))
            write(
                con, "delinquency_runs_month_end", engine.current_delinquency_start(observed, dates)
            )
            del observed
        con.execute(
            "CREATE OR REPLACE TABLE spell_state AS SELECT $b::DATE AS base_date", {"b": base}
        )
        mode = "rebuilt"
    else:
        con.execute("DELETE FROM bucket_transitions WHERE entered_date > $b", {"b": base})
        con.execute(
            "UPDATE bucket_transitions SET left_date = NULL WHERE left_date > $b", {"b": base}
        )
        mode = "extended"
    open_spells = warehouse.frame(
        con, "SELECT loan_id, bucket, entered_date FROM bucket_transitions WHERE left_date IS NULL"
    )
    closing, opening = engine.spell_tail(open_spells, status.select("loan_id", "bucket"), as_of)
    con.register("_closing", closing)
    con.register("_opening", opening)
    try:
        con.execute(
            """UPDATE bucket_transitions SET left_date = $d
                       WHERE left_date IS NULL AND loan_id IN (SELECT loan_id FROM _closing)""",
            {"d": as_of},
        )
        con.execute("INSERT INTO bucket_transitions BY NAME SELECT * FROM _opening")
    finally:
        con.unregister("_closing")
        con.unregister("_opening")
    runs = warehouse.frame(con, "SELECT * FROM delinquency_runs_month_end")
    starts = engine.delinquency_start_tail(
        runs, status.select("loan_id", "days_past_due", "oldest_unpaid_due_date"), as_of
    )
    warehouse.replace_night(con, "delinquency_starts", starts, as_of)
    return mode
