"""Builders and checks shared by the test modules (no test module imports another).

The landing-folder builders are in ``tests/landing.py``. Product modules other than
``transforms`` are imported inside the functions that need them, so that a module using
only the pure builders imports only ``transforms``.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import duckdb
import polars as pl

from lienwatch import warehouse
from lienwatch.night import Night
from lienwatch.settings import Settings
from lienwatch.sql import query
from lienwatch.steps import review as review_step
from transforms import cases
from transforms.contract import SIGNALS, TIERS
from transforms.flags import Policy
from transforms.options import parse_catalogue

MONEY = pl.Decimal(14, 2)

# --------------------------------------------------------------------------- early-warning features

FEATURE_MONEY = (
    "current_balance",
    "property_value",
    "senior_lien_balance",
    "amount_past_due",
    "suspense_amount",
    "installment_amount",
    "next_change_amount",
)
POLICY = Policy(
    weights={
        "senior_lien_delinquent": D(30),
        "returned_payment": D(20),
        "partial_or_suspense": D(10),
        "payment_shock": D(25),
        "paying_later": D(15),
        "underwater": D(15),
        "worsening_bucket": D(20),
        "early_delinquency": D(10),
    },
)

FEATURE_BASE = dict(
    loan_id="L",
    borrower_id="B",
    lien_position=2,
    product="heloc",
    occupancy="primary",
    current_balance=D("50000.00"),
    property_value=D("400000.00"),
    senior_lien_balance=D("300000.00"),
    days_past_due=0,
    bucket="current",
    amount_past_due=D("0.00"),
    suspense_amount=D("0.00"),
    installment_amount=D("400.00"),
    prior_bucket="current",
    senior_days_past_due=0,
    senior_reported_date=date(2026, 10, 31),
    last_return_date=None,
    returns_in_window=0,
    last_payment_short=False,
    next_change_date=None,
    next_change_amount=None,
    days_late=[0, 0, 0],
    bankruptcy=False,
    deceased=False,
    cease_communication=False,
    open_loss_mitigation=False,
)


def features(*loans: dict) -> pl.DataFrame:
    """A features frame: each loan is FEATURE_BASE (a current, quiet second lien) with overrides."""
    rows = [dict(FEATURE_BASE, loan_id=f"L{i}", **overrides) for i, overrides in enumerate(loans)]
    return pl.DataFrame(
        rows,
        schema_overrides={
            **{m: MONEY for m in FEATURE_MONEY},
            "days_late": pl.List(pl.Int64),
            "last_return_date": pl.Date,
            "next_change_date": pl.Date,
            "prior_bucket": pl.String,
            "senior_days_past_due": pl.Int64,
        },
    )


# --------------------------------------------------------------------------- hardship options

BUNDLED = Path(__file__).resolve().parents[1] / "lienwatch" / "catalogue" / "hardship_options.toml"
RAW = tomllib.loads(BUNDLED.read_text(encoding="utf-8"))
CATALOGUE = parse_catalogue(RAW)
INPUT_MONEY = (
    "amount_past_due",
    "installment_amount",
    "current_balance",
    "property_value",
    "senior_lien_balance",
)

# A closed-end second, 65 days (3 payments) behind, on a California principal residence
# worth $400,000 behind a $300,000 first: combined LTV 87.5 %. Next due on 1 December.
INPUT_BASE = dict(
    loan_id="L",
    borrower_id="B",
    tier="imminent_default",
    reasons=[],
    care=[],
    days_past_due=65,
    installments_behind=3,
    amount_past_due=D("1200.00"),
    installment_amount=D("400.00"),
    next_due_date=date(2026, 12, 1),
    lien_position=2,
    product="closed_end",
    occupancy="primary",
    property_state="CA",
    origination_date=date(2022, 1, 15),
    first_payment_date=date(2022, 3, 1),
    term_months=180,
    current_balance=D("50000.00"),
    property_value=D("400000.00"),
    senior_lien_balance=D("300000.00"),
)
NO_CASES = pl.DataFrame(
    schema={
        "loan_id": pl.String,
        "case_type": pl.String,
        "status": pl.String,
        "opened_date": pl.Date,
        "closed_date": pl.Date,
    }
)


def option_inputs(*loans: dict) -> pl.DataFrame:
    """Options inputs: each loan is INPUT_BASE with overrides."""
    rows = [dict(INPUT_BASE, loan_id=f"L{i}", **overrides) for i, overrides in enumerate(loans)]
    return pl.DataFrame(
        rows,
        schema_overrides={
            **{m: MONEY for m in INPUT_MONEY},
            "reasons": pl.List(pl.String),
            "care": pl.List(pl.String),
        },
    )


def loss_mit_cases(*rows: tuple) -> pl.DataFrame:
    """The loss_mit feed's rows from (loan_id, case_type, opened_date, closed_date): a case
    with no closed_date is open."""
    return pl.DataFrame(
        [
            (loan, kind, "open" if closed is None else "closed", opened, closed)
            for loan, kind, opened, closed in rows
        ],
        schema=NO_CASES.schema,
        orient="row",
    )


def payment_changes(*rows: tuple) -> pl.DataFrame:
    """The payment_changes feed's rows (loan_id, effective_due_date, scheduled_payment)."""
    return pl.DataFrame(rows, schema=CHANGE_SCHEMA, orient="row")


# --------------------------------------------------------------------------- delinquency ledgers

LOAN_SCHEMA = {
    "loan_id": pl.String,
    "borrower_id": pl.String,
    "lien_position": pl.Int64,
    "product": pl.String,
    "origination_date": pl.Date,
    "first_payment_date": pl.Date,
    "scheduled_payment": pl.Decimal(14, 2),
    "term_months": pl.Int64,
    "current_balance": pl.Decimal(14, 2),
    "status": pl.String,
}
CHANGE_SCHEMA = {
    "loan_id": pl.String,
    "effective_due_date": pl.Date,
    "scheduled_payment": pl.Decimal(14, 2),
}


def ledger(rows: Iterable[tuple]) -> duckdb.DuckDBPyConnection:
    """An in-memory warehouse whose payments table holds ``rows``."""
    con = duckdb.connect()
    con.execute(
        """CREATE TABLE payments (txn_id VARCHAR, loan_id VARCHAR, posted_date DATE,
        amount DECIMAL(14,2), txn_type VARCHAR, reverses_txn_id VARCHAR, return_reason VARCHAR,
        source_file VARCHAR, row_number BIGINT, loaded_at TIMESTAMP)"""
    )
    insert_rows(con, "payments", "?, ?, ?, ?, ?, ?, NULL, 'test.csv', 1, NULL", rows)
    return con


def insert_rows(
    con: duckdb.DuckDBPyConnection, table: str, placeholders: str, rows: Iterable[tuple]
) -> None:
    """INSERT the rows into ``table``, each bound to ``placeholders``, in one statement
    (executemany runs a statement per row: most of a property test's time)."""
    rows = list(rows)
    width = placeholders.count("?")
    if not rows:
        return
    if any(len(row) != width for row in rows):
        raise ValueError(f"rows of {width} values expected")
    con.execute(
        f"INSERT INTO {table} VALUES " + ", ".join([f"({placeholders})"] * len(rows)),
        [value for row in rows for value in row],
    )


def loans_frame(*loans: dict) -> pl.DataFrame:
    return pl.DataFrame(list(loans), schema=LOAN_SCHEMA)


def changes_frame(*changes: tuple) -> pl.DataFrame:
    """Payment changes from (loan_id, effective_due_date, amount)."""
    return pl.DataFrame(
        [(c[0], c[1], D(c[2])) for c in changes], schema=CHANGE_SCHEMA, orient="row"
    )


def net_paid(con: duckdb.DuckDBPyConnection, as_of: date) -> pl.DataFrame:
    """net_paid.sql run on ``con`` as of ``as_of``."""
    return con.sql(query("net_paid"), params={"as_of": as_of}).pl()


# --------------------------------------------------------------------------- review: a small warehouse

NIGHT = date(2026, 11, 20)
PREVIOUS = date(2026, 11, 19)
HOSTILE = "</script><script>alert(1)</script>"


def tier_of(dpd: int) -> str:
    return (
        "default"
        if dpd >= 90
        else "imminent_default"
        if dpd >= 60
        else "delinquent"
        if dpd >= 30
        else "early_warning"
    )


DPD_CYCLE = (95, 12, 30, 47, 65, 0, 200, 35)


def default_dpd(n: int) -> dict[str, int]:
    return {f"LN{i:06d}": DPD_CYCLE[i % len(DPD_CYCLE)] for i in range(n)}


def build_warehouse(
    db: Path, out: Path, n: int = 8, nights: tuple[date, ...] = (PREVIOUS, NIGHT)
) -> None:
    """A warehouse with everything a night's review reads: ``n`` second liens, all flagged
    on each of ``nights`` (their days past due from :data:`DPD_CYCLE`; one day fewer on
    earlier nights), 25 month ends of history, letters, options, a senior-lien report,
    roll rates and two quarantined rows. Loan 0's borrower has a hostile name."""
    ids = [f"LN{i:06d}" for i in range(n)]
    firsts = ("Maria", "James", "Ana", "Wei", "Grace", "Luis", "Fatima", "Tom")
    lasts = ("Garcia", "Smith", "O'Neil", "Chen", "Okafor", "Nguyen", "Rossi", "Kowalski")
    loans = pl.DataFrame(
        {
            "loan_id": ids,
            "borrower_id": [f"BR{i:06d}" for i in range(n)],
            "lien_position": [2] * n,
            "product": ["heloc" if i % 5 == 0 else "closed_end" for i in range(n)],
            "origination_date": [date(2020, 1, 15)] * n,
            "first_payment_date": [date(2020, 3, 1)] * n,
            "scheduled_payment": [D(500 + i % 300) for i in range(n)],
            "term_months": [240] * n,
            "interest_rate": [D("0.07")] * n,
            "original_balance": [D(90000)] * n,
            "current_balance": [D(60000 + (i % 97) * 1000) for i in range(n)],
            "property_state": [("CA", "TX", "FL", "NY", "AZ", "WA", "OH")[i % 7] for i in range(n)],
            "occupancy": ["primary"] * n,
            "property_value": [D(300000)] * n,
            "senior_lien_balance": [D(200000)] * n,
            "draw_period_end": [None] * n,
            "status": ["active"] * n,
            "load_id": [1] * n,
        },
        schema_overrides={
            "scheduled_payment": MONEY,
            "current_balance": MONEY,
            "original_balance": MONEY,
            "property_value": MONEY,
            "senior_lien_balance": MONEY,
            "interest_rate": pl.Decimal(9, 6),
            "draw_period_end": pl.Date,
        },
    )
    borrowers = pl.DataFrame(
        {
            "borrower_id": [f"BR{i:06d}" for i in range(n)],
            "first_name": [HOSTILE if i == 0 else firsts[i % 8] for i in range(n)],
            "last_name": [f"{lasts[i % 8]}{i // 8 or ''}" for i in range(n)],
            "address_line1": ["1 Main St"] * n,
            "city": ["Fresno"] * n,
            "state": ["CA"] * n,
            "zip": ["93650"] * n,
            "preferred_language": ["es" if i % 4 == 1 else "en" for i in range(n)],
            "phone": [f"(559) 555-{i % 10000:04d}" for i in range(n)],
            "bankruptcy": [i % 11 == 3 for i in range(n)],
            "cease_communication": [False] * n,
            "deceased": [False] * n,
            "load_id": [1] * n,
        }
    )
    con = warehouse.connect(db)
    try:
        with warehouse.transaction(con):
            con.register("_loans", loans)
            con.register("_borrowers", borrowers)
            con.execute("INSERT INTO loans BY NAME SELECT * FROM _loans")
            con.execute("INSERT INTO borrowers BY NAME SELECT * FROM _borrowers")
            con.execute("""INSERT INTO senior_liens VALUES ('LN000000', DATE '2026-09-30', 0, 1),
                           ('LN000000', DATE '2026-10-31', 60, 1), ('LN000000', DATE '2026-12-31', 0, 1)""")
            con.execute("""INSERT INTO ingested_files VALUES
                (1, 'loans.csv', 'x', 'loans', 10, 8, 2, TIMESTAMP '2026-11-20 22:00:00', 'r', DATE '2026-11-20',
                 100, [], NULL)""")
            con.execute("""INSERT INTO quarantine VALUES
                ('loans', 'loans.csv', 3, 'current_balance: not an amount', 'x', 'current_balance', 'type', 'error', 1,
                 TIMESTAMP '2026-11-20 22:00:00'),
                ('loans', 'loans.csv', 7, 'current_balance: not an amount', 'y', 'current_balance', 'type', 'error', 1,
                 TIMESTAMP '2026-11-20 22:00:00')""")
            _month_ends(con, loans, nights[-1])
        for night in nights:
            shift = (nights[-1] - night).days
            write_night(con, out, night, {k: max(v - shift, 0) for k, v in default_dpd(n).items()})
    finally:
        con.close()


def _month_ends(con, loans: pl.DataFrame, last: date) -> None:
    """25 month ends before ``last`` for every loan, and one month's roll rates."""
    ends, day = [], last.replace(day=1) - timedelta(days=1)
    for _ in range(25):
        ends.append(day)
        day = day.replace(day=1) - timedelta(days=1)
    grid = (
        loans.select("loan_id", pl.col("scheduled_payment").alias("installment_amount"))
        .with_row_index("i")
        .join(pl.DataFrame({"as_of_date": sorted(ends)}).with_row_index("k"), how="cross")
        .with_columns(
            ((pl.col("i") + pl.col("k")) % 5 * 15).cast(pl.Int32).alias("days_past_due"),
            (pl.col("installment_amount") * (pl.col("k") + 60)).cast(MONEY).alias("total_due"),
        )
        .with_columns(
            (pl.col("total_due") - pl.col("installment_amount") * (pl.col("days_past_due") // 30))
            .cast(MONEY)
            .alias("net_paid"),
            pl.lit("current").alias("bucket"),
        )
        .drop("i", "k")
    )
    warehouse.replace_all(con, "loan_status_month_end", grid)
    rolls = pl.DataFrame(
        {
            "month_end_date": [ends[0]] * 4,
            "from_bucket": ["current", "current", "1-29", "30-59"],
            "to_bucket": ["current", "1-29", "30-59", "current"],
            "loan_count": [90, 10, 5, 1],
            "balance": [D(9000000), D(1000000), D(500000), D(90000)],
            "share": [0.9, 0.1, 1.0, 1.0],
            "balance_share": [0.9, 0.1, 1.0, 1.0],
        },
        schema_overrides={"balance": pl.Decimal(18, 2), "loan_count": pl.Int64},
    )
    warehouse.replace_all(con, "roll_rates", rolls)


def write_night(con, out: Path, as_of: date, dpd: dict[str, int]) -> None:
    """The tables the night's earlier steps write, for the loans of ``dpd`` (all flagged)."""
    loans = con.sql(
        "SELECT loan_id, borrower_id, scheduled_payment FROM loans ORDER BY loan_id"
    ).pl()
    frame = (
        loans.with_row_index("i")
        .filter(pl.col("loan_id").is_in(list(dpd)))
        .with_columns(
            pl.col("loan_id").replace_strict(dpd, return_dtype=pl.Int32).alias("days_past_due")
        )
    )
    rows = frame.to_dicts()
    tier_rank = {t: k for k, t in enumerate(TIERS)}
    for r in rows:
        r["tier"] = tier_of(r["days_past_due"])
        r["score"] = D(r["days_past_due"]) / 2 + 10 + r["i"] % 7
        r["reasons"] = [SIGNALS[r["i"] % 8]] + ([SIGNALS[(r["i"] + 3) % 8]] if r["i"] % 2 else [])
        r["reason_details"] = [
            f"{code.replace('_', ' ')} seen on {r['loan_id']}" for code in r["reasons"]
        ]
        r["care"] = ["bankruptcy"] if r["i"] % 11 == 3 else []
    rows.sort(key=lambda r: (-tier_rank[r["tier"]], -r["score"], r["loan_id"]))
    flags = pl.DataFrame(
        [
            {
                "as_of_date": as_of,
                "loan_id": r["loan_id"],
                "borrower_id": r["borrower_id"],
                "tier": r["tier"],
                "score": r["score"],
                "reasons": r["reasons"],
                "reason_details": r["reason_details"],
                "care": r["care"],
                "days_past_due": r["days_past_due"],
                "queue_rank": rank,
                "in_queue": rank <= max(len(rows) * 4 // 5, 1),
            }
            for rank, r in enumerate(rows, start=1)
        ],
        schema_overrides={
            "score": pl.Decimal(10, 2),
            "days_past_due": pl.Int32,
            "queue_rank": pl.Int64,
            "reasons": pl.List(pl.String),
            "reason_details": pl.List(pl.String),
            "care": pl.List(pl.String),
        },
    )
    late = pl.col("days_past_due") > 0
    oldest = pl.when(late).then(pl.lit(as_of) - pl.duration(days=pl.col("days_past_due")))
    status = frame.select(
        pl.lit(as_of).alias("as_of_date"),
        "loan_id",
        pl.lit(2, dtype=pl.Int32).alias("lien_position"),
        oldest.alias("oldest_unpaid_due_date"),
        "days_past_due",
        pl.when(pl.col("days_past_due") >= 30)
        .then(pl.lit("30-59"))
        .when(late)
        .then(pl.lit("1-29"))
        .otherwise(pl.lit("current"))
        .alias("bucket"),
        (pl.col("scheduled_payment") * ((pl.col("days_past_due") + 29) // 30))
        .cast(MONEY)
        .alias("amount_past_due"),
        pl.lit(as_of + timedelta(days=25)).alias("next_due_date"),
        pl.col("scheduled_payment").alias("installment_amount"),
        (pl.col("scheduled_payment") * 80).cast(MONEY).alias("total_due"),
        (pl.col("scheduled_payment") * (80 - (pl.col("days_past_due") + 29) // 30))
        .cast(MONEY)
        .alias("net_paid"),
        (oldest + pl.duration(days=36)).alias("live_contact_due_date"),
        (oldest + pl.duration(days=45)).alias("written_notice_due_date"),
    )
    starts = status.filter(late).select(
        "loan_id", "as_of_date", pl.col("oldest_unpaid_due_date").alias("delinquency_start_date")
    )
    folder = out / as_of.isoformat() / "letters"
    letters = pl.DataFrame(
        [
            {
                "letter_id": f"L{as_of:%Y%m%d}-{r['loan_id']}",
                "as_of_date": as_of,
                "loan_id": r["loan_id"],
                "borrower_id": r["borrower_id"],
                "template": "early_warning"
                if r["tier"] == "early_warning"
                else "early_intervention",
                "language": "en",
                "status": "suppressed" if r["i"] % 3 == 2 else "generated",
                "suppression_reason": f"letter L20260101-{r['i']:06d} sent on 2026-11-01; at most one letter in 14 days"
                if r["i"] % 3 == 2
                else None,
                "pdf_path": None
                if r["i"] % 3 == 2
                else str(folder / f"L{as_of:%Y%m%d}-{r['loan_id']}.pdf"),
                "html_path": None,
                "pages": 1,
            }
            for r in rows
        ],
        schema_overrides={
            "pages": pl.Int32,
            "suppression_reason": pl.String,
            "pdf_path": pl.String,
            "html_path": pl.String,
        },
    )
    options = pl.DataFrame(
        [
            {
                "as_of_date": as_of,
                "loan_id": r["loan_id"],
                "borrower_id": r["borrower_id"],
                "option_code": code,
                "eligible": rank is not None,
                "rank": rank,
                "rationale": why,
                "plan_months": months,
                "plan_payment": payment,
                "plan_last_payment": payment,
                "amount": None,
                "terms": terms,
            }
            for r in rows
            for code, rank, why, months, payment, terms in (
                (
                    "repayment_plan",
                    1,
                    f"Fits: {r['days_past_due']} days past due.",
                    6,
                    D("612.50"),
                    "6 payments of $612.50",
                ),
                ("forbearance", 2, "Fits: 0 of 12 months used.", 3, None, "up to 3 months"),
                (
                    "short_sale",
                    None,
                    "Does not fit: combined loan-to-value 67% (95% or more needed).",
                    None,
                    None,
                    None,
                ),
            )
        ],
        schema_overrides={
            "rank": pl.Int32,
            "plan_months": pl.Int32,
            "plan_payment": MONEY,
            "plan_last_payment": MONEY,
            "amount": MONEY,
            "terms": pl.String,
        },
    )
    with warehouse.transaction(con):
        for table, data in (
            ("loan_status", status),
            ("risk_flags", flags),
            ("delinquency_starts", starts),
            ("letters", letters),
            ("hardship_options", options),
        ):
            warehouse.replace_night(con, table, data, as_of)


def run_review(tmp_path: Path, as_of: date = NIGHT, settings: Settings | None = None) -> dict:
    night = Night(
        data=tmp_path / "landing",
        db=tmp_path / "wh.duckdb",
        out=tmp_path / "out",
        as_of=as_of,
        run_id=f"review-{as_of}",
    )
    return review_step.run(night, settings or Settings())


def flags(**tiers: str) -> pl.DataFrame:
    """A night's risk_flags for case events: loan_id=tier, at a days past due of that tier."""
    dpd = {"early_warning": 5, "delinquent": 35, "imminent_default": 65, "default": 95}
    return pl.DataFrame(
        {
            "loan_id": list(tiers),
            "tier": list(tiers.values()),
            "days_past_due": [dpd[t] for t in tiers.values()],
        },
        schema={"loan_id": pl.String, "tier": pl.String, "days_past_due": pl.Int32},
    )


def nights(*flagged: pl.DataFrame, start: date = NIGHT) -> pl.DataFrame:
    """Run case_events night after night from nothing; return the whole log."""
    log = pl.DataFrame(schema=cases.EVENT_SCHEMA)
    for k, tonight in enumerate(flagged):
        open_cases = cases.case_state(log).filter(pl.col("status") == "open")
        _, events = cases.case_events(open_cases, tonight, start + timedelta(days=k))
        log = pl.concat([log, events])
    return log


SERIAL = itertools.count(1)


def decision(kind: str, loan: str, at: datetime, **fields) -> dict:
    row = dict.fromkeys(cases.DECISION_SCHEMA) | {"template": None}
    return (
        row
        | {
            "decision_id": f"D{next(SERIAL)}",
            "loan_id": loan,
            "kind": kind,
            "made_at": at,
            "made_by": fields.pop("by", "ann"),
        }
        | fields
    )


def decided(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=cases.DECISION_SCHEMA | {"template": pl.String()})


def payments_frame(*rows: tuple) -> pl.DataFrame:
    """The ledger as a frame, from (txn_id, loan_id, posted_date, amount, txn_type, reverses_txn_id)."""
    return pl.DataFrame(
        [
            dict(
                zip(
                    ("txn_id", "loan_id", "posted_date", "amount", "txn_type", "reverses_txn_id"),
                    r,
                    strict=True,
                )
            )
            for r in rows
        ],
        schema={
            "txn_id": pl.String,
            "loan_id": pl.String,
            "posted_date": pl.Date,
            "amount": MONEY,
            "txn_type": pl.String,
            "reverses_txn_id": pl.String,
        },
    )


# --------------------------------------------------------------------------- whole nights


def tables(db: Path) -> dict[str, list]:
    """Every table's rows, with paths under the night's folder made relative to it."""
    root = str(db.parent)

    def relative(row: tuple) -> tuple:
        return tuple(v.replace(root, "<root>") if isinstance(v, str) else v for v in row)

    return {name: [relative(r) for r in rows] for name, rows in stored_tables(db).items()}


def stored_tables(db: Path) -> dict[str, list]:
    """Every table's rows as stored (but for the run bookkeeping), in order, without load_id."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_name NOT IN ('runs', 'ingested_files', 'quarantine', 'landing_files_read')"
            ).fetchall()
        ]
        return {
            n: con.execute(f"SELECT * EXCLUDE (load_id) FROM {n} ORDER BY ALL").fetchall()
            if "load_id" in [c[0] for c in con.execute(f"DESCRIBE {n}").fetchall()]
            else con.execute(f"SELECT * FROM {n} ORDER BY ALL").fetchall()
            for n in names
        }
    finally:
        con.close()


def conserved(con) -> None:
    """rows read = rows loaded + rows quarantined, file by file, and in the tables too."""
    for load_id, name, feed, read, loaded, bad in con.execute(
        "SELECT load_id, source_file, feed, rows_read, rows_loaded, rows_quarantined FROM ingested_files"
    ).fetchall():
        assert read == loaded + bad, name
        table = "payments" if feed == "payments" else f"{feed}_history"
        in_table = con.execute(
            f"SELECT count(*) FROM {table} WHERE load_id = $id", {"id": load_id}
        ).fetchall()[0][0]
        in_quarantine = con.execute(
            "SELECT count(*) FROM quarantine WHERE load_id = $id", {"id": load_id}
        ).fetchall()[0][0]
        assert (in_table, in_quarantine) == (loaded, bad), name
