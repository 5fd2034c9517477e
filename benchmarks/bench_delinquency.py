"""Benchmark: the nightly status step (net_paid.sql + loan_status) against plain pandas.

Builds a synthetic warehouse in a temporary folder (``--loans`` loans, ``--months``
installments of payments each: about 24M ledger rows at 1M loans, with returned
payments, partial payers, missed months and payment changes), then measures each case
in its own subprocess so that one case's peak memory does not count against another:

- ``status``: the whole status step as the night runs it: net_paid.sql in DuckDB (2
  threads), fetched to polars through Arrow with the loans and payment changes, then
  :func:`transforms.delinquency.loan_status`. Time: best of ``--repeat`` runs after
  a first one; peak RSS after the first run (one night) and after all of them.
- ``history``: net_paid_month_ends.sql + loan_status_history over the last three
  month ends up to the as-of date (one run).
- ``pandas``: the same figures the way an analyst would write them in pandas (fetch
  the ledger, mark reversed payments, group by loan, then a row-wise apply walking
  each loan's installments). It runs on every (loans/--sample)-th loan and its
  compute time is scaled up linearly; the sample's fetch time is added unscaled, so
  the estimate is on pandas' side.
- ``check``: both implementations on a small sample must agree on days past due,
  installments paid and amount past due.

    uv run python benchmarks/bench_delinquency.py --loans 1000000
"""

from __future__ import annotations

import argparse
import calendar
import json
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import best_of, parser, peak_rss_mb, report
from lienwatch.sql import query
from transforms.delinquency import loan_status, loan_status_history

AS_OF = date(2024, 12, 31)
THREADS = 2
LOAN_COLUMNS = "loan_id, lien_position, origination_date, first_payment_date, scheduled_payment, term_months, status"


# --------------------------------------------------------------------------- the warehouse


def build(db: Path, loans: int, months: int) -> dict[str, Any]:
    """A warehouse with ``loans`` loans and ``months`` monthly installments of ledger each."""
    con = duckdb.connect(str(db))
    con.execute(f"SET threads = {THREADS}")
    con.execute("SET enable_progress_bar = false")
    start = time.perf_counter()
    # First due dates spread over January 2023 (every day 1-31, so Feb/Apr clamping is hit);
    # kind: 0-79 pays on time, 80-89 misses one month in ten, 90-94 stops paying at some
    # month, 95-99 pays 60% of each installment.
    con.execute(
        """
        CREATE TABLE loans AS
        SELECT
            'L' || lpad(CAST(i AS VARCHAR), 8, '0') AS loan_id,
            'B' || lpad(CAST(i AS VARCHAR), 8, '0') AS borrower_id,
            CASE WHEN i % 3 = 0 THEN 1 ELSE 2 END AS lien_position,
            CASE WHEN i % 4 = 0 THEN 'heloc' ELSE 'closed_end' END AS product,
            DATE '2022-12-01' AS origination_date,
            DATE '2023-01-01' + CAST(i % 31 AS INTEGER) AS first_payment_date,
            CAST(150 + (hash(i) % 250000) / 100 AS DECIMAL(14, 2)) AS scheduled_payment,
            CAST(120 + 12 * (i % 21) AS INTEGER) AS term_months,
            CAST(7.125 AS DECIMAL(9, 6)) AS interest_rate,
            CAST(60000 AS DECIMAL(14, 2)) AS original_balance,
            CAST(40000 + hash(i, 1) % 20000 AS DECIMAL(14, 2)) AS current_balance,
            'CA' AS property_state,
            'primary' AS occupancy,
            CASE WHEN hash(i, 2) % 100 < 97 THEN 'active'
                 ELSE ['paid_off', 'charged_off', 'foreclosure', 'transferred'][CAST(1 + hash(i, 3) % 4 AS BIGINT)]
            END AS status,
            CAST(hash(i, 4) % 100 AS INTEGER) AS kind,
            CAST(hash(i, 5) % $months AS INTEGER) AS stop_at
        FROM range($loans) AS t(i)
        """,
        {"loans": loans, "months": months},
    )
    con.execute(
        """
        CREATE TABLE payments AS
        WITH installments AS (
            SELECT l.loan_id, l.first_payment_date, l.scheduled_payment, l.kind, l.stop_at, k,
                   hash(l.loan_id, k) AS h
            FROM loans AS l, range($months) AS r(k)
        )
        SELECT
            loan_id || '-' || k AS txn_id,
            loan_id,
            CAST(first_payment_date + to_months(CAST(k AS INTEGER)) AS DATE)
                + CAST(h % 20 AS INTEGER) - 3 AS posted_date,
            CASE WHEN kind >= 95 THEN CAST(scheduled_payment * 0.6 AS DECIMAL(14, 2))
                 ELSE scheduled_payment END AS amount,
            'payment' AS txn_type,
            CAST(NULL AS VARCHAR) AS reverses_txn_id,
            CAST(NULL AS VARCHAR) AS return_reason,
            'bench.csv' AS source_file,
            CAST(k AS BIGINT) AS row_number,
            TIMESTAMP '2025-01-01 02:00:00' AS loaded_at
        FROM installments
        WHERE NOT (kind BETWEEN 80 AND 89 AND h % 10 = 0)
          AND NOT (kind BETWEEN 90 AND 94 AND k >= stop_at)
        ORDER BY posted_date, txn_id  -- as the daily ledger files arrive
        """,
        {"months": months},
    )
    con.execute(
        """
        INSERT INTO payments
        SELECT 'R' || txn_id, loan_id, posted_date + 4, amount, 'reversal', txn_id, 'NSF',
               source_file, row_number, loaded_at
        FROM payments
        WHERE hash(txn_id) % 100 = 0
        ORDER BY posted_date
        """
    )
    con.execute(
        """
        CREATE TABLE payment_changes AS
        SELECT loan_id, CAST(first_payment_date + INTERVAL 12 MONTH AS DATE) AS effective_due_date,
               CAST(scheduled_payment * 1.25 AS DECIMAL(14, 2)) AS scheduled_payment
        FROM loans
        WHERE hash(loan_id, 6) % 100 < 5
        """
    )
    rows = con.execute("SELECT count(*) FROM payments").fetchone()[0]
    con.execute("CHECKPOINT")
    con.close()
    return {"ledger_rows": rows, "build_seconds": round(time.perf_counter() - start, 1)}


# --------------------------------------------------------------------------- the cases


def connect(db: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(db), read_only=True)
    con.execute(f"SET threads = {THREADS}")
    con.execute("SET enable_progress_bar = false")
    return con


def status_step(db: Path, as_of: date, split: dict[str, float] | None = None):
    """The night's status step: ledger rollup in DuckDB, then the polars engine.

    The connection is closed before the engine runs, so DuckDB's buffers are freed
    rather than held alongside the engine's frames.
    """
    start = time.perf_counter()
    con = connect(db)
    try:
        net_paid = con.sql(query("net_paid"), params={"as_of": as_of}).pl()
        loans = con.sql(f"SELECT {LOAN_COLUMNS} FROM loans").pl()
        changes = con.sql(
            "SELECT loan_id, effective_due_date, scheduled_payment FROM payment_changes"
        ).pl()
    finally:
        con.close()
    fetched = time.perf_counter()
    status = loan_status(loans, changes, net_paid, as_of)
    if split is not None:
        split.update(
            sql_seconds=round(fetched - start, 3),
            engine_seconds=round(time.perf_counter() - fetched, 3),
        )
    return status


def case_status(db: Path, repeat: int) -> dict[str, Any]:
    first: dict[str, float] = {}
    start = time.perf_counter()
    status = status_step(db, AS_OF, first)
    first_seconds = round(time.perf_counter() - start, 3)
    peak_first = round(peak_rss_mb(), 1)
    seconds, status = best_of(lambda: status_step(db, AS_OF), repeat=repeat)
    split: dict[str, float] = {}
    status_step(db, AS_OF, split)
    counts = status["bucket"].value_counts().sort("bucket")
    return {
        "seconds": seconds,
        "first_run_seconds": first_seconds,
        **split,
        "peak_rss_mb": peak_first,
        "peak_rss_mb_after_repeats": round(peak_rss_mb(), 1),
        "loans_reported": status.height,
        "buckets": dict(counts.iter_rows()),
    }


def case_history(db: Path) -> dict[str, Any]:
    """The month-end history over the last quarter before the as-of date."""
    month_ends = [date(2024, m, calendar.monthrange(2024, m)[1]) for m in (10, 11, 12)]
    start = time.perf_counter()
    con = connect(db)
    try:
        running = con.sql(
            query("net_paid_month_ends"),
            params={"from_date": month_ends[0], "to_date": month_ends[-1]},
        ).pl()
        loans = con.sql(f"SELECT {LOAN_COLUMNS}, current_balance FROM loans").pl()
        changes = con.sql(
            "SELECT loan_id, effective_due_date, scheduled_payment FROM payment_changes"
        ).pl()
    finally:
        con.close()
    fetched = time.perf_counter()
    history = loan_status_history(loans, changes, running, month_ends)
    done = time.perf_counter()
    return {
        "seconds": round(done - start, 3),
        "sql_seconds": round(fetched - start, 3),
        "engine_seconds": round(done - fetched, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rows": history.height,
        "month_ends": len(month_ends),
    }


def pandas_status(con: duckdb.DuckDBPyConnection, as_of: date, step: int):
    """Days past due the way a typical analyst writes it in pandas (every ``step``-th loan)."""
    import pandas as pd

    sample = f"CAST(substr(loan_id, 2) AS BIGINT) % {step} = 0"
    fetch_start = time.perf_counter()
    loans = con.sql(f"SELECT {LOAN_COLUMNS} FROM loans WHERE {sample}").df()
    ledger = con.sql(
        f"SELECT txn_id, loan_id, posted_date, amount, txn_type, reverses_txn_id FROM payments WHERE {sample}"
    ).df()
    changes = con.sql(f"SELECT * FROM payment_changes WHERE {sample}").df()
    fetch_seconds = time.perf_counter() - fetch_start

    compute_start = time.perf_counter()
    as_of_ts = pd.Timestamp(as_of)
    ledger["posted_date"] = pd.to_datetime(ledger["posted_date"])
    ledger = ledger[ledger["posted_date"] <= as_of_ts]
    reversed_ids = set(ledger.loc[ledger["txn_type"] == "reversal", "reverses_txn_id"])
    payments = ledger[ledger["txn_type"] == "payment"]
    standing = payments[~payments["txn_id"].isin(reversed_ids)]
    net = standing.groupby("loan_id")["amount"].sum()
    loans = loans[loans["status"] == "active"].copy()
    loans["net_paid"] = loans["loan_id"].map(net).fillna(0.0)
    changes["effective_due_date"] = pd.to_datetime(changes["effective_due_date"])
    changes_by_loan = {
        loan_id: group.sort_values("effective_due_date")
        for loan_id, group in changes.groupby("loan_id")
    }

    def one(row):
        first = pd.Timestamp(row["first_payment_date"])
        loan_changes = changes_by_loan.get(row["loan_id"])
        cum, paid, due, oldest = 0.0, 0, 0, None
        for k in range(int(row["term_months"])):
            due_date = first + pd.DateOffset(months=k)
            if due_date > as_of_ts:
                break
            amount = float(row["scheduled_payment"])
            if loan_changes is not None:
                applied = loan_changes[loan_changes["effective_due_date"] <= due_date]
                if len(applied):
                    amount = float(applied["scheduled_payment"].iloc[-1])
            cum += amount
            due += 1
            if row["net_paid"] >= cum - 1e-9 and oldest is None:
                paid += 1
            elif oldest is None:
                oldest = due_date
        days = (as_of_ts - oldest).days if oldest is not None else 0
        return pd.Series(
            {
                "installments_due": due,
                "installments_paid": paid,
                "days_past_due": days,
                "amount_past_due": round(cum - row["net_paid"], 2) if oldest is not None else 0.0,
            }
        )

    out = pd.concat([loans[["loan_id"]], loans.apply(one, axis=1)], axis=1)
    return out, fetch_seconds, time.perf_counter() - compute_start


def case_pandas(db: Path, loans: int, sample: int) -> dict[str, Any]:
    con = connect(db)
    step = max(1, loans // sample)
    out, fetch_seconds, compute_seconds = pandas_status(con, AS_OF, step)
    scale = loans / (loans // step)
    estimate = compute_seconds * scale + fetch_seconds
    return {
        "seconds": round(estimate, 3),
        "sample_loans": loans // step,
        "sample_fetch_seconds": round(fetch_seconds, 3),
        "sample_compute_seconds": round(compute_seconds, 3),
        "extrapolated": step > 1,
        "peak_rss_mb_sample": round(peak_rss_mb(), 1),
        "loans_reported_sample": len(out),
    }


def case_check(db: Path, loans: int) -> dict[str, Any]:
    import polars as pl

    con = connect(db)
    step = max(1, loans // 2000)
    expected, _, _ = pandas_status(con, AS_OF, step)
    con.close()
    got = status_step(db, AS_OF).filter(pl.col("loan_id").is_in(list(expected["loan_id"])))
    ours = {
        r["loan_id"]: (
            r["installments_due"],
            r["installments_paid"],
            r["days_past_due"],
            float(r["amount_past_due"]),
        )
        for r in got.to_dicts()
    }
    theirs = {
        r.loan_id: (
            r.installments_due,
            r.installments_paid,
            r.days_past_due,
            round(r.amount_past_due, 2),
        )
        for r in expected.itertuples()
    }
    disagree = sum(ours.get(k) != v for k, v in theirs.items()) + len(set(ours) - set(theirs))
    return {"loans_compared": len(theirs), "disagreements": disagree}


# --------------------------------------------------------------------------- driver


def run_case(case: str, db: Path, args) -> dict[str, Any]:
    """Run one case in a fresh interpreter and return its figures."""
    command = [
        sys.executable,
        __file__,
        "--case",
        case,
        "--db",
        str(db),
        "--loans",
        str(args.loans),
        "--months",
        str(args.months),
        "--sample",
        str(args.sample),
        "--repeat",
        str(args.repeat),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"case {case} failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--loans", type=int, default=1_000_000)
    p.add_argument("--months", type=int, default=24)
    p.add_argument("--sample", type=int, default=50_000, help="loans the pandas case runs on")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--skip-history", action="store_true")
    p.add_argument(
        "--case", choices=["build", "status", "history", "pandas", "check"], help=argparse.SUPPRESS
    )
    p.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.case:
        figures = {
            "build": lambda: build(args.db, args.loans, args.months),
            "status": lambda: case_status(args.db, args.repeat),
            "history": lambda: case_history(args.db),
            "pandas": lambda: case_pandas(args.db, args.loans, args.sample),
            "check": lambda: case_check(args.db, args.loans),
        }[args.case]()
        print(json.dumps(figures, default=str))
        return

    with tempfile.TemporaryDirectory(prefix="bench-delinquency-") as tmp:
        db = Path(tmp) / "bench.duckdb"
        print(
            f"building a warehouse of {args.loans:,} loans x {args.months} months ...", flush=True
        )
        # Built in its own process too: on Linux a child's peak RSS starts from its
        # parent's resident size, so the driver must stay small.
        built = run_case("build", db, args)
        print(f"  {built['ledger_rows']:,} ledger rows in {built['build_seconds']} s", flush=True)
        cases: dict[str, dict[str, Any]] = {}
        for case in ("check", "status", *(() if args.skip_history else ("history",)), "pandas"):
            print(f"case {case} ...", flush=True)
            cases[case] = run_case(case, db, args)
        cases["status"].update(loans=args.loans, ledger_rows=built["ledger_rows"], threads=THREADS)
        if "history" in cases:
            cases["history"].update(loans=args.loans)
        speedup = cases["pandas"]["seconds"] / cases["status"]["seconds"]
        cases["comparison"] = {
            "speedup_vs_pandas": round(speedup, 1),
            "pandas_note": (
                f"pandas ran on {cases['pandas']['sample_loans']:,} loans; its compute time was "
                f"scaled by {args.loans / cases['pandas']['sample_loans']:.0f}x and the sample's "
                "fetch time added unscaled"
                if cases["pandas"]["extrapolated"]
                else "pandas ran on every loan"
            ),
        }
    print(
        f"\nstatus step: {cases['status']['seconds']} s, {cases['status']['peak_rss_mb']} MiB peak; "
        f"pandas: {cases['pandas']['seconds']} s; speed-up {speedup:.1f}x"
    )
    print(f"  {cases['comparison']['pandas_note']}")
    report("delinquency", cases, args)


if __name__ == "__main__":
    main()
