"""Review cases and the analysts' decisions, as pure transforms.

The loss-mitigation team works the night's flagged loans as cases, and records what it
did as decisions (``lienwatch review ...``). Everything that follows from those two is
decided here, from frames, with no I/O:

- :func:`case_events`: tonight's case events (opened, escalated, de-escalated,
  resolved) from the cases open before the night and tonight's flags;
  :func:`case_state` folds a log of events back into cases, so the cases as they stood
  before any night are always derived from the log, never kept as a second truth.
- :func:`active_holds` and :func:`apply_holds`: an analyst's hold keeps a letter from
  being mailed until a release lifts it.
- :func:`open_applications`: a hardship application taken by an analyst counts as an
  open loss-mitigation case until the servicing system's ``loss_mit`` feed carries it;
  :func:`open_cases`: the loss-mitigation cases open on a night.
- :func:`promise_status`: each promise to pay checked against the ledger.
- :func:`call_list`: the loans whose Regulation X live-contact attempt is due.
- :func:`on_page`: which flagged loans the review page carries when they are too many.

A decision acts on the nights whose business date is on or after the day it was made
(:func:`made_by`), so a rerun of an earlier night is unaffected by later decisions.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from transforms.contract import TIERS

MONEY = pl.Decimal(14, 2)

CASE_SCHEMA: dict[str, pl.DataType] = {
    "case_id": pl.String(),
    "loan_id": pl.String(),
    "opened_date": pl.Date(),
    "tier": pl.String(),
    "status": pl.String(),
    "resolved_date": pl.Date(),
}
EVENT_SCHEMA: dict[str, pl.DataType] = {
    "case_id": pl.String(),
    "loan_id": pl.String(),
    "as_of_date": pl.Date(),
    "event": pl.String(),
    "from_tier": pl.String(),
    "to_tier": pl.String(),
    "note": pl.String(),
}
DECISION_SCHEMA: dict[str, pl.DataType] = {
    "decision_id": pl.String(),
    "loan_id": pl.String(),
    "kind": pl.String(),
    "made_at": pl.Datetime("us"),
    "made_by": pl.String(),
    "promise_date": pl.Date(),
    "promise_amount": MONEY,
    "letter_id": pl.String(),
    "note": pl.String(),
}
DECISION_KINDS = ("contact", "promise", "application", "hold", "release", "note")
EVENTS = ("opened", "escalated", "de-escalated", "resolved")
PROMISE_STATUSES = ("kept", "broken", "pending")
CALL_STATUSES = ("overdue", "due today", "due tomorrow")
HOLD_SCHEMA: dict[str, pl.DataType] = {
    "loan_id": pl.String(),
    "letter_id": pl.String(),
    "template": pl.String(),
    "held_by": pl.String(),
    "held_on": pl.Date(),
}
"""The holds in force (:func:`active_holds`): a loan's letters (letter_id and template
null), or one letter and the loan's later letters of the same template."""
PROMISE_SCHEMA: dict[str, pl.DataType] = {
    "as_of_date": pl.Date(),
    "decision_id": pl.String(),
    "loan_id": pl.String(),
    "made_at": pl.Datetime("us"),
    "made_by": pl.String(),
    "promise_date": pl.Date(),
    "promise_amount": MONEY,
    "paid_toward": MONEY,
    "status": pl.String(),
}

_TIER_RANK = {tier: rank for rank, tier in enumerate(TIERS)}


def _rank(column: str) -> pl.Expr:
    return pl.col(column).replace_strict(_TIER_RANK, default=None, return_dtype=pl.Int32)


def made_by(as_of: date) -> pl.Expr:
    """Decisions that act on the night ``as_of``: those made on or before its date."""
    return pl.col("made_at").dt.date() <= as_of


# --------------------------------------------------------------------------- cases


def case_state(events: pl.DataFrame) -> pl.DataFrame:
    """The cases (:data:`CASE_SCHEMA`) as a log of events leaves them.

    A case has one event a night at most, so the log's order by date is its history:
    the tier is the last one a case moved to, and a case whose last event is
    ``resolved`` is closed on that date.
    """
    last = pl.col("event").last()
    return (
        events.sort("as_of_date", maintain_order=True)
        .group_by("case_id", maintain_order=True)
        .agg(
            pl.col("loan_id").first(),
            pl.col("as_of_date").filter(pl.col("event") == "opened").first().alias("opened_date"),
            pl.col("to_tier").drop_nulls().last().alias("tier"),
            pl.when(last == "resolved")
            .then(pl.lit("resolved"))
            .otherwise(pl.lit("open"))
            .alias("status"),
            pl.when(last == "resolved").then(pl.col("as_of_date").last()).alias("resolved_date"),
        )
        .select([pl.col(name).cast(dtype) for name, dtype in CASE_SCHEMA.items()])
        .sort("loan_id", "opened_date")
    )


def case_id(loan_id: pl.Expr, opened: date) -> pl.Expr:
    """Stable across reruns: a loan's case is named by the night it opened."""
    return pl.format("C{}-{}", pl.lit(opened.strftime("%Y%m%d")), loan_id)


def case_events(
    open_cases: pl.DataFrame, tonight_flags: pl.DataFrame, as_of: date
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Tonight's case events, and the cases they leave (open ones and those resolved tonight).

    ``open_cases`` are the cases open before the night (case_id, loan_id, opened_date,
    tier); ``tonight_flags`` is the night's ``risk_flags`` (loan_id, tier,
    days_past_due). A newly flagged loan opens a case; a loan whose tier rose
    (early_warning < delinquent < imminent_default < default) escalates it, one whose
    tier fell de-escalates it; an open case whose loan is no longer flagged is resolved.
    The result depends only on its inputs, so a rerun of the night gives the same events.
    """
    before, now = _rank("from_tier"), _rank("to_tier")
    dpd = pl.format("{} days past due", pl.col("days_past_due"))
    moved = (
        open_cases.select("case_id", "loan_id", "opened_date", pl.col("tier").alias("from_tier"))
        .join(
            tonight_flags.select("loan_id", pl.col("tier").alias("to_tier"), "days_past_due"),
            on="loan_id",
            how="full",
            coalesce=True,
        )
        .with_columns(
            pl.when(pl.col("from_tier").is_null())
            .then(pl.lit("opened"))
            .when(pl.col("to_tier").is_null())
            .then(pl.lit("resolved"))
            .when(now > before)
            .then(pl.lit("escalated"))
            .when(now < before)
            .then(pl.lit("de-escalated"))
            .alias("event"),
            pl.coalesce("case_id", case_id(pl.col("loan_id"), as_of)).alias("case_id"),
            pl.coalesce("opened_date", pl.lit(as_of)).alias("opened_date"),
        )
        .with_columns(
            pl.when(pl.col("event") == "opened")
            .then(pl.format("flagged {} at {}", pl.col("to_tier"), dpd))
            .when(pl.col("event") == "resolved")
            .then(pl.lit("no longer flagged"))
            .otherwise(pl.format("{} to {} at {}", pl.col("from_tier"), pl.col("to_tier"), dpd))
            .alias("note"),
            pl.lit(as_of).alias("as_of_date"),
        )
        .sort("loan_id")
    )
    events = moved.filter(pl.col("event").is_not_null()).select(
        [pl.col(name).cast(dtype) for name, dtype in EVENT_SCHEMA.items()]
    )
    resolved = pl.col("to_tier").is_null()
    cases = moved.select(
        "case_id",
        "loan_id",
        "opened_date",
        pl.coalesce("to_tier", "from_tier").alias("tier"),
        pl.when(resolved).then(pl.lit("resolved")).otherwise(pl.lit("open")).alias("status"),
        pl.when(resolved).then(pl.lit(as_of)).alias("resolved_date"),
    ).select([pl.col(name).cast(dtype) for name, dtype in CASE_SCHEMA.items()])
    return cases, events


# --------------------------------------------------------------------------- letters on hold


def active_holds(decisions: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """The holds in force on the night ``as_of`` (:data:`HOLD_SCHEMA`).

    ``decisions`` has :data:`DECISION_SCHEMA` plus ``template``: the template of the held
    letter (null for a hold on the whole loan). A release lifts the loan's holds made
    before it: all of them, or with a letter named, only that letter's.
    """
    made = decisions.filter(made_by(as_of))
    holds = made.filter(pl.col("kind") == "hold")
    releases = made.filter(pl.col("kind") == "release").select(
        "loan_id",
        pl.col("letter_id").alias("released_letter"),
        pl.col("made_at").alias("released_at"),
    )
    lifted = (
        holds.join(releases, on="loan_id")
        .filter(
            (pl.col("released_at") > pl.col("made_at"))
            & (
                pl.col("released_letter").is_null()
                | (pl.col("released_letter") == pl.col("letter_id"))
            )
        )
        .select("decision_id")
    )
    return (
        holds.join(lifted, on="decision_id", how="anti")
        .sort("made_at")
        .select(
            "loan_id",
            "letter_id",
            "template",
            pl.col("made_by").alias("held_by"),
            pl.col("made_at").dt.date().alias("held_on"),
        )
        # polars types cast()'s mapping keys as `str | selector | dtype` and a Mapping's key
        # type is invariant, so a dict[str, DataType] is refused, though cast() takes it
        .cast(HOLD_SCHEMA)  # type: ignore[arg-type]
    )


def apply_holds(letters: pl.DataFrame, holds: pl.DataFrame) -> pl.DataFrame:
    """The night's letter decisions with every held letter suppressed, not mailed.

    ``letters`` is the night's decision frame (letter_id, as_of_date, loan_id,
    borrower_id, template, language, status, suppression_reason); ``holds`` is
    :func:`active_holds`. A letter already suppressed keeps its own reason; a generated
    one that a hold matches becomes ``suppressed`` with "held by analyst <who> on
    <date>" (the latest matching hold). Columns and row order are kept.
    """
    matched = (
        letters.select("letter_id", "loan_id", "template")
        .join(holds.rename({"letter_id": "held_letter", "template": "held_template"}), on="loan_id")
        .filter(
            pl.col("held_letter").is_null()
            | (pl.col("held_letter") == pl.col("letter_id"))
            | (pl.col("held_template") == pl.col("template"))
        )
        .sort("held_on")
        .group_by("letter_id")
        .agg(pl.format("held by analyst {} on {}", "held_by", "held_on").last().alias("_held"))
    )
    held = pl.col("_held").is_not_null() & (pl.col("status") == "generated")
    return (
        letters.join(matched, on="letter_id", how="left", maintain_order="left")
        .with_columns(
            pl.when(held).then(pl.lit("suppressed")).otherwise(pl.col("status")).alias("status"),
            pl.when(held)
            .then(pl.col("_held"))
            .otherwise(pl.col("suppression_reason"))
            .alias("suppression_reason"),
        )
        .select(letters.columns)
    )


# --------------------------------------------------------------------------- applications


def open_applications(decisions: pl.DataFrame, loss_mit: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """Hardship applications taken by analysts that stand as open loss-mitigation cases.

    One row per loan (loan_id, case_type "application", status "open", opened_date,
    closed_date null: the ``loss_mit`` feed's layout, so the flags step can add them to
    the feed's rows and the loan gets its ``open_loss_mitigation`` care flag). An
    application stands from the day it was taken until the feed (``loss_mit``: loan_id,
    opened_date) carries a case for the loan opened on or after that day and on or
    before the night; from then on the servicing system's record governs.
    """
    taken = decisions.filter(made_by(as_of) & (pl.col("kind") == "application")).select(
        "loan_id", pl.col("made_at").dt.date().alias("opened_date")
    )
    recorded = loss_mit.filter(pl.col("opened_date") <= as_of).select(
        "loan_id", pl.col("opened_date").alias("recorded_date")
    )
    superseded = (
        taken.join(recorded, on="loan_id")
        .filter(pl.col("recorded_date") >= pl.col("opened_date"))
        .select("loan_id", "opened_date")
    )
    return (
        taken.join(superseded, on=["loan_id", "opened_date"], how="anti")
        .group_by("loan_id")
        .agg(pl.col("opened_date").min())
        .sort("loan_id")
        .select(
            "loan_id",
            pl.lit("application").alias("case_type"),
            pl.lit("open").alias("status"),
            "opened_date",
            pl.lit(None, dtype=pl.Date).alias("closed_date"),
        )
    )


def open_cases(loss_mit: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """The ``loss_mit`` rows (loan_id, case_type, status, opened_date, closed_date) of the
    cases open on the night: marked open, opened by the night and not closed by it."""
    return loss_mit.filter(
        (pl.col("status") == "open")
        & (pl.col("opened_date") <= as_of)
        & (pl.col("closed_date").is_null() | (pl.col("closed_date") > as_of))
    )


# --------------------------------------------------------------------------- promises to pay


def promise_status(decisions: pl.DataFrame, payments: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """Each promise to pay made by the night, checked against the ledger (:data:`PROMISE_SCHEMA`).

    ``payments`` is the ledger (txn_id, loan_id, posted_date, amount, txn_type,
    reverses_txn_id). What counts toward a promise is the loan's payments posted from
    the day it was made through the promise date (and by the night), less any of those
    payments reversed by the night. ``kept`` once that reaches the promised amount;
    ``broken`` when the promise date has passed without it; ``pending`` until then.
    """
    promises = decisions.filter(made_by(as_of) & (pl.col("kind") == "promise"))
    known = payments.filter(pl.col("posted_date") <= as_of)
    reversed_ = (
        known.filter(pl.col("txn_type") == "reversal")
        .group_by(pl.col("reverses_txn_id").alias("txn_id"))
        .agg(pl.col("amount").sum().alias("reversed"))
    )
    net = (
        known.filter(pl.col("txn_type") == "payment")
        .join(reversed_, on="txn_id", how="left")
        .select(
            "loan_id",
            "posted_date",
            (pl.col("amount") - pl.col("reversed").fill_null(0)).alias("net"),
        )
    )
    paid = (
        promises.select("decision_id", "loan_id", "made_at", "promise_date")
        .join(net, on="loan_id")
        .filter(
            pl.col("posted_date").is_between(pl.col("made_at").dt.date(), pl.col("promise_date"))
        )
        .group_by("decision_id")
        .agg(pl.col("net").sum().alias("paid_toward"))
    )
    toward = pl.col("paid_toward").fill_null(0).cast(MONEY)
    return (
        promises.join(paid, on="decision_id", how="left")
        .with_columns(toward.alias("paid_toward"))
        .with_columns(
            pl.when(pl.col("paid_toward") >= pl.col("promise_amount"))
            .then(pl.lit("kept"))
            .when(pl.col("promise_date") < as_of)
            .then(pl.lit("broken"))
            .otherwise(pl.lit("pending"))
            .alias("status"),
            pl.lit(as_of).alias("as_of_date"),
        )
        .sort("made_at", "decision_id")
        .select([pl.col(name).cast(dtype) for name, dtype in PROMISE_SCHEMA.items()])
    )


# --------------------------------------------------------------------------- call list


def call_list(candidates: pl.DataFrame, decisions: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """The flagged loans whose Regulation X live-contact attempt is due by tomorrow.

    ``candidates`` are the night's flagged loans with queue_rank,
    live_contact_due_date (day 36 of the delinquency) and delinquency_start_date (when
    the current delinquency began), plus any columns to show. A loan is listed when its
    live-contact date is on or before the day after the night and no ``contact``
    decision has been made since its delinquency began. Adds call_status (overdue, due
    today, due tomorrow) and last_contact_date (the latest contact ever recorded);
    sorted by call_status, then queue_rank.
    """
    contacts = (
        decisions.filter(made_by(as_of) & (pl.col("kind") == "contact"))
        .group_by("loan_id")
        .agg(pl.col("made_at").max().dt.date().alias("last_contact_date"))
    )
    due = pl.col("live_contact_due_date")
    status = (
        pl.when(due < as_of)
        .then(pl.lit(CALL_STATUSES[0]))
        .when(due == as_of)
        .then(pl.lit(CALL_STATUSES[1]))
        .otherwise(pl.lit(CALL_STATUSES[2]))
    )
    return (
        candidates.filter(due <= as_of + timedelta(days=1))
        .join(contacts, on="loan_id", how="left")
        .filter(
            pl.col("last_contact_date").is_null()
            | (pl.col("last_contact_date") < pl.col("delinquency_start_date"))
        )
        .with_columns(status.alias("call_status"))
        .sort(pl.col("call_status").replace_strict(CALL_STATUSES, list(range(3))), "queue_rank")
    )


def on_page(queue: pl.DataFrame, calls: pl.DataFrame, limit: int) -> pl.DataFrame:
    """The flagged loans the review page carries: all of ``queue`` when it has at most
    ``limit`` rows; else first the loans within the review capacity, then those on the
    call list (in its order), then the rest in queue order, ``limit`` in all. Returned in
    queue order. ``queue`` has loan_id, queue_rank and in_queue; ``calls`` loan_id, in
    call order.
    """
    if queue.height <= limit:
        return queue
    called = calls.select("loan_id").with_row_index("_call_order")
    return (
        queue.join(called, on="loan_id", how="left")
        .sort(
            pl.col("in_queue").fill_null(False).not_(),
            pl.col("_call_order").is_null(),
            "_call_order",
            "queue_rank",
        )
        .head(limit)
        .sort("queue_rank")
        .drop("_call_order")
    )
