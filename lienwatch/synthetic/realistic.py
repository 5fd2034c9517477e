"""The realistic profile: a normal-year second-lien book, built from hidden hardship events.

The loans are drawn first (:func:`_loans`: mostly California, two thirds second liens,
HELOCs whose draw periods end across the window, few underwater); the hidden model
(:mod:`lienwatch.synthetic.hardship`) then decides month by month what each borrower
pays, starting :data:`BURN_IN_MONTHS` before the ledger's window so that the window
opens on a book already in its steady state. This module turns those decisions into
what a servicer receives: ledger rows (with returned and short payments), monthly
senior-lien reports, loss-mitigation cases, bankruptcy filings, and each loan's status
at the end (a loan charged off or paid off is no longer ``active``). The hardship
events themselves are written nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from lienwatch.synthetic import hardship
from lienwatch.synthetic.common import (
    CASE_TYPES,
    STATE_SHARES,
    STATES,
    Chunk,
    behaviour_counts,
    borrowers,
    current_cents,
    due,
    finish_loans,
    identity_columns,
    lien_mix,
    loan_amounts,
    money,
    payment_changes,
    terms_columns,
)

BEHAVIOURS = hardship.HABITS
BURN_IN_MONTHS = 12
NO_CHANGE_YET = 1_000_000  # installment index of a change that never comes
# Of the loans kept active at 180 days, the share in bankruptcy (the rest wait on the
# first lien's foreclosure).
BANKRUPT_SHARE = 0.5
BACKGROUND_CASES = 0.003  # loss-mitigation applications from borrowers not (yet) behind

LEDGER_COLUMNS = (
    "loan_id",
    "posted_date",
    "cents",
    "txn_id",
    "txn_type",
    "reverses_txn_id",
    "return_reason",
)


@dataclass(frozen=True)
class _Calendar:
    """The hidden model's months: month 0 is ``first`` (a month index, year * 12 + month - 1).

    The ledger runs from ``opening`` to ``end``: ``opening`` is the month end before the
    window's first day, so that the night's month-end history (which starts at that
    month end) finds every loan with its opening payment, not as far behind as its age.
    """

    first: int
    opening: date
    end: date

    @classmethod
    def of(cls, start: date, end: date) -> _Calendar:
        opening = start.replace(day=1) - timedelta(days=1)
        return cls(_month_index(start) - BURN_IN_MONTHS, opening, end)

    @property
    def months(self) -> int:
        return _month_index(self.end) - self.first + 1

    @property
    def window_month(self) -> int:
        """The model's first whole month of the ledger."""
        return _month_index(self.opening) + 1 - self.first

    def month_end(self, month: int) -> date:
        year, month0 = divmod(self.first + month + 1, 12)
        return date(year, month0 + 1, 1) - timedelta(days=1)


def _month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def _month_index_of(column: str) -> pl.Expr:
    return pl.col(column).dt.year().cast(pl.Int32) * 12 + pl.col(column).dt.month() - 1


def chunk(
    rng: np.random.Generator, first: int, n: int, start: date, end: date, months: int
) -> Chunk:
    """Loans ``first`` to ``first + n - 1`` and their rows, drawn from ``rng``."""
    calendar = _Calendar.of(start, end)
    portfolio = _loans(rng, first, n, end, months)
    people = borrowers(rng, portfolio)
    changes = payment_changes(portfolio, end)
    terms = _terms(portfolio, changes, calendar)
    paths = hardship.simulate(rng, _book(terms, calendar))
    _not_yet_gone(terms, paths, calendar)
    portfolio = _outcomes(portfolio, paths)
    ledger = _ledger(rng, terms, paths, calendar)
    people = _bankruptcies(rng, people, terms, paths, calendar)
    senior = _senior_liens(terms, paths, calendar)
    cases = _loss_mit(rng, terms, paths, calendar)
    counts = behaviour_counts(portfolio, BEHAVIOURS)
    return Chunk(portfolio, people, changes, ledger, senior, cases, counts)


# --------------------------------------------------------------------------- loans


def _loans(rng: np.random.Generator, first: int, n: int, end: date, months: int) -> pl.DataFrame:
    idx, second, heloc = lien_mix(rng, first, n)
    # A third of the HELOCs are 121-150 months old: their draw periods (120 months) end
    # all through the window, an end-of-draw wave like the 2015-2018 one, large enough
    # to compare with the rest. Closed-end loans and first liens are younger than their
    # shortest term (a matured loan would have left the book).
    drawing = rng.integers(months + 2, max(months + 3, 121), n)
    heloc_age = np.where(rng.random(n) < 1 / 3, rng.integers(121, 151, n), drawing)
    seasoned = np.where(heloc, heloc_age, rng.integers(months + 2, months + 90, n))
    age = np.where(rng.random(n) < 0.1, rng.integers(1, months + 1, n), seasoned)
    day = rng.choice([1, 15, 28, 29, 30, 31], n, p=[0.8, 0.12, 0.02, 0.02, 0.02, 0.02])
    end_index = _month_index(end)
    first_index = end_index - age + 1
    future = rng.random(n) < 0.005  # a few loans whose first payment is still ahead
    first_index = np.where(future, end_index + 1, first_index)
    term, rate, balance, amortizing, payment, senior = loan_amounts(rng, n, second, heloc)
    # Combined LTV at origination: most second liens well inside the value, about one
    # in twelve above it; on today's balances about one in twenty (a normal year's book,
    # not a crisis one).
    cltv = np.where(second, 0.5 + 0.7 * rng.beta(2.4, 3.2, n), rng.uniform(0.45, 0.95, n))
    value = np.where(second, (senior + balance) / cltv, balance / cltv)
    state = rng.choice(len(STATES), n, p=STATE_SHARES)
    occupancy = rng.choice(3, n, p=[0.85, 0.08, 0.07])
    u, v = rng.random(n), rng.random(n)
    frame = pl.DataFrame(
        {
            **identity_columns(idx, second, heloc),
            "_fpd_y": first_index // 12,
            "_fpd_m": first_index % 12 + 1,
            "_day": day,
            **terms_columns(
                payment, amortizing, term, rate, balance, senior, value, state, occupancy
            ),
            "_u": u,
            "_v": v,
        }
    )
    return finish_loans(frame)


def _terms(portfolio: pl.DataFrame, changes: pl.DataFrame, calendar: _Calendar) -> pl.DataFrame:
    """Per loan, in the chunk's order: the model's month of installment 0, the payment
    change (its installment, month, kind and amount), the balance owed and the CLTV the
    night computes from it."""
    first_index = _month_index_of("first_payment_date")
    change = changes.select(
        "loan_id",
        _month_index_of("effective_due_date").alias("_change_index"),
        pl.col("cents").alias("new_cents"),
    )
    return (
        portfolio.join(change, on="loan_id", how="left", maintain_order="left")
        .with_columns(
            (first_index - calendar.first).alias("first_month"),
            (pl.col("_change_index") - first_index).fill_null(NO_CHANGE_YET).alias("change_k"),
            pl.col("new_cents").fill_null(pl.col("scheduled_cents")),
            current_cents().alias("current_cents"),
        )
        .select(
            "loan_id",
            "first_payment_date",
            "first_month",
            "term_months",
            "scheduled_cents",
            "new_cents",
            "change_k",
            (pl.col("first_month") + pl.col("change_k")).alias("change_month"),
            pl.when(pl.col("change_k") == NO_CHANGE_YET)
            .then(hardship.NO_CHANGE)
            .when(pl.col("product") == "heloc")
            .then(hardship.END_OF_DRAW)
            .otherwise(hardship.RATE_RESET)
            .alias("change_kind"),
            "current_cents",
            (pl.col("lien_position") == 2).alias("second"),
            (pl.col("product") == "heloc").alias("heloc"),
            ((pl.col("senior_cents") + pl.col("current_cents")) / pl.col("value_cents")).alias(
                "cltv"
            ),
            "borrower_id",
        )
    )


def _book(terms: pl.DataFrame, calendar: _Calendar) -> hardship.Book:
    return hardship.Book(
        first_month=terms["first_month"].to_numpy(),
        term=terms["term_months"].to_numpy(),
        second=terms["second"].to_numpy(),
        heloc=terms["heloc"].to_numpy(),
        cltv=terms["cltv"].to_numpy(),
        change_month=terms["change_month"].to_numpy(),
        change_kind=terms["change_kind"].to_numpy(),
        months=calendar.months,
        window_month=calendar.window_month,
    )


def _not_yet_gone(terms: pl.DataFrame, paths: hardship.Paths, calendar: _Calendar) -> None:
    """A loan the model took to 180 days in the last month gets there after the end: it
    is still active, and in the book, at the end."""
    day_180 = terms.select(
        due(pl.col("first_payment_date"), pl.lit(pl.Series(np.maximum(paths.oldest_unpaid, 0))))
        + pl.duration(days=180)
    ).to_series()
    later = (paths.oldest_unpaid >= 0) & (day_180 > calendar.end).to_numpy()
    paths.status[later] = hardship.ACTIVE
    paths.exit_month[later] = hardship.NEVER


def _outcomes(portfolio: pl.DataFrame, paths: hardship.Paths) -> pl.DataFrame:
    """Each loan's status at the end and its habit; a paid-off loan owes nothing."""
    status = np.array(hardship.STATUSES)[paths.status]
    return portfolio.with_columns(
        pl.Series("status", status),
        pl.Series("behaviour", np.array(hardship.HABITS)[paths.habit]),
        pl.when(pl.Series(status) == "paid_off")
        .then(pl.lit("0.00"))
        .otherwise(pl.col("current_balance"))
        .alias("current_balance"),
    )


# --------------------------------------------------------------------------- ledger


def _due_cents(terms: pl.DataFrame, loans: np.ndarray, installments: np.ndarray) -> np.ndarray:
    """The sum of the first ``installments`` installments of each loan named, in cents."""
    scheduled = terms["scheduled_cents"].to_numpy()[loans]
    raised = terms["new_cents"].to_numpy()[loans]
    change_k = terms["change_k"].to_numpy()[loans]
    return installments * scheduled + np.maximum(installments - change_k, 0) * (raised - scheduled)


def _events(rng: np.random.Generator, terms: pl.DataFrame, paths: hardship.Paths) -> pl.DataFrame:
    """One row per loan per month with money moving (or an attempt returned): the
    installment k it falls due with, the days after, the shape and the cents."""
    paid = paths.paid.astype(np.int64)
    before = np.clip(-terms["first_month"].to_numpy(), 0, terms["term_months"].to_numpy())
    counted = before + np.cumsum(paid, axis=0) - paid  # installments paid before each month
    month, loan = np.nonzero((paid > 0) | (paths.kind == hardship.BOUNCED))
    kind = paths.kind[month, loan]
    settled = counted[month, loan]
    # A returned attempt of a borrower who pays nothing was for one installment.
    attempted = np.maximum(paid[month, loan], 1)
    cents = _due_cents(terms, loan, settled + attempted) - _due_cents(terms, loan, settled)
    payoff = kind == hardship.PAYOFF
    cents = cents + np.where(payoff, terms["current_cents"].to_numpy()[loan], 0)
    return pl.DataFrame(
        {
            "_row": loan,
            "k": month - terms["first_month"].to_numpy()[loan],
            "offset": paths.offset[month, loan].astype(np.int64),
            "kind": kind,
            "cents": cents,
            "_s": rng.random(len(loan)),
            "_e": rng.integers(0, 1_000, len(loan)),
        }
    ).join(
        terms.with_row_index("_row").select(
            pl.col("_row").cast(pl.Int64), "loan_id", "first_payment_date"
        ),
        on="_row",
        how="left",
    )


def _ledger_rows(events: pl.DataFrame) -> pl.DataFrame:
    """The payments and reversals the events make. Each row keeps the date of the
    payment it comes from, and whether it is a returned payment or its reversal (a pair
    that nets to nothing)."""
    kind = pl.col("kind")
    split = kind == hardship.SPLIT
    returned = kind.is_in([hardship.RETURNED, hardship.BOUNCED])
    part = (pl.col("cents") * (0.4 + 0.5 * pl.col("_s"))).cast(pl.Int64)
    base = events.with_columns(
        (due(pl.col("first_payment_date"), pl.col("k")) + pl.duration(days=pl.col("offset"))).alias(
            "posted_date"
        ),
        pl.format("T{}-{}", pl.col("loan_id"), pl.col("k")).alias("txn_id"),
        pl.when(split).then(part).otherwise(pl.col("cents")).alias("_first_cents"),
        returned.alias("_undone"),
    ).with_columns(
        (pl.col("posted_date") + pl.duration(days=2 + pl.col("_e") % 7)).alias("_returned_on")
    )
    first = _rows(base, pl.col("posted_date"), pl.col("_first_cents"), pl.col("txn_id"))
    made_up = _rows(
        base.filter(split).with_columns(pl.lit(False).alias("_undone")),
        pl.col("posted_date") + pl.duration(days=7 + pl.col("_e") % 12),
        pl.col("cents") - pl.col("_first_cents"),
        pl.format("M{}", pl.col("txn_id")),
    )
    reversals = _rows(
        base.filter(returned),
        pl.col("_returned_on"),
        pl.col("cents"),
        pl.format("R{}", pl.col("txn_id")),
        reverses=pl.col("txn_id"),
    )
    presented = _rows(
        base.filter(kind == hardship.RETURNED).with_columns(pl.lit(False).alias("_undone")),
        pl.col("_returned_on") + pl.duration(days=5 + pl.col("_e") % 8),
        pl.col("cents"),
        pl.format("P{}", pl.col("txn_id")),
    )
    return pl.concat([first, made_up, reversals, presented])


def _rows(
    events: pl.DataFrame,
    posted: pl.Expr,
    cents: pl.Expr,
    txn_id: pl.Expr,
    reverses: pl.Expr | None = None,
) -> pl.DataFrame:
    """Ledger rows, one per event: a payment, or (``reverses`` given) an NSF reversal."""
    return events.select(
        "loan_id",
        posted.alias("posted_date"),
        cents.alias("cents"),
        txn_id.alias("txn_id"),
        pl.lit("payment" if reverses is None else "reversal").alias("txn_type"),
        (pl.lit(None, dtype=pl.String) if reverses is None else reverses).alias("reverses_txn_id"),
        pl.lit(None if reverses is None else "NSF", dtype=pl.String).alias("return_reason"),
        pl.col("posted_date").alias("_payment_date"),
        "_undone",
    )


def _ledger(
    rng: np.random.Generator,
    terms: pl.DataFrame,
    paths: hardship.Paths,
    calendar: _Calendar,
) -> pl.DataFrame:
    """The ledger from its opening day to the end: an opening payment on the first day
    that covers what each loan had paid before (the balance the servicer boarded), then
    the rows as they post."""
    rows = _ledger_rows(_events(rng, terms, paths))
    # A returned payment before the ledger opens and its reversal net to nothing: both go.
    before = pl.col("posted_date") < calendar.opening
    rows = rows.filter(~(pl.col("_undone") & (pl.col("_payment_date") < calendar.opening)))
    opening = _opening_payments(terms, rows.filter(before), calendar.opening)
    # Loans gone before the ledger opens have none; one charged off or referred at 180
    # days past due takes no money after that day.
    present = terms.filter(pl.Series(paths.exit_month >= calendar.window_month - 1))
    stops = terms.select(
        "loan_id",
        pl.when(pl.Series(paths.oldest_unpaid >= 0))
        .then(
            due(pl.col("first_payment_date"), pl.lit(pl.Series(np.maximum(paths.oldest_unpaid, 0))))
            + pl.duration(days=180)
        )
        .alias("_stop"),
    )
    return (
        pl.concat([opening, rows.filter(~before).select(LEDGER_COLUMNS)])
        .join(present.select("loan_id"), on="loan_id", how="semi")
        .join(stops, on="loan_id", how="left")
        .filter(pl.col("posted_date") <= pl.min_horizontal(pl.col("_stop"), pl.lit(calendar.end)))
        .with_columns(money(pl.col("cents")).alias("amount"))
        .sort("posted_date", maintain_order=True)
        .drop("_stop")
    )


def _opening_payments(terms: pl.DataFrame, paid: pl.DataFrame, opening: date) -> pl.DataFrame:
    """One payment per loan on the opening day: every installment due before the model's
    first month (all paid), and what the model had the loan pay before the opening."""
    installments = np.clip(-terms["first_month"].to_numpy(), 0, terms["term_months"].to_numpy())
    owed = _due_cents(terms, np.arange(terms.height), installments)
    paid_before = paid.group_by("loan_id").agg(pl.col("cents").sum().alias("_paid"))
    return (
        terms.select("loan_id")
        .with_columns(pl.Series("_owed", owed))
        .join(paid_before, on="loan_id", how="left")
        .select(
            "loan_id",
            pl.lit(opening).alias("posted_date"),
            (pl.col("_owed") + pl.col("_paid").fill_null(0)).alias("cents"),
            pl.format("B{}", pl.col("loan_id")).alias("txn_id"),
            pl.lit("payment").alias("txn_type"),
            pl.lit(None, dtype=pl.String).alias("reverses_txn_id"),
            pl.lit(None, dtype=pl.String).alias("return_reason"),
        )
        .filter(pl.col("cents") > 0)
    )


# --------------------------------------------------------------------------- the other feeds


def _senior_liens(terms: pl.DataFrame, paths: hardship.Paths, calendar: _Calendar) -> pl.DataFrame:
    """A report on each second lien's first lien at every month end of the ledger, from
    the month before its first installment, while the second lien is in the book."""
    months = np.array(
        [
            m
            for m in range(calendar.months)
            if calendar.opening <= calendar.month_end(m) <= calendar.end
        ],
        dtype=np.int64,
    )
    second = terms["second"].to_numpy()
    first_month = terms["first_month"].to_numpy()
    in_book = (paths.status == hardship.ACTIVE) | (paths.exit_month[None, :] > months[:, None])
    shown = second & (months[:, None] >= first_month - 1) & in_book
    # Loan by loan, month by month: the chunk's loans are in loan_id order already.
    rows, at = np.nonzero(shown.T)
    return pl.DataFrame(
        {
            "loan_id": terms["loan_id"].gather(rows),
            "reported_date": pl.Series(
                [calendar.month_end(int(m)) for m in months], dtype=pl.Date
            ).gather(at),
            "senior_days_past_due": paths.senior_dpd[months[at], rows].astype(np.int64),
        }
    )


def _loss_mit(
    rng: np.random.Generator,
    terms: pl.DataFrame,
    paths: hardship.Paths,
    calendar: _Calendar,
) -> pl.DataFrame:
    """A case for some loans as they fall two installments behind (a repayment plan, a
    forbearance, an application), and a few applications from borrowers not behind."""
    n = terms.height
    month = paths.case_month
    k = month - terms["first_month"].to_numpy()
    background = (month < 0) & (rng.random(n) < BACKGROUND_CASES)
    opened_days = rng.integers(10, 40, n)
    background_days = rng.integers(20, 400, n)
    length = rng.integers(60, 150, n)
    case_type = np.array(CASE_TYPES)[rng.integers(0, len(CASE_TYPES), n)]
    cases = (
        terms.select("loan_id", "first_payment_date")
        .with_columns(
            pl.Series("_k", k),
            pl.Series("_behind", month >= calendar.window_month),
            pl.Series("_background", background),
            pl.Series("_opened_days", opened_days),
            pl.Series("_background_days", background_days),
            pl.Series("_length", length),
            pl.Series("case_type", case_type),
        )
        .filter(pl.col("_behind") | pl.col("_background"))
        .with_columns(
            pl.when(pl.col("_behind"))
            .then(
                due(pl.col("first_payment_date"), pl.col("_k"))
                + pl.duration(days=pl.col("_opened_days"))
            )
            .otherwise(pl.lit(calendar.end) - pl.duration(days=pl.col("_background_days")))
            .alias("opened_date")
        )
        .filter(
            (pl.col("opened_date") > calendar.opening) & (pl.col("opened_date") <= calendar.end)
        )
        .with_columns(
            (pl.col("opened_date") + pl.duration(days=pl.col("_length"))).alias("_closes")
        )
    )
    closed = pl.col("_closes") <= calendar.end
    return cases.select(
        "loan_id",
        "case_type",
        pl.when(closed).then(pl.lit("closed")).otherwise(pl.lit("open")).alias("status"),
        "opened_date",
        pl.when(closed).then(pl.col("_closes")).alias("closed_date"),
    )


def _bankruptcies(
    rng: np.random.Generator,
    people: pl.DataFrame,
    terms: pl.DataFrame,
    paths: hardship.Paths,
    calendar: _Calendar,
) -> pl.DataFrame:
    """Half the loans kept active at 180 days are so because the borrower filed for
    bankruptcy, a few months into the delinquency."""
    kept = (paths.status == hardship.ACTIVE) & (paths.exit_month != hardship.NEVER)
    filed = kept & (rng.random(terms.height) < BANKRUPT_SHARE)
    rows = np.flatnonzero(filed)
    if not len(rows):
        return people
    filings = (
        terms[rows]
        .select(
            "borrower_id",
            (
                due(pl.col("first_payment_date"), pl.lit(pl.Series(paths.oldest_unpaid[rows])))
                + pl.duration(days=pl.lit(pl.Series(rng.integers(60, 150, len(rows)))))
            ).alias("_filed"),
        )
        .with_columns(pl.min_horizontal(pl.col("_filed"), pl.lit(calendar.end)))
        .group_by("borrower_id")
        .agg(pl.col("_filed").min())
    )
    return (
        people.join(filings, on="borrower_id", how="left", maintain_order="left")
        .with_columns(
            pl.when(pl.col("_filed").is_not_null())
            .then(pl.lit("true"))
            .otherwise(pl.col("bankruptcy"))
            .alias("bankruptcy"),
            pl.when(pl.col("_filed").is_not_null())
            .then(pl.col("_filed").dt.strftime("%Y-%m-%d"))
            .otherwise(pl.col("bankruptcy_filed_date"))
            .alias("bankruptcy_filed_date"),
        )
        .drop("_filed")
    )
