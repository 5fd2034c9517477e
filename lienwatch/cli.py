"""The ``lienwatch`` command.

Each subcommand builds the settings once, calls one function and turns a known failure
into a one-line message on stderr with a non-zero exit code. Errors carry the file,
row and column where there is one; nothing here prints a traceback for a problem in the
input.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, overload

import typer

from lienwatch import prefect_local
from lienwatch.cli_support import ConfigOption
from lienwatch.cli_support import fail as _fail
from lienwatch.cli_support import settings_or_exit as _settings
from lienwatch.errors import LienwatchError, one_line
from lienwatch.review_cli import review_app
from lienwatch.users_cli import users_app

if TYPE_CHECKING:
    from lienwatch.settings import Settings

app = typer.Typer(
    name="lienwatch",
    help="Nightly delinquency monitoring and early outreach for second-lien portfolios.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(review_app, name="review")
app.add_typer(users_app, name="users")


def _echo_nights(nights) -> None:
    """Print each night's summary as it completes; a failed night stops with its reason."""
    try:
        for line in nights():
            typer.echo(line)
    except Exception as exc:  # a full disk or a fault of the machine too: its one line on stderr
        _fail(one_line(exc))


@overload
def _parse_date(value: str, name: str) -> date: ...


@overload
def _parse_date(value: str | None, name: str) -> date | None: ...


def _parse_date(value: str | None, name: str) -> date | None:
    """The date ``value`` names (None when it is None); a value that is not one stops the
    command."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        _fail(f"{name}: not a date in YYYY-MM-DD form: {value!r}")


@app.command()
def run(
    data: Annotated[Path | None, typer.Option("--data", help="Landing folder.")] = None,
    db: Annotated[Path | None, typer.Option("--db", help="DuckDB warehouse file.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Where letters and reports go.")] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Business date YYYY-MM-DD (default: today).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Run one night: landing folder to warehouse, status, flags, letters and report."""
    settings = _settings(config)
    night = _parse_date(as_of, "--as-of") or date.today()
    prefect_local.start_early()  # Prefect's temporary server boots while the night's code loads
    from lienwatch.entry import run_night
    from lienwatch.night import summary_text

    try:
        summary = run_night(
            settings,
            data=data or settings.paths.data,
            db=db or settings.paths.db,
            out=out or settings.paths.out,
            as_of=night,
        )
    except Exception as exc:  # a full disk or a fault of the machine too: its one line on stderr
        _fail(one_line(exc))
    typer.echo(summary_text(summary))


@app.command()
def backfill(
    start: Annotated[str, typer.Option("--start", help="First business date, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--end", help="Last business date, YYYY-MM-DD.")],
    data: Annotated[Path | None, typer.Option("--data", help="Landing folder.")] = None,
    db: Annotated[Path | None, typer.Option("--db", help="DuckDB warehouse file.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Where letters and reports go.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Rerun nights already complete.")] = False,
    config: ConfigOption = None,
) -> None:
    """Run each business date from START to END in order, skipping completed nights."""
    settings = _settings(config)
    first, last = _parse_date(start, "--start"), _parse_date(end, "--end")
    if first > last:
        _fail(f"--start {first} is after --end {last}")
    prefect_local.start_early()
    from lienwatch.entry import run_backfill

    _echo_nights(
        lambda: run_backfill(
            settings,
            data=data or settings.paths.data,
            db=db or settings.paths.db,
            out=out or settings.paths.out,
            start=first,
            end=last,
            force=force,
        )
    )


@app.command()
def serve(
    data: Annotated[Path | None, typer.Option("--data", help="Landing folder.")] = None,
    db: Annotated[Path | None, typer.Option("--db", help="DuckDB warehouse file.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Where letters and reports go.")] = None,
    config: ConfigOption = None,
) -> None:
    """Serve the nightly flow on the settings' cron schedule until stopped (Ctrl-C)."""
    settings = _settings(config)
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        _fail(
            "serve needs a Prefect server for its scheduler: start one with "
            "`prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api "
            "(or run single nights with `lienwatch run` from cron)"
        )
    from lienwatch.entry import serve_nights

    typer.echo(
        f"serving lienwatch-nightly on '{settings.schedule.cron}' ({settings.schedule.timezone})"
    )
    serve_nights(
        settings,
        data=data or settings.paths.data,
        db=db or settings.paths.db,
        out=out or settings.paths.out,
        config=config,
    )


@app.command()
def train(
    db: Annotated[Path | None, typer.Option("--db", help="DuckDB warehouse file.")] = None,
    models: Annotated[
        Path | None,
        typer.Option(
            "--models", help="Folder for model files (default: models/ beside the warehouse)."
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Learn the early-warning model from the warehouse's month ends; the nights use it from then on."""
    settings = _settings(config)
    from lienwatch.train import train as fit

    try:
        row = fit(settings, db or settings.paths.db, models)
    except LienwatchError as exc:
        _fail(str(exc))
    metrics = json.loads(row["metrics"])
    typer.echo(
        f"model {row['version']}: trained on {row['train_from']} to {row['train_to']}, "
        f"calibrated on {row['calibrate_from']} to {row['calibrate_to']}, "
        f"validated on {row['validate_from']} to {row['validate_to']}"
    )
    typer.echo(
        f"validation: {metrics['validation_rows']} loan-months, {metrics['validation_bad']} went bad; "
        f"AUC {metrics['auc']:.3f} (rules' score {metrics['auc_rules_score']:.3f}); "
        f"flag threshold {row['flag_threshold']:.4f} flags "
        f"{metrics['current_flagged_share']:.1%} of current second liens"
    )
    typer.echo(f"file: {row['model_file']}")


@app.command()
def backtest(
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="First month end to replay, YYYY-MM-DD (default: the model's validation window, or the whole history).",
        ),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Last month end to replay, YYYY-MM-DD.")
    ] = None,
    db: Annotated[Path | None, typer.Option("--db", help="DuckDB warehouse file.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Where the report goes.")] = None,
    horizon: Annotated[
        int | None,
        typer.Option(
            "--horizon",
            min=1,
            max=24,
            help="Months of follow-up (default: the model's, or risk.horizon_months).",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Replay month ends and report how the model and the rules predicted 90+ days past due."""
    settings = _settings(config)
    first = _parse_date(start, "--from") if start else None
    last = _parse_date(end, "--to") if end else None
    from lienwatch.backtest import run_backtest

    try:
        _, report = run_backtest(
            settings,
            db or settings.paths.db,
            out or settings.paths.out / "backtest",
            first,
            last,
            horizon,
        )
    except LienwatchError as exc:
        _fail(str(exc))
    typer.echo(report.read_text())
    typer.echo(f"report: {report.resolve()}")


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="Landing folder to write.")],
    loans: Annotated[int, typer.Option("--loans", min=1, help="Number of loans.")] = 3000,
    months: Annotated[int, typer.Option("--months", min=1, help="Months of ledger.")] = 24,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 7,
    end_date: Annotated[
        str | None, typer.Option("--end-date", help="Last ledger day (default 2026-11-20).")
    ] = None,
    profile: Annotated[
        str,
        typer.Option(
            "--profile",
            help="realistic: a normal-year book (docs/portfolio.md); stressed: trouble is common, for volume.",
        ),
    ] = "realistic",
) -> None:
    """Write a synthetic landing folder in the contract's format (deterministic by seed)."""
    from lienwatch.generate import PROFILES
    from lienwatch.generate import generate as write_folder

    if profile not in PROFILES:
        _fail(f"--profile: one of {', '.join(PROFILES)}, not {profile!r}")
    kwargs: dict[str, date] = {}
    if end_date:
        kwargs["end_date"] = _parse_date(end_date, "--end-date")
    summary = write_folder(out, loans=loans, months=months, seed=seed, profile=profile, **kwargs)
    typer.echo(f"wrote {out}: {summary}")


@app.command()
def demo(
    nights: Annotated[int, typer.Option("--nights", min=1, max=10, help="Nights to run.")] = 3,
    config: ConfigOption = None,
) -> None:
    """Run the bundled sample portfolio through consecutive nights and say where it all is.

    The nights read a landing folder beside the warehouse that the sample is released
    into one day at a time (lienwatch.demo): the first night takes in the history, each
    later one a new day of payments."""
    settings = _settings(config)
    prefect_local.start_early()
    from lienwatch import demo as staging
    from lienwatch.entry import latest_ledger_date, run_backfill

    sample, db, out = settings.paths.data, settings.paths.db, settings.paths.out
    landing = db.parent / "demo-landing"

    def demo_nights():
        """The first night takes in the history and builds the month-end history; the
        model learned from it then judges every night, the first one run again."""
        last = latest_ledger_date(sample)
        first = last - timedelta(days=nights - 1)
        staging.stage(sample, landing, first)

        def night_of(day: date):
            staging.release(sample, landing, day)
            return run_backfill(
                settings,
                data=landing,
                db=db,
                out=out,
                start=day,
                end=day,
                force=True,
                business_days_only=False,
            )

        yield from night_of(first)
        trained = _demo_model(settings, db)
        yield trained
        if trained.startswith("model "):
            yield from night_of(first)
        for offset in range(1, nights):
            yield from night_of(first + timedelta(days=offset))

    _echo_nights(demo_nights)
    last_night = out.resolve() / latest_ledger_date(sample).isoformat()
    typer.echo("")
    typer.echo(f"landing:   {landing.resolve()} (the sample, released a day a night)")
    typer.echo(f"warehouse: {db.resolve()}")
    typer.echo(f"outputs:   {out.resolve()}")
    typer.echo(
        f"letters:   {last_night / 'letters'} (mail manifest: {last_night / 'mail_manifest.csv'})"
    )
    typer.echo(
        f"review:    {last_night / 'review.html'} (call list, queue.csv, queue.xlsx alongside)"
    )


def _demo_model(settings: Settings, db: Path) -> str:
    """Train the early-warning model on the demo's warehouse: a line saying what it is, or
    why the nights keep the rules."""
    from lienwatch.train import train as fit

    try:
        row = fit(settings, db)
    except LienwatchError as exc:
        return f"lienwatch train: {exc}"
    metrics = json.loads(row["metrics"])
    return (
        f"model {row['version']} trained (validation AUC {metrics['auc']:.3f}, the rules' "
        f"score {metrics['auc_rules_score']:.3f}); the nights score with it"
    )


@app.command()
def workbench(
    host: Annotated[
        str | None, typer.Option("--host", help="Address (default workbench.host).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port (default workbench.port).")
    ] = None,
    db: Annotated[
        Path | None,
        typer.Option(
            "--db", help="Warehouse the store and snapshots sit beside (default paths.db)."
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Serve the analysts' workbench (docs/workbench.md); put it behind a TLS reverse proxy."""
    settings = _settings(config)
    import uvicorn

    from lienwatch.workbench.app import create_app

    try:
        application = create_app(settings, db or settings.paths.db)
    except LienwatchError as exc:
        _fail(str(exc))
    uvicorn.run(
        application,
        host=host or settings.workbench.host,
        port=port or settings.workbench.port,
        proxy_headers=False,  # the app believes X-Forwarded-For from workbench.trusted_proxies only
        server_header=False,
        log_level="warning",
    )


@app.command("settings")
def settings_command(
    reference: Annotated[
        bool, typer.Option("--reference", help="Print every key with its default, as Markdown.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Check a settings file (or print the reference of every key)."""
    if reference:
        from lienwatch.settings import settings_reference

        typer.echo(settings_reference())
        return
    settings = _settings(config)
    typer.echo(settings.model_dump_json(indent=2))


def main() -> None:  # pragma: no cover - console entry
    """The console command. Once it has said what it has to say, the interpreter's own
    shutdown messages (DuckDB's binding reports objects alive at exit) are not shown:
    stderr carries the one-line reason of a failed command and nothing else.

    Nor does the exit collect garbage through every module a night loads (Prefect,
    Great Expectations and what they import: about a second after the summary is
    printed). The command closes its warehouse connections and files itself; registered
    before the night starts, the freeze runs after the exit handlers the night registers
    (Prefect's log and event workers', the temporary server's stop)."""
    atexit.register(gc.freeze)
    try:
        app()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
