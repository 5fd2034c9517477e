"""The steps of a night, as the flow calls them, and the entry points that run nights.

Each step opens its own warehouse connection, reads, calls the pure transforms, writes
the night's rows in one transaction (replacing that as-of date's rows, so a rerun is
safe) and returns a small dict of counts. The Prefect flow in ``flows/nightly.py`` only
wires these steps together.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from lienwatch import expectations, prefect_local, warehouse
from lienwatch.errors import FeedError, LienwatchError, WarehouseBusy
from lienwatch.ingest import ingest
from lienwatch.settings import Settings


@dataclass(frozen=True)
class Night:
    """Where one night reads and writes, and for which business date."""

    data: Path
    db: Path
    out: Path
    as_of: date
    run_id: str

    @property
    def night_dir(self) -> Path:
        return self.out / self.as_of.isoformat()


@dataclass
class NightSummary:
    night: Night
    status: str = "completed"
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        n = self.night
        return {"as_of_date": n.as_of.isoformat(), "run_id": n.run_id, "status": self.status,
                "steps": self.steps, "warehouse": str(n.db), "outputs": str(n.night_dir)}

    def text(self) -> str:
        return summary_text(self.as_dict())


def summary_text(summary: dict[str, Any]) -> str:
    """The few lines a servicer reads after a night."""
    lines = [f"night {summary['as_of_date']} ({summary['run_id']}): {summary['status']}"]
    for step, counts in summary["steps"].items():
        shown = ", ".join(f"{k} {v}" for k, v in counts.items() if not isinstance(v, dict | list))
        lines.append(f"  {step}: {shown}")
        for k, v in counts.items():
            if isinstance(v, dict) and v:
                lines.append(f"    {k}: " + ", ".join(f"{a} {b}" for a, b in v.items()))
    lines.append(f"  warehouse: {summary['warehouse']}")
    lines.append(f"  outputs:   {summary['outputs']}")
    return "\n".join(lines)


def new_run_id(as_of: date) -> str:
    return f"{as_of.isoformat()}-{uuid.uuid4().hex[:8]}"


_HELD: set[Path] = set()


@contextmanager
def writer_lock(db: Path) -> Iterator[None]:
    """Hold the warehouse's writer lock for a whole night; refuse at once if it is taken.

    Re-entrant within one process (the CLI takes it before starting the flow, so that a
    second night fails before any work; the flow takes it again when run by a
    scheduler).
    """
    key = db.resolve()
    if key in _HELD:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(db.with_name(db.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WarehouseBusy(
                f"{db}: another lienwatch night is running against this warehouse; "
                "nothing was changed"
            ) from None
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- steps


def step_ingest(night: Night) -> dict[str, Any]:
    """Landing folder into the warehouse; every row loaded or quarantined."""
    con = warehouse.connect(night.db)
    try:
        summary = ingest(
            con, night.data, run_id=night.run_id, as_of=night.as_of,
            results_dir=night.night_dir / "validation",
        )
    finally:
        con.close()
    counts = summary.totals()
    counts["validation_results"] = [f.validation_result for f in summary.files if f.validation_result]
    return counts


HISTORY_MONTHS = 24
PRIOR_DAYS = 30  # "a month ago" for the worsening-bucket signal
LATENESS_WINDOW_DAYS = 150  # ledger days read for the last three installments' payment days


def month_ends(first: date, last: date) -> list[date]:
    """Every month end from ``first`` to ``last`` inclusive."""
    out, year, month = [], first.year, first.month
    while True:
        end = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
        if end > last:
            return out
        if end >= first:
            out.append(end)
        year, month = year + month // 12, month % 12 + 1


def _frame(con: duckdb.DuckDBPyConnection, query: str, params: dict | None = None):
    return con.sql(query, params=params or {}).pl()


def step_delinquency(night: Night, settings: Settings) -> dict[str, Any]:
    """loan_status for the night, the month-end history, bucket spells and roll rates."""
    from transforms import delinquency as engine

    tolerance = settings.delinquency.shortfall_tolerance
    con = warehouse.connect(night.db)
    try:
        loans = _frame(con, "SELECT * EXCLUDE (load_id) FROM loans")
        changes = _frame(con, "SELECT loan_id, effective_due_date, scheduled_payment FROM payment_changes")
        net_paid = _frame(con, engine.sql("net_paid"), {"as_of": night.as_of})
        status = engine.loan_status(loans, changes, net_paid, night.as_of, tolerance)

        wanted = month_ends(night.as_of.replace(day=1) - timedelta(days=HISTORY_MONTHS * 31), night.as_of)
        have = set()
        if _exists(con, "loan_status_month_end"):
            have = {r[0] for r in con.execute("SELECT DISTINCT as_of_date FROM loan_status_month_end").fetchall()}
        missing = sorted(set(wanted) - have)

        # Each month end missing from the history is committed on its own, with its roll
        # rates: a transaction holds its new rows in memory until it commits (about 200 MB
        # a month end at 1M loans), and a night stopped midway leaves whole month ends,
        # which the next run keeps, and adds the rest.
        rolled = 0
        for month_end in missing:
            with warehouse.transaction(con):
                ledger = _frame(con, engine.sql("net_paid_month_ends"),
                                {"from_date": month_end, "to_date": month_end})
                history = engine.loan_status_history(loans, changes, ledger, [month_end], tolerance)
                del ledger
                warehouse.replace_rows(con, "loan_status_month_end", history, "as_of_date = $a", {"a": month_end})
                if history.height:  # a month end before any loan holds no rows
                    have.add(month_end)
                del history
                previous = month_end.replace(day=1) - timedelta(days=1)
                if {previous, month_end} <= have:  # roll rates need both month ends' rows
                    _add_roll_rates(con, previous, month_end, loans)
                    rolled += 1

        with warehouse.transaction(con):
            warehouse.replace_rows(con, "loan_status", status, "as_of_date = $d", {"d": night.as_of})
            spells_mode = _update_spells(con, status, night.as_of)
    finally:
        con.close()
    buckets = status.group_by("bucket").len().sort("bucket")
    return {
        "loans_active": status.height,
        "delinquent_30_plus": int((status["days_past_due"] >= 30).sum()),
        "month_ends_added": len(missing),
        "bucket_spells": spells_mode,
        "roll_rate_months_added": rolled,
        "by_bucket": dict(zip(buckets["bucket"].to_list(), buckets["len"].to_list(), strict=True)),
    }


def _add_roll_rates(con: duckdb.DuckDBPyConnection, previous: date, month_end: date, loans) -> None:
    """The roll rates into ``month_end`` from ``previous``, the month end before it."""
    from transforms import delinquency as engine

    month_history = _frame(con, "SELECT * FROM loan_status_month_end WHERE as_of_date IN ($a, $b)",
                           {"a": previous, "b": month_end})
    rates = engine.roll_rates(month_history, month_end, loans)
    warehouse.replace_rows(con, "roll_rates", rates, "month_end_date = $m", {"m": month_end})


NO_MONTH_END = date(1900, 1, 1)
SPELL_PART_ROWS = 4_000_000  # month-end statuses taken at a time when the spells are rebuilt


def _update_spells(con: duckdb.DuckDBPyConnection, status, as_of: date) -> str:
    """Bucket spells and tonight's delinquency starts, over the month ends plus tonight.

    The spells of the month-end history change only when a month end is added (or a
    night of another month is replayed): then they are rebuilt ("rebuilt"). On other
    nights the previous night's tail is undone and tonight's applied ("extended"), so a
    steady night touches only the loans whose bucket moved. Same result either way.
    """
    from transforms import delinquency as engine

    base = con.execute("SELECT max(as_of_date) FROM loan_status_month_end WHERE as_of_date < $d",
                       {"d": as_of}).fetchall()[0][0] or NO_MONTH_END
    state = con.execute("SELECT base_date FROM spell_state").fetchall() if _exists(con, "spell_state") else []
    if state != [(base,)] or not _exists(con, "bucket_transitions"):
        # Rebuilt a range of loan ids at a time (a loan's spells are its own), so memory
        # holds a part of the history, not all of it; the night writes each month end in
        # loan_id order, so a range reads little more than its own row groups.
        d = {"d": as_of}
        dates = [r[0] for r in con.execute(
            "SELECT DISTINCT as_of_date FROM loan_status_month_end WHERE as_of_date < $d", d).fetchall()]
        rows = con.execute("SELECT count(*) FROM loan_status_month_end WHERE as_of_date < $d", d).fetchall()[0][0]
        parts = max(1, -(-rows // SPELL_PART_ROWS))
        bounds = con.execute(
            "SELECT quantile_disc(loan_id, $q) FROM loan_status_month_end WHERE as_of_date = $last",
            {"q": [i / parts for i in range(1, parts)], "last": max(dates)}).fetchall()[0][0] if parts > 1 else []
        for part, (low, high) in enumerate(zip([None, *bounds], [*bounds, None], strict=True)):
            observed = _frame(
                con,
                """SELECT as_of_date, loan_id, bucket, days_past_due, oldest_unpaid_due_date
                FROM loan_status_month_end WHERE as_of_date < $d
                  AND ($low IS NULL OR loan_id >= $low) AND ($high IS NULL OR loan_id < $high)""",
                {**d, "low": low, "high": high},
            )
            replaced = "TRUE" if part == 0 else "FALSE"  # the first part replaces the rows, the others add
            warehouse.replace_rows(con, "bucket_transitions", engine.bucket_transitions(observed, dates),
                                   replaced, {})
            warehouse.replace_rows(con, "delinquency_runs_month_end",
                                   engine.current_delinquency_start(observed, dates), replaced, {})
            del observed
        con.execute("CREATE OR REPLACE TABLE spell_state AS SELECT $b::DATE AS base_date", {"b": base})
        mode = "rebuilt"
    else:
        con.execute("DELETE FROM bucket_transitions WHERE entered_date > $b", {"b": base})
        con.execute("UPDATE bucket_transitions SET left_date = NULL WHERE left_date > $b", {"b": base})
        mode = "extended"
    open_spells = _frame(con, "SELECT loan_id, bucket, entered_date FROM bucket_transitions WHERE left_date IS NULL")
    closing, opening = engine.spell_tail(open_spells, status.select("loan_id", "bucket"), as_of)
    con.register("_closing", closing)
    con.register("_opening", opening)
    try:
        con.execute("""UPDATE bucket_transitions SET left_date = $d
                       WHERE left_date IS NULL AND loan_id IN (SELECT loan_id FROM _closing)""", {"d": as_of})
        con.execute("INSERT INTO bucket_transitions BY NAME SELECT * FROM _opening")
    finally:
        con.unregister("_closing")
        con.unregister("_opening")
    runs = _frame(con, "SELECT * FROM delinquency_runs_month_end")
    starts = engine.delinquency_start_tail(
        runs, status.select("loan_id", "days_past_due", "oldest_unpaid_due_date"), as_of)
    warehouse.replace_rows(con, "delinquency_starts", starts, "as_of_date = $d", {"d": as_of})
    return mode


def _exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = $t", {"t": table}
    ).fetchall()[0][0])


def risk_policy(settings: Settings):
    from transforms import flags

    risk = settings.risk
    return flags.Policy(
        senior_dpd_threshold=risk.senior_dpd_threshold, payment_rise_ratio=risk.payment_rise_ratio,
        late_days_threshold=risk.late_days_threshold, drift_min_days=risk.drift_min_days,
        cltv_threshold=risk.cltv_threshold,
        review_capacity=risk.review_capacity, weights=dict(risk.weights),
        weight_per_day_past_due=risk.weight_per_day_past_due,
    )


def flags_as_of(con: duckdb.DuckDBPyConnection, settings: Settings, as_of: date, status_table: str):
    """(features, signals found, risk_flags) as of a date, from the status rows in ``status_table``.

    The night uses ``loan_status``; the backtest replays month ends from
    ``loan_status_month_end``. Every other input is read as it stood on ``as_of``. Only
    what the second liens need is read, and the per-loan frames are put row for row
    with the status once, here, so that the transforms join them at no cost.
    """
    from transforms import delinquency as engine
    from transforms import flags

    policy, d = risk_policy(settings), {"as_of": as_of}
    status = _frame(
        con,
        f"""SELECT loan_id, lien_position, days_past_due, bucket, amount_past_due, suspense_amount,
                installment_amount, installments_due, installments_paid, total_due, net_paid
        FROM {status_table} WHERE as_of_date = $as_of AND lien_position = 2""",
        d,
    )
    # The ledger's moves in the lateness window (the longest read) come keyed by the
    # status row, matched on the loan id in the query rather than on millions of texts
    # in the frame; read on a second connection while the other inputs are read here.
    reader = con.cursor()
    try:
        reader.register("_status_keys", status.select("loan_id").with_row_index("_key").to_arrow())
        with ThreadPoolExecutor(1, thread_name_prefix="flags-ledger") as pool:
            moves = pool.submit(_frame, reader, flags.keyed_events_sql(engine.sql("ledger_events"), "_status_keys"),
                                {**d, "window_days": LATENESS_WINDOW_DAYS})
            try:
                features = _flag_features(con, settings, as_of, status_table, status, moves)
            except BaseException:
                reader.interrupt()
                raise
    finally:
        reader.close()
    found = flags.signals(features, policy)
    return features, found, flags.risk_flags(features, found, as_of, policy)


def _flag_features(con: duckdb.DuckDBPyConnection, settings: Settings, as_of: date, status_table: str,
                   status, moves: Future):
    """The features of :func:`flags_as_of`; ``moves`` gives the keyed ledger moves when
    lateness needs them."""
    import polars as pl

    from lienwatch import review
    from transforms import delinquency as engine
    from transforms import flags

    risk, d = settings.risk, {"as_of": as_of}
    keys = status["loan_id"]
    terms = """SELECT loan_id, borrower_id, lien_position, product, occupancy, current_balance, property_value,
        senior_lien_balance, origination_date, first_payment_date, scheduled_payment, term_months, status
        FROM loans WHERE {where}"""
    loans = flags.align(keys, _frame(con, terms.format(where="lien_position = 2")))
    if loans["lien_position"].null_count():  # a loan the master no longer holds as a second lien
        loans = flags.align(keys, _frame(con, terms.format(
            where=f"loan_id IN (SELECT loan_id FROM {status_table} WHERE as_of_date = $as_of AND lien_position = 2)"),
            d))

    # The bucket "a month ago": each loan's latest status on or before the cutoff. Nearly
    # every loan has one on the latest date that has any; only the others are looked for
    # further back, and only those originated by then (a status reports a loan from its
    # origination on).
    statuses = """SELECT as_of_date, loan_id, bucket FROM loan_status_month_end WHERE {where}
        UNION ALL SELECT as_of_date, loan_id, bucket FROM loan_status WHERE {where}"""
    cutoff = {"cutoff": as_of - timedelta(days=PRIOR_DAYS)}
    latest_in = {table: con.execute(f"SELECT max(as_of_date) FROM {table} WHERE as_of_date <= $cutoff",
                                    cutoff).fetchall()[0][0]
                 for table in ("loan_status_month_end", "loan_status")}
    latest = max((day for day in latest_in.values() if day is not None), default=None)
    one_a_loan = "QUALIFY row_number() OVER (PARTITION BY loan_id ORDER BY as_of_date DESC) = 1"
    holding = [table for table, day in latest_in.items() if day == latest]
    prior = flags.align(keys, _frame(
        con,
        f"SELECT loan_id, bucket FROM {holding[0]} WHERE as_of_date = $latest" if len(holding) == 1
        else f"SELECT loan_id, bucket FROM ({statuses.format(where='as_of_date = $latest')}) {one_a_loan}",
        {"latest": latest},
    ))
    earlier = loans.filter(
        prior["bucket"].is_null() & (loans["origination_date"].is_null() | (loans["origination_date"] < latest))
    )["loan_id"] if latest is not None else keys.clear()
    if earlier.len():
        prior = flags.align(keys, pl.concat([
            prior.filter(prior["bucket"].is_not_null()),
            _frame(con, f"""SELECT loan_id, bucket FROM ({statuses.format(where='as_of_date < $latest')})
                   WHERE loan_id IN (SELECT unnest($loans)) {one_a_loan}""",
                   {"latest": latest, "loans": earlier.to_list()}),
        ]))

    changes = _frame(con, "SELECT loan_id, effective_due_date, scheduled_payment FROM payment_changes")
    return flags.assemble_features(
        status=status,
        prior=prior,
        loans=loans,
        borrowers=_frame(con, "SELECT borrower_id, bankruptcy, deceased, cease_communication FROM borrowers"),
        senior_liens=_frame(  # the latest report ((loan_id, reported_date) is the feed's key)
            con,
            """SELECT loan_id, max(reported_date) AS reported_date,
                arg_max(senior_days_past_due, reported_date) AS senior_days_past_due
            FROM senior_liens WHERE reported_date <= $as_of GROUP BY loan_id""",
            d),
        # the feed's cases, and the hardship applications analysts recorded (lienwatch review)
        loss_mit=pl.concat([
            _frame(con, "SELECT loan_id, status, opened_date, closed_date FROM loss_mit"),
            review.application_cases(con, as_of).select("loan_id", "status", "opened_date", "closed_date"),
        ]),
        ledger=_frame(con, engine.sql("ledger_signals"), {**d, "lookback_days": risk.nsf_lookback_days}),
        payment_changes=changes,
        lateness=flags.lateness(loans, changes, moves.result(), status, as_of, LATENESS_WINDOW_DAYS,
                                settings.delinquency.shortfall_tolerance),
        as_of=as_of,
        horizon_days=risk.payment_rise_horizon_days,
    )


def step_flags(night: Night, settings: Settings) -> dict[str, Any]:
    """risk_flags for the night: second liens with their tier, score, reasons and care."""
    con = warehouse.connect(night.db)
    try:
        _, found, flagged = flags_as_of(con, settings, night.as_of, "loan_status")
        with warehouse.transaction(con):
            warehouse.replace_rows(con, "risk_flags", flagged, "as_of_date = $as_of", {"as_of": night.as_of})
    finally:
        con.close()
    tiers = flagged.group_by("tier").len()
    counted = found.group_by("signal").len()
    return {
        "flagged": flagged.height,
        "in_queue": int(flagged["in_queue"].sum()),
        "cut_by_capacity": int((~flagged["in_queue"]).sum()),
        "by_tier": dict(zip(tiers["tier"].to_list(), tiers["len"].to_list(), strict=True)),
        "by_signal": dict(zip(counted["signal"].to_list(), counted["len"].to_list(), strict=True)),
    }


def step_record_start(night: Night) -> None:
    """Record the night as running. A run still marked running holds no lock (this
    process has it), so its process died: it is marked interrupted."""
    con = warehouse.connect(night.db)
    try:
        con.execute("UPDATE runs SET status = 'interrupted', reason = 'the process stopped before the night "
                    "finished' WHERE status = 'running'")
        con.execute(
            "INSERT INTO runs (run_id, as_of_date, started_at, status) VALUES ($id, $d, $t, 'running')",
            {"id": night.run_id, "d": night.as_of, "t": _now()},
        )
    finally:
        con.close()


def step_record_end(night: Night, status: str, counts: dict[str, Any], reason: str | None = None) -> None:
    con = warehouse.connect(night.db)
    try:
        con.execute(
            """UPDATE runs SET finished_at = $t, status = $s, reason = $r, counts = $c
            WHERE run_id = $id""",
            {"t": _now(), "s": status, "r": reason, "c": json.dumps(counts, default=str),
             "id": night.run_id},
        )
    finally:
        con.close()


def write_summary(night: Night, summary: NightSummary) -> Path:
    night.night_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = night.night_dir / "summary.json"
    payload = {"as_of_date": night.as_of.isoformat(), "run_id": night.run_id,
               "status": summary.status, "steps": summary.steps}
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# --------------------------------------------------------------------------- entry points


PREFECT_DEFAULTS = {
    # Local mode needs no network: no telemetry from the temporary server.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    # The run's log goes to stdout; stderr is kept for a failed night's one-line reason.
    "PREFECT_LOGGING_HANDLERS_CONSOLE_STREAM": "ext://sys.stdout",
}


def prefect_local_mode() -> None:
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)


def run_night(settings: Settings, *, data: Path, db: Path, out: Path, as_of: date) -> dict[str, Any]:
    """Run one night through the Prefect flow (local mode); raise on failure."""
    prefect_local_mode()
    with writer_lock(db), prefect_local.local_server() as server_ready:
        if server_ready is not None:
            # Prefect's server boots in its own process meanwhile: the validation library
            # loads too (from now on, beside the flow's own imports), in the time the
            # night waits anyway. Otherwise ingest loads it when it has files to check (a
            # rerun with none never does).
            expectations.warm_up()
        from flows.nightly import configured

        if server_ready is not None:
            # Prefect encodes the flow's parameters with FastAPI's encoder on its first call:
            # loaded here, while the server is still booting.
            import fastapi.encoders  # noqa: F401

            server_ready()
        return configured(settings)(data=str(data), db=str(db), out=str(out), as_of=as_of,
                       settings=settings.model_dump(mode="json"))


def completed_nights(db: Path) -> set[date]:
    if not db.exists():
        return set()
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error:
        return set()
    try:
        return {r[0] for r in con.execute("SELECT as_of_date FROM runs WHERE status = 'completed'").fetchall()}
    except duckdb.Error:
        return set()
    finally:
        con.close()


def run_backfill(
    settings: Settings, *, data: Path, db: Path, out: Path, start: date, end: date,
    force: bool = False, business_days_only: bool = True,
) -> Iterator[str]:
    """Run each (business) date from ``start`` to ``end`` in order; yield a line per night."""
    done = set() if force else completed_nights(db)
    day = start
    while day <= end:
        if business_days_only and day.weekday() >= 5:
            yield f"night {day}: skipped (weekend)"
        elif day in done:
            yield f"night {day}: skipped (already complete; --force to rerun)"
        else:
            yield summary_text(run_night(settings, data=data, db=db, out=out, as_of=day))
        day += timedelta(days=1)


def latest_ledger_date(data: Path) -> date:
    """The latest posted_date in the landing folder's ledger files (for the demo)."""
    ledger = data / "payments"
    if not ledger.is_dir():
        raise FeedError(str(ledger), "required ledger folder is missing")
    try:
        found = duckdb.execute(
            "SELECT max(TRY_CAST(posted_date AS DATE)) FROM read_csv($glob, all_varchar = true, union_by_name = true)",
            {"glob": str(ledger / "*.csv")},
        ).fetchall()[0][0]
    except duckdb.Error as exc:
        raise LienwatchError(f"{ledger}: cannot read the ledger files ({exc})") from None
    if found is None:
        raise LienwatchError(f"{ledger}: no ledger rows with a posted_date")
    return found
