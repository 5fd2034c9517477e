"""The stressed profile: a portfolio in which trouble is common, for volume.

Payment behaviours, one per loan: ``on_time``, ``late`` (5-25 days after the due
date), ``partial`` (now and then 40-90 % of the installment), ``paid_ahead`` (a double
payment now and then), ``nsf`` (some payments returned unpaid by a reversal, most
re-presented later), ``stopped`` (pays, then stops: rolls to 30/60/90/120+),
``rolling`` (misses one installment, then stays one behind). About a third of the
second liens are flagged every night: far more than a real book (see the realistic
profile), which is what the benchmarks and the tests that need many flagged loans want.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from lienwatch.synthetic.common import (
    CASE_TYPES,
    STATE_SHARES,
    STATES,
    Chunk,
    add_months,
    behaviour_counts,
    borrowers,
    due,
    finish_loans,
    identity_columns,
    lien_mix,
    loan_amounts,
    money,
    payment_changes,
    terms_columns,
)

BEHAVIOURS = ("on_time", "late", "partial", "paid_ahead", "nsf", "stopped", "rolling")
BEHAVIOUR_SHARES = (0.55, 0.12, 0.08, 0.05, 0.07, 0.08, 0.05)


def chunk(
    rng: np.random.Generator, first: int, n: int, start: date, end: date, months: int
) -> Chunk:
    """Loans ``first`` to ``first + n - 1`` and their rows, drawn from ``rng``."""
    portfolio = _loans(rng, first, n, end, months)
    people = borrowers(rng, portfolio)
    changes = payment_changes(portfolio, end)
    ledger = _ledger(rng, portfolio, changes, start, end)
    senior = _senior_liens(rng, portfolio, end)
    cases = _loss_mit(rng, portfolio, end)
    counts = behaviour_counts(portfolio, BEHAVIOURS)
    return Chunk(portfolio, people, changes, ledger, senior, cases, counts)


def _loans(rng: np.random.Generator, first: int, n: int, end: date, months: int) -> pl.DataFrame:
    idx, second, heloc = lien_mix(rng, first, n)
    age = np.where(
        rng.random(n) < 0.1, rng.integers(1, months, n), rng.integers(months + 2, months + 110, n)
    )
    heloc_eod = heloc & (rng.random(n) < 0.12)  # draw period ending near the end of the ledger
    age = np.where(heloc_eod, rng.integers(110, 124, n), age)
    day = rng.choice([1, 15, 28, 29, 30, 31], n, p=[0.8, 0.12, 0.02, 0.02, 0.02, 0.02])
    end_index = end.year * 12 + end.month - 1
    first_index = end_index - age + 1
    fpd_year, fpd_month = first_index // 12, first_index % 12 + 1
    future = rng.random(n) < 0.005  # a few loans whose first payment is still ahead
    fpd_year = np.where(future, end.year + (end.month) // 12, fpd_year)
    fpd_month = np.where(future, end.month % 12 + 1, fpd_month)
    term, rate, balance, amortizing, payment, senior = loan_amounts(rng, n, second, heloc)
    cltv = np.where(second, rng.uniform(0.55, 1.18, n), rng.uniform(0.45, 0.95, n))
    value = np.where(second, (senior + balance) / cltv, balance / cltv)
    behaviour = rng.choice(len(BEHAVIOURS), n, p=BEHAVIOUR_SHARES)
    status = rng.choice(5, n, p=[0.92, 0.05, 0.01, 0.01, 0.01])
    state = rng.choice(len(STATES), n, p=STATE_SHARES)
    occupancy = rng.choice(3, n, p=[0.85, 0.08, 0.07])
    frame = pl.DataFrame(
        {
            **identity_columns(idx, second, heloc),
            "_fpd_y": fpd_year,
            "_fpd_m": fpd_month,
            "_day": day,
            **terms_columns(
                payment, amortizing, term, rate, balance, senior, value, state, occupancy
            ),
            "status": np.array(("active", "paid_off", "charged_off", "foreclosure", "transferred"))[
                status
            ],
            "behaviour": np.array(BEHAVIOURS)[behaviour],
            "_u": rng.random(n),
            "_v": rng.random(n),
        }
    )
    return finish_loans(frame)


def _schedule(loans: pl.DataFrame, changes: pl.DataFrame, start: date, end: date) -> pl.DataFrame:
    """Every installment due in the window: loan, k, due date, amount in cents."""
    months_since = (
        (end.year * 12 + end.month)
        - (pl.col("first_payment_date").dt.year() * 12 + pl.col("first_payment_date").dt.month())
    ).cast(pl.Int32)
    return (
        loans.select(
            "loan_id",
            "first_payment_date",
            "scheduled_cents",
            "term_months",
            "behaviour",
            "status",
            "_u",
            "_v",
            months_since.alias("_last"),
        )
        .filter(pl.col("_last") >= 0)
        .with_columns(
            pl.int_ranges(0, pl.min_horizontal(pl.col("_last") + 1, pl.col("term_months"))).alias(
                "k"
            )
        )
        .explode("k")
        .with_columns(due(pl.col("first_payment_date"), pl.col("k")).alias("due"))
        .filter((pl.col("due") <= end) & (pl.col("due") > start))
        .join(
            changes.select(
                "loan_id",
                pl.col("effective_due_date").alias("_from"),
                pl.col("cents").alias("_new"),
            ),
            on="loan_id",
            how="left",
        )
        .with_columns(
            pl.when(pl.col("_from").is_not_null() & (pl.col("due") >= pl.col("_from")))
            .then(pl.col("_new"))
            .otherwise(pl.col("scheduled_cents"))
            .alias("amount")
        )
        .group_by("loan_id", "k", maintain_order=True)
        .agg(
            pl.col("due").first(),
            pl.col("amount").max(),
            pl.col("behaviour").first(),
            pl.col("status").first(),
            pl.col("_u").first(),
            pl.col("_v").first(),
            pl.col("_last").first(),
        )
    )


def _ledger(
    rng: np.random.Generator, loans: pl.DataFrame, changes: pl.DataFrame, start: date, end: date
) -> pl.DataFrame:
    schedule = _schedule(loans, changes, start, end)
    n = schedule.height
    noise, size, extra = rng.random(n), rng.random(n), rng.integers(0, 30, n)
    s = schedule.with_columns(
        pl.Series("_r", noise),
        pl.Series("_s", size),
        pl.Series("_e", extra),
        pl.col("k").max().over("loan_id").alias("_kmax"),
        pl.col("k").min().over("loan_id").alias("_kmin"),
    )
    b = pl.col("behaviour")
    span = pl.col("_kmax") - pl.col("_kmin")
    stop_at = pl.col("_kmin") + (span * (0.35 + 0.5 * pl.col("_u"))).cast(pl.Int64)
    skip_at = pl.col("_kmin") + (span * (0.3 + 0.4 * pl.col("_v"))).cast(pl.Int64)
    left = pl.col("status") != "active"
    pays = ~(
        ((b == "stopped") & (pl.col("k") >= stop_at))
        | ((b == "rolling") & (pl.col("k") == skip_at))
        | (left & (pl.col("k") >= pl.col("_kmin") + (span * 0.6).cast(pl.Int64)))
    )
    # Late payers keep to their own habit (5 to 22 days late, give or take 3); those who
    # will stop drift later and later over the four installments before they stop.
    habit = 5 + (pl.col("_u") * 14).cast(pl.Int64)
    before_stop = stop_at - pl.col("k")
    offset = (
        pl.when((b == "stopped") & before_stop.is_between(1, 4))
        .then(28 - 6 * before_stop + pl.col("_e") % 3)
        .when(b == "late")
        .then(habit + pl.col("_e") % 7 - 3)
        .when(b == "on_time")
        .then((pl.col("_e") % 7) - 3)
        .otherwise(pl.col("_e") % 4)
    )
    amount = (
        pl.when((b == "partial") & (pl.col("_r") < 0.35))
        .then((pl.col("amount") * (0.4 + 0.5 * pl.col("_s"))).cast(pl.Int64))
        .when((b == "paid_ahead") & (pl.col("k") % 6 == 0))
        .then(pl.col("amount") * 2)
        .otherwise(pl.col("amount"))
    )
    payments = (
        s.filter(pays)
        .with_columns(
            (pl.col("due") + pl.duration(days=offset)).alias("posted_date"),
            amount.alias("cents"),
            pl.format("T{}-{}", pl.col("loan_id"), pl.col("k")).alias("txn_id"),
        )
        .filter(
            (pl.col("posted_date") > start) & (pl.col("posted_date") <= end) & (pl.col("cents") > 0)
        )
    )
    returned = payments.filter((pl.col("behaviour") == "nsf") & (pl.col("_r") < 0.18))
    reversals = returned.select(
        "loan_id",
        (pl.col("posted_date") + pl.duration(days=2 + pl.col("_e") % 9)).alias("posted_date"),
        "cents",
        pl.format("R{}", pl.col("txn_id")).alias("txn_id"),
        pl.lit("reversal").alias("txn_type"),
        pl.col("txn_id").alias("reverses_txn_id"),
        pl.lit("NSF").alias("return_reason"),
    )
    # Most short payments are made up a few weeks later.
    made_up = payments.filter(
        (pl.col("behaviour") == "partial")
        & (pl.col("cents") < pl.col("amount"))
        & (pl.col("_s") < 0.8)
    ).select(
        "loan_id",
        (pl.col("posted_date") + pl.duration(days=18 + pl.col("_e") % 7)).alias("posted_date"),
        (pl.col("amount") - pl.col("cents")).alias("cents"),
        pl.format("M{}", pl.col("txn_id")).alias("txn_id"),
        pl.lit("payment").alias("txn_type"),
        pl.lit(None, dtype=pl.String).alias("reverses_txn_id"),
        pl.lit(None, dtype=pl.String).alias("return_reason"),
    )
    represented = returned.filter(pl.col("_s") < 0.6).select(
        "loan_id",
        (pl.col("posted_date") + pl.duration(days=14 + pl.col("_e") % 10)).alias("posted_date"),
        "cents",
        pl.format("P{}", pl.col("txn_id")).alias("txn_id"),
        pl.lit("payment").alias("txn_type"),
        pl.lit(None, dtype=pl.String).alias("reverses_txn_id"),
        pl.lit(None, dtype=pl.String).alias("return_reason"),
    )
    # Loans boarded before the ledger's window arrive paid to date: one boarding payment
    # on the window's first day covers every installment due before it.
    months_before = (
        (start.year * 12 + start.month)
        - (pl.col("first_payment_date").dt.year() * 12 + pl.col("first_payment_date").dt.month())
        + (pl.col("first_payment_date").dt.day() <= start.day).cast(pl.Int32)
    )
    boarded = (
        loans.with_columns(pl.min_horizontal(months_before, pl.col("term_months")).alias("_n"))
        .filter(pl.col("_n") > 0)
        .select(
            "loan_id",
            pl.lit(start + timedelta(days=1)).alias("posted_date"),
            (pl.col("_n") * pl.col("scheduled_cents")).alias("cents"),
            pl.format("B{}", pl.col("loan_id")).alias("txn_id"),
            pl.lit("payment").alias("txn_type"),
            pl.lit(None, dtype=pl.String).alias("reverses_txn_id"),
            pl.lit(None, dtype=pl.String).alias("return_reason"),
        )
    )
    plain = payments.select(
        "loan_id",
        "posted_date",
        "cents",
        "txn_id",
        pl.lit("payment").alias("txn_type"),
        pl.lit(None, dtype=pl.String).alias("reverses_txn_id"),
        pl.lit(None, dtype=pl.String).alias("return_reason"),
    )
    return (
        pl.concat([boarded, plain, reversals, represented, made_up])
        .filter(pl.col("posted_date") <= end)
        .with_columns(money(pl.col("cents")).alias("amount"))
        .sort("posted_date", "txn_id")
    )


def _senior_liens(rng: np.random.Generator, loans: pl.DataFrame, end: date) -> pl.DataFrame:
    seconds = loans.filter(pl.col("lien_position") == 2).select("loan_id", "_u")
    n = seconds.height
    trouble = rng.random(n) < 0.07
    latest = end.replace(day=1) - timedelta(days=1)
    months = [add_months(latest.replace(day=1), -i) for i in (2, 1, 0)]
    month_ends = [add_months(m, 1) - timedelta(days=1) for m in months]
    frames = []
    for step, reported in enumerate(month_ends):
        frames.append(
            seconds.with_columns(
                pl.lit(reported).alias("reported_date"),
                pl.Series("senior_days_past_due", np.where(trouble, 30 * (step + 1), 0)),
            )
        )
    return pl.concat(frames).sort("loan_id", "reported_date")


def _loss_mit(rng: np.random.Generator, loans: pl.DataFrame, end: date) -> pl.DataFrame:
    picked = loans.filter(pl.Series(rng.random(loans.height) < 0.015))
    n = picked.height
    opened = [end - timedelta(days=int(d)) for d in rng.integers(20, 400, n)]
    closed = rng.random(n) < 0.3
    return (
        picked.select("loan_id")
        .with_columns(
            pl.Series("case_type", np.array(CASE_TYPES)[rng.integers(0, 4, n)]),
            pl.Series("status", np.where(closed, "closed", "open")),
            pl.Series("opened_date", opened, dtype=pl.Date),
            pl.Series(
                "closed_date",
                [
                    o + timedelta(days=90) if c and o + timedelta(days=90) <= end else None
                    for o, c in zip(opened, closed, strict=True)
                ],
                dtype=pl.Date,
            ),
        )
        .with_columns(
            pl.when(pl.col("closed_date").is_null())
            .then(pl.lit("open"))
            .otherwise(pl.col("status"))
            .alias("status")
        )
    )
