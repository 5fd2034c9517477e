"""``lienwatch train``: fit, calibrate, measure and record the early-warning model.

See :mod:`lienwatch.risk_model` for what a sample is and how the month ends are split.
Refuses (:class:`~lienwatch.risk_model.TooLittleHistory`) when the history holds fewer
than ``risk.min_history_months`` month ends or fewer than ``risk.min_bad_loans`` loans
that went bad in the training month ends: the night then keeps the rules.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl

from lienwatch import warehouse
from lienwatch.files import write_atomic
from lienwatch.risk_model import PARAMETERS, PATIENCE, ROUNDS, TooLittleHistory
from lienwatch.settings import Settings
from lienwatch.steps.flags import features_as_of, model_inputs_as_of, risk_policy
from transforms import backtest, flags, risk

SAMPLE_LIMIT = 3_000_000  # training rows kept; beyond it the good loans are sampled


@dataclass(frozen=True)
class Split:
    train: list[date]
    calibrate: list[date]
    validate: list[date]


def split_months(
    ends: list[date], horizon_months: int, validation_months: int, min_history: int
) -> Split:
    """The month ends with a full follow-up, oldest to newest: train on the older ones,
    calibrate on ``validation_months`` before the newest, validate on the newest."""
    if len(ends) < min_history:
        raise TooLittleHistory(
            f"the warehouse holds {len(ends)} month ends of history; training needs at least "
            f"{min_history} (risk.min_history_months). The night keeps the rules."
        )
    last = ends[-1]
    full = [m for m in ends if backtest.add_months(m, horizon_months) <= last]
    v = validation_months
    if len(full) < 2 * v + 3:
        raise TooLittleHistory(
            f"only {len(full)} month ends have {horizon_months} months of follow-up; training "
            f"needs at least {2 * v + 3} ({v} to validate, {v} to calibrate, 3 to learn from). "
            "The night keeps the rules."
        )
    return Split(train=full[: -2 * v], calibrate=full[-2 * v : -v], validate=full[-v:])


@dataclass(frozen=True)
class Sample:
    """Month-end samples as arrays, row for row: the model's inputs (:func:`risk.matrix`),
    went_bad, each row's weight (the good loans thinned out stand for the rest), days past
    due, the rules' score (0 where the rules were not replayed), and the month-end rows
    before thinning."""

    x: np.ndarray
    bad: np.ndarray
    weight: np.ndarray
    days_past_due: np.ndarray
    rules_score: np.ndarray
    rows: int

    @staticmethod
    def joined(parts: list[Sample]) -> Sample:
        return Sample(
            x=np.concatenate([p.x for p in parts]),
            bad=np.concatenate([p.bad for p in parts]),
            weight=np.concatenate([p.weight for p in parts]),
            days_past_due=np.concatenate([p.days_past_due for p in parts]),
            rules_score=np.concatenate([p.rules_score for p in parts]),
            rows=sum(p.rows for p in parts),
        )


def month_samples(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    month_end: date,
    history: pl.DataFrame,
    horizon_months: int,
    rules: bool = False,
) -> pl.DataFrame:
    """One row per second lien active and below 90 days at ``month_end``: its model
    inputs, went_bad, and with ``rules`` whether the rules flagged it (rules_flag) with
    their score (rules_score; 0 without)."""
    features, found = features_as_of(con, settings, month_end, "loan_status_month_end")
    inputs = model_inputs_as_of(con, month_end, features)
    outcome = backtest.outcomes(history, month_end, horizon_months)
    sample = inputs.join(outcome, on="loan_id", how="inner").with_columns(
        pl.lit(month_end).alias("month_end")
    )
    if not rules:
        return sample.with_columns(
            pl.lit(False).alias("rules_flag"), pl.lit(0.0).alias("rules_score")
        )
    ruled = flags.risk_flags(features, found, month_end, risk_policy(settings)).select(
        "loan_id",
        pl.lit(True).alias("rules_flag"),
        pl.col("score").cast(pl.Float64).alias("rules_score"),
    )
    return sample.join(ruled, on="loan_id", how="left").with_columns(
        pl.col("rules_flag").fill_null(False), pl.col("rules_score").fill_null(0.0)
    )


def thinned(sample: pl.DataFrame, limit: int | None) -> Sample:
    """``sample`` (:func:`month_samples`) as arrays: with a ``limit``, every bad row and
    an even share of the good ones such that about ``limit`` rows are left (chosen by a
    hash of loan and month, so that the same history gives the same model), each good row
    kept weighted by the number it stands for. Rows in loan order: the warehouse hands
    them over in no set order, and the trees' row sampling depends on it."""
    rows = sample.height
    sample = sample.sort("loan_id")
    if limit is not None and rows > limit:
        bad = int(sample["went_bad"].sum())
        keep = min(1.0, max(limit - bad, 1) / max(rows - bad, 1))
        sample = sample.filter(
            pl.col("went_bad")
            | (
                pl.struct("loan_id", "month_end").hash(seed=SEED_HASH) % 1_000_000
                < keep * 1_000_000
            )
        )
        weight = np.where(sample["went_bad"].to_numpy(), 1.0, 1 / keep).astype(np.float32)
    else:
        weight = np.ones(sample.height, dtype=np.float32)
    return Sample(
        x=risk.matrix(sample),
        bad=sample["went_bad"].to_numpy().astype(bool),
        weight=weight,
        days_past_due=sample["days_past_due"].to_numpy(),
        rules_score=sample["rules_score"].to_numpy(),
        rows=rows,
    )


def train(settings: Settings, db: Path, models: Path | None = None) -> dict[str, Any]:
    """Fit, calibrate and validate a model on the warehouse's history, record it in
    ``risk_models`` (the one in use from now on) and write its file. Returns its row.

    Month end by month end, each month's samples are reduced at once to arrays (the
    training months' good loans thinned to :data:`SAMPLE_LIMIT` rows in all), so that
    memory holds the arrays rather than the frames."""
    import lightgbm

    config = settings.risk
    horizon = config.horizon_months
    con = warehouse.connect(db)
    try:
        history = warehouse.frame(
            con,
            """SELECT as_of_date, loan_id, lien_position, days_past_due FROM loan_status_month_end
            WHERE lien_position = 2""",
        )
        ends = sorted(set(history["as_of_date"].to_list()))
        split = split_months(ends, horizon, config.validation_months, config.min_history_months)
        per_month = SAMPLE_LIMIT // len(split.train)
        learned, bad_ids = [], set()
        for m in split.train:
            sample = month_samples(con, settings, m, history, horizon)
            bad_ids |= set(sample.filter(pl.col("went_bad"))["loan_id"].to_list())
            learned.append(thinned(sample, per_month))
        bad_loans = len(bad_ids)
        if bad_loans < config.min_bad_loans:
            raise TooLittleHistory(
                f"{bad_loans} loans went bad in the training month ends "
                f"({split.train[0]} to {split.train[-1]}); training needs at least "
                f"{config.min_bad_loans} (risk.min_bad_loans). The night keeps the rules."
            )
        learn = Sample.joined(learned)
        del learned
        tune = Sample.joined(
            [
                thinned(month_samples(con, settings, m, history, horizon), None)
                for m in split.calibrate
            ]
        )
        check = Sample.joined(
            [
                thinned(month_samples(con, settings, m, history, horizon, rules=True), None)
                for m in split.validate
            ]
        )
        del history
        parameters = {
            **PARAMETERS,
            "monotone_constraints": [f.direction for f in risk.FEATURES],
        }
        booster = lightgbm.train(
            parameters,
            lightgbm.Dataset(
                learn.x,
                label=learn.bad,
                weight=learn.weight,
                feature_name=list(risk.FEATURE_NAMES),
                free_raw_data=True,
            ),
            num_boost_round=ROUNDS,
            valid_sets=[lightgbm.Dataset(tune.x, label=tune.bad)],
            callbacks=[lightgbm.early_stopping(PATIENCE, verbose=False)],
        )

        def raw(x: np.ndarray) -> np.ndarray:
            return np.asarray(booster.predict(x, num_threads=2), dtype=np.float64)

        a, b = risk.calibrate(raw(tune.x), tune.bad)
        checked = risk.calibrated(raw(check.x), a, b)
        current = check.days_past_due == 0
        threshold = risk.propose_threshold(checked[current], config.early_warning_share)
        learned_risk = risk.calibrated(raw(learn.x), a, b)
        text = booster.model_to_string()
        sha = hashlib.sha256(text.encode()).hexdigest()
        version = f"gbm-{split.validate[-1]:%Y%m%d}-{sha[:10]}"
        row = {
            "version": version,
            "trained_at": datetime.now(UTC).replace(tzinfo=None),
            "in_use": True,
            "horizon_months": horizon,
            "train_from": split.train[0],
            "train_to": split.train[-1],
            "calibrate_from": split.calibrate[0],
            "calibrate_to": split.calibrate[-1],
            "validate_from": split.validate[0],
            "validate_to": split.validate[-1],
            "features": list(risk.FEATURE_NAMES),
            "monotone": [f.direction for f in risk.FEATURES],
            "flag_threshold": threshold,
            "platt_a": a,
            "platt_b": b,
            "metrics": json.dumps(
                _metrics(
                    learn,
                    check,
                    booster.best_iteration,
                    bad_loans,
                    checked,
                    threshold,
                    config.review_capacity,
                )
            ),
            "calibration": json.dumps(risk.calibration_table(checked, check.bad)),
            "score_bins": json.dumps(risk.psi_bins(learned_risk, learn.weight)),
            "model_file": "",
            "model_sha256": sha,
            "model_text": text,
        }
        folder = models or db.parent / "models"
        path = folder / f"{version}.txt"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(path, text.encode())
        row["model_file"] = str(path.resolve())
        with warehouse.transaction(con):
            con.execute("UPDATE risk_models SET in_use = false")
            con.execute("DELETE FROM risk_models WHERE version = $v", {"v": version})
            warehouse.append(con, "risk_models", pl.DataFrame([row]))
    finally:
        con.close()
    return row


SEED_HASH = 11


def _metrics(
    learn: Sample,
    check: Sample,
    rounds: int,
    bad_loans: int,
    checked: np.ndarray,
    threshold: float,
    capacity: int,
) -> dict[str, Any]:
    """What the validation month ends say of the model next to the rules."""
    bad = check.bad
    current = check.days_past_due == 0
    flagged = (checked >= threshold) | (check.days_past_due >= 30)
    return {
        "rounds": rounds,
        "train_rows": learn.rows,
        "train_rows_kept": int(learn.bad.size),
        "train_bad_loans": bad_loans,
        "validation_rows": int(bad.size),
        "validation_bad": int(bad.sum()),
        "validation_base_rate": float(bad.mean()) if bad.size else 0.0,
        "auc": risk.auc(checked, bad),
        "auc_rules_score": risk.auc(check.rules_score, bad),
        "current_flagged_share": float(
            ((checked >= threshold) & current).sum() / max(current.sum(), 1)
        ),
        "flagged_share": float(flagged.mean()) if flagged.size else 0.0,
        "precision": float(bad[flagged].mean()) if flagged.any() else None,
        "recall": float(bad[flagged].sum() / max(bad.sum(), 1)),
        "capacity": capacity,
    }
