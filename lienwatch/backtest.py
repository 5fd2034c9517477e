"""``lienwatch backtest``: replay month ends over the warehouse and measure the flags.

Each month end M with a full follow-up in the month-end history is replayed: the
early-warning rules run on the status at M (``loan_status_month_end``) and the other
inputs as they stood at M, and :mod:`transforms.backtest` compares the flagged loans'
outcomes with the rest. Writes ``backtest.md`` (table) and ``backtest-lift.svg``
(chart) and returns the table.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import jinja2
import polars as pl

from lienwatch import warehouse
from lienwatch.errors import LienwatchError
from lienwatch.settings import Settings
from lienwatch.steps.flags import flags_as_of
from transforms import backtest

TEMPLATES = Path(__file__).resolve().parents[1] / "templates" / "reports"


def run_backtest(
    settings: Settings, db: Path, out: Path, start: date, end: date, horizon_months: int = 6
) -> tuple[pl.DataFrame, Path]:
    con = warehouse.connect(db, read_only=True)
    try:
        history = con.sql(
            "SELECT as_of_date, loan_id, lien_position, days_past_due FROM loan_status_month_end"
        ).pl()
        observed = sorted(set(history["as_of_date"].to_list()))
        if not observed:
            raise LienwatchError(f"{db}: no month-end history yet; run a night first")
        last = observed[-1]
        months = [
            m
            for m in observed
            if start <= m <= end and backtest.add_months(m, horizon_months) <= last
        ]
        if not months:
            raise LienwatchError(
                f"no month end between {start} and {end} has {horizon_months} months of "
                f"follow-up in the history (which ends {last})"
            )
        by_month: list[pl.DataFrame] = []
        for month_end in months:
            _, found, flagged = flags_as_of(con, settings, month_end, "loan_status_month_end")
            outcome = backtest.outcomes(history, month_end, horizon_months)
            by_month.append(backtest.groups(month_end, found, flagged, outcome))
    finally:
        con.close()
    counts = pl.concat(by_month)
    table = backtest.summarise(counts)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    report = _write(out, table, counts, months, horizon_months)
    return table, report


def _write(
    out: Path, table: pl.DataFrame, counts: pl.DataFrame, months: list[date], horizon: int
) -> Path:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined, autoescape=True
    )
    rows = table.to_dicts()
    first = counts.filter(pl.col("group") == "any flag")
    population, bad = int(first["population"].sum()), int(first["population_bad"].sum())
    helpers = {
        "pct": lambda v: "n/a" if v is None else f"{v * 100:.1f} %",
        "num": lambda v: "n/a" if v is None else f"{v:.2f}",
    }
    markdown = env.get_template("backtest.md.j2").render(
        rows=rows,
        months=months,
        horizon=horizon,
        population=population,
        population_bad=bad,
        base_rate=bad / population if population else 0.0,
        **helpers,
    )
    top = max([r["lift"] or 0 for r in rows] + [1.0])
    svg = env.get_template("backtest-lift.svg.j2").render(
        rows=rows, horizon=horizon, width=760, left=260, scale=440 / top, **helpers
    )
    (out / "backtest-lift.svg").write_text(svg)
    path = out / "backtest.md"
    path.write_text(markdown)
    return path
