"""The nightly flow: landing folder to warehouse, status, flags, and the night's record.

Orchestration only: every task calls one step of ``lienwatch.steps`` with small
arguments (the night's paths and date) and returns that step's counts. Only reading
the landing folder is retried (a network share can blip); a deterministic step that
fails fails the night at once, which is recorded in ``runs`` with its one-line reason.

The flow's parameters are plain values (paths as text, the date, the settings as a
mapping) so that the same flow runs from ``lienwatch run``, from ``lienwatch serve`` on
a schedule, and from a Prefect deployment (``prefect.yaml``).
"""

import os
import resource
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from lienwatch import letters as render
from lienwatch.business_days import closed_reason
from lienwatch.errors import LienwatchError, one_line
from lienwatch.faults import fault_point
from lienwatch.night import (
    Night,
    NightSummary,
    long_lived_objects_set_aside,
    new_run_id,
    writer_lock,
)
from lienwatch.settings import Settings, load_settings
from lienwatch.steps import (
    delinquency,
    flags,
    ingest,
    intake,
    letters,
    options,
    publish,
    record,
    review,
)


def _transient(task, task_run, state) -> bool:
    """Retry only input/output errors, never a bad file or a rule that failed."""
    try:
        state.result()
    except LienwatchError:
        return False
    except OSError:
        return True
    except Exception:
        return False
    return False


# ---- intake: the analysts' decisions since the last night, from the workbench store
@task(name="intake", cache_policy=NONE)
def intake_task(night: Night, settings: Settings) -> dict:
    return intake.run(night, settings)


# ---- ingest: landing folder -> payments, snapshots, quarantine, ingested_files
@task(
    name="ingest",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=_transient,
    cache_policy=NONE,
)
def ingest_task(night: Night) -> dict:
    return ingest.run(night)


# ---- delinquency: ledger -> loan_status, month-end history, transitions, roll rates
@task(name="delinquency", cache_policy=NONE)
def delinquency_task(night: Night, settings: Settings) -> dict:
    return delinquency.run(night, settings)


# ---- flags: loan_status + ledger + snapshots -> risk_flags
@task(name="flags", cache_policy=NONE)
def flags_task(night: Night, settings: Settings) -> dict:
    return flags.run(night, settings)


# ---- options: risk_flags + loan terms + the catalogue -> hardship_options
@task(name="options", cache_policy=NONE)
def options_task(night: Night, settings: Settings) -> dict:
    return options.run(night, settings)


# ---- letters: decisions -> rendering fanned out over the task runner -> rows and manifest
@task(name="letters-decide", cache_policy=NONE)
def letters_decide_task(night: Night, settings: Settings) -> dict:
    return letters.prepare(night, settings)


@task(name="letters-render", cache_policy=NONE)
def letters_render_task(chunk: list[dict], folder: str, workers: int | None) -> list[dict]:
    return render.render_all(chunk, Path(folder), workers)


@task(name="letters-record", cache_policy=NONE)
def letters_record_task(night: Night, prepared: dict, rendered: list[dict]) -> dict:
    return letters.finish(night, prepared, rendered)


def letters_step(night: Night, settings: Settings) -> dict:
    """Decide, render, record. With ``letters.fan_out = "dask"`` each chunk of letters is a
    task on the flow's Dask task runner (a local cluster, or the cluster at
    ``letters.dask_address``); otherwise one task renders over a local process pool."""
    prepared = letters_decide_task(night, settings)
    payloads, config = prepared["payloads"], settings.letters
    if config.fan_out == "dask" and payloads:
        size = config.chunk_size
        chunks = [payloads[i : i + size] for i in range(0, len(payloads), size)]
        futures = letters_render_task.map(chunks, unmapped(prepared["folder"]), unmapped(1))
        rendered = [result for future in futures for result in future.result()]
    else:
        rendered = letters_render_task(payloads, prepared["folder"], config.render_workers or None)
    return letters_record_task(night, prepared, rendered)


# ---- review: cases, the review page, the call list and the queue exports
@task(name="review", cache_policy=NONE)
def review_task(night: Night, settings: Settings) -> dict:
    return review.run(night, settings)


# ---- publish: the workbench reads the completed night's snapshot from now on
@task(name="publish", cache_policy=NONE)
def publish_task(night: Night, settings: Settings) -> str | None:
    return publish.run(night, settings)


# ---- run record
@task(name="record-start", cache_policy=NONE)
def record_start_task(night: Night) -> None:
    record.start(night)


@task(name="record-end", cache_policy=NONE)
def record_end_task(night: Night, status: str, counts: dict, reason: str | None = None) -> None:
    record.end(night, status, counts, reason)


# (name, the task or function that runs it, whether it takes the settings besides the night)
STEPS: tuple[tuple[str, Callable[..., dict], bool], ...] = (
    ("intake", intake_task, True),
    ("ingest", ingest_task, False),
    ("delinquency", delinquency_task, True),
    ("flags", flags_task, True),
    ("options", options_task, True),
    ("letters", letters_step, True),
    ("review", review_task, True),
)


@flow(name="lienwatch-nightly", log_prints=False)
def nightly(
    data: str,
    db: str,
    out: str,
    as_of: date | None = None,
    settings: dict[str, Any] | None = None,
    config: str | None = None,
    run_id: str | None = None,
) -> dict:
    """One night. ``as_of`` defaults to today in the schedule's time zone; a night so
    scheduled on a weekend, a holiday of ``schedule.calendar`` or a closed date is skipped,
    its summary naming why (a night asked for by date always runs)."""
    # Everything the night creates (warehouse, folders, letters) is readable by its owner only.
    os.umask(0o077)
    cfg = (
        Settings.model_validate(settings)
        if settings is not None
        else load_settings(Path(config) if config else None)
    )
    day = as_of or today(cfg.schedule.timezone)
    night = Night(
        data=Path(data), db=Path(db), out=Path(out), as_of=day, run_id=run_id or new_run_id(day)
    )
    schedule = cfg.schedule
    # Only a scheduled night looks at the calendar (a night asked for by date always runs).
    closed = (
        closed_reason(day, schedule.calendar, schedule.closed_dates)
        if as_of is None and schedule.business_days_only
        else None
    )
    if closed:  # the servicer is closed
        summary = NightSummary(night, status="skipped", reason=closed)
        get_run_logger().info("night %s skipped: %s", day, closed)
        record.write_summary(night, summary)
        return summary.as_dict()
    with writer_lock(night.db), long_lived_objects_set_aside():
        return _night(night, cfg).as_dict()


def today(timezone: str) -> date:
    """Today in the schedule's time zone: the night a scheduled run is for."""
    return datetime.now(ZoneInfo(timezone)).date()


def _night(night: Night, settings: Settings) -> NightSummary:
    logger = get_run_logger()
    summary = NightSummary(night)
    record_start_task(night)
    try:
        for name, step, needs_settings in STEPS:
            started, cpu = time.perf_counter(), time.process_time()
            fault_point(f"{name}:start")
            counts = step(night, settings) if needs_settings else step(night)
            fault_point(f"{name}:end")
            counts["seconds"] = round(time.perf_counter() - started, 2)
            # CPU seconds of the process's threads (DuckDB's and polars' included): steadier
            # than wall time on a shared machine.
            counts["cpu_seconds"] = round(time.process_time() - cpu, 2)
            counts["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            summary.steps[name] = counts
    except Exception as exc:
        summary.status = "failed"
        reason = one_line(exc)
        logger.error("night %s failed: %s", night.as_of, reason)
        try:
            record_end_task(night, "failed", summary.steps, reason)
        except (
            Exception
        ) as unrecorded:  # a full disk fails the record too: the night's own reason goes on
            logger.error(
                "night %s: the failure could not be recorded in the warehouse (%s); "
                "the next night marks the run interrupted",
                night.as_of,
                one_line(unrecorded),
            )
        raise
    path = record.write_summary(night, summary)
    record_end_task(night, "completed", summary.steps)
    publish_task(night, settings)
    _publish(summary, path)
    logger.info("night %s completed; summary at %s", night.as_of, path)
    return summary


def _publish(summary: NightSummary, path: Path) -> None:
    """The night's summary as Prefect artifacts (shown in the UI when a server is used)."""
    night = summary.night
    rows = [
        {"step": step, "figure": key, "value": value}
        for step, counts in summary.steps.items()
        for key, value in counts.items()
        if isinstance(value, int | float | str)
    ]
    key = f"night-{night.as_of.isoformat()}"
    create_table_artifact(
        table=rows, key=f"{key}-figures", description=f"lienwatch night {night.as_of}"
    )
    create_markdown_artifact(
        markdown="```\n" + summary.text() + "\n```\n\nSummary file: `" + str(path) + "`",
        key=key,
        description=f"lienwatch night {night.as_of}",
    )


def configured(settings: Settings):
    """The nightly flow with the task runner the settings ask for (Dask for letter fan-out)."""
    if settings.letters.fan_out != "dask":
        return nightly
    from prefect_dask import DaskTaskRunner

    config = settings.letters
    if config.dask_address:
        runner = DaskTaskRunner(address=config.dask_address)
    else:
        workers = config.render_workers or os.cpu_count() or 1
        runner = DaskTaskRunner(
            cluster_kwargs={
                "n_workers": workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            }
        )
    # DaskTaskRunner subclasses the bare TaskRunner, whose future type then defaults to
    # PrefectConcurrentFuture, while with_options asks for TaskRunner[PrefectFuture[Any]]
    # (prefect_dask 0.3.7 / Prefect 3.8.8 annotations); the runner is what Prefect expects.
    return nightly.with_options(task_runner=runner)  # type: ignore[arg-type]
