"""The entry points that run nights: one night, or a range of them, through the Prefect
flow in local mode. This is the one module of ``lienwatch`` that imports ``flows``: the
steps sit under the flow (:mod:`lienwatch.steps`), the commands above it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb

from lienwatch import expectations, prefect_local
from lienwatch.business_days import closed_reason
from lienwatch.errors import FeedError, LienwatchError
from lienwatch.night import summary_text, writer_lock
from lienwatch.settings import Settings

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


def run_night(
    settings: Settings, *, data: Path, db: Path, out: Path, as_of: date
) -> dict[str, Any]:
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
        return configured(settings)(
            data=str(data),
            db=str(db),
            out=str(out),
            as_of=as_of,
            settings=settings.model_dump(mode="json"),
        )


def serve_nights(
    settings: Settings, *, data: Path, db: Path, out: Path, config: Path | None
) -> None:
    """Serve the nightly flow on the settings' schedule until stopped (needs a Prefect server)."""
    from prefect.schedules import Cron

    from flows.nightly import configured

    configured(settings).serve(
        name="lienwatch-nightly",
        schedules=[Cron(settings.schedule.cron, timezone=settings.schedule.timezone)],
        parameters={
            "data": str(data.resolve()),
            "db": str(db.resolve()),
            "out": str(out.resolve()),
            "config": str(config.resolve()) if config else None,
        },
    )


def completed_nights(db: Path) -> set[date]:
    if not db.exists():
        return set()
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error:
        return set()
    try:
        return {
            r[0]
            for r in con.execute(
                "SELECT as_of_date FROM runs WHERE status = 'completed'"
            ).fetchall()
        }
    except duckdb.Error:
        return set()
    finally:
        con.close()


def run_backfill(
    settings: Settings,
    *,
    data: Path,
    db: Path,
    out: Path,
    start: date,
    end: date,
    force: bool = False,
    business_days_only: bool | None = None,
) -> Iterator[str]:
    """Run each business date from ``start`` to ``end`` in order (every date where
    ``business_days_only``, by default ``schedule.business_days_only``, is false); yield a
    line per night, a skipped one with its reason."""
    done = set() if force else completed_nights(db)
    schedule = settings.schedule
    if business_days_only is None:
        business_days_only = schedule.business_days_only
    day = start
    while day <= end:
        closed = closed_reason(day, schedule.calendar, schedule.closed_dates)
        if business_days_only and closed:
            yield f"night {day}: skipped ({closed})"
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
