"""Delinquency: how far behind each loan is, tonight and at each month end.

The contract's rules 1-6 ("Delinquency rules" in ``docs/contract.md``), as pure
transforms. The ledger is rolled up near the data by two queries the delinquency step
runs (``lienwatch/sql/``):

- ``net_paid.sql``: one row per loan, net paid as of ``$as_of`` (rule 3);
- ``net_paid_month_ends.sql``: the same at each month end from ``$from_date`` to
  ``$to_date``.

Their output, the loan master and the payment changes come in as frames; everything
else is vectorised polars, one implementation per rule:

- :func:`loan_status`: one row per active loan as of a date (:data:`STATUS_COLUMNS`);
- :func:`loan_status_history`: the same figures at each month end;
- :func:`bucket_transitions`: one row per loan per bucket spell, from the history;
- :func:`current_delinquency_start`: when each delinquent loan's current unbroken
  delinquency began, from the history;
- :func:`roll_rates`: the bucket transition matrix between two month ends.

Money is exact: amounts are turned into integer cents on the way in, all arithmetic is
on integers, and money leaves as ``Decimal(14, 2)``.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING

import polars as pl

from transforms import metro2
from transforms.contract import BUCKET_LOWER_DAYS, BUCKETS, DEFAULT_DAYS, LOAN_STATUSES

if TYPE_CHECKING:
    from polars.expr.whenthen import ChainedThen, Then

MONEY = pl.Decimal(14, 2)

# Regulation X milestones, in days after the due date of the oldest unpaid installment
# (docs/regulation.md: "Early intervention", "Related Regulation Z rules"). "More than 120 days" is reached on day 121.
LIVE_CONTACT_DAYS = 36
WRITTEN_NOTICE_DAYS = 45
PAST_120_DAYS = 121

STATUS_COLUMNS: dict[str, pl.DataType] = {
    "as_of_date": pl.Date(),
    "loan_id": pl.String(),
    "lien_position": pl.Int32(),
    "installments_due": pl.Int32(),
    "installments_paid": pl.Int32(),
    "oldest_unpaid_due_date": pl.Date(),
    "days_past_due": pl.Int32(),
    "bucket": pl.String(),
    "amount_past_due": MONEY,
    "next_due_date": pl.Date(),
    "installment_amount": MONEY,
    "net_paid": MONEY,
    "suspense_amount": MONEY,
    "total_due": MONEY,
    "metro2_account_status": pl.String(),
    "metro2_payment_rating": pl.String(),
    "live_contact_due_date": pl.Date(),
    "written_notice_due_date": pl.Date(),
    "default_date": pl.Date(),
    "past_120_date": pl.Date(),
}
"""The columns of :func:`loan_status`, in order, with their types. The first nine are
the contract's ``loan_status`` table."""

TRANSITION_COLUMNS = ("loan_id", "bucket", "entered_date", "left_date")
DELINQUENCY_START_COLUMNS = (
    "loan_id",
    "as_of_date",
    "delinquency_start_date",
    "first_observed_date",
)
ROLL_RATE_COLUMNS = (
    "month_end_date",
    "from_bucket",
    "to_bucket",
    "loan_count",
    "balance",
    "share",
    "balance_share",
)
NEW = "new"  # roll-rate origin of a loan that was not active at the previous month end
EXITED = "exited"  # roll-rate destination of a loan that left with no status to name

TERM_COLUMNS = ("loan_id", "first_payment_date", "scheduled_payment", "term_months")

# Due dates are looked up in a calendar of months (see due_date): this is its span.
CALENDAR_START, CALENDAR_END = date(1900, 1, 1), date(2299, 12, 1)

Frame = pl.LazyFrame | pl.DataFrame


# --------------------------------------------------------------------------- public


def loan_status(
    loans: Frame,
    payment_changes: Frame,
    net_paid: Frame,
    as_of: date,
    tolerance: Decimal = Decimal("0"),
) -> pl.DataFrame:
    """One row per active loan as of ``as_of``: :data:`STATUS_COLUMNS`.

    ``loans`` has the contract's loan columns; a loan is reported when its status is
    ``active`` and, when the frame has ``origination_date``, it was originated on or
    before ``as_of``. ``payment_changes`` has loan_id, effective_due_date,
    scheduled_payment (it may be empty). ``net_paid`` is ``net_paid.sql``'s output
    (loan_id, net_paid, ...); a loan missing from it has paid nothing. ``tolerance``
    is the shortfall tolerance in dollars (rule 4).
    """
    keys = (
        _active(loans.lazy(), pl.lit(as_of))
        .with_row_index("_terms")
        .with_columns(pl.lit(as_of).alias("as_of_date"))
        .join(net_paid.lazy().select("loan_id", "net_paid"), on="loan_id", how="left")
    )
    return _status(keys, payment_changes.lazy(), _tolerance_cents(tolerance)).collect()


CHARGE_OFF_DAYS = 180  # a loan charged off (or gone to foreclosure) left the book at this


def as_if_active(loans: pl.DataFrame) -> pl.DataFrame:
    """The loan master with every loan reported: for the month-end history of a first
    night, whose one snapshot no longer reports the loans that have left since (see
    :func:`on_the_book`)."""
    return loans.with_columns(pl.lit("active").alias("status"))


def on_the_book(
    history: pl.DataFrame, loans: pl.DataFrame, last_posted: pl.DataFrame
) -> pl.DataFrame:
    """The rows of a month-end history computed :func:`as_if_active` that were on the book:
    every row of a loan still active; of a loan charged off or in foreclosure, the month
    ends before it reached :data:`CHARGE_OFF_DAYS` past due (the point at which a second
    lien leaves the book); of a loan paid off or transferred, the month ends up to the
    month of its last ledger row (``last_posted``: loan_id, posted_date). Without this the
    history of a first night would hold only the loans that survived to it, and every
    earlier month end would look better than it was."""
    status = loans.select("loan_id", pl.col("status").alias("_now"))
    last = last_posted.select("loan_id", pl.col("posted_date").alias("_last"))
    month_of = pl.col("as_of_date").dt.month_start()
    kept = (
        (pl.col("_now") == "active")
        | (
            pl.col("_now").is_in(["charged_off", "foreclosure"])
            & (pl.col("days_past_due") < CHARGE_OFF_DAYS)
        )
        | (
            pl.col("_now").is_in(["paid_off", "transferred"])
            & (month_of <= pl.col("_last").dt.month_start())
        )
    )
    return (
        history.join(status, on="loan_id", how="left")
        .join(last, on="loan_id", how="left")
        .filter(kept.fill_null(False))
        .drop("_now", "_last")
    )


def loan_status_history(
    loans: Frame,
    payment_changes: Frame,
    net_paid_month_ends: Frame,
    month_ends: list[date],
    tolerance: Decimal = Decimal("0"),
) -> pl.DataFrame:
    """One row per active loan per month end: :data:`STATUS_COLUMNS`, plus current_balance.

    The same rules as :func:`loan_status`, evaluated at every date of ``month_ends`` at
    once. ``net_paid_month_ends`` is ``net_paid_month_ends.sql``'s output (loan_id,
    as_of_date, net_paid, ...). ``loans`` is either one snapshot used for every month
    end, or snapshots per month end with an ``as_of_date`` column (the loan master as
    it stood then), which is what makes loans that have left since (paid off, charged
    off) appear in the months they were active. current_balance is the loans frame's
    (null when it has none).
    """
    if not month_ends:
        return pl.DataFrame(schema={**STATUS_COLUMNS, "current_balance": MONEY})
    dates = pl.LazyFrame({"as_of_date": sorted(set(month_ends))}, schema={"as_of_date": pl.Date})
    loans = loans.lazy()
    if "as_of_date" in loans.collect_schema().names():
        # Snapshots may differ in a loan's terms: one key per distinct set of terms.
        per_date = loans.join(dates, on="as_of_date", how="inner")
        terms = per_date.select(TERM_COLUMNS).unique().with_row_index("_terms")
        per_date = per_date.join(terms, on=list(TERM_COLUMNS), how="left", nulls_equal=True)
    else:
        per_date = dates.join(loans.with_row_index("_terms"), how="cross")
    if "current_balance" not in per_date.collect_schema().names():
        per_date = per_date.with_columns(pl.lit(None, dtype=MONEY).alias("current_balance"))
    keys = _active(per_date, pl.col("as_of_date")).join(
        net_paid_month_ends.lazy().select("loan_id", "as_of_date", "net_paid"),
        on=["loan_id", "as_of_date"],
        how="left",
    )
    extra = (pl.col("current_balance").cast(MONEY),)
    return (
        _status(
            keys,
            payment_changes.lazy(),
            _tolerance_cents(tolerance),
            extra=extra,
            many_per_terms=True,
        )
        .sort("as_of_date", "loan_id")
        .collect()
    )


def bucket_transitions(history: pl.DataFrame, dates: list[date] | None = None) -> pl.DataFrame:
    """One row per loan per bucket spell: loan_id, bucket, entered_date, left_date.

    ``history`` holds observations (as_of_date, loan_id, bucket), e.g. the month-end
    history with tonight's status appended. A spell is a run of a loan's consecutive
    observations in one bucket. entered_date is the first observation of the spell;
    left_date the first observation date after it at which the loan was in another
    bucket or no longer reported (null while the spell is still open at the latest
    observation date). A loan that returns after an absence starts a new spell.

    The observation dates are those in ``history``, or ``dates`` when given: then
    ``history`` may hold some of the loans only (a part of a larger history), and each
    loan's spells are those the whole history gives.
    """
    spells = _spells(history, pl.col("bucket"), dates=dates)
    return (
        spells.rename({"state": "bucket"})
        .select(TRANSITION_COLUMNS)
        .sort("loan_id", "entered_date")
    )


def current_delinquency_start(
    history: pl.DataFrame, dates: list[date] | None = None
) -> pl.DataFrame:
    """One row per loan delinquent at the latest observation date in ``history``.

    Columns: loan_id, as_of_date (that latest date), delinquency_start_date,
    first_observed_date. The current delinquency is the loan's unbroken run of
    observations with days past due > 0 up to the latest date; first_observed_date is
    its first observation and delinquency_start_date the oldest unpaid due date then:
    the due date of the payment that started the run. Payments that roll the oldest
    unpaid installment forward without curing the loan do not move it (unlike
    ``oldest_unpaid_due_date``, which Regulation X comment 31-2 measures from). A cure
    and relapse entirely between two observations is not seen. ``dates``: as for
    :func:`bucket_transitions` (the latest observation date is the latest of them).
    """
    if history.is_empty():
        return pl.DataFrame(
            schema={**dict.fromkeys(DELINQUENCY_START_COLUMNS, pl.Date), "loan_id": pl.String}
        )
    latest = max(dates) if dates else history["as_of_date"].max()
    spells = _spells(
        history, pl.col("days_past_due") > 0, carry=("oldest_unpaid_due_date",), dates=dates
    )
    return (
        spells.filter(pl.col("state") & (pl.col("last_date") == latest))
        .select(
            "loan_id",
            pl.lit(latest, dtype=pl.Date).alias("as_of_date"),
            pl.col("oldest_unpaid_due_date").alias("delinquency_start_date"),
            pl.col("entered_date").alias("first_observed_date"),
        )
        .sort("loan_id")
    )


def roll_rates(history: pl.DataFrame, month_end: date, loans: Frame | None = None) -> pl.DataFrame:
    """One row per (from_bucket, to_bucket) between the month end before ``month_end`` and it.

    Columns: month_end_date, from_bucket, to_bucket, loan_count, balance, share,
    balance_share. from_bucket is the bucket at the previous month end, or ``new`` for
    a loan reported at ``month_end`` only; to_bucket the bucket at ``month_end``, or,
    for a loan reported at the previous month end only, its status in ``loans`` when
    that is not ``active`` (``paid_off``, ``charged_off``, ``foreclosure``,
    ``transferred``), else ``exited``. balance is the sum of current_balance at the
    previous month end (at ``month_end`` for ``new`` loans), null when the history has
    no balances. share and balance_share are the row's part of its from_bucket's
    count and balance.
    """
    previous = month_end.replace(day=1) - timedelta(days=1)
    if (month_end + timedelta(days=1)).day != 1:
        raise ValueError(f"{month_end} is not a month end")
    seen = set(history["as_of_date"].unique().to_list())
    missing = [d.isoformat() for d in (previous, month_end) if d not in seen]
    if missing:
        raise ValueError(f"the history has no rows at {', '.join(missing)}")
    has_balance = "current_balance" in history.columns
    balance = pl.col("current_balance") if has_balance else pl.lit(None, dtype=MONEY)

    def at(day: date, prefix: str) -> pl.LazyFrame:
        return (
            history.lazy()
            .filter(pl.col("as_of_date") == day)
            .select(
                "loan_id",
                pl.col("bucket").alias(f"{prefix}_bucket"),
                balance.cast(pl.Decimal(18, 2)).alias(f"{prefix}_balance"),
            )
        )

    moves = at(previous, "from").join(at(month_end, "to"), on="loan_id", how="full", coalesce=True)
    if loans is not None:
        statuses = loans.lazy().select("loan_id", pl.col("status").alias("_status"))
        moves = moves.join(statuses, on="loan_id", how="left")
    else:
        moves = moves.with_columns(pl.lit(None, dtype=pl.String).alias("_status"))
    exit_state = pl.when(pl.col("_status").is_not_null() & (pl.col("_status") != "active"))
    order = {state: i for i, state in enumerate((NEW, *BUCKETS, *LOAN_STATUSES[1:], EXITED))}
    return (
        moves.with_columns(
            pl.col("from_bucket").fill_null(NEW),
            pl.col("to_bucket").fill_null(
                exit_state.then(pl.col("_status")).otherwise(pl.lit(EXITED))
            ),
            pl.coalesce("from_balance", "to_balance").alias("_balance"),
        )
        .group_by("from_bucket", "to_bucket")
        .agg(
            pl.len().cast(pl.Int64).alias("loan_count"),
            pl.col("_balance").sum().cast(pl.Decimal(18, 2)).alias("balance"),
        )
        .with_columns(
            pl.lit(month_end, dtype=pl.Date).alias("month_end_date"),
            pl.col("balance")
            if has_balance
            else pl.lit(None, dtype=pl.Decimal(18, 2)).alias("balance"),
        )
        .with_columns(
            (pl.col("loan_count") / pl.col("loan_count").sum().over("from_bucket")).alias("share"),
            # the total summed in decimals, exact in any order: a rerun gives the same bits
            (
                pl.col("balance").cast(pl.Float64)
                / pl.col("balance").sum().over("from_bucket").cast(pl.Float64)
            ).alias("balance_share"),
            pl.col("from_bucket").replace_strict(order, default=len(order)).alias("_from"),
            pl.col("to_bucket").replace_strict(order, default=len(order)).alias("_to"),
        )
        .sort("_from", "_to", "to_bucket")
        .select(ROLL_RATE_COLUMNS)
        .collect()
    )


def bucket_of(days_past_due: pl.Expr) -> pl.Expr:
    """The contract's bucket (rule 6) of a number of days past due."""
    bands = list(zip(BUCKET_LOWER_DAYS, BUCKETS, strict=True))
    expr: Then | ChainedThen = pl.when(days_past_due >= bands[-1][0]).then(pl.lit(bands[-1][1]))
    for lower, name in reversed(bands[1:-1]):
        expr = expr.when(days_past_due >= lower).then(pl.lit(name))
    return expr.otherwise(pl.lit(bands[0][1]))


def due_date(first_payment_date: pl.Expr, k: pl.Expr) -> pl.Expr:
    """Due date of installment ``k`` (0 = first): rule 1.

    first_payment_date plus k months, on the same day of the month or, where the month
    is shorter, on its last day. Always counted from the first due date, never from the
    previous installment's (Jan 31 -> Feb 29 -> Mar 31 in 2024). Due dates run from
    1900 to 2299.
    """
    month_days, month_lengths = _calendar()
    month = _month_index(first_payment_date) + k - CALENDAR_START.year * 12
    day = pl.min_horizontal(
        first_payment_date.dt.day().cast(pl.Int32), pl.lit(month_lengths).gather(month)
    )
    return (pl.lit(month_days).gather(month) + day - 1).cast(pl.Date)


# --------------------------------------------------------------------------- the rules


@cache
def _calendar() -> tuple[pl.Series, pl.Series]:
    """Each month from CALENDAR_START on: its first day (days since 1970) and its length.

    A lookup by month index is several times faster than building dates from parts.
    """
    starts = pl.date_range(CALENDAR_START, CALENDAR_END, "1mo", eager=True)
    return starts.cast(pl.Int32), starts.dt.days_in_month().cast(pl.Int32)


def _month_index(day: pl.Expr) -> pl.Expr:
    return day.dt.year().cast(pl.Int32) * 12 + day.dt.month().cast(pl.Int32) - 1


def _first_index_on_or_after(first_payment_date: pl.Expr, day: pl.Expr) -> pl.Expr:
    """Index of the first installment due on or after ``day`` (0 when before the first)."""
    months = _month_index(day) - _month_index(first_payment_date)
    due_day = pl.min_horizontal(
        first_payment_date.dt.day().cast(pl.Int32), day.dt.days_in_month().cast(pl.Int32)
    )
    index = months + (due_day < day.dt.day().cast(pl.Int32)).cast(pl.Int32)
    return pl.max_horizontal(index, pl.lit(0, dtype=pl.Int32))


def _installments_due(first_payment_date: pl.Expr, as_of: pl.Expr, term_months: pl.Expr) -> pl.Expr:
    """Rule 5: how many installments fall due on or before ``as_of`` (at most the term)."""
    due = _first_index_on_or_after(first_payment_date, as_of + pl.duration(days=1))
    return pl.min_horizontal(due, term_months.cast(pl.Int32))


def _cents(money: pl.Expr) -> pl.Expr:
    """Exact dollars to integer cents."""
    return money.cast(pl.Decimal(38, 2)).to_physical().cast(pl.Int64)


def _dollars(cents: pl.Expr) -> pl.Expr:
    """Integer cents to exact ``Decimal(14, 2)`` dollars."""
    return (cents.cast(pl.Decimal(38, 0)) * pl.lit(Decimal("0.01"))).cast(MONEY)


def _tolerance_cents(tolerance: Decimal) -> int:
    cents = Decimal(tolerance) * 100
    if cents < 0 or cents != cents.to_integral_value():
        raise ValueError(
            f"shortfall tolerance must be a non-negative amount in cents, got {tolerance}"
        )
    return int(cents)


def _active(loans: pl.LazyFrame, as_of: pl.Expr) -> pl.LazyFrame:
    """The loans reported as of a date: active, and originated by then when known."""
    reported = pl.col("status") == "active"
    if "origination_date" in loans.collect_schema().names():
        reported = reported & (
            pl.col("origination_date").is_null() | (pl.col("origination_date") <= as_of)
        )
    return loans.filter(reported)


def _segments(terms: pl.LazyFrame, payment_changes: pl.LazyFrame) -> pl.LazyFrame:
    """Rule 2 as pieces: one row per run of installments with one amount.

    ``terms`` has _terms (a key), loan_id, first_payment_date, scheduled_cents and
    term_months. The base payment starts at installment 0; a change starts at the first
    installment due on or after its effective_due_date, and where several start at the
    same installment the latest effective_due_date wins. Columns: _terms, seg_start,
    seg_end (exclusive), seg_cents (the amount of each installment in it) and seg_cum
    (the sum of all installments before seg_start). Most loans never change payment:
    they get their one segment directly, and only the others are sorted and summed.
    """
    term = pl.col("term_months").cast(pl.Int32)
    changes = (
        payment_changes.select(
            pl.col("loan_id").cast(pl.String),
            pl.col("effective_due_date").cast(pl.Date),
            "scheduled_payment",
        )
        .join(
            terms.select("_terms", "loan_id", "first_payment_date", "term_months"),
            on="loan_id",
            how="inner",
        )
        .select(
            "_terms",
            _first_index_on_or_after(
                pl.col("first_payment_date"), pl.col("effective_due_date")
            ).alias("seg_start"),
            _cents(pl.col("scheduled_payment")).alias("seg_cents"),
            pl.col("effective_due_date").alias("_effective"),
            term.alias("_term"),
        )
        .filter(pl.col("seg_start") < pl.col("_term"))
    )
    changed = changes.select("_terms").unique()
    steady = terms.join(changed, on="_terms", how="anti").select(
        "_terms",
        pl.lit(0, dtype=pl.Int32).alias("seg_start"),
        term.alias("seg_end"),
        pl.col("scheduled_cents").alias("seg_cents"),
        pl.lit(0, dtype=pl.Int64).alias("seg_cum"),
    )
    base = terms.join(changed, on="_terms", how="semi").select(
        "_terms",
        pl.lit(0, dtype=pl.Int32).alias("seg_start"),
        pl.col("scheduled_cents").alias("seg_cents"),
        pl.lit(date(1, 1, 1), dtype=pl.Date).alias("_effective"),
        term.alias("_term"),
    )
    pieces = (
        pl.concat([base, changes], how="vertical_relaxed")
        .sort("_terms", "seg_start", "_effective")
        .unique(subset=["_terms", "seg_start"], keep="last", maintain_order=True)
    )
    same_loan = pl.col("_terms") == pl.col("_terms").shift(-1)
    seg_end = pl.when(same_loan).then(pl.col("seg_start").shift(-1)).otherwise(pl.col("_term"))
    varying = (
        pieces.with_columns(seg_end.alias("seg_end"))
        .with_columns(
            ((pl.col("seg_end") - pl.col("seg_start")).cast(pl.Int64) * pl.col("seg_cents")).alias(
                "_sum"
            )
        )
        .with_columns((pl.col("_sum").cum_sum().over("_terms") - pl.col("_sum")).alias("seg_cum"))
        .select("_terms", "seg_start", "seg_end", "seg_cents", "seg_cum")
    )
    return pl.concat([steady, varying], how="vertical_relaxed")


def _schedule_figures(
    keys: pl.LazyFrame, segments: pl.LazyFrame, tolerance_cents: int
) -> pl.LazyFrame:
    """Rules 4 and 5 over the segments, one row per _key.

    ``keys`` has _key, _terms, installments_due and net_cents. For each key: paid_raw,
    the largest n with sum(installments 0..n-1) <= net paid + tolerance (before the
    cap at installments due), cum_paid_raw that sum, total_due_cents the sum of the
    installments due, and installment_cents the amount of the latest installment due
    (of the first one before any is due).
    """
    reach = pl.col("net_cents") + tolerance_cents
    seg_len = pl.col("seg_end") - pl.col("seg_start")
    within = (
        pl.when(pl.col("seg_cents") > 0)
        .then(
            pl.min_horizontal(
                (reach - pl.col("seg_cum")) // pl.col("seg_cents"), seg_len.cast(pl.Int64)
            )
        )
        .otherwise(seg_len.cast(pl.Int64))
    )
    reached = pl.col("seg_cum") <= reach
    current = pl.max_horizontal(pl.col("installments_due") - 1, pl.lit(0, dtype=pl.Int32))
    return (
        keys.select("_key", "_terms", "installments_due", "net_cents")
        .join(segments, on="_terms", how="inner")
        .with_columns(
            pl.when(reached).then(pl.col("seg_start") + within).alias("_n"),
            pl.when(reached).then(pl.col("seg_cum") + within * pl.col("seg_cents")).alias("_cum_n"),
            (
                (pl.col("installments_due") - pl.col("seg_start")).clip(0, seg_len).cast(pl.Int64)
                * pl.col("seg_cents")
            ).alias("_due_part"),
            pl.when((pl.col("seg_start") <= current) & (current < pl.col("seg_end")))
            .then(pl.col("seg_cents"))
            .alias("_current"),
        )
        .group_by("_key")
        .agg(
            pl.col("_n").max().fill_null(0).alias("paid_raw"),
            pl.col("_cum_n").max().fill_null(0).alias("cum_paid_raw"),
            pl.col("_due_part").sum().alias("total_due_cents"),
            pl.col("_current").max().alias("installment_cents"),
        )
    )


def _status(
    keys: pl.LazyFrame,
    payment_changes: pl.LazyFrame,
    tolerance_cents: int,
    extra: tuple[pl.Expr, ...] = (),
    many_per_terms: bool = False,
) -> pl.LazyFrame:
    """The status figures for ``keys``: one row per (loan, as_of_date) given.

    ``keys`` has the loan columns, as_of_date, net_paid (null = nothing paid) and
    _terms, a key of the loan's terms (first_payment_date, scheduled_payment,
    term_months) that several rows share when ``many_per_terms``. ``extra`` are
    expressions on the keys' columns appended to the output.
    """
    passed_on = sorted({name for expr in extra for name in expr.meta.root_names()})
    # Materialised once: every later step reads it, and it holds the one string join.
    keys = (
        keys.select(
            "_terms",
            pl.col("as_of_date").cast(pl.Date),
            pl.col("loan_id").cast(pl.String),
            pl.col("lien_position").cast(pl.Int32),
            pl.col("first_payment_date").cast(pl.Date),
            pl.col("term_months").cast(pl.Int32),
            _cents(pl.col("scheduled_payment")).alias("scheduled_cents"),
            _cents(pl.col("net_paid")).fill_null(0).alias("net_cents"),
            *passed_on,
        )
        .with_row_index("_key")
        .with_columns(
            _installments_due(
                pl.col("first_payment_date"), pl.col("as_of_date"), pl.col("term_months")
            ).alias("installments_due"),
        )
        .collect()
        .lazy()
    )
    terms = keys.select("_terms", "loan_id", "first_payment_date", "scheduled_cents", "term_months")
    if many_per_terms:
        terms = terms.unique(subset="_terms", keep="any")
    figures = _schedule_figures(keys, _segments(terms, payment_changes), tolerance_cents)
    first = pl.col("first_payment_date")
    n_due, n_paid = pl.col("installments_due"), pl.col("installments_paid")
    behind = n_paid < n_due
    # On its own due date an unpaid installment is not yet past due: 0 days, bucket
    # current, and the contract's oldest_unpaid_due_date is null when current (the
    # amount owed still shows in amount_past_due, rule 5).
    oldest = pl.when(behind & (due_date(first, n_paid) < pl.col("as_of_date"))).then(
        due_date(first, n_paid)
    )
    dpd = pl.col("days_past_due")

    def milestone(days: int) -> pl.Expr:
        return pl.col("oldest_unpaid_due_date") + pl.duration(days=days)

    return (
        keys.join(figures, on="_key", how="left")
        .with_columns(
            pl.min_horizontal(pl.col("paid_raw"), n_due).cast(pl.Int32).alias("installments_paid"),
            pl.when(pl.col("paid_raw") >= n_due)
            .then(pl.col("total_due_cents"))
            .otherwise(pl.col("cum_paid_raw"))
            .alias("cum_paid_cents"),
        )
        .with_columns(
            oldest.alias("oldest_unpaid_due_date"),
            pl.when(n_due < pl.col("term_months"))
            .then(due_date(first, n_due))
            .alias("next_due_date"),
            pl.when(behind)
            .then(pl.col("total_due_cents") - pl.col("net_cents"))
            .otherwise(0)
            .alias("_past_due"),
            pl.max_horizontal(pl.col("net_cents") - pl.col("cum_paid_cents"), pl.lit(0)).alias(
                "_suspense"
            ),
        )
        .with_columns(
            (pl.col("as_of_date") - pl.col("oldest_unpaid_due_date"))
            .dt.total_days()
            .fill_null(0)
            .cast(pl.Int32)
            .alias("days_past_due"),
        )
        .select(
            "as_of_date",
            "loan_id",
            "lien_position",
            n_due,
            n_paid,
            "oldest_unpaid_due_date",
            dpd,
            bucket_of(dpd).alias("bucket"),
            _dollars(pl.col("_past_due")).alias("amount_past_due"),
            "next_due_date",
            _dollars(pl.col("installment_cents")).alias("installment_amount"),
            _dollars(pl.col("net_cents")).alias("net_paid"),
            _dollars(pl.col("_suspense")).alias("suspense_amount"),
            _dollars(pl.col("total_due_cents")).alias("total_due"),
            metro2.account_status(dpd).alias("metro2_account_status"),
            metro2.payment_rating(dpd).alias("metro2_payment_rating"),
            milestone(LIVE_CONTACT_DAYS).alias("live_contact_due_date"),
            milestone(WRITTEN_NOTICE_DAYS).alias("written_notice_due_date"),
            milestone(DEFAULT_DAYS).alias("default_date"),
            milestone(PAST_120_DAYS).alias("past_120_date"),
            *extra,
        )
    )


def _spells(
    history: pl.DataFrame,
    state: pl.Expr,
    carry: tuple[str, ...] = (),
    dates: list[date] | None = None,
) -> pl.DataFrame:
    """Runs of a loan's consecutive observations in one ``state``.

    Observation dates are ``dates``, or those present anywhere in ``history``; a loan
    missing at one of them breaks its run. Columns: loan_id, state, entered_date (first
    observation), last_date (last observation), left_date (the next observation date
    after last_date, null when there is none), and the ``carry`` columns at entered_date.
    """
    observed = (
        history.select(pl.col("as_of_date").unique())
        if dates is None
        else pl.DataFrame({"as_of_date": sorted(set(dates))}, schema={"as_of_date": pl.Date})
    )
    ranked = (
        observed.sort("as_of_date")
        .with_row_index("_rank")
        .with_columns(pl.col("_rank").cast(pl.Int64))
    )
    ordered = (
        history.select("loan_id", "as_of_date", state.alias("state"), *carry)
        .join(ranked, on="as_of_date", how="left")
        .sort("loan_id", "as_of_date")
    )
    starts = (
        (pl.col("loan_id") != pl.col("loan_id").shift(1))
        | (pl.col("state") != pl.col("state").shift(1))
        | (pl.col("_rank") != pl.col("_rank").shift(1) + 1)
    ).fill_null(True)
    next_date = ranked.select(pl.col("_rank") - 1, pl.col("as_of_date").alias("left_date"))
    return (
        ordered.with_columns(starts.cum_sum().alias("_spell"))
        .group_by("_spell")
        .agg(
            pl.col("loan_id").first(),
            pl.col("state").first(),
            pl.col("as_of_date").first().alias("entered_date"),
            pl.col("as_of_date").last().alias("last_date"),
            pl.col("_rank").last(),
            *(pl.col(c).first() for c in carry),
        )
        .join(next_date, on="_rank", how="left")
        .drop("_spell", "_rank")
    )


def spell_tail(
    open_spells: pl.DataFrame, tonight: pl.DataFrame, as_of: date
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Tonight's change to the bucket spells, without recomputing the history.

    ``open_spells`` are the spells open at the latest month end before the night
    (loan_id, bucket, entered_date); ``tonight`` the night's (loan_id, bucket). Returns
    (the loan_ids whose open spell ends tonight: a new bucket, or no longer reported;
    the spells that start tonight, as :data:`TRANSITION_COLUMNS`). Applied to the
    month-end spells, they give exactly :func:`bucket_transitions` of the month ends
    with tonight appended.
    """
    paired = open_spells.select("loan_id", pl.col("bucket").alias("_was")).join(
        tonight.select("loan_id", "bucket"), on="loan_id", how="full", coalesce=True
    )
    closing = paired.filter(
        pl.col("_was").is_not_null()
        & (pl.col("bucket").is_null() | (pl.col("bucket") != pl.col("_was")))
    )
    opening = paired.filter(
        pl.col("bucket").is_not_null()
        & (pl.col("_was").is_null() | (pl.col("bucket") != pl.col("_was")))
    )
    return (
        closing.select("loan_id").sort("loan_id"),
        opening.select(
            "loan_id",
            "bucket",
            pl.lit(as_of, dtype=pl.Date).alias("entered_date"),
            pl.lit(None, dtype=pl.Date).alias("left_date"),
        ).sort("loan_id"),
    )


def delinquency_start_tail(
    open_runs: pl.DataFrame, tonight: pl.DataFrame, as_of: date
) -> pl.DataFrame:
    """:func:`current_delinquency_start` for tonight from the runs open at the latest month end.

    ``open_runs`` is :func:`current_delinquency_start` of the month-end history (the
    loans delinquent at its last month end); ``tonight`` the night's (loan_id,
    days_past_due, oldest_unpaid_due_date). A loan delinquent at both keeps its run's
    start; one delinquent tonight only starts a run tonight.
    """
    late = tonight.filter(pl.col("days_past_due") > 0).select("loan_id", "oldest_unpaid_due_date")
    return (
        late.join(
            open_runs.select("loan_id", "delinquency_start_date", "first_observed_date"),
            on="loan_id",
            how="left",
        )
        .select(
            "loan_id",
            pl.lit(as_of, dtype=pl.Date).alias("as_of_date"),
            pl.coalesce("delinquency_start_date", "oldest_unpaid_due_date").alias(
                "delinquency_start_date"
            ),
            pl.col("first_observed_date").fill_null(pl.lit(as_of, dtype=pl.Date)),
        )
        .sort("loan_id")
    )
