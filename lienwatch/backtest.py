"""``lienwatch backtest``: replay month ends over the warehouse; the model against the rules.

Each month end M with a full follow-up is replayed: the early-warning features as they
stood at M (``loan_status_month_end`` and the other inputs as of M), the rules' flags,
and, when a model is in use, its risk for every loan of the population. The same loans,
the same outcomes: :mod:`transforms.backtest` counts each group's flagged loans that
went bad. With a model, the month ends default to its validation window, the newest it
never learned from; month ends it learned from are refused, so that every figure is out
of time. Writes ``backtest.md`` (tables), ``backtest.json`` (the same figures) and
``backtest-lift.svg`` (chart), and returns the table and the report's path.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import polars as pl

from lienwatch import warehouse
from lienwatch.errors import LienwatchError
from lienwatch.files import write_atomic
from lienwatch.risk_model import Model, model_in_use
from lienwatch.settings import Settings
from lienwatch.steps.flags import features_as_of, model_inputs_as_of, risk_policy
from transforms import backtest, flags, risk

TEMPLATES = Path(__file__).resolve().parents[1] / "templates" / "reports"


def run_backtest(
    settings: Settings,
    db: Path,
    out: Path,
    start: date | None = None,
    end: date | None = None,
    horizon_months: int | None = None,
) -> tuple[pl.DataFrame, Path]:
    con = warehouse.connect(db, read_only=True)
    try:
        model = model_in_use(con, settings)
        horizon = horizon_months or (
            model.horizon_months if model else settings.risk.horizon_months
        )
        history = con.sql(
            "SELECT as_of_date, loan_id, lien_position, days_past_due FROM loan_status_month_end"
        ).pl()
        months = _months(con, history, model, start, end, horizon)
        capacity = settings.risk.review_capacity
        names = [*backtest.RULE_GROUPS, *(backtest.model_groups(capacity) if model else [])]
        policy = risk_policy(settings)
        by_month: list[pl.DataFrame] = []
        risks: list[np.ndarray] = []
        bads: list[np.ndarray] = []
        rule_scores: list[np.ndarray] = []
        for month_end in months:
            features, found = features_as_of(con, settings, month_end, "loan_status_month_end")
            ruled = flags.risk_flags(features, found, month_end, policy)
            outcome = backtest.outcomes(history, month_end, horizon)
            members = backtest.rule_members(found, ruled)
            if model is not None:
                inputs = model_inputs_as_of(con, month_end, features)
                population = inputs.join(outcome, on="loan_id", how="inner")
                scored = population.select("loan_id", "days_past_due").with_columns(
                    pl.Series("risk", model.risk(population), dtype=pl.Float64)
                )
                members = pl.concat(
                    [members, backtest.model_members(scored, model.flag_threshold, capacity, ruled)]
                )
                outcome = population.select("loan_id", "went_bad")
                risks.append(scored["risk"].to_numpy())
                bads.append(population["went_bad"].to_numpy())
                rule_scores.append(
                    population.select("loan_id")
                    .join(
                        ruled.select("loan_id", pl.col("score").cast(pl.Float64)),
                        on="loan_id",
                        how="left",
                    )["score"]
                    .fill_null(0.0)
                    .to_numpy()
                )
            by_month.append(backtest.groups(month_end, members, outcome, names))
    finally:
        con.close()
    counts = pl.concat(by_month)
    table = backtest.summarise(counts)
    measures = _measures(model, risks, bads, rule_scores) if model else None
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    report = _write(out, table, counts, months, horizon, model, measures)
    return table, report


def _months(
    con: Any,
    history: pl.DataFrame,
    model: Model | None,
    start: date | None,
    end: date | None,
    horizon: int,
) -> list[date]:
    observed = sorted(set(history["as_of_date"].to_list()))
    if not observed:
        raise LienwatchError("no month-end history yet; run a night first")
    last = observed[-1]
    learned_to: date | None = None
    if model is not None:
        window = con.execute(
            "SELECT calibrate_to, validate_from, validate_to FROM risk_models WHERE version = $v",
            {"v": model.version},
        ).fetchall()[0]
        learned_to = window[0]
        start, end = start or window[1], end or window[2]
    first = start or observed[0]
    final = end or last
    months = [
        m for m in observed if first <= m <= final and backtest.add_months(m, horizon) <= last
    ]
    if learned_to is not None and any(m <= learned_to for m in months):
        raise LienwatchError(
            f"model {model.version if model else ''} learned from the month ends up to {learned_to}; "
            f"replay later month ends only (--from after {learned_to}), so that the comparison is out of time"
        )
    if not months:
        raise LienwatchError(
            f"no month end between {first} and {final} has {horizon} months of "
            f"follow-up in the history (which ends {last})"
        )
    return months


def _measures(
    model: Model, risks: list[np.ndarray], bads: list[np.ndarray], rule_scores: list[np.ndarray]
) -> dict[str, Any]:
    scores, bad, rules = np.concatenate(risks), np.concatenate(bads), np.concatenate(rule_scores)
    return {
        "model": model.version,
        "flag_threshold": model.flag_threshold,
        "auc_model": risk.auc(scores, bad),
        "auc_rules": risk.auc(rules, bad),
        "calibration": risk.calibration_table(scores, bad),
    }


def _write(
    out: Path,
    table: pl.DataFrame,
    counts: pl.DataFrame,
    months: list[date],
    horizon: int,
    model: Model | None,
    measures: dict[str, Any] | None,
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
        measures=measures,
        **helpers,
    )
    top = max([r["lift"] or 0 for r in rows] + [1.0])
    svg = env.get_template("backtest-lift.svg.j2").render(
        rows=rows, horizon=horizon, width=760, left=260, scale=440 / top, **helpers
    )
    figures = {
        "months": [m.isoformat() for m in months],
        "horizon_months": horizon,
        "population": population,
        "population_bad": bad,
        "model": measures,
        "groups": {r["group"]: {k: r[k] for k in backtest.FIGURES} for r in rows},
    }
    write_atomic(out / "backtest-lift.svg", svg.encode(), durable=False)
    write_atomic(
        out / "backtest.json", (json.dumps(figures, indent=2) + "\n").encode(), durable=False
    )
    path = out / "backtest.md"
    write_atomic(path, markdown.encode(), durable=False)
    return path
