"""The learned early warning: the model's inputs, its calibration, its reasons and its checks.

Pure: frames and arrays in, frames and numbers out. The trees themselves are fitted and
applied at the edge (``lienwatch/risk_model.py``); what they see and what is made of
their output is defined here, so that a month end replayed for training and a night
scored for the queue see exactly the same columns.

- :func:`bucket_path_sql`: each loan's days past due at the month ends before a date.
- :func:`model_inputs`: one row per second lien, the columns of :data:`FEATURES`, from
  the early-warning features (``transforms.flags.assemble_features``), the bucket path
  and the loans' terms.
- :func:`calibrate` / :func:`calibrated`: Platt scaling of the trees' log-odds.
- :func:`reasons`: the plain-words signals behind a score, ordered by their share of it.
- :func:`expected_loss`: what an early call can still save, which orders the queue.
- :func:`auc`, :func:`calibration_table`, :func:`propose_threshold`, :func:`psi`: the
  measures that decide whether a model is fit to use, and whether it still is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

from transforms.backtest import add_months
from transforms.contract import SIGNALS
from transforms.flags import Policy, align, signal_texts

PATH_MONTHS = 12  # month ends of history a loan's bucket path looks back over


@dataclass(frozen=True)
class Feature:
    """One input of the model: its name, the direction of its effect where it is known
    (+1: more risk as it rises, which the trees are held to; 0: learned freely) and the
    plain-words signal it speaks for in a reason (None: a fact about the loan, not a
    warning sign)."""

    name: str
    direction: int
    signal: str | None


FEATURES: tuple[Feature, ...] = (
    Feature("days_past_due", 1, "early_delinquency"),
    Feature("months_behind", 1, "early_delinquency"),
    Feature("suspense_share", 1, "partial_or_suspense"),
    Feature("last_payment_short", 1, "partial_or_suspense"),
    Feature("returns_in_window", 1, "returned_payment"),
    Feature("senior_days_past_due", 1, "senior_lien_delinquent"),
    Feature("payment_rise", 1, "payment_shock"),
    Feature("days_late_last", 1, "paying_later"),
    Feature("days_late_before", 1, "paying_later"),
    Feature("days_late_oldest", 1, "paying_later"),
    Feature("lateness_trend", 0, "paying_later"),
    Feature("cltv", 1, "underwater"),
    Feature("dpd_month_ago", 1, "past_delinquency"),
    Feature("dpd_2_months_ago", 1, "past_delinquency"),
    Feature("dpd_3_months_ago", 1, "past_delinquency"),
    Feature("max_dpd_12m", 1, "past_delinquency"),
    Feature("months_late_12m", 1, "past_delinquency"),
    Feature("months_30_12m", 1, "past_delinquency"),
    Feature("heloc", 0, None),
    Feature("draw_ended", 0, None),
    Feature("months_to_draw_end", 0, None),
    Feature("loan_age_months", 0, None),
    Feature("not_primary", 0, None),
    Feature("balance", 0, None),
)
FEATURE_NAMES = tuple(f.name for f in FEATURES)
assert {f.signal for f in FEATURES} - {None} <= set(SIGNALS)

# Each signal counts as a reason only where the loan's figures are adverse: a share of a
# score from a clean figure (no return, a current first mortgage) is no warning sign.
ADVERSE: dict[str, pl.Expr] = {
    "early_delinquency": pl.col("days_past_due") > 0,
    "partial_or_suspense": (pl.col("suspense_share") > 0) | (pl.col("last_payment_short") > 0),
    "returned_payment": pl.col("returns_in_window") > 0,
    "senior_lien_delinquent": pl.col("senior_days_past_due") > 0,
    "payment_shock": pl.col("payment_rise") > 0,
    "paying_later": pl.max_horizontal("days_late_last", "days_late_before", "days_late_oldest") > 0,
    "underwater": pl.col("cltv") >= 0.8,
    "past_delinquency": pl.col("months_late_12m") > 0,
}


def path_month_ends(as_of: date) -> list[date]:
    """The :data:`PATH_MONTHS` month ends before ``as_of``, the latest first."""
    latest = as_of.replace(day=1) - timedelta(days=1)
    return [add_months(latest, -k) for k in range(PATH_MONTHS)]


def bucket_path_sql(source: str) -> str:
    """DuckDB SQL of each loan's path over month-end statuses in ``source`` (as_of_date,
    loan_id, days_past_due; a table, a view or a subquery), with ``$ends`` bound to
    :func:`path_month_ends`: one row per loan with a status at any of them, and its days
    past due at the latest three (dpd_month_ago, dpd_2_months_ago, dpd_3_months_ago; null
    where the loan had no status), the worst (max_dpd_12m) and how many found it behind
    at all (months_late_12m) and 30 days or more (months_30_12m). One aggregate, so the
    warehouse hands over a row per loan rather than twelve."""
    dpd = "days_past_due"
    return f"""SELECT loan_id,
        max({dpd}) FILTER (WHERE as_of_date = $ends[1]) AS dpd_month_ago,
        max({dpd}) FILTER (WHERE as_of_date = $ends[2]) AS dpd_2_months_ago,
        max({dpd}) FILTER (WHERE as_of_date = $ends[3]) AS dpd_3_months_ago,
        max({dpd}) AS max_dpd_12m,
        count(*) FILTER (WHERE {dpd} > 0)::INTEGER AS months_late_12m,
        count(*) FILTER (WHERE {dpd} >= 30)::INTEGER AS months_30_12m
    FROM {source} WHERE as_of_date IN (SELECT unnest($ends::DATE[]))
    GROUP BY loan_id"""


def model_inputs(
    features: pl.DataFrame, path: pl.DataFrame, terms: pl.DataFrame, as_of: date
) -> pl.DataFrame:
    """One row per row of ``features`` (in its order): loan_id and the :data:`FEATURES`
    as 64-bit floats (null where a figure is unknown; the trees route it).

    ``features`` comes from ``transforms.flags.assemble_features``; ``path`` from
    :func:`bucket_path_sql`; ``terms`` has loan_id, first_payment_date and draw_period_end.
    """
    money = pl.Float64

    def share(numerator: str, denominator: str) -> pl.Expr:
        den = pl.col(denominator).cast(money)
        return pl.when(den > 0).then(pl.col(numerator).cast(money) / den)

    late = pl.col("days_late")
    last_k = [late.list.get(-k, null_on_oob=True) for k in (1, 2, 3)]

    def months_since(column: str) -> pl.Expr:
        day = pl.col(column)
        return ((as_of.year * 12 + as_of.month) - (day.dt.year() * 12 + day.dt.month())).cast(money)

    heloc = pl.col("product") == "heloc"
    frame = features.select(
        "loan_id",
        "days_past_due",
        "amount_past_due",
        "installment_amount",
        "suspense_amount",
        "last_payment_short",
        "returns_in_window",
        "senior_days_past_due",
        "next_change_amount",
        "days_late",
        "current_balance",
        "senior_lien_balance",
        "property_value",
        "product",
        "occupancy",
    )
    # row for row (at no cost when the frames come so, as the night reads them)
    frame = frame.hstack(align(frame["loan_id"], path).drop("loan_id")).hstack(
        align(
            frame["loan_id"], terms.select("loan_id", "first_payment_date", "draw_period_end")
        ).drop("loan_id")
    )
    cltv = (
        pl.col("senior_lien_balance").fill_null(0).cast(money)
        + pl.col("current_balance").cast(money)
    ) / pl.when(pl.col("property_value") > 0).then(pl.col("property_value").cast(money))
    return frame.select(
        "loan_id",
        pl.col("days_past_due").cast(money),
        share("amount_past_due", "installment_amount").alias("months_behind"),
        # Money held short of an installment while something is owed: at a month end a
        # payment made ahead of the next due date waits in suspense too, and is no warning.
        pl.when(pl.col("amount_past_due") > 0)
        .then(share("suspense_amount", "installment_amount"))
        .otherwise(0.0)
        .alias("suspense_share"),
        pl.col("last_payment_short").cast(money),
        pl.col("returns_in_window").cast(money),
        pl.col("senior_days_past_due").cast(money),
        (share("next_change_amount", "installment_amount") - 1)
        .clip(lower_bound=0)
        .fill_null(0)
        .alias("payment_rise"),
        *[
            v.cast(money).alias(n)
            for v, n in zip(
                last_k, ("days_late_last", "days_late_before", "days_late_oldest"), strict=True
            )
        ],
        (last_k[0] - late.list.first()).cast(money).alias("lateness_trend"),
        cltv.alias("cltv"),
        *[
            pl.col(n).cast(money)
            for n in ("dpd_month_ago", "dpd_2_months_ago", "dpd_3_months_ago", "max_dpd_12m")
        ],
        pl.col("months_late_12m").fill_null(0).cast(money),
        pl.col("months_30_12m").fill_null(0).cast(money),
        heloc.cast(money).alias("heloc"),
        (heloc & (pl.col("draw_period_end") <= as_of))
        .fill_null(False)
        .cast(money)
        .alias("draw_ended"),
        pl.when(heloc).then(-months_since("draw_period_end")).alias("months_to_draw_end"),
        months_since("first_payment_date").alias("loan_age_months"),
        (pl.col("occupancy") != "primary").fill_null(False).cast(money).alias("not_primary"),
        pl.col("current_balance").cast(money).alias("balance"),
    )


def inputs_hash(inputs: pl.DataFrame) -> pl.Series:
    """A 64-bit hash of each row's :data:`FEATURES` as the trees read them (32-bit
    floats, null apart from NaN): equal figures, equal hash, so a score can be kept for
    inputs that have not changed."""
    return (
        inputs.select(pl.col(FEATURE_NAMES).cast(pl.Float32))
        .hash_rows(seed=INPUTS_SEED)
        .alias("inputs_hash")
    )


INPUTS_SEED = 20260430  # fixed: the hashes of one night are compared with another's


def matrix(inputs: pl.DataFrame) -> np.ndarray:
    """The :data:`FEATURES` of :func:`model_inputs` as a float32 matrix (NaN for null): the
    trees learn from and score the same figures, at half the memory of 64 bits."""
    return (
        inputs.select(pl.col(FEATURE_NAMES).cast(pl.Float32).fill_null(float("nan")))
        .to_numpy()
        .astype(np.float32, copy=False)
    )


# --------------------------------------------------------------------------- calibration


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    logit: np.ndarray = np.log(p / (1 - p))
    return logit


def calibrate(raw: np.ndarray, bad: np.ndarray, iterations: int = 200) -> tuple[float, float]:
    """Platt scaling: (a, b) of P(bad) = 1 / (1 + exp(-(a * logit(raw) + b))), fitted by
    Newton's method on the log-likelihood (two parameters: stable with few bad loans, and
    it keeps the trees' order, which the queue relies on)."""
    x, y = _logit(np.asarray(raw, dtype=np.float64)), np.asarray(bad, dtype=np.float64)
    a, b = 1.0, 0.0
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(a * x + b)))
        w = p * (1 - p) + 1e-12
        gradient = np.array([np.sum((p - y) * x), np.sum(p - y)])
        hessian = np.array([[np.sum(w * x * x), np.sum(w * x)], [np.sum(w * x), np.sum(w)]])
        step = np.linalg.solve(hessian + np.eye(2) * 1e-9, gradient)
        a, b = a - step[0], b - step[1]
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(a), float(b)


def calibrated(raw: np.ndarray, a: float, b: float) -> np.ndarray:
    """The calibrated probability of :func:`calibrate`'s (a, b)."""
    return 1 / (1 + np.exp(-(a * _logit(np.asarray(raw, dtype=np.float64)) + b)))


# --------------------------------------------------------------------------- reasons


def reasons(
    inputs: pl.DataFrame, contributions: np.ndarray, features: pl.DataFrame, policy: Policy
) -> pl.DataFrame:
    """One row per row of ``inputs``: the signals behind its score, most first.

    ``contributions`` holds each feature's share of the score in log-odds (one column per
    feature of :data:`FEATURES`, then the bias; :func:`path_contributions`), row for row
    with ``inputs``; ``features`` are the early-warning features of the same loans (for
    the signals' texts). A signal's weight is the sum of its features' shares; it is a
    reason when that sum is positive and the loan's figures are adverse
    (:data:`ADVERSE`), ordered by weight. A loan with none takes the signal that adds the
    most (or takes the least away) among those with a text, so that every score names at
    least one signal with its figures. Columns: loan_id, reasons, reason_details, weights.
    """
    codes = [c for c in SIGNALS if any(f.signal == c for f in FEATURES)]
    n, width = inputs.height, len(codes)
    by_signal = np.zeros((n, width))
    for k, feature in enumerate(FEATURES):
        if feature.signal is not None:
            by_signal[:, codes.index(feature.signal)] += contributions[:, k]
    texts = signal_texts(
        features.join(
            inputs.select("loan_id", "months_late_12m", "max_dpd_12m"),
            on="loan_id",
            how="left",
            maintain_order="left",
        ),
        policy,
    )
    adverse = inputs.select([ADVERSE[c].fill_null(False).alias(c) for c in codes]).to_numpy()
    has_text = texts.select([pl.col(c).is_not_null().alias(c) for c in codes]).to_numpy()
    # Each row's signals by weight, most first (ties in the signals' order); a row keeps
    # the adverse ones that add to its score or, having none, the first with a text.
    order = np.argsort(-by_signal, axis=1, kind="stable")
    rows = np.arange(n)[:, None]
    kept = ((by_signal > 0) & adverse & has_text)[rows, order]
    fallback = has_text[rows, order] & (np.cumsum(has_text[rows, order], axis=1) == 1)
    kept |= fallback & ~kept.any(axis=1, keepdims=True)
    row_of, rank = np.nonzero(kept)
    signal = order[row_of, rank]
    weight = np.round(by_signal[row_of, signal], 4)
    text_of = texts.select(codes).to_numpy()
    long = pl.DataFrame(
        {
            "row": row_of.astype(np.int64),
            "code": np.asarray(codes, dtype=object)[signal].astype(str),
            "detail": text_of[row_of, signal].astype(str) if row_of.size else [],
            "weight": weight,
        },
        schema={"row": pl.Int64, "code": pl.String, "detail": pl.String, "weight": pl.Float64},
    )
    listed = long.group_by("row", maintain_order=True).agg(
        pl.col("code").alias("reasons"),
        pl.col("detail").alias("reason_details"),
        pl.col("weight").alias("weights"),
    )
    return (
        pl.DataFrame({"row": np.arange(n, dtype=np.int64)})
        .join(listed, on="row", how="left", maintain_order="left")
        .select(
            inputs["loan_id"],
            pl.col("reasons").fill_null([]),
            pl.col("reason_details").fill_null([]),
            pl.col("weights").fill_null([]),
        )
    )


def path_contributions(tree: dict[str, Any], width: int) -> np.ndarray:
    """One tree's share of a score by feature, for each of its leaves: a table of
    (leaves, ``width`` + 1), row k for the leaf of index k, the last column the tree's
    value at its root. Following a row down the tree, each split's feature is credited
    with the change of value from the node to the child taken (the path method of
    Saabas): a leaf's row sums to its value, so a score's shares sum to the score.

    ``tree`` is one entry of LightGBM's ``dump_model()["tree_info"]`` (its
    ``tree_structure``: nodes with split_feature, internal_value, left_child and
    right_child; leaves with leaf_index and leaf_value).
    """
    root = tree["tree_structure"]
    if "leaf_value" in root:  # a tree of one leaf
        table = np.zeros((1, width + 1))
        table[0, width] = root["leaf_value"]
        return table
    table = np.zeros((int(tree["num_leaves"]), width + 1))
    stack: list[tuple[dict[str, Any], np.ndarray]] = [(root, np.zeros(width + 1))]
    stack[0][1][width] = root["internal_value"]
    while stack:
        node, credit = stack.pop()
        for side in ("left_child", "right_child"):
            child = node[side]
            value = child["leaf_value"] if "leaf_value" in child else child["internal_value"]
            taken = credit.copy()
            taken[node["split_feature"]] += value - node["internal_value"]
            if "leaf_value" in child:
                table[child.get("leaf_index", 0)] = taken
            else:
                stack.append((child, taken))
    return table


def summed_contributions(tables: list[np.ndarray], leaves: np.ndarray) -> np.ndarray:
    """Each row's shares over all trees: ``leaves`` holds each row's leaf in each tree
    (rows x trees, LightGBM's ``pred_leaf``), ``tables`` each tree's
    :func:`path_contributions`."""
    out = np.zeros((leaves.shape[0], tables[0].shape[1] if tables else len(FEATURES) + 1))
    for t, table in enumerate(tables):
        out += table[leaves[:, t]]
    return out


# --------------------------------------------------------------------------- the queue


def expected_loss(risk: pl.Expr, recovery_cost: float = 0.10) -> pl.Expr:
    """Risk times the second lien's exposure: its balance (current_balance) less what the
    property would leave it after the senior lien and the costs of a sale
    (``recovery_cost`` of property_value), never below nothing nor above the balance.
    Where the value is unknown the whole balance is exposed."""
    balance = pl.col("current_balance").cast(pl.Float64)
    left = (
        pl.col("property_value").cast(pl.Float64) * (1 - recovery_cost)
        - pl.col("senior_lien_balance").fill_null(0).cast(pl.Float64)
    ).clip(lower_bound=0)
    exposure = (balance - left.fill_null(0)).clip(lower_bound=0)
    return (risk * pl.min_horizontal(exposure, balance)).round(2)


# --------------------------------------------------------------------------- measures


def auc(score: np.ndarray, bad: np.ndarray) -> float | None:
    """Area under the ROC curve (the Mann-Whitney statistic, ties counted half); None
    without both outcomes."""
    y = np.asarray(bad, dtype=bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if not positives or not negatives:
        return None
    ranks = pl.Series(np.asarray(score, dtype=np.float64)).rank("average").to_numpy()
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def calibration_table(
    risk: np.ndarray, bad: np.ndarray, tenths: int = 10
) -> list[dict[str, float | int]]:
    """Predicted against observed by tenth of predicted risk (the lowest first): loans,
    bad loans, mean predicted and observed rate."""
    frame = pl.DataFrame(
        {"risk": np.asarray(risk, dtype=np.float64), "bad": np.asarray(bad, dtype=np.float64)}
    ).sort("risk")
    n = frame.height
    frame = frame.with_columns((pl.int_range(pl.len()) * tenths // max(n, 1)).alias("tenth"))
    out = (
        frame.group_by("tenth")
        .agg(
            pl.len().alias("loans"),
            pl.col("bad").sum().cast(pl.Int64).alias("bad"),
            pl.col("risk").mean().alias("predicted"),
            pl.col("bad").mean().alias("observed"),
        )
        .sort("tenth")
    )
    return [
        {
            "tenth": int(r["tenth"]) + 1,
            "loans": int(r["loans"]),
            "bad": int(r["bad"]),
            "predicted": round(float(r["predicted"]), 6),
            "observed": round(float(r["observed"]), 6),
        }
        for r in out.iter_rows(named=True)
    ]


def propose_threshold(risk_of_current: np.ndarray, share: float) -> float:
    """The lowest risk at which no more than ``share`` of the current loans given are
    flagged (flagged: risk at or above it)."""
    values = np.sort(np.asarray(risk_of_current, dtype=np.float64))[::-1]
    if not values.size:
        return 1.0
    allowed = math.floor(share * values.size)
    if allowed >= values.size:
        return float(values[-1])
    # flag the top ``allowed``: the threshold sits just above the first one left out
    return float(np.nextafter(values[allowed], np.inf))


# Risk bands of the score distribution (their inner edges). Fixed bands, not tenths of
# the training scores: trees give many loans the very same score, and a tenth's edge
# falling on such a mass makes the index swing with no change in the population.
RISK_BANDS = (0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def psi_bins(risk: np.ndarray, weight: np.ndarray | None = None) -> dict[str, list[float]]:
    """The training sample's score distribution, for :func:`psi`: the inner edges of the
    :data:`RISK_BANDS` and the share of the sample in each band, each row counted by its
    ``weight`` (a thinned sample's rows stand for the rows left out)."""
    values = np.asarray(risk, dtype=np.float64)
    w = np.ones(values.size) if weight is None else np.asarray(weight, dtype=np.float64)
    edges = list(RISK_BANDS)
    return {"edges": edges, "shares": _shares(values, edges, w)}


def _shares(
    values: np.ndarray, edges: list[float], weight: np.ndarray | None = None
) -> list[float]:
    w = np.ones(values.size) if weight is None else weight
    counts = np.bincount(
        np.searchsorted(edges, values, side="right"), weights=w, minlength=len(edges) + 1
    )
    return [round(float(c) / max(float(w.sum()), 1e-12), 9) for c in counts]


def psi(risk: np.ndarray, bins: dict[str, list[float]]) -> float:
    """Population stability index of ``risk`` against :func:`psi_bins`' distribution:
    sum of (actual - expected) * ln(actual / expected) over the bins (a share of 0 counts
    as 0.0001). Above 0.25 the population has shifted enough to retrain."""
    actual = np.maximum(np.array(_shares(np.asarray(risk, dtype=np.float64), bins["edges"])), 1e-4)
    expected = np.maximum(np.array(bins["shares"]), 1e-4)
    return float(np.sum((actual - expected) * np.log(actual / expected)))
