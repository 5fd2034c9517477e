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

import polars as pl

from transforms.contract import BUCKETS, CARE_FLAGS, SIGNALS, TIERS

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
    drift_min_days: int = 5
    cltv_threshold: Decimal = Decimal("1.00")
    review_capacity: int = 500
    weights: dict[str, Decimal] = field(default_factory=dict)
    weight_per_day_past_due: Decimal = Decimal("0.5")


def _money(column: str) -> pl.Expr:
    """Dollars with thousands separators and cents: 1234567.5 -> "$1,234,567.50"."""
    cents = (pl.col(column).cast(pl.Float64) * 100).round(0, mode="half_away_from_zero").cast(pl.Int64)
    dollars, rest = cents // 100, (cents % 100).cast(pl.String).str.zfill(2)

    def group(n: int) -> pl.Expr:
        return ((dollars // 10 ** (3 * n)) % 1000).cast(pl.String)

    def padded(n: int) -> pl.Expr:
        return group(n).str.zfill(3)

    whole = (
        pl.when(dollars >= 10**9).then(pl.format("{},{},{},{}", group(3), padded(2), padded(1), padded(0)))
        .when(dollars >= 10**6).then(pl.format("{},{},{}", group(2), padded(1), padded(0)))
        .when(dollars >= 10**3).then(pl.format("{},{}", group(1), padded(0)))
        .otherwise(group(0))
    )
    return pl.format("${}.{}", whole, rest)


def _signal_rules(policy: Policy) -> dict[str, tuple[pl.Expr, pl.Expr]]:
    """For each signal: (condition, plain-words text with its figures)."""
    cltv = (pl.col("senior_lien_balance").fill_null(0).cast(pl.Float64)
            + pl.col("current_balance").cast(pl.Float64)) / pl.col("property_value").cast(pl.Float64)
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
    ratio = pl.col("next_change_amount").cast(pl.Float64) / pl.col("installment_amount").cast(pl.Float64)
    return {
        "senior_lien_delinquent": (
            pl.col("senior_days_past_due") >= policy.senior_dpd_threshold,
            pl.format("The first mortgage ahead of this loan was reported {} days past due on {}.",
                      pl.col("senior_days_past_due"), pl.col("senior_reported_date")),
        ),
        "returned_payment": (
            pl.col("returns_in_window") > 0,
            pl.format("{} payment(s) returned unpaid recently, the latest on {}.",
                      pl.col("returns_in_window"), pl.col("last_return_date")),
        ),
        "partial_or_suspense": (
            # Money short of the oldest unpaid installment: held unapplied, or a short last
            # payment, while something is owed (paid-ahead money is no warning).
            (pl.col("amount_past_due") > 0)
            & ((pl.col("suspense_amount") > 0) | pl.col("last_payment_short").fill_null(False)),
            pl.when(pl.col("suspense_amount") > 0)
            .then(pl.format("{} received is held unapplied: less than a full payment of {}.",
                            _money("suspense_amount"), _money("installment_amount")))
            .otherwise(pl.format("The latest payment was less than the {} due.",
                                 _money("installment_amount"))),
        ),
        "payment_shock": (
            ratio >= float(policy.payment_rise_ratio),
            pl.format("The payment rises from {} to {} ({}% more) with the installment due {}.",
                      _money("installment_amount"), _money("next_change_amount"),
                      ((ratio - 1) * 100).round(0, mode="half_away_from_zero").cast(pl.Int64), pl.col("next_change_date")),
        ),
        "paying_later": (
            rising | (late_count >= 2),
            late_text,
        ),
        "underwater": (
            cltv > float(policy.cltv_threshold),
            pl.format("Combined loan-to-value is {}% (first mortgage {} plus this loan {} against a value of {}).",
                      (cltv * 100).round(0, mode="half_away_from_zero").cast(pl.Int64), _money("senior_lien_balance"),
                      _money("current_balance"), _money("property_value")),
        ),
        "worsening_bucket": (
            pl.col("bucket").replace_strict(BUCKETS, list(range(len(BUCKETS))), return_dtype=pl.Int32)
            > pl.col("prior_bucket").replace_strict(BUCKETS, list(range(len(BUCKETS))),
                                                     default=None, return_dtype=pl.Int32),
            pl.format("Days past due moved from the {} bucket a month ago to {} now.",
                      pl.col("prior_bucket"), pl.col("bucket")),
        ),
        "early_delinquency": (
            pl.col("days_past_due").is_between(1, 29),
            pl.format("{} days past due: {} is owed.", pl.col("days_past_due"), _money("amount_past_due")),
        ),
    }


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
    conditions = {
        "bankruptcy": pl.col("bankruptcy").fill_null(False),
        "deceased": pl.col("deceased").fill_null(False),
        "cease_communication": pl.col("cease_communication").fill_null(False),
        "open_loss_mitigation": pl.col("open_loss_mitigation").fill_null(False),
        "not_principal_residence": pl.col("occupancy") != "primary",
    }
    assert tuple(conditions) == CARE_FLAGS
    return features.select(
        "loan_id",
        pl.concat_list([pl.when(c).then(pl.lit(code)) for code, c in conditions.items()])
        .list.drop_nulls()
        .alias("care"),
    )


def tier_of(days_past_due: pl.Expr, has_signal: pl.Expr) -> pl.Expr:
    """The contract's tier: default 90+, imminent 60-89, delinquent 30-59, early warning below."""
    return (
        pl.when(days_past_due >= 90).then(pl.lit("default"))
        .when(days_past_due >= 60).then(pl.lit("imminent_default"))
        .when(days_past_due >= 30).then(pl.lit("delinquent"))
        .when((days_past_due >= 1) | has_signal).then(pl.lit("early_warning"))
    )


def risk_flags(features: pl.DataFrame, found: pl.DataFrame, as_of: date, policy: Policy) -> pl.DataFrame:
    """One row per flagged second lien: tier, score, reasons, care, and the queue.

    ``found`` is the output of :func:`signals`. Columns: as_of_date, loan_id,
    borrower_id, tier, score, reasons (list of codes), reason_details (list of texts),
    care (list), days_past_due, queue_rank (1 = first to review) and
    in_queue (false for what the review capacity cut).
    """
    weights = pl.DataFrame(
        {"signal": list(SIGNALS),
         "weight": [float(policy.weights.get(code, 0)) for code in SIGNALS]}
    )
    per_loan = (
        found.join(weights, on="signal", how="left")
        .group_by("loan_id", maintain_order=True)
        .agg(pl.col("signal").alias("reasons"), pl.col("detail").alias("reason_details"),
             pl.col("weight").sum().alias("signal_points"))
    )
    tier_rank = {t: i for i, t in enumerate(TIERS)}
    flagged = (
        features.filter(pl.col("lien_position") == 2)
        .select("loan_id", "borrower_id", "days_past_due")
        .join(per_loan, on="loan_id", how="left")
        .join(care(features), on="loan_id", how="left")
        .with_columns(
            tier_of(pl.col("days_past_due"), pl.col("reasons").list.len().fill_null(0) > 0).alias("tier"),
            pl.col("reasons").fill_null(pl.lit([], dtype=pl.List(pl.String))),
            pl.col("reason_details").fill_null(pl.lit([], dtype=pl.List(pl.String))),
        )
        .filter(pl.col("tier").is_not_null())
        .with_columns(
            (pl.col("signal_points").fill_null(0.0)
             + pl.col("days_past_due") * float(policy.weight_per_day_past_due))
            .round(2).cast(pl.Decimal(10, 2)).alias("score"),
            pl.col("tier").replace_strict(tier_rank, return_dtype=pl.Int32).alias("_tier_rank"),
        )
        .sort(["_tier_rank", "score", "days_past_due", "loan_id"],
              descending=[True, True, True, False])
        .with_row_index("queue_rank", offset=1)
        .with_columns(
            pl.col("queue_rank").cast(pl.Int64),
            (pl.col("queue_rank") <= policy.review_capacity).alias("in_queue"),
            pl.lit(as_of).alias("as_of_date"),
        )
    )
    return flagged.select(
        "as_of_date", "loan_id", "borrower_id", "tier", "score", "reasons", "reason_details",
        "care", "days_past_due", "queue_rank", "in_queue",
    )


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
    (loan_id, bucket); ``ledger`` the output of ``ledger_signals.sql``; ``lateness``
    (loan_id, days_late) from :func:`lateness`.
    """
    seconds = status.filter(pl.col("lien_position") == 2).select(
        "loan_id", "lien_position", "days_past_due", "bucket", "amount_past_due",
        "suspense_amount", "installment_amount",
    )
    senior = (
        senior_liens.filter(pl.col("reported_date") <= as_of)
        .sort("reported_date")
        .group_by("loan_id")
        .agg(pl.col("senior_days_past_due").last(), pl.col("reported_date").last().alias("senior_reported_date"))
    )
    open_cases = (
        loss_mit.filter(
            (pl.col("status") == "open") & (pl.col("opened_date") <= as_of)
            & (pl.col("closed_date").is_null() | (pl.col("closed_date") > as_of))
        )
        .select("loan_id").unique().with_columns(pl.lit(True).alias("open_loss_mitigation"))
    )
    horizon_end = as_of + timedelta(days=horizon_days)
    rises = (
        payment_changes.filter(pl.col("effective_due_date").is_between(as_of, horizon_end, closed="right"))
        .sort("scheduled_payment", "effective_due_date", descending=[True, False])
        .group_by("loan_id")
        .agg(pl.col("scheduled_payment").first().alias("next_change_amount"),
             pl.col("effective_due_date").first().alias("next_change_date"))
    )
    people = borrowers.select("borrower_id", "bankruptcy", "deceased", "cease_communication")
    return (
        seconds.join(
            loans.select("loan_id", "borrower_id", "product", "occupancy", "current_balance",
                         "property_value", "senior_lien_balance"),
            on="loan_id", how="left",
        )
        .join(prior.select("loan_id", pl.col("bucket").alias("prior_bucket")), on="loan_id", how="left")
        .join(senior, on="loan_id", how="left")
        .join(ledger, on="loan_id", how="left")
        .join(rises, on="loan_id", how="left")
        .join(lateness, on="loan_id", how="left")
        .join(people, on="borrower_id", how="left")
        .join(open_cases, on="loan_id", how="left")
        .with_columns(
            pl.col("returns_in_window").fill_null(0),
            pl.col("open_loss_mitigation").fill_null(False),
            (pl.col("last_payment_amount") < pl.col("installment_amount"))
            .fill_null(False).alias("last_payment_short"),
            pl.col("days_late").fill_null(pl.lit([], dtype=pl.List(pl.Int64))),
        )
    )


def lateness(
    loans: pl.DataFrame,
    payment_changes: pl.DataFrame,
    events: pl.DataFrame,
    status: pl.DataFrame,
    as_of: date,
    tolerance: Decimal = Decimal("0"),
) -> pl.DataFrame:
    """One row per loan: days late of its last three installments due, oldest first.

    ``events`` is ``ledger_events.sql``'s output: net paid at the end of each day with
    ledger activity in a recent window, plus the window's opening figure. The delinquency
    engine gives installments paid at each of those days (its rules, its tolerance). An
    installment is paid on the first day from which installments paid stays at or above
    its number; days late = that day minus its due date (0 when paid ahead); an unpaid
    one is late by the night minus its due date.
    """
    from transforms.delinquency import due_date

    if events.is_empty():
        return pl.DataFrame(schema={"loan_id": pl.String, "days_late": pl.List(pl.Int64)})
    tonight = status.select(
        "loan_id", "installments_due", pl.col("installments_paid").alias("paid_now"),
        _cents_of("total_due").alias("_total"), _cents_of("installment_amount").alias("_amount"))
    wanted = (
        tonight.filter(pl.col("installments_due") > 0)
        .with_columns(pl.int_ranges(pl.max_horizontal(pl.col("installments_due") - 3, 0),
                                    pl.col("installments_due")).alias("k"))
        .explode("k")
        .join(loans.select("loan_id", "first_payment_date"), on="loan_id")
        .with_columns(due_date(pl.col("first_payment_date"), pl.col("k").cast(pl.Int32)).alias("due"))
    )
    # Where the last installments all have tonight's amount (no payment change among
    # them), installment k is paid once net paid reaches total_due less the later ones,
    # less the tolerance: money thresholds, no need to rerun the engine day by day.
    earliest = wanted.group_by("loan_id").agg(pl.col("due").min().alias("_from"))
    changed = (
        payment_changes.join(earliest, on="loan_id")
        .filter((pl.col("effective_due_date") > pl.col("_from")) & (pl.col("effective_due_date") <= as_of))
        .select("loan_id").unique()
    )
    simple = wanted.join(changed, on="loan_id", how="anti").with_columns(
        (pl.col("_total") - (pl.col("installments_due") - 1 - pl.col("k")) * pl.col("_amount")
         - _tolerance_cents(tolerance)).alias("_need"))
    by_money = _first_day_at_or_above(
        simple.select("loan_id", "k", "_need"),
        events.join(simple.select("loan_id").unique(), on="loan_id", how="semi")
        .select("loan_id", "as_of_date", _cents_of("net_paid").alias("_level")),
    )
    by_count = _paid_days_by_engine(
        wanted.join(changed, on="loan_id", how="semi"), loans, payment_changes,
        events.join(changed, on="loan_id", how="semi"), tolerance)
    paid_on = pl.concat([by_money, by_count])
    return (
        wanted.join(paid_on, on=["loan_id", "k"], how="left")
        .with_columns(
            pl.when(pl.col("paid_now") < pl.col("k") + 1)
            .then((pl.lit(as_of) - pl.col("due")).dt.total_days())
            .otherwise(pl.max_horizontal((pl.col("paid_date") - pl.col("due")).dt.total_days(), pl.lit(0)))
            .cast(pl.Int64).alias("late")
        )
        .sort("loan_id", "k")
        .group_by("loan_id", maintain_order=True)
        .agg(pl.col("late").alias("days_late"))
    )


def _cents_of(column: str) -> pl.Expr:
    return (pl.col(column).cast(pl.Decimal(18, 2)) * 100).cast(pl.Int64)


def _tolerance_cents(tolerance: Decimal) -> int:
    return int(Decimal(tolerance) * 100)


def _first_day_at_or_above(needs: pl.DataFrame, levels: pl.DataFrame) -> pl.DataFrame:
    """(loan_id, k, paid_date): the first day from which ``_level`` stays at or above ``_need``.

    The level is taken at its floor from each day on (the least of it and every later
    day's), so a later reversal undoes an earlier "paid"; the floor never falls as the
    days go on, so the first day at or above the need is an as-of join looking forward.
    """
    settled = (
        levels.sort("loan_id", "as_of_date")
        .with_columns(pl.col("_level").reverse().cum_min().reverse().over("loan_id").alias("_need"))
        .select("loan_id", "_need", pl.col("as_of_date").alias("paid_date"))
        .sort("_need", "paid_date")
    )
    return (
        needs.select("loan_id", "k", pl.col("_need").cast(pl.Int64)).sort("_need")
        .join_asof(settled.with_columns(pl.col("_need").cast(pl.Int64)), on="_need", by="loan_id",
                   strategy="forward", check_sortedness=False)
        .select("loan_id", "k", "paid_date")
    )


def _paid_days_by_engine(wanted: pl.DataFrame, loans: pl.DataFrame, payment_changes: pl.DataFrame,
                         events: pl.DataFrame, tolerance: Decimal) -> pl.DataFrame:
    """Paid days where a payment change falls among the last installments: the engine's
    installments-paid count on each day with ledger activity, against k + 1."""
    from transforms.delinquency import loan_status_history

    if wanted.is_empty() or events.is_empty():
        return pl.DataFrame(schema={"loan_id": pl.String, "k": pl.Int64, "paid_date": pl.Date})
    terms = loans.select("loan_id", "lien_position", "first_payment_date", "scheduled_payment",
                         "term_months", "status", "origination_date")
    per_day = events.select("loan_id", "as_of_date").join(terms, on="loan_id", how="inner")
    dates = sorted(set(events["as_of_date"].to_list()))
    paid = loan_status_history(per_day, payment_changes, events, dates, tolerance)
    return _first_day_at_or_above(
        wanted.select("loan_id", "k", (pl.col("k") + 1).alias("_need")),
        paid.select("loan_id", "as_of_date", pl.col("installments_paid").alias("_level")),
    ).with_columns(pl.col("k").cast(pl.Int64))
