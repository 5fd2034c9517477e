"""Early warning: which second liens need attention tonight, why, and in what order.

Three pure steps, each one row per active second lien per as_of_date:

- :func:`signals`: every early-warning signal (a reason code from
  ``transforms.contract.SIGNALS``) present for a loan, with the plain-words text and
  the figures behind it. One row per loan per signal present.
- :func:`care`: the facts that call for care rather than ordinary outreach
  (bankruptcy, deceased, cease-communication, an open loss-mitigation case, not the
  borrower's principal residence).
- :func:`risk_flags`: the tier (from days past due, as the contract sets it), the score
  that orders the queue within a tier, the reasons, the care flags, and the review
  queue cut at the team's capacity (what is cut stays in the table, marked, and is
  counted, never dropped).

The inputs are one ``features`` frame (see :data:`FEATURE_COLUMNS`) that the caller
assembles from the warehouse; thresholds and weights come in as plain values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import cast

import polars as pl

from transforms import cases
from transforms.contract import BUCKETS, CARE_FLAGS, SIGNALS, TIERS
from transforms.formats import cents, money_text

FEATURE_COLUMNS = {
    "loan_id": "loans",
    "borrower_id": "loans",
    "lien_position": "loans",
    "product": "loans",
    "occupancy": "loans",
    "current_balance": "loans",
    "property_value": "loans (may be null)",
    "senior_lien_balance": "loans (may be null)",
    "days_past_due": "loan_status tonight",
    "bucket": "loan_status tonight",
    "amount_past_due": "loan_status tonight",
    "suspense_amount": "loan_status tonight: money received that did not complete an installment",
    "installment_amount": "loan_status tonight: the current scheduled payment",
    "prior_bucket": "the latest status at least 30 days before the night (null when the loan is newer)",
    "senior_days_past_due": "latest senior_liens report on or before the night (may be null)",
    "senior_reported_date": "its reported_date",
    "last_return_date": "latest reversal posted within the look-back window (null if none)",
    "returns_in_window": "number of reversals posted within the look-back window",
    "last_payment_short": "the latest payment within 45 days was less than the installment",
    "next_change_date": "the largest scheduled payment rise within the horizon: its due date",
    "next_change_amount": "its new amount",
    "days_late": "list of days late of the last three installments due, oldest first",
    "bankruptcy": "borrowers",
    "deceased": "borrowers",
    "cease_communication": "borrowers",
    "open_loss_mitigation": "an open loss_mit case on the night",
}


@dataclass(frozen=True)
class Policy:
    """The thresholds and weights of the early-warning rules (from settings)."""

    senior_dpd_threshold: int = 30
    payment_rise_ratio: Decimal = Decimal("1.20")
    late_days_threshold: int = 15
    drift_min_days: int = 16
    cltv_threshold: Decimal = Decimal("1.00")
    review_capacity: int = 500
    grace_days: int = 15
    flag_threshold: float = 1.0  # the model's: early warning at or above this risk
    model: str = "rules"  # the model's version when one is in use
    recovery_cost: float = 0.10  # of the property's value, for a second lien's exposure
    weights: dict[str, Decimal] = field(default_factory=dict)
    weight_per_day_past_due: Decimal = Decimal("0.5")


def _money(column: str) -> pl.Expr:
    """Dollars with thousands separators and cents: 1234567.5 -> "$1,234,567.50"."""
    return money_text(cents(pl.col(column)))


def _signal_rules(policy: Policy) -> dict[str, tuple[pl.Expr, pl.Expr]]:
    """For each signal: (condition, plain-words text with its figures)."""
    cltv = (
        pl.col("senior_lien_balance").fill_null(0).cast(pl.Float64)
        + pl.col("current_balance").cast(pl.Float64)
    ) / pl.col("property_value").cast(pl.Float64)
    late = pl.col("days_late")
    rising = (
        (late.list.len() == 3)
        & (late.list.get(0, null_on_oob=True) < late.list.get(1, null_on_oob=True))
        & (late.list.get(1, null_on_oob=True) < late.list.get(2, null_on_oob=True))
        & (late.list.get(2, null_on_oob=True) >= policy.drift_min_days)
    )
    late_count = late.list.eval(pl.element() > policy.late_days_threshold).list.sum()
    late_text = pl.format(
        "The last three installments due were paid {} days after their due dates (oldest first; an unpaid one counts to tonight).",
        late.list.eval(pl.element().cast(pl.String)).list.join(", "),
    )
    ratio = pl.col("next_change_amount").cast(pl.Float64) / pl.col("installment_amount").cast(
        pl.Float64
    )
    return {
        "senior_lien_delinquent": (
            pl.col("senior_days_past_due") >= policy.senior_dpd_threshold,
            pl.format(
                "The first mortgage ahead of this loan was reported {} days past due on {}.",
                pl.col("senior_days_past_due"),
                pl.col("senior_reported_date"),
            ),
        ),
        "returned_payment": (
            pl.col("returns_in_window") > 0,
            pl.format(
                "{} payment(s) returned unpaid recently, the latest on {}.",
                pl.col("returns_in_window"),
                pl.col("last_return_date"),
            ),
        ),
        "partial_or_suspense": (
            # Money short of the oldest unpaid installment: held unapplied, or a short last
            # payment, while something is owed (paid-ahead money is no warning).
            (pl.col("amount_past_due") > 0)
            & ((pl.col("suspense_amount") > 0) | pl.col("last_payment_short").fill_null(False)),
            pl.when(pl.col("suspense_amount") > 0)
            .then(
                pl.format(
                    "{} received is held unapplied: less than a full payment of {}.",
                    _money("suspense_amount"),
                    _money("installment_amount"),
                )
            )
            .otherwise(
                pl.format(
                    "The latest payment was less than the {} due.", _money("installment_amount")
                )
            ),
        ),
        "payment_shock": (
            ratio >= float(policy.payment_rise_ratio),
            pl.format(
                "The payment rises from {} to {} ({}% more) with the installment due {}.",
                _money("installment_amount"),
                _money("next_change_amount"),
                ((ratio - 1) * 100).round(0, mode="half_away_from_zero").cast(pl.Int64),
                pl.col("next_change_date"),
            ),
        ),
        "paying_later": (
            rising | (late_count >= 2),
            late_text,
        ),
        "underwater": (
            cltv > float(policy.cltv_threshold),
            pl.format(
                "Combined loan-to-value is {}% (first mortgage {} plus this loan {} against a value of {}).",
                (cltv * 100).round(0, mode="half_away_from_zero").cast(pl.Int64),
                _money("senior_lien_balance"),
                _money("current_balance"),
                _money("property_value"),
            ),
        ),
        "worsening_bucket": (
            pl.col("bucket").replace_strict(
                BUCKETS, list(range(len(BUCKETS))), return_dtype=pl.Int32
            )
            > pl.col("prior_bucket").replace_strict(
                BUCKETS, list(range(len(BUCKETS))), default=None, return_dtype=pl.Int32
            ),
            pl.format(
                "Days past due moved from the {} bucket a month ago to {} now.",
                pl.col("prior_bucket"),
                pl.col("bucket"),
            ),
        ),
        "early_delinquency": (
            pl.col("days_past_due").is_between(1, 29),
            pl.format(
                "{} days past due: {} is owed.", pl.col("days_past_due"), _money("amount_past_due")
            ),
        ),
    }


def signal_texts(features: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """One row per row of ``features``: each signal's plain-words text with the loan's
    figures, whether the rule raises it or not (null where a figure is missing), one
    column per code. With the bucket path's months_late_12m and max_dpd_12m (see
    ``transforms.risk``) it also words ``past_delinquency``."""
    texts = [text.alias(code) for code, (_, text) in _signal_rules(policy).items()]
    if {"months_late_12m", "max_dpd_12m"} <= set(features.columns):
        texts.append(
            pl.when(pl.col("months_late_12m") > 0)
            .then(
                pl.format(
                    "Behind at {} of the last 12 month ends, at worst {} days past due.",
                    pl.col("months_late_12m"),
                    pl.col("max_dpd_12m"),
                )
            )
            .alias("past_delinquency")
        )
    return features.select(texts)


def signals(features: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """One row per second lien per signal present: loan_id, signal, detail."""
    rules = _signal_rules(policy)
    frames = [
        features.lazy()
        .filter(condition.fill_null(False))
        .select("loan_id", pl.lit(code).alias("signal"), text.alias("detail"))
        for code, (condition, text) in rules.items()
    ]
    order = {code: i for i, code in enumerate(SIGNALS)}
    return (
        pl.concat(frames)
        .with_columns(pl.col("signal").replace_strict(order, return_dtype=pl.Int32).alias("_order"))
        .sort("loan_id", "_order")
        .drop("_order")
        .collect()
    )


def care(features: pl.DataFrame) -> pl.DataFrame:
    """One row per loan: the care flags present (a list, in CARE_FLAGS order)."""
    return features.select("loan_id", _care().alias("care"))


_CARE_LISTS = pl.Series(
    [
        [code for bit, code in enumerate(CARE_FLAGS) if combination >> bit & 1]
        for combination in range(1 << len(CARE_FLAGS))
    ],
    dtype=pl.List(pl.String),
)


def _care(as_list: bool = True) -> pl.Expr:
    """The care flags present, as a list in CARE_FLAGS order: each combination of flags
    is a number (a bit per flag) that picks its list from the 32 possible ones
    (``_CARE_LISTS``; the number itself when not ``as_list``)."""
    conditions = {
        "bankruptcy": pl.col("bankruptcy").fill_null(False),
        "deceased": pl.col("deceased").fill_null(False),
        "cease_communication": pl.col("cease_communication").fill_null(False),
        "open_loss_mitigation": pl.col("open_loss_mitigation").fill_null(False),
        "not_principal_residence": pl.col("occupancy") != "primary",  # unknown: not flagged
    }
    assert tuple(conditions) == CARE_FLAGS
    combination = pl.sum_horizontal(
        [c.cast(pl.UInt32) * (1 << bit) for bit, c in enumerate(conditions.values())]
    )
    return pl.lit(_CARE_LISTS).gather(combination) if as_list else combination


# The signals that flag a loan below 30 days past due under the rules. Being underwater
# alone, a few days late inside the grace period, or a bucket that moved inside 1-29 is
# not enough: those are shown as reasons when something else flags the loan.
WARNING_SIGNALS = (
    "senior_lien_delinquent",
    "returned_payment",
    "partial_or_suspense",
    "payment_shock",
    "paying_later",
)
QUEUES = ("early_outreach", "default")


def tier_of(days_past_due: pl.Expr, at_risk: pl.Expr) -> pl.Expr:
    """The contract's tier: default 90+, imminent 60-89, delinquent 30-59, early warning
    below 30 for a loan judged at risk (``at_risk``), none otherwise."""
    return (
        pl.when(days_past_due >= 90)
        .then(pl.lit("default"))
        .when(days_past_due >= 60)
        .then(pl.lit("imminent_default"))
        .when(days_past_due >= 30)
        .then(pl.lit("delinquent"))
        .when(at_risk)
        .then(pl.lit("early_warning"))
    )


def risk_flags(
    features: pl.DataFrame,
    found: pl.DataFrame,
    as_of: date,
    policy: Policy,
    scored: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per flagged second lien: tier, risk, score, reasons, care, and the queues.

    ``found`` is the output of :func:`signals`. ``scored`` is the model's judgement of the
    loans below 90 days past due (loan_id, risk, expected_loss, reasons, reason_details,
    with ``policy.flag_threshold`` and ``policy.model`` set), or None where the rules
    decide. Below 30 days a loan is flagged when its risk is at or above the threshold,
    or, under the rules, when it is past the grace period or shows one of
    :data:`WARNING_SIGNALS`.

    Two lists, one ranking: the early-outreach queue (below 90 days, where a call can
    still keep the borrower out of default) first, ordered by expected loss avoidable
    (risk times exposure; under the rules by tier then score), then the default list
    (90 days and more), the most recently defaulted first. The review capacity cuts the
    early-outreach queue only (``in_queue``).

    Columns: as_of_date, loan_id, borrower_id, tier, risk, risk_model, expected_loss,
    score, reasons (codes, most important first), reason_details (texts), care,
    days_past_due, queue (early_outreach or default), queue_rank (1 = first to review)
    and in_queue.
    """
    weights = pl.DataFrame(
        {
            "signal": list(SIGNALS),
            "weight": [float(policy.weights.get(code, 0)) for code in SIGNALS],
        }
    )
    per_loan = (
        found.join(weights, on="signal", how="left", maintain_order="left")
        .group_by("loan_id", maintain_order=True)
        .agg(
            pl.col("signal").alias("_reasons"),
            pl.col("detail").alias("_details"),
            pl.col("weight").sum().alias("signal_points"),
            pl.col("signal").is_in(list(WARNING_SIGNALS)).any().alias("_warning"),
        )
    )
    seconds = features.filter(pl.col("lien_position") == 2)
    keys = seconds["loan_id"]
    frame = seconds.select("loan_id", "borrower_id", "days_past_due", _care().alias("care")).hstack(
        _aligned(keys, per_loan)
    )
    dpd = pl.col("days_past_due")
    if scored is None:
        frame = frame.with_columns(
            pl.lit(None, dtype=pl.Float64).alias("risk"),
            pl.lit(None, dtype=pl.Float64).alias("expected_loss"),
            pl.lit(None, dtype=pl.List(pl.String)).alias("_m_reasons"),
            pl.lit(None, dtype=pl.List(pl.String)).alias("_m_details"),
        )
        at_risk = (dpd > policy.grace_days) | pl.col("_warning").fill_null(False)
    else:
        frame = frame.hstack(
            _aligned(
                keys,
                scored.select(
                    "loan_id",
                    pl.col("risk").cast(pl.Float64),
                    pl.col("expected_loss").cast(pl.Float64),
                    pl.col("reasons").alias("_m_reasons"),
                    pl.col("reason_details").alias("_m_details"),
                ),
            )
        )
        at_risk = pl.col("risk") >= policy.flag_threshold
    empty = pl.lit([], dtype=pl.List(pl.String))
    modelled = pl.col("_m_reasons").is_not_null()
    flagged = (
        frame.with_columns(tier_of(dpd, at_risk.fill_null(False)).alias("tier"))
        .filter(pl.col("tier").is_not_null())
        .with_columns(
            (pl.col("signal_points").fill_null(0.0) + dpd * float(policy.weight_per_day_past_due))
            .round(2)
            .cast(pl.Decimal(10, 2))
            .alias("score"),
            pl.when(modelled)
            .then("_m_reasons")
            .otherwise(pl.col("_reasons").fill_null(empty))
            .alias("reasons"),
            pl.when(modelled)
            .then("_m_details")
            .otherwise(pl.col("_details").fill_null(empty))
            .alias("reason_details"),
            pl.when(dpd < 90).then(pl.lit(QUEUES[0])).otherwise(pl.lit(QUEUES[1])).alias("queue"),
            pl.lit(policy.model if scored is not None else "rules").alias("risk_model"),
            pl.col("tier")
            .replace_strict({t: i for i, t in enumerate(TIERS)}, return_dtype=pl.Int32)
            .alias("_tier_rank"),
        )
    )
    outreach_order: list[str | pl.Expr] = (
        [pl.col("expected_loss").fill_null(0.0), pl.col("risk").fill_null(0.0)]
        if scored is not None
        else ["_tier_rank", "score"]
    )
    outreach = flagged.filter(pl.col("queue") == QUEUES[0]).sort(
        [*outreach_order, "days_past_due", "loan_id"], descending=[True, True, True, False]
    )
    defaulted = flagged.filter(pl.col("queue") == QUEUES[1]).sort("days_past_due", "loan_id")
    return (
        pl.concat([outreach, defaulted])
        .with_row_index("queue_rank", offset=1)
        .with_columns(
            pl.col("queue_rank").cast(pl.Int64),
            (
                (pl.col("queue") == QUEUES[0]) & (pl.col("queue_rank") <= policy.review_capacity)
            ).alias("in_queue"),
            pl.lit(as_of).alias("as_of_date"),
        )
        .select(
            "as_of_date",
            "loan_id",
            "borrower_id",
            "tier",
            "risk",
            "risk_model",
            "expected_loss",
            "score",
            "reasons",
            "reason_details",
            "care",
            "days_past_due",
            "queue",
            "queue_rank",
            "in_queue",
        )
    )


def align(keys: pl.Series, frame: pl.DataFrame, on: str = "loan_id") -> pl.DataFrame:
    """``frame``'s rows (one per key at most) row for row with ``keys``: the key column is
    ``keys``, the others null where ``frame`` has no row. The frames that
    :func:`assemble_features` and :func:`lateness` take in that order are joined to the
    status at no cost."""
    return keys.alias(on).to_frame().hstack(_aligned(keys, frame, on))


def _aligned(keys: pl.Series, right: pl.DataFrame, on: str = "loan_id") -> pl.DataFrame:
    """The columns of ``right`` other than ``on``, row for row with ``keys``, null where
    ``right`` has no row: what a left join gives when ``right`` has one row per key, but
    the join carries the keys alone, not the left's other columns."""
    other = right.drop(on)
    if right.height == keys.len() and right[on].equals(keys):
        return other
    # Matched on a 64-bit hash of the key (cheaper than the text at a million rows), then
    # checked: a repeated hash or a hash shared by two keys falls back to the text.
    hashed = pl.col(on).hash(seed=0).alias("_hash")
    found = (
        keys.to_frame(on)
        .select(hashed)
        .join(
            right.select(hashed, pl.col(on).alias("_key")).with_row_index("_row"),
            on="_hash",
            how="left",
            maintain_order="left",
        )
    )
    if found.height != keys.len() or not (found["_key"].is_null() | (found["_key"] == keys)).all():
        found = keys.to_frame(on).join(
            right.select(on).with_row_index("_row"), on=on, how="left", maintain_order="left"
        )
    if found.height != keys.len():
        raise ValueError(f"{on} repeats in a frame joined to the features")
    return other[found["_row"]]


def assemble_features(
    status: pl.DataFrame,
    prior: pl.DataFrame,
    loans: pl.DataFrame,
    borrowers: pl.DataFrame,
    senior_liens: pl.DataFrame,
    loss_mit: pl.DataFrame,
    ledger: pl.DataFrame,
    payment_changes: pl.DataFrame,
    lateness: pl.DataFrame,
    as_of: date,
    horizon_days: int = 90,
) -> pl.DataFrame:
    """One row per active second lien with every column of :data:`FEATURE_COLUMNS`.

    ``status`` is tonight's loan_status; ``prior`` the latest status at least 30 days before the night
    (loan_id, bucket); ``senior_liens`` the latest senior-lien report on or before the
    night (loan_id, reported_date, senior_days_past_due); ``ledger`` the output of
    ``ledger_signals.sql``; ``lateness`` (loan_id, days_late) from :func:`lateness`. Each
    has at most one row per loan; a frame already row for row with the status (see
    :func:`align`) is joined at no cost.
    """
    seconds = status.filter(pl.col("lien_position") == 2).select(
        "loan_id",
        "lien_position",
        "days_past_due",
        "bucket",
        "amount_past_due",
        "suspense_amount",
        "installment_amount",
    )
    senior = senior_liens.select(
        "loan_id", "senior_days_past_due", pl.col("reported_date").alias("senior_reported_date")
    )
    open_cases = (
        cases.open_cases(loss_mit, as_of)
        .select("loan_id")
        .unique()
        .with_columns(pl.lit(True).alias("open_loss_mitigation"))
    )
    horizon_end = as_of + timedelta(days=horizon_days)
    rises = (
        payment_changes.filter(
            pl.col("effective_due_date").is_between(as_of, horizon_end, closed="right")
        )
        .sort("scheduled_payment", "effective_due_date", descending=[True, False])
        .group_by("loan_id")
        .agg(
            pl.col("scheduled_payment").first().alias("next_change_amount"),
            pl.col("effective_due_date").first().alias("next_change_date"),
        )
    )
    people = borrowers.select("borrower_id", "bankruptcy", "deceased", "cease_communication")
    keys = seconds["loan_id"]
    features = seconds.hstack(
        _aligned(
            keys,
            loans.select(
                "loan_id",
                "borrower_id",
                "product",
                "occupancy",
                "current_balance",
                "property_value",
                "senior_lien_balance",
            ),
        )
    )
    return features.hstack(
        [
            *_aligned(keys, prior.select("loan_id", pl.col("bucket").alias("prior_bucket"))),
            *_aligned(keys, senior),
            *_aligned(keys, ledger),
            *_aligned(keys, rises),
            *_aligned(keys, lateness),
            *_aligned(features["borrower_id"], people, on="borrower_id"),
            *_aligned(keys, open_cases),
        ]
    ).with_columns(
        pl.col("returns_in_window").fill_null(0),
        pl.col("open_loss_mitigation").fill_null(False),
        (pl.col("last_payment_amount") < pl.col("installment_amount"))
        .fill_null(False)
        .alias("last_payment_short"),
        pl.col("days_late").fill_null(pl.lit([], dtype=pl.List(pl.Int64))),
    )


def lateness(
    loans: pl.DataFrame,
    payment_changes: pl.DataFrame,
    changes: pl.DataFrame,
    status: pl.DataFrame,
    as_of: date,
    window_days: int,
    tolerance: Decimal = Decimal("0"),
) -> pl.DataFrame:
    """One row per loan of ``status``, in its order: days late of its last three
    installments due, oldest first (fewer when fewer are due, none for a loan missing
    from ``loans``).

    ``changes`` is ``ledger_events.sql``'s output: what net paid moved by on each day
    with ledger activity in the ``window_days`` days up to ``as_of`` (loan_id,
    as_of_date, change); or the same rows already keyed to ``status``'s rows by
    :func:`keyed_events_sql` (_key, _day, _change), which spares matching millions of
    loan ids here. With net paid
    tonight (``status``) they give net paid at the end of each of those days and at the
    window's start (:func:`net_paid_by_day`). The delinquency engine gives installments
    paid at each of those days (its rules, its tolerance). An installment is paid on the
    first day from which installments paid stays at or above its number; days late =
    that day minus its due date (0 when paid ahead); an unpaid one is late by the night
    minus its due date. Only the active second liens of ``loans`` have ledger days.
    """
    if not 0 < window_days < 65536:
        raise ValueError(f"the lateness window must be 1 to 65535 days, not {window_days}")
    tonight = _installments(status, loans)
    start = as_of - timedelta(days=window_days)
    if "_key" in changes.columns:
        moves = changes.select(
            pl.col("_key").cast(pl.UInt32),
            pl.col("_day").cast(pl.Int32),
            pl.col("_change").cast(pl.Int64),
        ).filter(
            tonight["_watched"].gather(changes["_key"]) & pl.col("_day").is_between(1, window_days)
        )
    else:
        moves = _moves(changes, tonight.filter(pl.col("_watched")), start, window_days)
    return _lateness(tonight, loans, payment_changes, moves, as_of, window_days, tolerance)


def keyed_events_sql(events_sql: str, keys: str) -> str:
    """``ledger_events.sql`` (``events_sql``) with its rows keyed for :func:`lateness`:
    joined, in the query, to the relation ``keys`` (loan_id, _key: the row number of the
    loan in the status frame), as _key, _day (days after the window's start, $as_of less
    $window_days) and _change (cents). Rows of loans not in ``keys`` are left out."""
    return f"""SELECT k._key, CAST(e.as_of_date - (CAST($as_of AS DATE) - CAST($window_days AS INTEGER))
                                  AS INTEGER) AS _day,
              CAST(e.change * 100 AS BIGINT) AS _change
    FROM ({events_sql}) AS e JOIN {keys} AS k USING (loan_id)"""


def _installments(status: pl.DataFrame, loans: pl.DataFrame) -> pl.DataFrame:
    """One row per loan of ``status``, with an integer key (its row number) that every
    step of :func:`_lateness` sorts and searches on, and its last three installments side
    by side (j = 0, 1, 2: installment k = installments_due - 3 + j, when there is one)."""
    from transforms.delinquency import due_date

    n = pl.col("installments_due")
    terms = _aligned(
        status["loan_id"],
        loans.select(
            "loan_id",
            "first_payment_date",
            ((pl.col("lien_position") == 2) & (pl.col("status") == "active")).alias("_watched"),
        ),
    )
    return (
        status.select(
            "loan_id",
            n.cast(pl.Int64),
            pl.col("installments_paid").alias("paid_now"),
            _cents_of("net_paid").alias("_now"),
            _cents_of("total_due").alias("_total"),
            _cents_of("installment_amount").alias("_amount"),
        )
        .hstack(terms)
        .with_row_index("_key")
        .with_columns(
            pl.col("_watched").fill_null(False),
            # how many of the three there are (none for a loan missing from ``loans``)
            pl.when(pl.col("first_payment_date").is_not_null())
            .then(pl.min_horizontal(pl.max_horizontal(n, 0), 3))
            .otherwise(0)
            .alias("_count"),
        )
        .with_columns(
            *[
                pl.when(pl.col("_count") >= 3 - j)
                .then(
                    due_date(
                        pl.col("first_payment_date"), pl.max_horizontal(n - 3 + j, 0).cast(pl.Int32)
                    )
                )
                .alias(f"_due{j}")
                for j in range(3)
            ],
        )
        .with_columns(pl.coalesce("_due0", "_due1", "_due2").alias("_from"))  # the oldest of them
    )


def _lateness(
    tonight: pl.DataFrame,
    loans: pl.DataFrame,
    payment_changes: pl.DataFrame,
    moves: pl.DataFrame,
    as_of: date,
    window_days: int,
    tolerance: Decimal,
) -> pl.DataFrame:
    """:func:`lateness` of the loans of ``tonight`` (see :func:`_installments`) from their
    ledger ``moves`` in the window (see :func:`_moves`)."""
    start = as_of - timedelta(days=window_days)
    # Where the last installments all have tonight's amount (no payment change among
    # them), installment k is paid once net paid reaches total_due less the later ones,
    # less the tolerance: money thresholds, no need to rerun the engine day by day.
    changed = (
        payment_changes.join(
            tonight.filter(pl.col("_from").is_not_null()).select("loan_id", "_key", "_from"),
            on="loan_id",
        )
        .filter(
            (pl.col("effective_due_date") > pl.col("_from"))
            & (pl.col("effective_due_date") <= as_of)
        )
        .select("_key")
        .unique()
    )
    tonight = tonight.with_columns(
        pl.col("_key").is_in(changed["_key"].implode()).alias("_changed")
    )
    watched = tonight.filter(pl.col("_watched"))
    levels = _levels(tonight["_now"], watched["_key"], moves)
    floors = _floors(levels)
    simple = tonight.filter(~pl.col("_changed"))
    by_money = _first_day_at_or_above(
        floors,
        pl.concat(
            [
                simple.filter(pl.col(f"_due{j}").is_not_null()).select(
                    "_key",
                    pl.lit(j, dtype=pl.Int32).alias("j"),
                    (
                        pl.col("_total") - (2 - j) * pl.col("_amount") - _tolerance_cents(tolerance)
                    ).alias("_need"),
                )
                for j in range(3)
            ]
        ),
        start,
    )
    engine = tonight.filter(pl.col("_changed"))
    by_count = _paid_days_by_engine(
        engine,
        loans,
        payment_changes,
        levels.join(engine.select("_key", "loan_id"), on="_key"),
        start,
        tolerance,
    )
    paid = pl.concat([by_money, by_count])
    late = tonight.select(
        "_key", "loan_id", "installments_due", "paid_now", "_count", "_due0", "_due1", "_due2"
    )
    for j in range(3):  # each paid date to its loan's row (the key is the row number)
        found = paid.filter(pl.col("j") == j)
        late = late.with_columns(
            pl.Series(f"_paid{j}", dtype=pl.Date)
            .extend_constant(None, late.height)
            .scatter(found["_key"], found["paid_date"])
        )

    def days_late(j: int) -> pl.Expr:
        due = pl.col(f"_due{j}")
        return (
            pl.when(pl.col("paid_now") < pl.col("installments_due") - 3 + j + 1)
            .then((pl.lit(as_of) - due).dt.total_days())
            .otherwise(pl.max_horizontal((pl.col(f"_paid{j}") - due).dt.total_days(), pl.lit(0)))
            .cast(pl.Int64)
        )

    return late.select(
        "loan_id",
        pl.concat_arr([days_late(j) for j in range(3)])
        .arr.to_list()
        .list.slice(3 - pl.col("_count"), pl.col("_count"))
        .alias("days_late"),
    )


def _levels(now: pl.Series, watched: pl.Series, moves: pl.DataFrame) -> pl.DataFrame:
    """Net paid in cents (``_level``) by integer loan key at the window's start (``_day``
    0) and at the end of each day with ledger activity after it (``_day``: days after
    the start, at most 65535), sorted by key and day.

    ``now`` is net paid tonight by key (its index); ``watched`` the keys (ascending)
    that have ledger days, each with its opening row; ``moves`` has _key (of
    ``watched``), _day and _change (several rows a day allowed). Net paid at the end of
    a day is tonight's less what moved after that day.
    """
    key = pl.col("_key")

    def by_key_and_day(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.select(
            key,
            (key.cast(pl.Int64) * 65536 + pl.col("_day")).alias("_at"),
            pl.col("_change").cast(pl.Int64),
        )

    opening = by_key_and_day(pl.DataFrame({"_key": watched, "_day": 0, "_change": 0}))
    return (
        opening.merge_sorted(by_key_and_day(moves).sort("_at"), key="_at")
        .with_columns(pl.col("_change").cum_sum().alias("_run"))
        # a day's last row carries the figure at the day's end
        .filter((pl.col("_at") != pl.col("_at").shift(-1)).fill_null(True))
        .select(
            key,
            (pl.col("_at") % 65536).alias("_day"),
            # tonight's less what moved after the day (to the key's last row)
            (
                pl.lit(now).gather(key)
                - pl.when((key != key.shift(-1)).fill_null(True))
                .then(pl.col("_run"))
                .fill_null(strategy="backward")
                + pl.col("_run")
            ).alias("_level"),
        )
    )


def _floors(levels: pl.DataFrame) -> pl.DataFrame:
    """``levels`` (sorted by key and day) with ``_floor``: the least level from each day on
    (of the same key). It never falls as the days go on, so a later reversal undoes an
    earlier "paid"."""
    if levels.is_empty():
        return levels.with_columns(pl.col("_level").alias("_floor"))
    # integer columns of a frame that is not empty: their least and greatest are ints
    lo, hi = cast(int, levels["_level"].min()), cast(int, levels["_level"].max())
    span = hi - lo + 1
    if (cast(int, levels["_key"].max()) + 1) * span < 2**62:
        # One running minimum from the end: each key's levels lifted above all of the
        # keys before it, so no key's level lowers the minimum of a key before it.
        lift = pl.col("_key").cast(pl.Int64) * span - lo
        floor = (pl.col("_level") + lift).reverse().cum_min().reverse() - lift
    else:
        floor = pl.col("_level").reverse().cum_min().reverse().over("_key")
    return levels.with_columns(floor.alias("_floor"))


def _first_day_at_or_above(floors: pl.DataFrame, needs: pl.DataFrame, start: date) -> pl.DataFrame:
    """For each row of ``needs`` (_key, _need, j): the first day whose floor (see
    :func:`_floors`; sorted by key and day) is at or above the need, null if none: _key,
    j, paid_date.
    """
    if floors.is_empty() or needs.is_empty():
        return needs.select("_key", "j", pl.lit(None, dtype=pl.Date).alias("paid_date"))
    # integer columns of frames that are not empty: their least and greatest are ints
    lo = min(cast(int, floors["_floor"].min()), cast(int, needs["_need"].min()))
    span = max(cast(int, floors["_floor"].max()), cast(int, needs["_need"].max())) - lo + 1
    if (max(cast(int, floors["_key"].max()), cast(int, needs["_key"].max())) + 1) * span < 2**62:
        # Keys and floors in one sorted number (floors never fall within a key): the
        # first at or above key-and-need is a binary search.
        def lifted(frame: pl.DataFrame, column: str) -> pl.Series:
            return frame.select(
                pl.col("_key").cast(pl.Int64) * span + pl.col(column) - lo
            ).to_series()

        at = lifted(floors, "_floor").search_sorted(lifted(needs, "_need"), side="left")
        hit = floors.select(pl.col("_key", "_day").gather(at.clip(0, floors.height - 1)))
        return needs.select("_key", "j").with_columns(
            pl.when((at < floors.height) & (hit["_key"] == needs["_key"]))
            .then(pl.lit(start) + pl.duration(days=pl.lit(hit["_day"])))
            .alias("paid_date"),
        )
    settled = floors.select("_key", pl.col("_floor").alias("_need"), "_day").sort("_need", "_day")
    return (
        needs.with_row_index("_row")
        .sort("_need")
        .join_asof(settled, on="_need", by="_key", strategy="forward", check_sortedness=False)
        .sort("_row")
        .select("_key", "j", (pl.lit(start) + pl.duration(days=pl.col("_day"))).alias("paid_date"))
    )


def net_paid_by_day(
    changes: pl.DataFrame,
    status: pl.DataFrame,
    loans: pl.DataFrame,
    as_of: date,
    window_days: int,
) -> pl.DataFrame:
    """Net paid at the end of each day with ledger activity in the window, plus the
    window's opening figure: (loan_id, as_of_date, net_paid).

    ``changes`` is ``ledger_events.sql``'s output. Net paid tonight is the status's
    (contract rule 3 over the whole ledger), so net paid at the end of a day is tonight's
    less the changes after that day, and the opening figure, at ``as_of -
    window_days``, is tonight's less every change in the window. Rows for the active
    second liens (by ``loans``) that ``status`` reports; each has its opening row.
    """
    start = as_of - timedelta(days=window_days)
    tonight = (
        status.join(
            loans.filter((pl.col("lien_position") == 2) & (pl.col("status") == "active")),
            on="loan_id",
            how="semi",
        )
        .select("loan_id", _cents_of("net_paid").alias("_now"))
        .with_row_index("_key")
    )
    levels = _levels(tonight["_now"], tonight["_key"], _moves(changes, tonight, start, window_days))
    return levels.select(
        tonight["loan_id"].gather(levels["_key"]).alias("loan_id"),
        (pl.lit(start) + pl.duration(days=pl.col("_day"))).alias("as_of_date"),
        _dollars_of("_level").alias("net_paid"),
    )


def _moves(
    changes: pl.DataFrame, keys: pl.DataFrame, start: date, window_days: int
) -> pl.DataFrame:
    """``ledger_events.sql``'s rows of the loans in ``keys`` (loan_id, _key): _key, _day
    (days after ``start``), _change in cents. The rows are matched to the keys on a
    hash of loan_id (cheaper than the text at millions of rows), then checked."""
    hashed = pl.col("loan_id").hash(seed=0).alias("_hash")
    return (
        changes.with_columns(hashed)
        .join(keys.select(pl.col("loan_id").alias("_id"), "_key", hashed), on="_hash")
        .filter(pl.col("loan_id") == pl.col("_id"))
        .select(
            "_key",
            (pl.col("as_of_date").cast(pl.Int32) - (start - date(1970, 1, 1)).days).alias("_day"),
            pl.col("change").cast(pl.Decimal(18, 2)).to_physical().cast(pl.Int64).alias("_change"),
        )
        .filter(pl.col("_day").is_between(1, window_days))
    )


def _cents_of(column: str) -> pl.Expr:
    return cents(pl.col(column))


def _tolerance_cents(tolerance: Decimal) -> int:
    return int(Decimal(tolerance) * 100)


def _dollars_of(column: str) -> pl.Expr:
    return (pl.col(column).cast(pl.Decimal(38, 0)) * pl.lit(Decimal("0.01"))).cast(
        pl.Decimal(18, 2)
    )


def _paid_days_by_engine(
    wanted: pl.DataFrame,
    loans: pl.DataFrame,
    payment_changes: pl.DataFrame,
    levels: pl.DataFrame,
    start: date,
    tolerance: Decimal,
) -> pl.DataFrame:
    """(_key, j, paid_date) where a payment change falls among the last installments: the
    engine's installments-paid count on each day with ledger activity (and at the
    window's start), against k + 1. ``wanted`` are those loans' rows of the lateness
    frame; ``levels`` their net paid by day (with loan_id)."""
    from transforms.delinquency import loan_status_history

    empty = pl.DataFrame(schema={"_key": pl.UInt32, "j": pl.Int32, "paid_date": pl.Date})
    if wanted.is_empty() or levels.is_empty():
        return empty
    events = levels.select(
        "loan_id",
        (pl.lit(start) + pl.duration(days=pl.col("_day"))).alias("as_of_date"),
        _dollars_of("_level").alias("net_paid"),
    )
    terms = loans.select(
        "loan_id",
        "lien_position",
        "first_payment_date",
        "scheduled_payment",
        "term_months",
        "status",
        "origination_date",
    )
    per_day = events.select("loan_id", "as_of_date").join(terms, on="loan_id", how="inner")
    dates = sorted(set(events["as_of_date"].to_list()))
    paid = (
        loan_status_history(per_day, payment_changes, events, dates, tolerance)
        .join(wanted.select("loan_id", "_key"), on="loan_id")
        .select(
            "_key",
            (pl.col("as_of_date") - pl.lit(start)).dt.total_days().alias("_day"),
            pl.col("installments_paid").cast(pl.Int64).alias("_level"),
        )
        .sort("_key", "_day")
    )
    return _first_day_at_or_above(
        _floors(paid),
        pl.concat(
            [
                wanted.filter(pl.col(f"_due{j}").is_not_null()).select(
                    "_key",
                    pl.lit(j, dtype=pl.Int32).alias("j"),
                    (pl.col("installments_due") - 3 + j + 1).alias("_need"),
                )
                for j in range(3)
            ]
        ),
        start,
    )
