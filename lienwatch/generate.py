"""A synthetic landing folder in the contract's format, deterministic by seed.

``generate(out, loans, months, seed, end_date, profile)`` writes loans.csv,
borrowers.csv, payment_changes.csv, senior_liens.csv, loss_mit.csv and one ledger file
per day with rows (payments/payments_YYYY-MM-DD.csv) covering ``months`` months up to
``end_date``.

Two profiles:

- ``realistic`` (the default): a normal-year second-lien book, delinquency driven by
  hidden hardship events that show first, imperfectly, in the signals the night
  computes (:mod:`lienwatch.synthetic.realistic`; its figures on the bundled sample
  are in docs/portfolio.md);
- ``stressed``: a book in which trouble is common, for tests and benchmarks that need
  volume (:mod:`lienwatch.synthetic.stressed`).

The portfolio is generated in chunks of loans, each with its own random stream seeded
from (seed, chunk), vectorised with numpy, and appended to the files, so memory stays
bounded at a million loans. Nothing depends on the clock.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from lienwatch.synthetic import realistic, stressed
from lienwatch.synthetic.common import Chunk, add_months
from lienwatch.synthetic.stressed import BEHAVIOURS
from transforms.contract import BORROWERS, LOANS, LOSS_MIT, PAYMENT_CHANGES, PAYMENTS, SENIOR_LIENS

CHUNK = 50_000
PROFILES = {"realistic": realistic, "stressed": stressed}


@dataclass
class GenerateSummary:
    """What was written: rows per file kind, loans per payment behaviour and per status."""

    loans: int = 0
    borrowers: int = 0
    payments: int = 0
    reversals: int = 0
    payment_changes: int = 0
    senior_liens: int = 0
    loss_mit: int = 0
    ledger_files: int = 0
    behaviours: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BEHAVIOURS, 0))
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Rows written in all the feed files."""
        return (
            self.loans
            + self.borrowers
            + self.payments
            + self.reversals
            + self.payment_changes
            + self.senior_liens
            + self.loss_mit
        )

    def __str__(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in self.behaviours.items())
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        return (
            f"{self.loans} loans, {self.borrowers} borrowers, {self.payments} payments, "
            f"{self.reversals} reversals in {self.ledger_files} daily files, "
            f"{self.payment_changes} payment changes, {self.senior_liens} senior-lien reports, "
            f"{self.loss_mit} loss-mitigation cases; behaviours: {kinds}; statuses: {statuses}"
        )


def generate(
    out: Path,
    loans: int,
    months: int = 24,
    seed: int = 7,
    end_date: date = date(2026, 11, 20),
    profile: str = "realistic",
) -> GenerateSummary:
    """Write a landing folder of ``loans`` loans and ``months`` months of ledger to ``out``."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: one of {', '.join(PROFILES)}")
    make = PROFILES[profile].chunk
    if (out / "payments").exists():
        shutil.rmtree(out / "payments")
    (out / "payments").mkdir(parents=True, exist_ok=True)
    start = add_months(end_date, -months)
    summary = GenerateSummary(behaviours=dict.fromkeys(PROFILES[profile].BEHAVIOURS, 0))
    writers = _Writers(out)
    days_written: set[str] = set()
    for chunk, first in enumerate(range(0, loans, CHUNK)):
        rng = np.random.default_rng([seed, chunk])
        n = min(CHUNK, loans - first)
        part = make(rng, first, n, start, end_date, months)
        writers.append("loans", _taken_over_in_default(part.loans).select(LOANS.column_names))
        writers.append("borrowers", part.borrowers.select(BORROWERS.column_names))
        writers.append("payment_changes", part.payment_changes.select(PAYMENT_CHANGES.column_names))
        writers.append("senior_liens", part.senior_liens.select(SENIOR_LIENS.column_names))
        writers.append("loss_mit", part.loss_mit.select(LOSS_MIT.column_names))
        for (day,), rows in part.ledger.partition_by(
            "posted_date", as_dict=True, maintain_order=True
        ).items():
            name = f"payments_{day}.csv"
            _append(
                out / "payments" / name,
                rows.select(PAYMENTS.column_names),
                name not in days_written,
            )
            days_written.add(name)
        _count(summary, part, n)
    summary.ledger_files = len(days_written)
    return summary


def _count(summary: GenerateSummary, part: Chunk, n: int) -> None:
    ledger = part.ledger
    summary.loans += n
    summary.borrowers += part.borrowers.height
    summary.payments += int((ledger["txn_type"] == "payment").sum())
    summary.reversals += int((ledger["txn_type"] == "reversal").sum())
    summary.payment_changes += part.payment_changes.height
    summary.senior_liens += part.senior_liens.height
    summary.loss_mit += part.loss_mit.height
    for name, count in part.behaviours.items():
        summary.behaviours[name] += count
    for name, count in part.loans.group_by("status").len().iter_rows():
        summary.statuses[name] = summary.statuses.get(name, 0) + count


# --------------------------------------------------------------------------- writing


class _Writers:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.started: set[str] = set()  # feeds whose file has its header written

    def append(self, feed: str, frame: pl.DataFrame) -> None:
        _append(self.out / f"{feed}.csv", frame, feed not in self.started)
        self.started.add(feed)


def _taken_over_in_default(loans: pl.DataFrame) -> pl.DataFrame:
    """A few loans (one in 40) whose servicing was taken over in default: the servicer is
    a debt collector for them. Set by the loan's number, not drawn, so that the other
    figures of a seed stay as they were."""
    return loans.with_columns(
        pl.when(pl.col("_i") % 40 == 7)
        .then(pl.lit("true"))
        .otherwise(pl.lit("false"))
        .alias("acquired_in_default")
    )


def _append(path: Path, frame: pl.DataFrame, header: bool) -> None:
    text = frame.write_csv(include_header=header, quote_style="necessary", date_format="%Y-%m-%d")
    with path.open("w" if header else "a", encoding="utf-8", newline="") as handle:
        handle.write(text)


__all__ = ["BEHAVIOURS", "PROFILES", "GenerateSummary", "generate"]
