"""A synthetic landing folder in the contract's format, deterministic by seed.

``generate(out, loans, months, seed, end_date)`` writes loans.csv, borrowers.csv,
payment_changes.csv, senior_liens.csv, loss_mit.csv and one ledger file per day with
rows (payments/payments_YYYY-MM-DD.csv) covering ``months`` months up to ``end_date``.

The portfolio is generated in chunks of loans, each with its own random stream seeded
from (seed, chunk), vectorised with numpy, and appended to the files, so memory stays
bounded at a million loans. Nothing depends on the clock.

Payment behaviours, one per loan: ``on_time``, ``late`` (5-25 days after the due
date), ``partial`` (now and then 40-90 % of the installment), ``paid_ahead`` (a double
payment now and then), ``nsf`` (some payments returned unpaid by a reversal, most
re-presented later), ``stopped`` (pays, then stops: rolls to 30/60/90/120+),
``rolling`` (misses one installment, then stays one behind).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from transforms.contract import BORROWERS, LOANS, LOSS_MIT, PAYMENT_CHANGES, PAYMENTS, SENIOR_LIENS

CHUNK = 50_000
BEHAVIOURS = ("on_time", "late", "partial", "paid_ahead", "nsf", "stopped", "rolling")
BEHAVIOUR_SHARES = (0.55, 0.12, 0.08, 0.05, 0.07, 0.08, 0.05)
STATES = ("CA", "NV", "AZ", "OR", "WA", "TX", "FL", "NY")
STATE_SHARES = (0.80, 0.04, 0.04, 0.03, 0.03, 0.02, 0.02, 0.02)
CITIES = {
    "CA": [
        ("Sacramento", "958"),
        ("Fresno", "937"),
        ("Los Angeles", "900"),
        ("San José", "951"),
        ("Oakland", "946"),
        ("San Diego", "921"),
        ("Bakersfield", "933"),
        ("Santa Rosa", "954"),
    ],
    "NV": [("Las Vegas", "891"), ("Reno", "895")],
    "AZ": [("Phoenix", "850"), ("Tucson", "857")],
    "OR": [("Portland", "972")],
    "WA": [("Seattle", "981")],
    "TX": [("Austin", "787")],
    "FL": [("Miami", "331")],
    "NY": [("Albany", "122")],
}
FIRST_EN = (
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "Michael",
    "Linda",
    "David",
    "Susan",
    "Zoë",
    "Anne-Marie",
    "Seán",
    "Chloé",
    "Björn",
    "Li",
    "Priya",
    "Kwame",
)
LAST_EN = (
    "Smith",
    "Johnson",
    "O'Brien",
    "D'Angelo",
    "Nguyen",
    "Kim",
    "Ångström",
    "Miller-Davis",
    "McAllister",
    "Van der Berg",
    "Patel",
    "O'Neil",
    "Brown",
    "Wilson",
)
FIRST_ES = (
    "José",
    "María",
    "Jesús",
    "Sofía",
    "Ramón",
    "Lucía",
    "Andrés",
    "Inés",
    "Begoña",
    "Óscar",
)
LAST_ES = (
    "Núñez",
    "García",
    "Muñoz",
    "Peña",
    "Ibáñez",
    "de la Cruz",
    "Hernández",
    "López",
    "Gutiérrez",
    "Ordóñez",
)
HOSTILE = (
    ("<b>Bob</b>", "Tables'); DROP TABLE loans;--"),
    ("{{ 7*7 }}", "#set page(width: 1cm)"),
    ('Ann "Annie"', "Lee \\ Back"),
    ("$Dollar_*Star*", "@at {brace}"),
)
STREETS = (
    "Main St",
    "Oak Ave",
    "Calle Real",
    "Camino del Río",
    "Elm St",
    "Mission Blvd",
    "Via Señorita",
    "Peachtree Ln",
    "O'Farrell St",
    "Avenida Álvarez",
)
CASE_TYPES = ("forbearance", "repayment_plan", "trial_modification", "application")


@dataclass
class GenerateSummary:
    """What was written: rows per file kind and loans per payment behaviour."""

    loans: int = 0
    borrowers: int = 0
    payments: int = 0
    reversals: int = 0
    payment_changes: int = 0
    senior_liens: int = 0
    loss_mit: int = 0
    ledger_files: int = 0
    behaviours: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BEHAVIOURS, 0))

    def __str__(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in self.behaviours.items())
        return (
            f"{self.loans} loans, {self.borrowers} borrowers, {self.payments} payments, "
            f"{self.reversals} reversals in {self.ledger_files} daily files, "
            f"{self.payment_changes} payment changes, {self.senior_liens} senior-lien reports, "
            f"{self.loss_mit} loss-mitigation cases; behaviours: {kinds}"
        )


def generate(
    out: Path, loans: int, months: int = 24, seed: int = 7, end_date: date = date(2026, 11, 20)
) -> GenerateSummary:
    """Write a landing folder of ``loans`` loans and ``months`` months of ledger to ``out``."""
    if (out / "payments").exists():
        shutil.rmtree(out / "payments")
    (out / "payments").mkdir(parents=True, exist_ok=True)
    start = _add_months(end_date, -months)
    summary = GenerateSummary()
    writers = _Writers(out)
    days_written: set[str] = set()
    for chunk, first in enumerate(range(0, loans, CHUNK)):
        rng = np.random.default_rng([seed, chunk])
        n = min(CHUNK, loans - first)
        portfolio = _loans(rng, first, n, end_date, months)
        people = _borrowers(rng, portfolio)
        changes = _payment_changes(rng, portfolio, end_date)
        ledger = _ledger(rng, portfolio, changes, start, end_date)
        writers.append("loans", portfolio.select(LOANS.column_names))
        writers.append("borrowers", people.select(BORROWERS.column_names))
        writers.append("payment_changes", changes.select(PAYMENT_CHANGES.column_names))
        senior = _senior_liens(rng, portfolio, end_date)
        writers.append("senior_liens", senior.select(SENIOR_LIENS.column_names))
        cases = _loss_mit(rng, portfolio, end_date)
        writers.append("loss_mit", cases.select(LOSS_MIT.column_names))
        for (day,), rows in ledger.partition_by(
            "posted_date", as_dict=True, maintain_order=True
        ).items():
            name = f"payments_{day}.csv"
            _append(
                out / "payments" / name,
                rows.select(PAYMENTS.column_names),
                name not in days_written,
            )
            days_written.add(name)
        summary.loans += n
        summary.borrowers += people.height
        summary.payments += int((ledger["txn_type"] == "payment").sum())
        summary.reversals += int((ledger["txn_type"] == "reversal").sum())
        summary.payment_changes += changes.height
        summary.senior_liens += senior.height
        summary.loss_mit += cases.height
        for name, count in portfolio.group_by("behaviour").len().iter_rows():
            summary.behaviours[name] += count
    summary.ledger_files = len(days_written)
    return summary


# --------------------------------------------------------------------------- writing


class _Writers:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.started: set[str] = set()  # feeds whose file has its header written

    def append(self, feed: str, frame: pl.DataFrame) -> None:
        _append(self.out / f"{feed}.csv", frame, feed not in self.started)
        self.started.add(feed)


def _append(path: Path, frame: pl.DataFrame, header: bool) -> None:
    text = frame.write_csv(include_header=header, quote_style="necessary", date_format="%Y-%m-%d")
    with path.open("w" if header else "a", encoding="utf-8", newline="") as handle:
        handle.write(text)


def _money(cents: pl.Expr) -> pl.Expr:
    """Integer cents as text with exactly two decimals."""
    return pl.format("{}.{}", cents // 100, (cents % 100).cast(pl.String).str.zfill(2))


# --------------------------------------------------------------------------- dates


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = (date(year + (month + 1) // 12, (month + 1) % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month + 1, min(day.day, last))


def _due(first: pl.Expr, k: pl.Expr) -> pl.Expr:
    """Installment k's due date (contract rule 1)."""
    from transforms.delinquency import due_date

    return due_date(first, k.cast(pl.Int32))


# --------------------------------------------------------------------------- loans


def _loans(rng: np.random.Generator, first: int, n: int, end: date, months: int) -> pl.DataFrame:
    idx = np.arange(first, first + n)
    second = rng.random(n) < 2 / 3
    heloc = second & (rng.random(n) < 0.45)
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
    term = np.where(
        ~second, 360, np.where(heloc, rng.choice([240, 300], n), rng.choice([120, 180, 240], n))
    )
    rate = np.round(np.where(second, rng.uniform(6.0, 11.5, n), rng.uniform(3.0, 7.5, n)) * 8) / 8
    balance = np.where(second, rng.uniform(20_000, 150_000, n), rng.uniform(200_000, 850_000, n))
    monthly = rate / 1200
    amortizing = balance * monthly / (1 - (1 + monthly) ** -term)
    payment = np.where(heloc, balance * monthly, amortizing)  # HELOCs pay interest during the draw
    senior = np.where(second, rng.uniform(150_000, 700_000, n), 0.0)
    cltv = np.where(second, rng.uniform(0.55, 1.18, n), rng.uniform(0.45, 0.95, n))
    value = np.where(second, (senior + balance) / cltv, balance / cltv)
    behaviour = rng.choice(len(BEHAVIOURS), n, p=BEHAVIOUR_SHARES)
    status = rng.choice(5, n, p=[0.92, 0.05, 0.01, 0.01, 0.01])
    state = rng.choice(len(STATES), n, p=STATE_SHARES)
    occupancy = rng.choice(3, n, p=[0.85, 0.08, 0.07])
    share_borrower = second & (idx % 50 == 1)  # owns the first lien just before it too
    frame = pl.DataFrame(
        {
            "_i": idx,
            "loan_id": [f"LN{i:08d}" for i in idx],
            "borrower_id": [
                f"BR{(i - 1 if s else i):08d}" for i, s in zip(idx, share_borrower, strict=True)
            ],
            "lien_position": np.where(second, 2, 1),
            "product": np.where(heloc, "heloc", "closed_end"),
            "_fpd_y": fpd_year,
            "_fpd_m": fpd_month,
            "_day": day,
            "scheduled_cents": np.maximum(np.round(payment * 100), 100).astype(np.int64),
            "amortizing_cents": np.round(amortizing * 100).astype(np.int64),
            "term_months": term,
            "interest_rate": [f"{r:.3f}" for r in rate],
            "balance_cents": np.round(balance * 100).astype(np.int64),
            "senior_cents": np.round(senior * 100).astype(np.int64),
            "value_cents": np.round(value * 100).astype(np.int64),
            "property_state": np.array(STATES)[state],
            "occupancy": np.array(("primary", "second_home", "investment"))[occupancy],
            "status": np.array(("active", "paid_off", "charged_off", "foreclosure", "transferred"))[
                status
            ],
            "behaviour": np.array(BEHAVIOURS)[behaviour],
            "_u": rng.random(n),
            "_v": rng.random(n),
        }
    )
    month_start = pl.date(pl.col("_fpd_y"), pl.col("_fpd_m"), 1)
    first_payment = month_start + pl.duration(
        days=pl.min_horizontal(pl.col("_day"), month_start.dt.days_in_month().cast(pl.Int64)) - 1
    )
    return frame.with_columns(first_payment.alias("first_payment_date")).with_columns(
        (
            pl.col("first_payment_date").dt.offset_by("-1mo")
            - pl.duration(days=(pl.col("_u") * 20).cast(pl.Int64))
        ).alias("origination_date"),
        pl.when(pl.col("product") == "heloc")
        .then(_due(pl.col("first_payment_date"), pl.lit(120)))
        .alias("draw_period_end"),
        _money(pl.col("scheduled_cents")).alias("scheduled_payment"),
        _money(pl.col("balance_cents")).alias("original_balance"),
        _money((pl.col("balance_cents") * (0.75 + 0.2 * pl.col("_v"))).cast(pl.Int64)).alias(
            "current_balance"
        ),
        _money(pl.col("value_cents")).alias("property_value"),
        pl.when(pl.col("lien_position") == 2)
        .then(_money(pl.col("senior_cents")))
        .alias("senior_lien_balance"),
        # a few loans whose servicing was taken over in default (no draw, so the other
        # figures of a seed stay as they were)
        pl.when(pl.col("_i") % 40 == 7)
        .then(pl.lit("true"))
        .otherwise(pl.lit("false"))
        .alias("acquired_in_default"),
    )


def _payment_changes(rng: np.random.Generator, loans: pl.DataFrame, end: date) -> pl.DataFrame:
    """HELOC end of draw (to amortizing over what is left) and some closed-end rate resets."""
    horizon = end + timedelta(days=120)
    eod = loans.filter(
        (pl.col("product") == "heloc") & (pl.col("draw_period_end") <= horizon)
    ).select(
        "loan_id",
        pl.col("draw_period_end").alias("effective_due_date"),
        pl.max_horizontal(pl.col("amortizing_cents") * 1.15, pl.col("scheduled_cents") * 1.25)
        .cast(pl.Int64)
        .alias("cents"),
    )
    resets = (
        loans.filter((pl.col("product") == "closed_end") & (pl.col("_v") < 0.05))
        .with_columns(
            (
                (end.year * 12 + end.month)
                - (
                    pl.col("first_payment_date").dt.year() * 12
                    + pl.col("first_payment_date").dt.month()
                )
                - (pl.col("_u") * 20).cast(pl.Int32)
                + 3
            ).alias("_k")
        )
        .filter(pl.col("_k") > 0)
        .select(
            "loan_id",
            _due(pl.col("first_payment_date"), pl.col("_k")).alias("effective_due_date"),
            (pl.col("scheduled_cents") * (1.1 + 0.3 * pl.col("_u"))).cast(pl.Int64).alias("cents"),
        )
    )
    return pl.concat([eod, resets]).with_columns(_money(pl.col("cents")).alias("scheduled_payment"))


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
        .with_columns(_due(pl.col("first_payment_date"), pl.col("k")).alias("due"))
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
        .with_columns(_money(pl.col("cents")).alias("amount"))
        .sort("posted_date", "txn_id")
    )


# --------------------------------------------------------------------------- the rest


def _borrowers(rng: np.random.Generator, loans: pl.DataFrame) -> pl.DataFrame:
    people = loans.group_by("borrower_id", maintain_order=True).agg(
        pl.col("property_state").first()
    )
    n = people.height
    spanish = rng.random(n) < 0.2
    hostile = rng.random(n) < 0.002
    fe, le = rng.integers(0, len(FIRST_EN), n), rng.integers(0, len(LAST_EN), n)
    fs, ls = rng.integers(0, len(FIRST_ES), n), rng.integers(0, len(LAST_ES), n)
    hi = rng.integers(0, len(HOSTILE), n)
    first = np.where(spanish, np.array(FIRST_ES)[fs], np.array(FIRST_EN)[fe])
    last = np.where(spanish, np.array(LAST_ES)[ls], np.array(LAST_EN)[le])
    first = np.where(hostile, np.array([h[0] for h in HOSTILE])[hi], first)
    last = np.where(hostile, np.array([h[1] for h in HOSTILE])[hi], last)
    states = people["property_state"].to_numpy()
    city_pick = rng.integers(0, 8, n)
    cities, zips = [], []
    zip_tail = rng.integers(0, 100, n)
    for st, c, z in zip(states, city_pick, zip_tail, strict=True):
        options = CITIES[st]
        name, prefix = options[c % len(options)]
        cities.append(name)
        zips.append(f"{prefix}{z:02d}")
    bankrupt = rng.random(n) < 0.02
    filed = np.array([date(2026, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 300, n)])
    unit = rng.random(n)
    return people.with_columns(
        pl.Series("first_name", first),
        pl.Series("last_name", last),
        pl.Series(
            "address_line1",
            [
                f"{h} {STREETS[s]}"
                for h, s in zip(
                    rng.integers(10, 9999, n), rng.integers(0, len(STREETS), n), strict=True
                )
            ],
        ),
        pl.Series(
            "address_line2",
            np.where(unit < 0.1, "Apt 4, Rear", np.where(unit < 0.2, "Unit 12B", "")),
        ),
        pl.Series("city", cities),
        pl.col("property_state").alias("state"),
        pl.Series("zip", zips),
        pl.Series("preferred_language", np.where(spanish, "es", "en")),
        pl.Series(
            "email",
            np.where(rng.random(n) < 0.7, [f"borrower{i}@example.com" for i in range(n)], ""),
        ),
        pl.Series(
            "phone",
            np.where(
                rng.random(n) < 0.85,
                [f"(555) 01{i % 100:02d}-{i % 10000:04d}" for i in range(n)],
                "",
            ),
        ),
        pl.Series("bankruptcy", np.where(bankrupt, "true", "false")),
        pl.Series("cease_communication", np.where(rng.random(n) < 0.015, "true", "false")),
        pl.Series("deceased", np.where(rng.random(n) < 0.005, "true", "false")),
        pl.Series("bankruptcy_filed_date", np.where(bankrupt, [d.isoformat() for d in filed], "")),
    )


def _senior_liens(rng: np.random.Generator, loans: pl.DataFrame, end: date) -> pl.DataFrame:
    seconds = loans.filter(pl.col("lien_position") == 2).select("loan_id", "_u")
    n = seconds.height
    trouble = rng.random(n) < 0.07
    latest = end.replace(day=1) - timedelta(days=1)
    months = [_add_months(latest.replace(day=1), -i) for i in (2, 1, 0)]
    month_ends = [_add_months(m, 1) - timedelta(days=1) for m in months]
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


__all__ = ["BEHAVIOURS", "GenerateSummary", "generate"]
