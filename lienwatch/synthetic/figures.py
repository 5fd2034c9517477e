"""A generated book's headline figures, measured on a warehouse a night has filled.

Most figures come from the tables the night writes (``loan_status``,
``loan_status_month_end``). Two must follow loans after they leave the book, which the
month-end history cannot: it is built from the current loan master, so a loan charged
off during the window is in no month end at all. For those (reaching 90+ days past due
within 12 months; the count of second liens that reached 90+), the delinquency engine
is run over the ledger for every loan as if charged-off and foreclosed loans were still
active: their days past due as the ledger has them. docs/portfolio.md sets the figures
of the bundled sample beside published ranges; tests/test_generate.py checks them on a
small generated book.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import duckdb
import polars as pl

from lienwatch import sql, warehouse
from transforms import delinquency as engine
from transforms.contract import DEFAULT_DAYS

FOLLOW_UP_MONTHS = 12  # reaching 90+ within a year: the end-of-draw comparison
GRACE_DAYS = 15
CHARGE_OFF_DAYS = 180
DAY_SLICE = 62  # days evaluated at a time when following loans day by day


@dataclass(frozen=True)
class Figure:
    """One measured figure: a share or a ratio, and the count of loans it is over."""

    key: str
    label: str
    value: float | None
    over: int

    def text(self) -> str:
        if self.value is None:
            return "n/a"
        if self.key.endswith("_count"):
            return f"{self.value:.0f}"
        if self.key.endswith("_ratio"):
            return f"{self.value:.1f}x"
        return f"{self.value * 100:.2f} %"


def measure(con: duckdb.DuckDBPyConnection, as_of: date) -> dict[str, Figure]:
    """Every headline figure of the book in ``con`` at the night ``as_of``."""
    found = [
        *_night_shares(con, as_of),
        *_roll_rates(con),
    ]
    history = _ledger_history(con)
    found += _end_of_draw(con, history)
    found += _reached_default(con, history)
    found.append(_charge_off_rate(history))
    found.append(_grace_share(con, as_of))
    return {f.key: f for f in found}


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# --------------------------------------------------------------------------- the night


def _night_shares(con: duckdb.DuckDBPyConnection, as_of: date) -> list[Figure]:
    """Active loans 30+ and 90+ days past due on the night, by lien and product."""
    rows = con.execute(
        """SELECT CASE WHEN l.lien_position = 1 THEN 'first' ELSE l.product END AS kind,
                  count(*), count(*) FILTER (WHERE s.days_past_due >= 30),
                  count(*) FILTER (WHERE s.days_past_due >= 90)
           FROM loan_status AS s JOIN loans AS l USING (loan_id)
           WHERE s.as_of_date = $d GROUP BY ALL""",
        {"d": as_of},
    ).fetchall()
    by_kind = {kind: (n, late, defaulted) for kind, n, late, defaulted in rows}
    names = {"heloc": "HELOCs", "closed_end": "closed-end seconds", "first": "first liens"}
    found = []
    for kind, name in names.items():
        n, late, defaulted = by_kind.get(kind, (0, 0, 0))
        found.append(Figure(f"{kind}_30", f"active {name} 30+ days past due", _share(late, n), n))
        if kind != "first":
            found.append(
                Figure(f"{kind}_90", f"active {name} 90+ days past due", _share(defaulted, n), n)
            )
    n = sum(by_kind.get(k, (0, 0, 0))[0] for k in ("heloc", "closed_end"))
    defaulted = sum(by_kind.get(k, (0, 0, 0))[2] for k in ("heloc", "closed_end"))
    found.append(Figure("seconds_90", "active second liens 90+", _share(defaulted, n), n))
    return found


# --------------------------------------------------------------------------- roll rates


ROLLS = (
    ("roll_current_30", "current", "30-59", "roll current -> 30-59 (monthly)"),
    ("roll_30_60", "30-59", "60-89", "roll 30-59 -> 60-89"),
    ("roll_60_90", "60-89", "90-119", "roll 60-89 -> 90-119"),
    ("cure_30", "30-59", "current", "cure 30-59 -> current"),
)


def _roll_rates(con: duckdb.DuckDBPyConnection) -> list[Figure]:
    """Second liens' bucket moves between consecutive month ends, pooled over the
    history: of the loans in a bucket at a month end, the share in the other bucket at
    the next (a loan that left the book counts in the first, as in ``roll_rates``)."""
    moves = warehouse.frame(
        con,
        """WITH m AS (
               SELECT as_of_date, loan_id, bucket FROM loan_status_month_end
               WHERE lien_position = 2
           )
           SELECT a.bucket AS from_bucket, b.bucket AS to_bucket, count(*) AS loans
           FROM m AS a
           LEFT JOIN m AS b
             ON b.loan_id = a.loan_id
            AND b.as_of_date = last_day(a.as_of_date + INTERVAL 1 DAY)
           WHERE a.as_of_date < (SELECT max(as_of_date) FROM m)
           GROUP BY ALL""",
    )
    found = []
    for key, origin, destination, label in ROLLS:
        out_of = moves.filter(pl.col("from_bucket") == origin)
        into = out_of.filter(pl.col("to_bucket") == destination)["loans"].sum()
        whole = int(out_of["loans"].sum())
        found.append(Figure(key, label, _share(int(into), whole), whole))
    return found


# --------------------------------------------------------------------------- the ledger's history


def _ledger_history(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Days past due at each month end of the history for every loan that was active,
    charged off or foreclosed: what the ledger says, whether or not it is still in the
    book. Columns: as_of_date, loan_id, lien_position, days_past_due."""
    month_ends = [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT as_of_date FROM loan_status_month_end ORDER BY 1"
        ).fetchall()
    ]
    loans = warehouse.frame(con, "SELECT * EXCLUDE (load_id) FROM loans").with_columns(
        pl.col("status").replace({"charged_off": "active", "foreclosure": "active"})
    )
    changes = warehouse.frame(
        con, "SELECT loan_id, effective_due_date, scheduled_payment FROM payment_changes"
    )
    ledger = warehouse.frame(
        con,
        sql.query("net_paid_month_ends"),
        {"from_date": month_ends[0], "to_date": month_ends[-1]},
    )
    history = engine.loan_status_history(loans, changes, ledger, month_ends, Decimal("0"))
    return history.select("as_of_date", "loan_id", "lien_position", "days_past_due")


def _went_bad(history: pl.DataFrame, starts: pl.DataFrame, months: int) -> pl.DataFrame:
    """For each (loan_id, base_date) of ``starts`` whose loan was below 90 days past due
    at base_date: bad, whether it reached 90 at a month end of the following ``months``
    months."""
    days = history.select("loan_id", "as_of_date", "days_past_due")
    base = starts.join(
        days.rename({"as_of_date": "base_date"}), on=["loan_id", "base_date"], how="inner"
    ).filter(pl.col("days_past_due") < DEFAULT_DAYS)
    follow_up_end = pl.col("base_date").dt.offset_by(f"{months}mo").dt.month_end()
    later = (
        base.select("loan_id", "base_date", follow_up_end.alias("_until"))
        .join(days, on="loan_id")
        .filter(
            (pl.col("as_of_date") > pl.col("base_date"))
            & (pl.col("as_of_date") <= pl.col("_until"))
        )
        .group_by("loan_id", "base_date")
        .agg((pl.col("days_past_due").max() >= DEFAULT_DAYS).alias("bad"))
    )
    return (
        base.select("loan_id", "base_date")
        .join(later, on=["loan_id", "base_date"], how="left")
        .with_columns(pl.col("bad").fill_null(False))
    )


def _end_of_draw(con: duckdb.DuckDBPyConnection, history: pl.DataFrame) -> list[Figure]:
    """HELOCs reaching 90+ days past due within 12 months: from the month end before
    their first amortizing installment (end of draw inside the history, with 12 months
    after it), against HELOCs still drawing throughout, from the month end 12 months
    before the last."""
    month_ends = sorted(set(history["as_of_date"].to_list()))
    base_last = _month_end_after(month_ends[-1], -FOLLOW_UP_MONTHS)
    helocs = warehouse.frame(
        con,
        """SELECT l.loan_id, l.draw_period_end, c.effective_due_date
           FROM loans AS l
           LEFT JOIN payment_changes AS c
             ON c.loan_id = l.loan_id AND c.effective_due_date = l.draw_period_end
           WHERE l.product = 'heloc' AND l.lien_position = 2""",
    )
    before_change = pl.col("effective_due_date").dt.month_start() - pl.duration(days=1)
    draw_ends = helocs.filter(pl.col("effective_due_date").is_not_null()).select(
        "loan_id", before_change.alias("base_date")
    )
    draw_ends = draw_ends.filter(pl.col("base_date").is_between(month_ends[0], base_last))
    drawing = helocs.filter(pl.col("draw_period_end") > month_ends[-1]).select(
        "loan_id", pl.lit(base_last).alias("base_date")
    )
    found = []
    rates = []
    for key, label, starts in (
        ("eod_90", "HELOCs 90+ within 12 months of the end of draw", draw_ends),
        ("drawing_90", "HELOCs 90+ within 12 months, still drawing", drawing),
    ):
        outcome = _went_bad(history, starts, FOLLOW_UP_MONTHS)
        rate = _share(int(outcome["bad"].sum()), outcome.height)
        rates.append(rate)
        found.append(Figure(key, label, rate, outcome.height))
    eod, still = rates
    ratio = eod / still if eod is not None and still else None
    found.append(Figure("eod_ratio", "end of draw against still drawing", ratio, 0))
    return found


def _reached_default(con: duckdb.DuckDBPyConnection, history: pl.DataFrame) -> list[Figure]:
    """Second liens that crossed into 90+ days past due inside the history: as the
    ledger has it (every loan), and as the month-end history shows it (the loans still
    active at the end), which is what a model trained on the warehouse learns from."""
    table = warehouse.frame(
        con,
        "SELECT as_of_date, loan_id, lien_position, days_past_due FROM loan_status_month_end",
    )
    return [
        Figure(
            "ledger_reaching_90_count",
            "second liens reaching 90+ in the history (the ledger, every loan)",
            float(_crossed(history)),
            0,
        ),
        Figure(
            "month_end_reaching_90_count",
            "second liens reaching 90+ in loan_status_month_end (still active)",
            float(_crossed(table)),
            0,
        ),
    ]


def _crossed(history: pl.DataFrame, days: int = DEFAULT_DAYS) -> int:
    """Second liens below ``days`` days past due at their first month end and at
    ``days`` or more later."""
    per_loan = (
        history.filter(pl.col("lien_position") == 2)
        .sort("as_of_date")
        .group_by("loan_id")
        .agg(pl.col("days_past_due").first().alias("first"), pl.col("days_past_due").max())
    )
    crossed = (pl.col("first") < days) & (pl.col("days_past_due") >= days)
    return per_loan.filter(crossed).height


def _charge_off_rate(history: pl.DataFrame) -> Figure:
    """Second liens reaching 180 days past due (the charge-off point) a year, as a share
    of the second liens active at a month end on average."""
    seconds = history.filter(pl.col("lien_position") == 2)
    active = seconds.filter(pl.col("days_past_due") < CHARGE_OFF_DAYS)
    counts = active.group_by("as_of_date").len()["len"].to_list()
    years = (len(counts) - 1) / 12
    average = sum(counts) / len(counts) if counts else 0.0
    rate = _crossed(seconds, CHARGE_OFF_DAYS) / average / years if average and years else None
    return Figure("charge_off_rate", "second liens reaching 180 days a year", rate, round(average))


# --------------------------------------------------------------------------- day by day


def _grace_share(con: duckdb.DuckDBPyConnection, as_of: date) -> Figure:
    """Of the second liens active on the night that were ever past due on a day of the
    history (from its first month end), the share never more than GRACE_DAYS days past
    due: late payers who pay inside the grace period."""
    first_day = con.execute("SELECT min(as_of_date) FROM loan_status_month_end").fetchall()[0][0]
    loans = warehouse.frame(
        con,
        """SELECT l.* EXCLUDE (load_id) FROM loans AS l
           JOIN loan_status AS s ON s.loan_id = l.loan_id AND s.as_of_date = $d
           WHERE l.lien_position = 2""",
        {"d": as_of},
    )
    changes = warehouse.frame(
        con, "SELECT loan_id, effective_due_date, scheduled_payment FROM payment_changes"
    )
    con.register("_loans", loans.select("loan_id"))
    worst: list[pl.DataFrame] = []
    try:
        day = first_day
        while day <= as_of:
            last = min(day + timedelta(days=DAY_SLICE - 1), as_of)
            net = warehouse.frame(
                con, sql.query("net_paid_days"), {"from_date": day, "to_date": last}
            )
            days = [day + timedelta(days=i) for i in range((last - day).days + 1)]
            status = engine.loan_status_history(loans, changes, net, days, Decimal("0"))
            worst.append(status.group_by("loan_id").agg(pl.col("days_past_due").max()))
            day = last + timedelta(days=1)
    finally:
        con.unregister("_loans")
    most = pl.concat(worst).group_by("loan_id").agg(pl.col("days_past_due").max())
    late = most.filter(pl.col("days_past_due") >= 1)
    inside = late.filter(pl.col("days_past_due") <= GRACE_DAYS).height
    return Figure(
        "late_inside_grace",
        f"late payers never more than {GRACE_DAYS} days past due",
        _share(inside, late.height),
        late.height,
    )


def _month_end_after(month_end: date, months: int) -> date:
    """The month end ``months`` months after (before, when negative) a month end."""
    index = month_end.year * 12 + month_end.month - 1 + months + 1
    return date(index // 12, index % 12 + 1, 1) - timedelta(days=1)
