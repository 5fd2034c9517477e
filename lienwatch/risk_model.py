"""The learned early warning at the edge: ``lienwatch train``, and the model a night scores with.

Training replays the warehouse's own month ends. At each month end M with a full
follow-up, every second lien active and below 90 days past due is a sample: its
features as they stood at M (the night's early-warning features, replayed from
``loan_status_month_end``, and its bucket path), and whether it reached 90 days past
due at a month end in the ``risk.horizon_months`` after M. Out of time: the trees learn
from the older month ends, stop and are calibrated on the ``risk.validation_months``
before the newest, and are measured on the newest ones, which they never saw.

The fitted model is a file (LightGBM's text format) under ``models/`` beside the
warehouse and a row of ``risk_models`` holding the same text, its training window,
features, metrics, calibration and score distribution; the newest trained model is the
one in use.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import polars as pl

from lienwatch import warehouse
from lienwatch.errors import LienwatchError
from lienwatch.settings import Settings
from transforms import risk
from transforms.contract import DEFAULT_DAYS
from transforms.flags import Policy

SEED = 7
PARAMETERS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.1,
    "num_leaves": 15,
    "max_depth": 5,
    "min_data_in_leaf": 40,
    "min_sum_hessian_in_leaf": 1.0,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "monotone_constraints_method": "intermediate",
    "deterministic": True,
    "force_col_wise": True,
    "seed": SEED,
    "num_threads": 2,
    "verbose": -1,
}
ROUNDS, PATIENCE = 80, 20  # at most 80 trees: a night scores a million loans in well under a second


class TooLittleHistory(LienwatchError):
    """The warehouse's history cannot train a model; the night keeps the rules."""


@dataclass(frozen=True)
class Model:
    """The model in use: its trees, calibration and flag threshold."""

    version: str
    booster: Any  # lightgbm.Booster
    platt_a: float
    platt_b: float
    flag_threshold: float
    horizon_months: int
    score_bins: dict[str, list[float]]
    tables: list[np.ndarray]  # each tree's shares by leaf (transforms.risk.path_contributions)

    def risk(self, inputs: pl.DataFrame) -> np.ndarray:
        """The calibrated probability of each row of ``inputs`` going bad."""
        if not inputs.height:
            return np.zeros(0)
        raw = self.booster.predict(risk.matrix(inputs), num_threads=2)
        return risk.calibrated(raw, self.platt_a, self.platt_b)

    def contributions(self, inputs: pl.DataFrame) -> np.ndarray:
        """Each feature's share of each row's score (log-odds), then the bias: the path
        method over the leaves each row reaches (:func:`transforms.risk.path_contributions`)."""
        if not inputs.height:
            return np.zeros((0, len(risk.FEATURES) + 1))
        leaves = self.booster.predict(risk.matrix(inputs), pred_leaf=True, num_threads=2)
        return risk.summed_contributions(self.tables, np.asarray(leaves, dtype=np.int64))


def model_in_use(con: duckdb.DuckDBPyConnection, settings: Settings) -> Model | None:
    """The newest trained model, or None: none trained, the settings keep the rules, or
    the model was trained on other features than this version computes (retrain)."""
    import lightgbm

    if not settings.risk.use_model or not warehouse.table_exists(con, "risk_models"):
        return None
    found = con.execute(
        """SELECT version, features, platt_a, platt_b, flag_threshold, horizon_months,
                  score_bins, model_text, model_sha256
           FROM risk_models WHERE in_use ORDER BY trained_at DESC LIMIT 1"""
    ).fetchall()
    if not found:
        return None
    version, features, a, b, threshold, horizon, bins, text, sha = found[0]
    if tuple(features) != risk.FEATURE_NAMES:
        return None
    if hashlib.sha256(text.encode()).hexdigest() != sha:
        raise LienwatchError(f"risk_models: model {version} does not match its checksum")
    booster = lightgbm.Booster(model_str=text)
    width = len(risk.FEATURES)
    return Model(
        version=version,
        booster=booster,
        platt_a=a,
        platt_b=b,
        flag_threshold=settings.risk.flag_threshold or threshold,
        horizon_months=horizon,
        score_bins=json.loads(bins),
        tables=[risk.path_contributions(t, width) for t in booster.dump_model()["tree_info"]],
    )


def score(
    model: Model,
    inputs: pl.DataFrame,
    features: pl.DataFrame,
    policy: Policy,
    known: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The model's judgement of the loans below 90 days past due (rows of ``inputs``, with
    their early-warning ``features``, in the same order): loan_id, days_past_due, risk,
    expected_loss, inputs_hash, and for the loans it flags or that are 30 days or more
    behind, the reasons ordered by their share of the score (null for the others).

    ``known`` (row for row with ``inputs``: risk and inputs_hash, null where there is
    none) holds the loans' scores from an earlier night by the same model: a loan whose
    inputs have not changed since keeps its score, which is the one the trees would give
    (the same inputs, the same trees), and only the others go through the trees.
    """
    below = features["days_past_due"] < DEFAULT_DAYS
    inputs, features = inputs.filter(below), features.filter(below)
    hashes = risk.inputs_hash(inputs)
    scores = np.empty(inputs.height)
    fresh = np.ones(inputs.height, dtype=bool)
    if known is not None:
        known = known.filter(below)
        fresh = ~(known["inputs_hash"] == hashes).fill_null(False).to_numpy()
        scores[~fresh] = known["risk"].to_numpy()[~fresh]
    scores[fresh] = model.risk(inputs.filter(pl.Series(fresh)))
    judged = features.select(
        "loan_id", "days_past_due", "current_balance", "property_value", "senior_lien_balance"
    ).with_columns(
        pl.Series("risk", scores, dtype=pl.Float64),
        hashes,
    )
    judged = judged.select(
        "loan_id",
        "days_past_due",
        "risk",
        risk.expected_loss(pl.col("risk"), policy.recovery_cost).alias("expected_loss"),
        "inputs_hash",
    )
    wanted = (
        (judged["risk"] >= policy.flag_threshold) | (judged["days_past_due"] >= 30)
    ).arg_true()
    explained = risk.reasons(
        inputs[wanted], model.contributions(inputs[wanted]), features[wanted], policy
    )
    return judged.join(explained, on="loan_id", how="left", maintain_order="left")
