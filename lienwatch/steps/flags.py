"""The flags step: risk_flags for the night's second liens, and the features behind them
(which the backtest replays at month ends)."""

from __future__ import annotations

import dataclasses
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, timedelta
from typing import Any

import duckdb
import numpy as np
import polars as pl

from lienwatch import sql, warehouse
from lienwatch.night import Night
from lienwatch.review import decisions
from lienwatch.risk_model import Model, model_in_use, score
from lienwatch.settings import Settings
from transforms import flags, risk

PRIOR_DAYS = 30  # "a month ago" for the worsening-bucket signal
# Ledger days read for the last three installments' payment days. The oldest of the three
# fell due less than three months (92 days) before the night, and a payment day before
# the window's start reads as "paid ahead" (0 days late) from the window's opening net
# paid, so a window that opens on or before that due date gives every figure exactly.
LATENESS_WINDOW_DAYS = 95


def risk_policy(settings: Settings) -> flags.Policy:

    risk = settings.risk
    return flags.Policy(
        senior_dpd_threshold=risk.senior_dpd_threshold,
        payment_rise_ratio=risk.payment_rise_ratio,
        late_days_threshold=risk.late_days_threshold,
        drift_min_days=risk.drift_min_days,
        cltv_threshold=risk.cltv_threshold,
        review_capacity=risk.review_capacity,
        weights=dict(risk.weights),
        weight_per_day_past_due=risk.weight_per_day_past_due,
        grace_days=risk.grace_days,
        recovery_cost=risk.recovery_cost,
    )


def flags_as_of(
    con: duckdb.DuckDBPyConnection, settings: Settings, as_of: date, status_table: str
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, Model | None, pl.DataFrame | None]:
    """(features, signals found, risk_flags, the model in use or None, its scores or None)
    as of a date.

    With a model in use (:func:`~lienwatch.risk_model.model_in_use`) every second lien
    below 90 days past due is scored and the model decides the early-warning tier and the
    queue's order; without one the rules do. The model, and the loans' paths and terms it
    reads (row for row with the status), are loaded on a second connection while the
    features are read here.
    """
    policy = risk_policy(settings)
    status = _status(con, as_of, status_table)
    reader = con.cursor()
    try:
        reader.register(KEYS, status.select("loan_id").with_row_index("_row").to_arrow())
        with ThreadPoolExecutor(1, thread_name_prefix="flags-model") as pool:
            loading = pool.submit(_model_and_history, reader, settings, as_of, status_table)
            try:
                features, found = features_as_of(con, settings, as_of, status_table, status)
            except BaseException:
                reader.interrupt()
                raise
            model, history = loading.result()
    finally:
        reader.close()
    if model is None or history is None:
        return features, found, flags.risk_flags(features, found, as_of, policy), None, None
    policy = dataclasses.replace(policy, flag_threshold=model.flag_threshold, model=model.version)
    path, terms, known = history
    scored = score(model, risk.model_inputs(features, path, terms, as_of), features, policy, known)
    return features, found, flags.risk_flags(features, found, as_of, policy, scored), model, scored


KEYS = "_flag_keys"  # the status rows' loan ids and row numbers, registered on a reader


def _model_and_history(
    con: duckdb.DuckDBPyConnection, settings: Settings, as_of: date, status_table: str
) -> tuple[Model | None, tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None] | None]:
    """The model in use, and if there is one what it reads beside the features, row for
    row with the status rows registered as :data:`KEYS` on ``con``: the paths, the terms
    and, on a night, the scores the loans had the night before (see
    :func:`~lienwatch.risk_model.score`)."""
    model = model_in_use(con, settings)
    if model is None:
        return None, None
    # A night's paths are kept for the nights after it, and its scores for the next
    # night's unchanged loans; a replayed month end's are not.
    night = status_table == "loan_status"
    path = kept_paths(con, as_of) if night else f"({risk.bucket_path_sql(_SECOND_LIEN_HISTORY)})"
    return model, (
        _in_key_order(con, path, {} if path == PATHS else {"ends": risk.path_month_ends(as_of)}),
        _in_key_order(con, f"({_TERMS})", {}),
        _in_key_order(con, _KNOWN, {"as_of": as_of, "model": model.version}) if night else None,
    )


_SECOND_LIEN_HISTORY = (
    "(SELECT as_of_date, loan_id, days_past_due FROM loan_status_month_end WHERE lien_position = 2)"
)
_TERMS = "SELECT loan_id, first_payment_date, draw_period_end FROM loans WHERE lien_position = 2"
# The scores of the latest earlier night by the same model, with the hash of their inputs.
_KNOWN = """(SELECT loan_id, risk, inputs_hash FROM loan_risk
    WHERE as_of_date = (SELECT max(as_of_date) FROM loan_risk WHERE as_of_date < $as_of)
      AND risk_model = $model)"""
PATHS = "loan_paths"  # the bucket paths of the nights since the month-end history last changed


def kept_paths(con: duckdb.DuckDBPyConnection, as_of: date) -> str:
    """The table holding each second lien's path over the month ends before ``as_of``
    (:func:`transforms.risk.bucket_path_sql`), computed by the first night that needs it.

    A path changes only when the month-end history does, so the nights of a month share
    one: the table is stamped with the month ends and the history's row count, and the
    delinquency step drops it whenever it adds month-end rows.
    """
    ends = risk.path_month_ends(as_of)
    rows = con.execute("SELECT count(*) FROM loan_status_month_end").fetchall()[0][0]
    warehouse.kept_table(
        con,
        PATHS,
        "paths_stamp",
        f"{ends[-1]}..{ends[0]}:{rows}",
        risk.bucket_path_sql(_SECOND_LIEN_HISTORY),
        {"ends": ends},
    )
    return PATHS


def _in_key_order(
    con: duckdb.DuckDBPyConnection, source: str, params: dict[str, Any]
) -> pl.DataFrame:
    """``source``'s rows (loan_id and figures, a row per loan at most) row for row with
    the status rows registered as :data:`KEYS`: null figures where it has none."""
    return warehouse.frame(
        con,
        f"""SELECT k.loan_id, s.* EXCLUDE (loan_id{", paths_stamp" if source == PATHS else ""})
        FROM {KEYS} AS k LEFT JOIN {source} AS s USING (loan_id) ORDER BY k._row""",
        params,
    )


def model_inputs_as_of(
    con: duckdb.DuckDBPyConnection, as_of: date, features: pl.DataFrame
) -> pl.DataFrame:
    """The model's inputs for the loans of ``features`` (row for row): those features,
    each loan's path over the month ends before ``as_of`` (:func:`transforms.risk.bucket_path_sql`),
    and its terms."""
    path = warehouse.frame(
        con, risk.bucket_path_sql(_SECOND_LIEN_HISTORY), {"ends": risk.path_month_ends(as_of)}
    )
    return risk.model_inputs(features, path, warehouse.frame(con, _TERMS), as_of)


def _status(con: duckdb.DuckDBPyConnection, as_of: date, status_table: str) -> pl.DataFrame:
    """The second liens' status rows on ``as_of`` in ``status_table``."""
    return warehouse.frame(
        con,
        f"""SELECT loan_id, lien_position, days_past_due, bucket, amount_past_due, suspense_amount,
                installment_amount, installments_due, installments_paid, total_due, net_paid
        FROM {status_table} WHERE as_of_date = $as_of AND lien_position = 2""",
        {"as_of": as_of},
    )


def features_as_of(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: date,
    status_table: str,
    status: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(features, signals found) as of a date, from the status rows in ``status_table``
    (``status``, when they are read already).

    The night uses ``loan_status``; training and the backtest replay month ends from
    ``loan_status_month_end``. Every other input is read as it stood on ``as_of``. Only
    what the second liens need is read, and the per-loan frames are put row for row
    with the status once, here, so that the transforms join them at no cost.
    """

    policy, d = risk_policy(settings), {"as_of": as_of}
    if status is None:
        status = _status(con, as_of, status_table)
    # The ledger's moves in the lateness window (the longest read) come keyed by the
    # status row, matched on the loan id in the query rather than on millions of texts
    # in the frame; read on a second connection while the other inputs are read here.
    reader = con.cursor()
    try:
        reader.register("_status_keys", status.select("loan_id").with_row_index("_key").to_arrow())
        with ThreadPoolExecutor(1, thread_name_prefix="flags-ledger") as pool:
            moves = pool.submit(
                warehouse.frame,
                reader,
                flags.keyed_events_sql(sql.query("ledger_events"), "_status_keys"),
                {**d, "window_days": LATENESS_WINDOW_DAYS},
            )
            try:
                features = _flag_features(con, settings, as_of, status_table, status, moves)
            except BaseException:
                reader.interrupt()
                raise
    finally:
        reader.close()
    return features, flags.signals(features, policy)


def _row_for_row(
    con: duckdb.DuckDBPyConnection, keys: pl.Series, query: str, params: dict[str, Any]
) -> pl.DataFrame:
    """``query``'s rows (one per key at most; the key column named as ``keys``) row for
    row with ``keys``, matched in the query rather than on the texts in a frame: the key
    column is ``keys``, the others null where ``query`` has no row."""
    on = keys.name
    con.register("_row_keys", keys.to_frame().with_row_index("_row").to_arrow())
    try:
        found = warehouse.frame(
            con,
            f"""SELECT q.* EXCLUDE ({on}) FROM _row_keys AS k
            LEFT JOIN ({query}) AS q ON q.{on} = k.{on} ORDER BY k._row""",
            params,
        )
    finally:
        con.unregister("_row_keys")
    if found.height != keys.len():
        raise ValueError(f"{on} repeats in a frame joined to the features")
    return found.insert_column(0, keys)


def _flag_features(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: date,
    status_table: str,
    status: pl.DataFrame,
    moves: Future[pl.DataFrame],
) -> pl.DataFrame:
    """The features of :func:`flags_as_of`; ``moves`` gives the keyed ledger moves when
    lateness needs them."""

    risk, d = settings.risk, {"as_of": as_of}
    keys = status["loan_id"]
    terms = """SELECT loan_id, borrower_id, lien_position, product, occupancy, current_balance, property_value,
        senior_lien_balance, origination_date, first_payment_date, scheduled_payment, term_months, status
        FROM loans WHERE {where}"""
    loans = _row_for_row(con, keys, terms.format(where="lien_position = 2"), {})
    if loans["lien_position"].null_count():  # a loan the master no longer holds as a second lien
        loans = flags.align(
            keys,
            warehouse.frame(
                con,
                terms.format(
                    where=f"loan_id IN (SELECT loan_id FROM {status_table} WHERE as_of_date = $as_of AND lien_position = 2)"
                ),
                d,
            ),
        )

    # The bucket "a month ago": each loan's latest status on or before the cutoff. Nearly
    # every loan has one on the latest date that has any; only the others are looked for
    # further back, and only those originated by then (a status reports a loan from its
    # origination on).
    statuses = """SELECT as_of_date, loan_id, bucket FROM loan_status_month_end WHERE {where}
        UNION ALL SELECT as_of_date, loan_id, bucket FROM loan_status WHERE {where}"""
    cutoff = {"cutoff": as_of - timedelta(days=PRIOR_DAYS)}
    latest_in = {
        table: con.execute(
            f"SELECT max(as_of_date) FROM {table} WHERE as_of_date <= $cutoff", cutoff
        ).fetchall()[0][0]
        for table in ("loan_status_month_end", "loan_status")
    }
    latest = max((day for day in latest_in.values() if day is not None), default=None)
    one_a_loan = "QUALIFY row_number() OVER (PARTITION BY loan_id ORDER BY as_of_date DESC) = 1"
    holding = [table for table, day in latest_in.items() if day == latest]
    prior = _row_for_row(
        con,
        keys,
        f"SELECT loan_id, bucket FROM {holding[0]} WHERE as_of_date = $latest"
        if len(holding) == 1
        else f"SELECT loan_id, bucket FROM ({statuses.format(where='as_of_date = $latest')}) {one_a_loan}",
        {"latest": latest},
    )
    earlier = (
        loans.filter(
            prior["bucket"].is_null()
            & (loans["origination_date"].is_null() | (loans["origination_date"] < latest))
        )["loan_id"]
        if latest is not None
        else keys.clear()
    )
    if earlier.len():
        prior = flags.align(
            keys,
            pl.concat(
                [
                    prior.filter(prior["bucket"].is_not_null()),
                    warehouse.frame(
                        con,
                        f"""SELECT loan_id, bucket FROM ({statuses.format(where="as_of_date < $latest")})
                   WHERE loan_id IN (SELECT unnest($loans)) {one_a_loan}""",
                        {"latest": latest, "loans": earlier.to_list()},
                    ),
                ]
            ),
        )

    changes = warehouse.frame(
        con, "SELECT loan_id, effective_due_date, scheduled_payment FROM payment_changes"
    )
    # Lateness (frames' work) is worked out beside the last reads (the warehouse's).
    with ThreadPoolExecutor(1, thread_name_prefix="flags-lateness") as pool:
        late = pool.submit(
            lambda: flags.lateness(
                loans,
                changes,
                moves.result(),
                status,
                as_of,
                LATENESS_WINDOW_DAYS,
                settings.delinquency.shortfall_tolerance,
            )
        )
        borrowers = _row_for_row(
            con,
            loans["borrower_id"],
            "SELECT borrower_id, bankruptcy, deceased, cease_communication FROM borrowers",
            {},
        )
        senior_liens = (
            _row_for_row(  # the latest report ((loan_id, reported_date) is the feed's key)
                con,
                keys,
                """SELECT loan_id, max(reported_date) AS reported_date,
                arg_max(senior_days_past_due, reported_date) AS senior_days_past_due
            FROM senior_liens WHERE reported_date <= $as_of GROUP BY loan_id""",
                d,
            )
        )
        # the feed's cases, and the hardship applications analysts recorded (lienwatch review)
        loss_mit = decisions.loss_mit_cases(con, as_of)
        ledger = _row_for_row(
            con, keys, sql.query("ledger_signals"), {**d, "lookback_days": risk.nsf_lookback_days}
        )
        lateness = late.result()
    return flags.assemble_features(
        status=status,
        prior=prior,
        loans=loans,
        borrowers=borrowers,
        senior_liens=senior_liens,
        loss_mit=loss_mit,
        ledger=ledger,
        payment_changes=changes,
        lateness=lateness,
        as_of=as_of,
        horizon_days=risk.payment_rise_horizon_days,
    )


def run(night: Night, settings: Settings) -> dict[str, Any]:
    """risk_flags for the night: second liens with their tier, risk, reasons and care;
    with a model in use, every second lien's risk below 90 days in loan_risk."""
    con = warehouse.connect(night.db)
    try:
        _, found, flagged, model, scored = flags_as_of(con, settings, night.as_of, "loan_status")
        with warehouse.transaction(con):
            warehouse.replace_night(con, "risk_flags", flagged, night.as_of)
            if scored is not None:
                warehouse.replace_night(
                    con,
                    "loan_risk",
                    scored.select(
                        pl.lit(night.as_of).alias("as_of_date"),
                        "loan_id",
                        pl.col("days_past_due").cast(pl.Int32),
                        "risk",
                        pl.lit(model.version if model else "rules").alias("risk_model"),
                        "inputs_hash",
                    ),
                    night.as_of,
                )
    finally:
        con.close()
    tiers = flagged.group_by("tier").len()
    counted = found.group_by("signal").len()
    counts: dict[str, Any] = {
        "risk_model": model.version if model else "rules",
        "flagged": flagged.height,
        "in_queue": int(flagged["in_queue"].sum()),
        "cut_by_capacity": int(
            ((flagged["queue"] == flags.QUEUES[0]) & ~flagged["in_queue"]).sum()
        ),
        "default_list": int((flagged["queue"] == flags.QUEUES[1]).sum()),
        "by_tier": dict(zip(tiers["tier"].to_list(), tiers["len"].to_list(), strict=True)),
        "by_signal": dict(zip(counted["signal"].to_list(), counted["len"].to_list(), strict=True)),
    }
    if model is not None and scored is not None:
        counts.update(_drift(model, scored["risk"].to_numpy(), settings))
    return counts


def _drift(model: Model, scores: Any, settings: Settings) -> dict[str, Any]:
    """The night's score distribution against the model's training sample."""
    shift = risk.psi(scores, model.score_bins)
    quantiles = np.quantile(scores, [0.5, 0.9, 0.99]) if len(scores) else [0.0, 0.0, 0.0]
    found: dict[str, Any] = {
        "scored": len(scores),
        "risk_psi": round(shift, 4),
        "risk_quantiles": {
            q: round(float(v), 5) for q, v in zip(("p50", "p90", "p99"), quantiles, strict=True)
        },
    }
    if shift > settings.risk.psi_warning:
        found["warning"] = (
            f"the risk scores have shifted from the training sample of model {model.version} "
            f"(PSI {shift:.2f} > {settings.risk.psi_warning}); retrain with lienwatch train"
        )
    return found
