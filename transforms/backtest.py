"""Backtest of the early-warning rules: did the flagged loans go bad more often?

For a month end M, the population is every active second lien below 90 days past due
at M; a loan "went bad" when it reached 90 days past due at any month end in the
following ``horizon_months`` months. For each tier and each signal, the loans flagged
with it are compared with the rest of the population: precision (share of flagged that
went bad), recall (share of all that went bad which were flagged), and lift (precision
over the population's rate). Pure: frames in, frames out.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from transforms.contract import DEFAULT_DAYS, SIGNALS, TIERS


def add_months(month_end: date, months: int) -> date:
    """The month end ``months`` after a month end."""
    index = month_end.year * 12 + month_end.month - 1 + months + 1
    return date(index // 12, index % 12 + 1, 1) - timedelta(days=1)


def outcomes(history: pl.DataFrame, month_end: date, horizon_months: int = 6) -> pl.DataFrame:
    """One row per second lien active and below 90 days at ``month_end``: went_bad."""
    horizon_end = add_months(month_end, horizon_months)
    base = history.filter(
        (pl.col("as_of_date") == month_end)
        & (pl.col("lien_position") == 2)
        & (pl.col("days_past_due") < DEFAULT_DAYS)
    ).select("loan_id")
    later = (
        history.filter((pl.col("as_of_date") > month_end) & (pl.col("as_of_date") <= horizon_end))
        .group_by("loan_id")
        .agg((pl.col("days_past_due").max() >= DEFAULT_DAYS).alias("went_bad"))
    )
    return base.join(later, on="loan_id", how="left").with_columns(
        pl.col("went_bad").fill_null(False)
    )


def rule_members(found: pl.DataFrame, flagged: pl.DataFrame) -> pl.DataFrame:
    """The rules' groups of one month end (loan_id, group): any flag, each tier, each signal."""
    return pl.concat(
        [
            flagged.select("loan_id", pl.lit("any flag").alias("group")),
            flagged.select("loan_id", pl.format("tier: {}", "tier").alias("group")),
            found.select("loan_id", pl.format("signal: {}", "signal").alias("group")),
        ]
    )


RULE_GROUPS = [
    "any flag",
    *[f"tier: {t}" for t in TIERS if t != "default"],
    *[f"signal: {s}" for s in SIGNALS],
]


def model_members(
    scored: pl.DataFrame, threshold: float, capacity: int, rules_flagged: pl.DataFrame
) -> pl.DataFrame:
    """The model's groups of one month end (loan_id, group), set against the rules':

    - ``model: any flag``: what the model flags (risk at or above ``threshold`` below 30
      days past due, and every loan 30 to 89 days), and ``model: early_warning``;
    - ``model: top at the rules rate``: the riskiest loans, as many as the rules flagged;
    - ``model: first {capacity}`` and ``rules: first {capacity}``: the review capacity's
      worth of each queue (the model's by risk, the rules' by their queue order).

    ``scored`` has loan_id, days_past_due and risk for the population; ``rules_flagged``
    the rules' risk_flags (loan_id, queue_rank)."""
    dpd, at_risk = pl.col("days_past_due"), pl.col("risk") >= threshold
    by_risk = scored.sort(["risk", "loan_id"], descending=[True, False])
    ranked = rules_flagged.join(scored.select("loan_id"), on="loan_id", how="semi").sort(
        "queue_rank"
    )
    return pl.concat(
        [
            scored.filter(at_risk | (dpd >= 30)).select(
                "loan_id", pl.lit("model: any flag").alias("group")
            ),
            scored.filter(at_risk & (dpd < 30)).select(
                "loan_id", pl.lit("model: early_warning").alias("group")
            ),
            by_risk.head(ranked.height).select(
                "loan_id", pl.lit("model: top at the rules rate").alias("group")
            ),
            by_risk.head(capacity).select(
                "loan_id", pl.lit(f"model: first {capacity}").alias("group")
            ),
            ranked.head(capacity).select(
                "loan_id", pl.lit(f"rules: first {capacity}").alias("group")
            ),
        ]
    )


def model_groups(capacity: int) -> list[str]:
    return [
        "model: any flag",
        "model: early_warning",
        "model: top at the rules rate",
        f"model: first {capacity}",
        f"rules: first {capacity}",
    ]


def groups(
    month_end: date, members: pl.DataFrame, outcome: pl.DataFrame, names: list[str]
) -> pl.DataFrame:
    """Counts for one month end: one row per group of ``names`` (``members``: loan_id, group)."""
    total, bad = outcome.height, int(outcome["went_bad"].sum())
    rows = []
    for name in names:
        inside = outcome.join(
            members.filter(pl.col("group") == name).unique(), on="loan_id", how="semi"
        )
        rows.append(
            {
                "month_end_date": month_end,
                "group": name,
                "flagged": inside.height,
                "flagged_bad": int(inside["went_bad"].sum()),
                "population": total,
                "population_bad": bad,
            }
        )
    return pl.DataFrame(rows)


# Each group's figures in the report and in backtest.json.
FIGURES = (
    "population",
    "flagged",
    "flagged_bad",
    "unflagged",
    "unflagged_bad",
    "precision",
    "recall",
    "lift",
)


def summarise(counts: pl.DataFrame) -> pl.DataFrame:
    """Sum the month ends' counts per group and compute precision, recall and lift."""
    return (
        counts.group_by("group", maintain_order=True)
        .agg(pl.col("flagged", "flagged_bad", "population", "population_bad").sum())
        .with_columns(
            (pl.col("flagged") - pl.col("flagged_bad")).alias("flagged_good"),
            (pl.col("population") - pl.col("flagged")).alias("unflagged"),
            (pl.col("population_bad") - pl.col("flagged_bad")).alias("unflagged_bad"),
        )
        .with_columns(
            (pl.col("flagged_bad") / pl.col("flagged")).alias("precision"),
            (pl.col("flagged_bad") / pl.col("population_bad")).alias("recall"),
            (pl.col("unflagged_bad") / pl.col("unflagged")).alias("unflagged_rate"),
            (pl.col("population_bad") / pl.col("population")).alias("base_rate"),
        )
        .with_columns((pl.col("precision") / pl.col("base_rate")).alias("lift"))
        .with_columns(pl.col("precision", "recall", "unflagged_rate", "lift").fill_nan(None))
        .select("group", *FIGURES, "unflagged_rate")
    )
