"""What both profiles of the generator share: names and places, money and dates, the
borrowers, the payment changes and the loan master's derived columns.

Each function that draws takes the chunk's random stream and draws in a fixed order,
so a profile's output depends only on its seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import polars as pl

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
class Chunk:
    """One chunk of loans' rows for each feed, and its loans counted by payment behaviour."""

    loans: pl.DataFrame
    borrowers: pl.DataFrame
    payment_changes: pl.DataFrame
    ledger: pl.DataFrame
    senior_liens: pl.DataFrame
    loss_mit: pl.DataFrame
    behaviours: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- money and dates


def lien_mix(
    rng: np.random.Generator, first: int, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loans ``first`` to ``first + n - 1``: their numbers, which are second liens (two in
    three) and which of those are HELOCs (45 %), drawn in this order from ``rng``."""
    idx = np.arange(first, first + n)
    second = rng.random(n) < 2 / 3
    return idx, second, second & (rng.random(n) < 0.45)


def loan_amounts(
    rng: np.random.Generator, n: int, second: np.ndarray, heloc: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(term, rate, balance, amortizing payment, scheduled payment, senior balance) of a
    chunk's loans, drawn in this order from ``rng``: HELOCs pay interest only while they
    draw."""
    term = np.where(
        ~second, 360, np.where(heloc, rng.choice([240, 300], n), rng.choice([120, 180, 240], n))
    )
    rate = np.round(np.where(second, rng.uniform(6.0, 11.5, n), rng.uniform(3.0, 7.5, n)) * 8) / 8
    balance = np.where(second, rng.uniform(20_000, 150_000, n), rng.uniform(200_000, 850_000, n))
    monthly = rate / 1200
    amortizing = balance * monthly / (1 - (1 + monthly) ** -term)
    payment = np.where(heloc, balance * monthly, amortizing)
    senior = np.where(second, rng.uniform(150_000, 700_000, n), 0.0)
    return term, rate, balance, amortizing, payment, senior


def identity_columns(idx: np.ndarray, second: np.ndarray, heloc: np.ndarray) -> dict[str, object]:
    """A chunk's loan and borrower ids, lien position and product; one second lien in 50
    belongs to the borrower of the first lien just before it."""
    share_borrower = second & (idx % 50 == 1)
    return {
        "_i": idx,
        "loan_id": [f"LN{i:08d}" for i in idx],
        "borrower_id": [
            f"BR{(i - 1 if s else i):08d}" for i, s in zip(idx, share_borrower, strict=True)
        ],
        "lien_position": np.where(second, 2, 1),
        "product": np.where(heloc, "heloc", "closed_end"),
    }


def terms_columns(
    payment: np.ndarray,
    amortizing: np.ndarray,
    term: np.ndarray,
    rate: np.ndarray,
    balance: np.ndarray,
    senior: np.ndarray,
    value: np.ndarray,
    state: np.ndarray,
    occupancy: np.ndarray,
) -> dict[str, object]:
    """A chunk's loan terms as the columns the loans frame is built from (money in cents)."""
    return {
        "scheduled_cents": np.maximum(np.round(payment * 100), 100).astype(np.int64),
        "amortizing_cents": np.round(amortizing * 100).astype(np.int64),
        "term_months": term,
        "interest_rate": [f"{r:.3f}" for r in rate],
        "balance_cents": np.round(balance * 100).astype(np.int64),
        "senior_cents": np.round(senior * 100).astype(np.int64),
        "value_cents": np.round(value * 100).astype(np.int64),
        "property_state": np.array(STATES)[state],
        "occupancy": np.array(("primary", "second_home", "investment"))[occupancy],
    }


def behaviour_counts(portfolio: pl.DataFrame, names: tuple[str, ...]) -> dict[str, int]:
    """Loans per payment behaviour, every behaviour named (0 when none)."""
    counts = dict.fromkeys(names, 0)
    for name, count in portfolio.group_by("behaviour").len().iter_rows():
        counts[name] += count
    return counts


def money(cents: pl.Expr) -> pl.Expr:
    """Integer cents as text with exactly two decimals."""
    return pl.format("{}.{}", cents // 100, (cents % 100).cast(pl.String).str.zfill(2))


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = (date(year + (month + 1) // 12, (month + 1) % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month + 1, min(day.day, last))


def due(first: pl.Expr, k: pl.Expr) -> pl.Expr:
    """Installment k's due date (contract rule 1)."""
    from transforms.delinquency import due_date

    return due_date(first, k.cast(pl.Int32))


# --------------------------------------------------------------------------- loans


def finish_loans(frame: pl.DataFrame) -> pl.DataFrame:
    """The loan master's dates and money columns, from the drawn ones (no draws here)."""
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
        .then(due(pl.col("first_payment_date"), pl.lit(120)))
        .alias("draw_period_end"),
        money(pl.col("scheduled_cents")).alias("scheduled_payment"),
        money(pl.col("balance_cents")).alias("original_balance"),
        money(current_cents()).alias("current_balance"),
        money(pl.col("value_cents")).alias("property_value"),
        pl.when(pl.col("lien_position") == 2)
        .then(money(pl.col("senior_cents")))
        .alias("senior_lien_balance"),
    )


def current_cents() -> pl.Expr:
    """The balance still owed, in cents: 75-95 % of the original."""
    return (pl.col("balance_cents") * (0.75 + 0.2 * pl.col("_v"))).cast(pl.Int64)


def payment_changes(loans: pl.DataFrame, end: date) -> pl.DataFrame:
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
            due(pl.col("first_payment_date"), pl.col("_k")).alias("effective_due_date"),
            (pl.col("scheduled_cents") * (1.1 + 0.3 * pl.col("_u"))).cast(pl.Int64).alias("cents"),
        )
    )
    return pl.concat([eod, resets]).with_columns(money(pl.col("cents")).alias("scheduled_payment"))


# --------------------------------------------------------------------------- borrowers


def borrowers(rng: np.random.Generator, loans: pl.DataFrame) -> pl.DataFrame:
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
